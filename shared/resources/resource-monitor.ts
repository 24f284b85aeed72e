/*
 * Samples the host, what cell0 controls (its CPU: cgroup quota or process) and this process in the background. Sample on a timer, decide synchronously: whoever
 * needs a decision before a job (the limiter, the worker) reads the last sample, which costs nothing; the
 * work of sampling (reading /proc, statfs) happens off the job path, never overlapping itself.
 */
import { EventEmitter } from 'node:events';
import { statfs } from 'node:fs/promises';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import { ClosedError } from '../errors.js';
import { readMemory } from './host-memory.js';
import { type ResourceSample, type SampleSource } from './types.js';
import { CpuWindow, detectCpuSource, hostCpuTimes, type CpuScope, type CpuUsageSource } from './cpu-usage.js';
import { withDefaults } from '../with-defaults.js';
import { sleep } from '../sleep.js';

/** Options of a resource monitor. */
export interface ResourceMonitorOptions {
  /** Sampling interval, ms (>= 100). Default 2000. */
  intervalMs?: number;
  /** Samples kept in the history ring (>= 1). Default 300. */
  historySize?: number;
  /** A path on the filesystem whose disk use is reported. Default process.cwd(). */
  diskPath?: string;
  /** Replaces the real sampler (tests, simulations). */
  sampler?: () => Promise<ResourceSample> | ResourceSample;
  /** CPU figures of the real sampler: window, and injected sources (tests). */
  cpu?: SystemCpuOptions;
}

/** Events of a resource monitor. */
export interface ResourceMonitorEvents {
  /** A sample was recorded (sampled or injected with record()). */
  sample: [ResourceSample];
  /** The sampler failed; the previous sample stays current. Emitted only when someone listens. */
  error: [Error];
}

/** The real sampler: sample() reads the host and the process; close() stops the event-loop histogram. */
export interface SystemSampler {
  sample(): Promise<ResourceSample>;
  close(): void;
}

const DEFAULTS = { intervalMs: 2000, historySize: 300 };

/** Histogram resolution, ms: the period of the timer whose lateness measures the event-loop delay. */
const LOOP_RESOLUTION_MS = 10;

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Rounded to 0.1 and kept within 0–100 (load figures can overshoot by a rounding error). */
function percent(x: number): number {
  if (!Number.isFinite(x)) return 0;
  return Math.round(Math.min(100, Math.max(0, x)) * 10) / 10;
}

