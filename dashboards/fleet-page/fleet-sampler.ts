import { type WorkerStatus } from '../../shared/fleet/worker-status.js';
import { withDefaults } from '../../shared/with-defaults.js';

/** A cumulative histogram bucket: observations ≤ `le` seconds (`le` = Infinity for the last one). */
export interface Bucket {
  le: number;
  count: number;
}

/** Hits and lookups of one cache, counted since the process started. */
export interface CacheCounts {
  hits: number;
  lookups: number;
}

/** Where the sampler reads the fleet. Each source may fail (Redis away): the sample then lacks that part. */
export interface FleetSources {
  /** The live workers' published statuses (`GET /v1/fleet`). */
  fleet(): Promise<WorkerStatus[]>;
  /** Job counts by queue and state. */
  queueCounts(): Promise<Record<string, Record<string, number>>>;
  /** Jobs completed by the whole fleet since the queues began (BullMQ's metrics counter), all queues. */
  completedTotal?(): Promise<number>;
  /** Cumulative duration buckets of this API's work requests (POST), for the p95. */
  requestBuckets?(): Promise<Bucket[]>;
  /** This API's cache lookups, by cache. */
  caches?(): Record<string, CacheCounts>;
}

/** Options of {@link FleetSampler}. */
export interface FleetSamplerOptions {
  sources: FleetSources;
  /** Time between samples while the page is watched, ms. Default 2000. */
  intervalMs?: number;
  /** Samples kept (the ring's size): with the default interval, 300 is 10 minutes. Default 300. */
  capacity?: number;
  /** Sampling stops this long after the last read of the page's data, ms (the ring is kept). Default 300000. */
  idleStopMs?: number;
  /** Clock, ms since the epoch (tests). Default Date.now. */
  now?: () => number;
}

/** One worker in one sample: a few numbers, so a sample stays small. */
export interface WorkerPoint {
  id: string;
  state: WorkerStatus['state'];
  /** cell0's CPU use (the limited figure), %; undefined when the worker runs no resource monitor. */
  cpu?: number;
  /** Host memory used, %. */
  memory?: number;
  active: number;
}

/** The fleet at one moment. */
export interface FleetSample {
  at: number;
  workers: WorkerPoint[];
  /** Jobs waiting (waiting + prioritized) and active, by queue. */
  queues: Record<string, { waiting: number; active: number }>;
  /** Jobs completed per second by the fleet since the previous sample. */
  throughput?: number;
  /** p95 of this API's work requests since the previous sample, seconds (none when there were none). */
  p95?: number;
  /** Hit ratio of each cache since the previous sample (none for a cache not looked up meanwhile). */
  hitRatio: Record<string, number>;
}

/** What the page shows: the latest full statuses, and the ring of samples for the charts. */
export interface FleetView {
  at: number;
  intervalMs: number;
  capacity: number;
  workers: WorkerCard[];
  queues: Record<string, Record<string, number>>;
  /** Each cache's hit ratio since this API started. */
  caches: Record<string, CacheCounts & { ratio: number | null }>;
  samples: FleetSample[];
  /** Parts that could not be read at the latest sample (e.g. "fleet" while Redis is away). */
  errors: string[];
}

/** A worker as the page lists it. */
export interface WorkerCard {
  id: string;
  host: string;
  pid: number;
  state: WorkerStatus['state'];
  queues: string[];
  active: number;
  updatedAt: string;
  cpu?: number;
  memory?: number;
  residentModels: string[];
  breakers: { name: string; state: string }[];
}

const DEFAULTS = { intervalMs: 2000, capacity: 300, idleStopMs: 300_000, now: Date.now };

type Resolved = Required<Omit<FleetSamplerOptions, 'sources'>> & Pick<FleetSamplerOptions, 'sources'>;

