/*
 * The shapes shared by the resource-management parts: the monitor's samples, the limiter's limits and
 * violations, and the model memory manager's policies and stats. One file so the worker, the fleet
 * status and the API agree on them.
 */

/** One reading of the machine and of this process. Percentages are 0–100. */
export interface ResourceSample {
  /** When it was taken (epoch ms). */
  at: number;
  /** Host memory in use (active, not counting reclaimable page cache) as % of total. */
  memoryPercent: number;
  /**
   * cell0's CPU over the sampler's sliding window (CELL0_CPU_WINDOW_MS), the figure the CPU limit applies
   * to: % of the cgroup's CPU quota when one is set, else % of one core used by this process (a Node
   * process runs its JavaScript on one thread; 100 = that thread never idle). Never the host's: a busy
   * neighbour is not cell0's pressure.
   */
  cpuPercent: number;
  /** What cpuPercent is measured on (set by the system sampler). */
  cpuScope?: 'cgroup' | 'process';
  /** Cores cpuPercent is a percentage of: the quota in cores, or 1 for a process (system sampler). */
  cpuCores?: number;
  /** The whole host's CPU load since the previous sample, % of all cores: for information, never a limit. */
  hostCpuPercent?: number;
  /** Use of the filesystem holding the data folder, %. */
  diskPercent: number;
  /** Host memory, bytes. */
  memoryTotalBytes: number;
  memoryUsedBytes: number;
  /** This process: what matters most for a Node worker. */
  process: {
    rssBytes: number;
    heapUsedBytes: number;
    /** The V8 heap limit (heap_size_limit), bytes. */
    heapLimitBytes: number;
    /** heapUsed / heap limit, %. */
    heapPercent: number;
    /** Event-loop delay over the last interval (perf_hooks histogram): mean and p99, ms. */
    eventLoopDelayMeanMs: number;
    eventLoopDelayP99Ms: number;
  };
}

/** A resource the limiter watches. */
export type ResourceKind = 'memory' | 'cpu' | 'disk' | 'heap' | 'eventLoopDelay';

/**
 * Limits of one worker. A value above its limit is a violation. 0 turns any limit off (memory, cpu, disk
 * and heap are 1–100 when set; event-loop delay is ms of p99).
 */
export interface ResourceLimits {
  /** Host memory %, default CELL0_MAX_MEMORY_PERCENT (85). */
  maxMemoryPercent: number;
  /** cell0's CPU % (see ResourceSample.cpuPercent), default CELL0_MAX_CPU_PERCENT (90). */
  maxCpuPercent: number;
  /** Disk use % of the data folder's filesystem, default CELL0_MAX_DISK_PERCENT (95). */
  maxDiskPercent: number;
  /** V8 heap use % of its limit; 0 = off. */
  maxHeapPercent: number;
  /** Event-loop delay p99, ms; 0 = off. */
  maxEventLoopDelayMs: number;
}

/** One limit exceeded. */
export interface ResourceViolation {
  resource: ResourceKind;
  /** The measured value (percent, or ms for eventLoopDelay). */
  value: number;
  /** The limit it went over. */
  threshold: number;
}

/** Result of checking a sample against the limits. */
export interface LimitCheck {
  /** False while under pressure (hysteresis: true again only once every value is back under its release level). */
  withinLimits: boolean;
  /** The limits exceeded by the sample (empty when within). */
  violations: ResourceViolation[];
}

/** Something that gives the latest sample synchronously (the monitor, or a test's fake). */
export interface SampleSource {
  getCurrentUsage(): ResourceSample | undefined;
}

/** How the model memory manager picks victims. Names are the seed's. */
export enum EvictionPolicy {
  /** Least recently used. */
  LRU = 'LRU',
  /** Least frequently used, with exponential decay of old accesses. */
  LFU = 'LFU',
  /** First loaded, first evicted. */
  FIFO = 'FIFO',
  /** Idle longer than its keep-alive first, then the one closest to expiring. */
  TTL = 'TTL',
  /** GreedyDual-Size-Frequency: lowest frequency × load time / memory first. */
  COST_BASED = 'COST_BASED',
}

/** A model the manager knows, resident or not. */
export interface ModelInfo {
  /** Identifier (the model name as jobs give it, e.g. "qwen2.5:7b"). */
  modelId: string;
  /** Name the backend knows it by (usually the same). */
  modelName: string;
  /** Memory it takes when resident, bytes. */
  memoryBytes: number;
  /** Higher = more important: lower priorities are evicted first, whatever the policy. Default 0. */
  priority: number;
  /** Never evicted while pinned. */
  pinned: boolean;
  /** Idle time after which TTL eviction may take it, ms. */
  keepAliveMs: number;
  resident: boolean;
  /** Jobs using it now (never evicted while > 0). */
  inUse: number;
  /** Measured (or estimated) time to load it, ms. */
  loadMs: number;
  /** epoch ms; 0 when never. */
  loadedAt: number;
  lastAccessAt: number;
  /** Accesses since registered. */
  accesses: number;
}

/** What the manager reports (published in the fleet status). */
export interface ModelManagerStats {
  policy: EvictionPolicy;
  budgetBytes: number;
  usedBytes: number;
  resident: { modelId: string; memoryBytes: number; inUse: number; pinned: boolean; priority: number }[];
  /** Accesses that found the model resident. */
  hits: number;
  /** Accesses that had to load it. */
  misses: number;
  loads: number;
  /** Evictions, in total and by the policy that chose them. */
  evictions: number;
  evictionsByPolicy: Partial<Record<EvictionPolicy, number>>;
  /** Sum of the load times hits did not pay, ms. */
  loadTimeSavedMs: number;
  /** Sum of the load times misses paid, ms. */
  loadTimeSpentMs: number;
  /** Models the backend unloaded on its own (found by reconcile). */
  externalUnloads: number;
}

/**
 * How the manager drives a backend. Ollama: load = a request with only `model`, unload = `keep_alive: 0`,
 * listLoaded = /api/ps, sizeOf = /api/tags size.
 */
export interface ModelDriver {
  load(modelName: string, signal?: AbortSignal): Promise<void>;
  unload(modelName: string, signal?: AbortSignal): Promise<void>;
  /** Models resident in the backend now, with their size when it says. */
  listLoaded?(signal?: AbortSignal): Promise<{ name: string; sizeBytes?: number }[]>;
  /** Size of a model's weights, when the backend can say before loading it. */
  sizeOf?(modelName: string, signal?: AbortSignal): Promise<number | undefined>;
}