function ms(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Options of the CPU figures of the system sampler. */
export interface SystemCpuOptions {
  /**
   * Sliding window of cell0's CPU figure, ms: the % is the CPU used over about this long, so one busy
   * second does not flap the limit. 0 = since the previous sample only. Default 10000.
   */
  windowMs?: number;
  /** cell0's own CPU counter. Default: the cgroup's quota when one is set (see cgroupRoot), else this process. */
  source?: CpuUsageSource;
  /** Where the cgroup filesystem is mounted (tests point it at a fake folder). Default /sys/fs/cgroup. */
  cgroupRoot?: string;
  /** This process's cgroup under the root. Default: from /proc/self/cgroup with the default root, else "/". */
  cgroupPath?: string;
  /** The host's cumulative CPU counters (informational only, never a limit). Default os.cpus(). */
  hostTimes?: () => { busy: number; total: number };
}

/** What the CPU meter returns for one sample. */
interface CpuFigures {
  percent: number;
  hostPercent: number;
  scope: CpuScope;
  capacityCores: number;
}

/**
 * cell0's CPU over a sliding window (see cpu-usage.ts), and the host's since the previous call for
 * information. The host figure comes from the kernel's counters (os.cpus(): /proc/stat on Linux);
 * systeminformation's currentLoad() reads the same counters but also runs a shell command on every call on
 * Linux, which cost a worker about 5% of its job throughput in bench:e2e.
 */
function cpuMeter(opts: SystemCpuOptions): () => Promise<CpuFigures> {
  const source =
    opts.source ??
    detectCpuSource({
      ...(opts.cgroupRoot !== undefined ? { cgroupRoot: opts.cgroupRoot } : {}),
      ...(opts.cgroupPath !== undefined ? { cgroupPath: opts.cgroupPath } : {}),
    });
  const hostTimes = opts.hostTimes ?? hostCpuTimes;
  const window = new CpuWindow(opts.windowMs ?? DEFAULT_CPU_WINDOW_MS);
  let last = source.read();
  window.push(last);
  let prevHost = hostTimes();
  const startedAt = performance.now();
  let first = true;
  return async () => {
    if (first) {
      first = false;
      // The first reading right after start would cover a few ms: give it a short interval to measure.
      const since = performance.now() - startedAt;
      // Not unref'd: a caller awaiting its first sample (start()) must not see the process exit under it.
      if (since < MIN_CPU_WINDOW_MS) await sleep(MIN_CPU_WINDOW_MS - since);
    }
    last = source.read();
    const own = window.push(last);
    const host = hostTimes();
    const total = host.total - prevHost.total;
    const busy = host.busy - prevHost.busy;
    prevHost = host;
    // No counters (some sandboxes): the 1-minute load average per core is coarser but always there.
    const hostPercent =
      total > 0
        ? (busy / total) * 100
        : ((os.loadavg()[0] ?? 0) / Math.max(1, os.availableParallelism())) * 100;
    return { percent: own ?? 0, hostPercent, scope: last.scope, capacityCores: last.capacityCores };
  };
}

/** Default window of cell0's CPU figure, ms. */
export const DEFAULT_CPU_WINDOW_MS = 10_000;

/** Shortest span the first CPU reading covers, ms. */
const MIN_CPU_WINDOW_MS = 200;

/** Disk use of the filesystem holding `path`, as df reports it. */
async function readDisk(path: string): Promise<number> {
  const s = await statfs(path);
  // df's formula: blocks reserved for root (bfree - bavail) count neither as used nor as available, so a
  // full disk reads 100% when an ordinary process can write nothing more.
  const used = s.blocks - s.bfree;
  const usable = used + s.bavail;
  return usable > 0 ? (used / usable) * 100 : 0;
}

/**
 * The real sampler, exported for reuse. Memory from readMemory() (of the cgroup's limit in a container), cell0's
 * CPU (its cgroup quota or this process, over a sliding window) and the host's (informational), disk from
 * statfs(diskPath), and this process's memory, heap limit and event-loop delay (a histogram reset after each
 * sample, so each sample covers one interval). One sample takes a few ms; the first takes up to 200 ms more
 * (the CPU reading needs an interval to measure).
 */
export function createSystemSampler(opts: { diskPath: string; cpu?: SystemCpuOptions }): SystemSampler {
  const { diskPath } = opts;
  if (typeof diskPath !== 'string' || diskPath.length === 0)
    throw new TypeError('createSystemSampler: option "diskPath" must be a non-empty path');
  const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  loop.enable();
  const readCpu = cpuMeter(opts.cpu ?? {});
  return {
    async sample(): Promise<ResourceSample> {
      // Read the loop delay before the sample's own work, which belongs to no job.
      // The histogram records whole timer periods (about 10 ms when idle): the delay is what exceeds the
      // resolution. Before any data, mean is NaN and percentiles are garbage: count says whether to trust them.
      const hasData = loop.count > 0;
      const loopMeanMs = hasData ? Math.max(0, loop.mean / 1e6 - LOOP_RESOLUTION_MS) : 0;
      const loopP99Ms = hasData ? Math.max(0, loop.percentile(99) / 1e6 - LOOP_RESOLUTION_MS) : 0;
      loop.reset();
      const [memory, cpu, disk] = await Promise.all([readMemory(), readCpu(), readDisk(diskPath)]);
      const usage = process.memoryUsage();
      const heapLimitBytes = v8.getHeapStatistics().heap_size_limit;
      return {
        at: Date.now(),
        memoryPercent: percent((memory.used / memory.total) * 100),
        cpuPercent: percent(cpu.percent),
        cpuScope: cpu.scope,
        cpuCores: cpu.capacityCores,
        hostCpuPercent: percent(cpu.hostPercent),
        diskPercent: percent(disk),
        memoryTotalBytes: memory.total,
        memoryUsedBytes: memory.used,
        process: {
          rssBytes: usage.rss,
          heapUsedBytes: usage.heapUsed,
          heapLimitBytes,
          heapPercent: percent(heapLimitBytes > 0 ? (usage.heapUsed / heapLimitBytes) * 100 : 0),
          eventLoopDelayMeanMs: ms(Number.isFinite(loopMeanMs) ? loopMeanMs : 0),
          eventLoopDelayP99Ms: ms(Number.isFinite(loopP99Ms) ? loopP99Ms : 0),
        },
      };
    },
    close(): void {
      loop.disable();
    },
  };
}

/**
 * Samples memory, CPU, disk and this process every intervalMs and keeps the last historySize samples.
 * getCurrentUsage() is a plain read of the last one: it is what decisions before a job use.
 */
export class ResourceMonitor extends EventEmitter<ResourceMonitorEvents> implements SampleSource {
  readonly intervalMs: number;
  readonly historySize: number;
  readonly diskPath: string;
  private readonly customSampler: (() => Promise<ResourceSample> | ResourceSample) | undefined;
  private readonly cpuOptions: SystemCpuOptions;
  /** The real sampler, made on the first sample (its histogram runs from then on). */
  private system: SystemSampler | undefined;
  /** History ring: `next` is where the next sample goes; `size` how many are held. */
  private readonly ring: (ResourceSample | undefined)[];
  private next = 0;
  private size = 0;
  private current: ResourceSample | undefined;
  private inFlight: Promise<ResourceSample> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private starting: Promise<void> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(opts: ResourceMonitorOptions = {}) {
    super();
    const o = withDefaults<ResourceMonitorOptions & typeof DEFAULTS & { diskPath: string }>(
      { ...DEFAULTS, diskPath: process.cwd() },
      opts,
    );
    if (!(typeof o.intervalMs === 'number' && Number.isFinite(o.intervalMs) && o.intervalMs >= 100))
      throw new TypeError(
        `ResourceMonitor: option "intervalMs" must be >= 100 ms, got ${String(o.intervalMs)}`,
      );
    if (!(Number.isInteger(o.historySize) && o.historySize >= 1))
      throw new TypeError(
        `ResourceMonitor: option "historySize" must be an integer >= 1, got ${String(o.historySize)}`,
      );
    if (typeof o.diskPath !== 'string' || o.diskPath.length === 0)
      throw new TypeError('ResourceMonitor: option "diskPath" must be a non-empty path');
    if (o.sampler !== undefined && typeof o.sampler !== 'function')
      throw new TypeError('ResourceMonitor: option "sampler" must be a function');
    this.intervalMs = o.intervalMs;
    this.historySize = o.historySize;
    this.diskPath = o.diskPath;
    this.customSampler = o.sampler;
    if (
      o.cpu?.windowMs !== undefined &&
      !(typeof o.cpu.windowMs === 'number' && Number.isFinite(o.cpu.windowMs) && o.cpu.windowMs >= 0)
    )
      throw new TypeError(
        `ResourceMonitor: option "cpu.windowMs" must be >= 0 ms, got ${String(o.cpu.windowMs)}`,
      );
    this.cpuOptions = { ...o.cpu };
    this.ring = new Array<ResourceSample | undefined>(o.historySize);
  }

  /**
   * Takes a first sample (awaited) then samples every intervalMs. Idempotent. A failed first sample does
   * not fail start(): it is reported as 'error' and the timer tries again.
   */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('ResourceMonitor'));
    this.starting ??= this.sampleNow().then(
      () => this.schedule(),
      () => this.schedule(),
    );
    return this.starting;
  }

  /**
   * Takes one sample now, records it (history + current), emits 'sample' and returns it. While a sample is
   * under way this returns that one: samples never overlap. A sampler error rejects, is emitted as 'error'
   * (only when someone listens) and keeps the previous sample.
   */
  sampleNow(): Promise<ResourceSample> {
    if (this.closed) return Promise.reject(new ClosedError('ResourceMonitor'));
    this.inFlight ??= this.takeSample().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /** The last sample, or undefined before the first. */
  getCurrentUsage(): ResourceSample | undefined {
    return this.current;
  }

  /** Oldest first; the last `limit` samples (default all). */
  getHistory(limit?: number): ResourceSample[] {
    if (limit !== undefined && !(typeof limit === 'number' && limit >= 0))
      throw new TypeError(`ResourceMonitor.getHistory: limit must be >= 0, got ${String(limit)}`);
    const n = limit === undefined ? this.size : Math.min(this.size, Math.floor(limit));
    const out: ResourceSample[] = [];
    for (let i = n; i > 0; i--) {
      const s = this.ring[(this.next - i + this.historySize) % this.historySize];
      if (s) out.push(s);
    }
    return out;
  }

  /** Records a sample taken elsewhere (for injection), as if sampled. */
  record(sample: ResourceSample): void {
    if (this.closed) throw new ClosedError('ResourceMonitor');
    this.ring[this.next] = sample;
    this.next = (this.next + 1) % this.historySize;
    this.size = Math.min(this.size + 1, this.historySize);
    this.current = sample;
    this.emit('sample', sample);
  }

  /**
   * Stops sampling and the event-loop histogram. Idempotent. A sample under way when close() is called is
   * neither recorded nor emitted.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      clearTimeout(this.timer);
      this.timer = undefined;
      this.system?.close();
    })();
    return this.closing;
  }

  private async takeSample(): Promise<ResourceSample> {
    let sample: ResourceSample;
    try {
      if (this.customSampler) {
        sample = await this.customSampler();
      } else {
        this.system ??= createSystemSampler({ diskPath: this.diskPath, cpu: this.cpuOptions });
        sample = await this.system.sample();
      }
    } catch (err) {
      const error = toError(err);
      // An 'error' event nobody listens to would throw and crash the process over a failed reading.
      if (!this.closed && this.listenerCount('error') > 0) this.emit('error', error);
      throw error;
    }
    if (!this.closed) this.record(sample);
    return sample;
  }

  /** Chained timeouts, not an interval: the next sample is timed from the end of the previous one. */
  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sampleNow().then(
        () => this.schedule(),
        () => this.schedule(),
      );
    }, this.intervalMs);
    this.timer.unref();
  }
}

let processMonitor: ResourceMonitor | undefined;

/** Process-wide monitor (created on first call with these options; later calls return the same one). */
export function getResourceMonitor(opts?: ResourceMonitorOptions): ResourceMonitor {
  processMonitor ??= new ResourceMonitor(opts);
  return processMonitor;
}

/** Closes and forgets the process-wide monitor (for lifecycle and tests). */
export async function resetResourceMonitor(): Promise<void> {
  const m = processMonitor;
  processMonitor = undefined;
  await m?.close();
}