/**
 * Samples the fleet for the live page and keeps the last `capacity` samples in a ring: memory is bounded
 * by capacity × workers (a sample holds a few numbers per worker and per queue, about 100 bytes each).
 * It samples only while someone reads the page: the first read starts it, and it stops `idleStopMs` after
 * the last one, so an API nobody watches pays nothing. Rates and the p95 are per interval, from deltas of
 * cumulative counters.
 */
export class FleetSampler {
  private readonly opts: Resolved;
  private readonly ring: (FleetSample | undefined)[];
  private next = 0;
  private size = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastRead = 0;
  private sampling: Promise<void> | undefined;
  private latest: { workers: WorkerStatus[]; queues: Record<string, Record<string, number>> } = {
    workers: [],
    queues: {},
  };
  private errors: string[] = [];
  private prev: { at: number; completed?: number; buckets?: Bucket[]; caches?: Record<string, CacheCounts> } =
    { at: 0 };

  constructor(opts: FleetSamplerOptions) {
    const o = withDefaults<Resolved>(DEFAULTS, opts);
    if (!o.sources) throw new TypeError('FleetSampler: option "sources" is required');
    for (const k of ['intervalMs', 'capacity', 'idleStopMs'] as const)
      if (!(Number.isInteger(o[k]) && o[k] > 0))
        throw new TypeError(`FleetSampler: option "${k}" must be a positive integer`);
    this.opts = o;
    this.ring = new Array<FleetSample | undefined>(o.capacity);
  }

  /** True while the timer samples (someone read the page within idleStopMs). */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /** The samples kept, oldest first (at most `capacity`). */
  samples(): FleetSample[] {
    const out: FleetSample[] = [];
    for (let i = 0; i < this.size; i++) {
      const s = this.ring[(this.next - this.size + i + this.opts.capacity) % this.opts.capacity];
      if (s) out.push(s);
    }
    return out;
  }

  /**
   * The page's data. Starts sampling if it was idle (and takes a first sample before answering, so a fresh
   * page has something to show).
   */
  async view(): Promise<FleetView> {
    this.lastRead = this.opts.now();
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), this.opts.intervalMs);
      this.timer.unref();
      await this.sample();
    }
    const counts = this.opts.sources.caches?.() ?? {};
    return {
      at: this.opts.now(),
      intervalMs: this.opts.intervalMs,
      capacity: this.opts.capacity,
      workers: this.latest.workers.map(card),
      queues: this.latest.queues,
      caches: Object.fromEntries(
        Object.entries(counts).map(([k, c]) => [
          k,
          { ...c, ratio: c.lookups > 0 ? c.hits / c.lookups : null },
        ]),
      ),
      samples: this.samples(),
      errors: this.errors,
    };
  }

  /** Takes one sample now (a sample already under way is joined, not doubled). */
  sample(): Promise<void> {
    this.sampling ??= this.takeSample().finally(() => {
      this.sampling = undefined;
    });
    return this.sampling;
  }

  /** Stops sampling (the ring is kept). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (this.opts.now() - this.lastRead > this.opts.idleStopMs) {
      this.stop();
      return;
    }
    void this.sample();
  }

  private async takeSample(): Promise<void> {
    const src = this.opts.sources;
    const errors: string[] = [];
    const read = <T>(name: string, fn: (() => Promise<T>) | undefined): Promise<T | undefined> =>
      fn
        ? fn().catch(() => {
            errors.push(name);
            return undefined;
          })
        : Promise.resolve(undefined);
    const [workers, queues, completed, buckets] = await Promise.all([
      read('fleet', () => src.fleet()),
      read('queues', () => src.queueCounts()),
      read('throughput', src.completedTotal && (() => src.completedTotal!())),
      read('latency', src.requestBuckets && (() => src.requestBuckets!())),
    ]);
    const caches = src.caches?.();
    const at = this.opts.now();
    if (workers) this.latest.workers = workers;
    if (queues) this.latest.queues = queues;
    this.errors = errors;
    const prev = this.prev;
    const seconds = prev.at > 0 ? (at - prev.at) / 1000 : 0;
    const sample: FleetSample = {
      at,
      workers: (workers ?? []).map(point),
      queues: Object.fromEntries(
        Object.entries(queues ?? {}).map(([q, c]) => [
          q,
          { waiting: (c.waiting ?? 0) + (c.prioritized ?? 0), active: c.active ?? 0 },
        ]),
      ),
      hitRatio: {},
    };
    if (completed !== undefined && prev.completed !== undefined && seconds > 0)
      sample.throughput = Math.max(0, completed - prev.completed) / seconds;
    if (buckets && prev.buckets) {
      const p95 = quantileOfDelta(prev.buckets, buckets, 0.95);
      if (p95 !== undefined) sample.p95 = p95;
    }
    for (const [name, c] of Object.entries(caches ?? {})) {
      const before = prev.caches?.[name];
      if (!before) continue;
      const lookups = c.lookups - before.lookups;
      if (lookups > 0) sample.hitRatio[name] = (c.hits - before.hits) / lookups;
    }
    this.prev = {
      at,
      ...(completed !== undefined ? { completed } : {}),
      ...(buckets ? { buckets } : {}),
      ...(caches ? { caches } : {}),
    };
    this.ring[this.next] = sample;
    this.next = (this.next + 1) % this.opts.capacity;
    this.size = Math.min(this.size + 1, this.opts.capacity);
  }
}

/**
 * The q-quantile of the observations between two readings of a cumulative histogram, interpolated within
 * its bucket like Prometheus's histogram_quantile (the last finite bound when it falls in +Inf). Undefined
 * when nothing was observed in between.
 */
export function quantileOfDelta(before: Bucket[], after: Bucket[], q: number): number | undefined {
  const prevBy = new Map(before.map((b) => [b.le, b.count]));
  const delta = after
    .map((b) => ({ le: b.le, count: b.count - (prevBy.get(b.le) ?? 0) }))
    .sort((a, b) => a.le - b.le);
  const total = delta.at(-1)?.count ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const b of delta) {
    if (b.count >= rank) {
      if (b.le === Infinity) return lower;
      const inBucket = b.count - below;
      return inBucket > 0 ? lower + ((b.le - lower) * (rank - below)) / inBucket : b.le;
    }
    lower = b.le;
    below = b.count;
  }
  return lower;
}

function usageOf(w: WorkerStatus): { cpu?: number; memory?: number } {
  const u = (w.resources as { usage?: { cpuPercent?: unknown; memoryPercent?: unknown } | null } | undefined)
    ?.usage;
  return {
    ...(typeof u?.cpuPercent === 'number' ? { cpu: u.cpuPercent } : {}),
    ...(typeof u?.memoryPercent === 'number' ? { memory: u.memoryPercent } : {}),
  };
}

function point(w: WorkerStatus): WorkerPoint {
  return { id: w.id, state: w.state, active: typeof w.active === 'number' ? w.active : 0, ...usageOf(w) };
}

function card(w: WorkerStatus): WorkerCard {
  const managers = (w.models as { managers?: { resident?: { modelId?: unknown }[] }[] } | undefined)
    ?.managers;
  const backends = w.backends as { name?: unknown; breaker?: { state?: unknown } }[] | undefined;
  return {
    id: w.id,
    host: w.host,
    pid: w.pid,
    state: w.state,
    queues: Array.isArray(w.queues) ? w.queues : [],
    active: typeof w.active === 'number' ? w.active : 0,
    updatedAt: w.updatedAt,
    ...usageOf(w),
    residentModels: (managers ?? []).flatMap((m) =>
      (m.resident ?? []).map((r) => r.modelId).filter((id): id is string => typeof id === 'string'),
    ),
    breakers: (Array.isArray(backends) ? backends : []).map((b) => ({
      name: String(b.name ?? '?'),
      state: String(b.breaker?.state ?? 'unknown'),
    })),
  };
}
