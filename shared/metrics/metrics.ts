import { collectDefaultMetrics, type Counter, Gauge, type Histogram, Registry } from 'prom-client';
import { withDefaults } from '../with-defaults.js';
import { FastCounter, FastHistogram } from './fast-metrics.js';
import { BackendMetrics } from './backend-metrics.js';
import { HTTP_BUCKETS, JOB_BUCKETS } from './buckets.js';
import { BatchMetrics } from './batch-metrics.js';
import { CacheMetrics } from './cache-metrics.js';
import { FleetMetrics } from './fleet-metrics.js';
import { ResourceMetrics } from './resource-metrics.js';

/** Options of {@link Cell0Metrics}. */
export interface Cell0MetricsOptions {
  /** Node's process metrics (CPU, memory, event loop, GC, handles) from prom-client. Default true. */
  defaultMetrics?: boolean;
  /**
   * Add a `tenant` label (the tenant id: an HMAC of the API key, never the key) to the HTTP request counter.
   * Default false: the tenant count is unbounded in principle, and most fleets do not need it.
   */
  tenantLabel?: boolean;
  /** Constant labels on every series (e.g. `{ role: 'worker' }`). Default none. */
  labels?: Record<string, string>;
}

const DEFAULTS = { defaultMetrics: true, tenantLabel: false };

const LINT_FAILING_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

export { JOB_BUCKETS, HTTP_BUCKETS };

/** How a request that found its job already there was answered (see JobSubmitter's retention rule). */
export type CoalescedHow = 'joined' | 'stored_result' | 'rerun';
/** Why a job went back to wait without spending an attempt. */
export type DeferReason = 'breaker' | 'rate_limit' | 'memory' | 'backend' | 'pressure';
/** A cache lookup's result: the semantic cache's confidence levels, or a miss. */
export type CacheResult = 'exact' | 'high' | 'medium' | 'low' | 'miss';

/**
 * The metric families of one cell0 process, on a registry of their own (so tests and embedders can have
 * several). Names follow Prometheus conventions: `cell0_` prefix, base units, `_total` counters, bounded
 * labels (queue, route, outcome, code — never a prompt, a query or a key).
 *
 * Hot-path counters are reached through {@link LabelCache}s: the labelled child is looked up once per label
 * set and kept, so counting an event costs a map read and an increment, not an allocation.
 */
export class Cell0Metrics {
  readonly registry = new Registry();
  readonly tenantLabel: boolean;

  // HTTP
  readonly httpRequests: Counter<'route' | 'method' | 'status' | 'tenant'>;
  readonly httpDuration: Histogram<'route' | 'method'>;
  // Jobs, producer side
  readonly jobsAdded: Counter<'queue'>;
  readonly jobsCoalesced: Counter<'queue' | 'how'>;
  // Jobs, worker side
  readonly jobsCompleted: Counter<'queue'>;
  readonly jobsFailed: Counter<'queue' | 'code'>;
  readonly jobsRetried: Counter<'queue'>;
  readonly jobsDeferred: Counter<'queue' | 'reason'>;
  readonly jobWait: Histogram<'queue'>;
  readonly jobRun: Histogram<'queue'>;
  readonly jobEndToEnd: Histogram<'queue'>;
  readonly jobsActive: Gauge;
  // Caches
  readonly cacheLookups: Counter<'cache' | 'result'>;
  /** Guard rejections, false hits, entries; the http and l1 lookups folded in at scrape time. */
  readonly caches: CacheMetrics;
  /** Backend calls, breakers, retries, rate limits, pools. */
  readonly backends: BackendMetrics;
  /** The seed's memory/CPU/disk %, event-loop delay, pressure, model memory. */
  readonly resources: ResourceMetrics;
  /** Workers by state, Redis memory, requests shed (served by the API). */
  readonly fleet: FleetMetrics;
  /** Batches, items and backend calls by batcher. */
  readonly batches: BatchMetrics;

  /** Running-job counts of the workers in this process (summed into cell0_jobs_active). */
  readonly activeSources = new Set<() => number>();
  /** Extra exposition text appended to the registry's (BullMQ's queue metrics). */
  private readonly textSources = new Set<() => Promise<string>>();

  private readonly requestChildren: LabelCache<Counter.Internal>;
  private readonly durationChildren: LabelCache<Histogram.Internal<'route' | 'method'>>;
  private readonly added: LabelCache<Counter.Internal>;
  private readonly coalesced: LabelCache<Counter.Internal>;
  private readonly completed: LabelCache<Counter.Internal>;
  private readonly failed: LabelCache<Counter.Internal>;
  private readonly retried: LabelCache<Counter.Internal>;
  private readonly deferred: LabelCache<Counter.Internal>;
  private readonly waits: LabelCache<Histogram.Internal<'queue'>>;
  private readonly runs: LabelCache<Histogram.Internal<'queue'>>;
  private readonly ends: LabelCache<Histogram.Internal<'queue'>>;
  private readonly lookups: LabelCache<Counter.Internal>;

  constructor(options: Cell0MetricsOptions = {}) {
    const opts = withDefaults<Cell0MetricsOptions & typeof DEFAULTS>(DEFAULTS, options);
    this.tenantLabel = opts.tenantLabel;
    if (opts.labels) this.registry.setDefaultLabels(opts.labels);
    if (opts.defaultMetrics) {
      collectDefaultMetrics({ register: this.registry });
      // Gauges named like counters, which promtool refuses; nodejs_active_{handles,requests,resources}
      // (by type) carry the same figures.
      for (const name of LINT_FAILING_DEFAULTS) this.registry.removeSingleMetric(name);
    }
    const registers = [this.registry];

    this.httpRequests = new FastCounter({
      name: 'cell0_http_requests_total',
      help: 'HTTP requests answered, by route pattern, method and status code',
      labelNames: opts.tenantLabel
        ? ['route', 'method', 'status', 'tenant']
        : (['route', 'method', 'status'] as unknown as ['route', 'method', 'status', 'tenant']),
      registers,
    });
    this.httpDuration = new FastHistogram({
      name: 'cell0_http_request_duration_seconds',
      help: 'Time from a request arriving to its response being sent, by route pattern and method',
      labelNames: ['route', 'method'],
      buckets: HTTP_BUCKETS,
      registers,
    });
    this.jobsAdded = new FastCounter({
      name: 'cell0_jobs_added_total',
      help: 'Jobs added to a queue by this producer (a request that found its job already there is coalesced, not added)',
      labelNames: ['queue'],
      registers,
    });
    this.jobsCoalesced = new FastCounter({
      name: 'cell0_jobs_coalesced_total',
      help: 'Requests that found their job already there: joined a queued or running one, got its stored result, or re-ran a stale or failed one',
      labelNames: ['queue', 'how'],
      registers,
    });
    this.jobsCompleted = new FastCounter({
      name: 'cell0_jobs_completed_total',
      help: 'Jobs this worker completed',
      labelNames: ['queue'],
      registers,
    });
    this.jobsFailed = new FastCounter({
      name: 'cell0_jobs_failed_total',
      help: 'Job attempts that failed on this worker, by error code (UNKNOWN when the error carried none)',
      labelNames: ['queue', 'code'],
      registers,
    });
    this.jobsRetried = new FastCounter({
      name: 'cell0_jobs_retried_total',
      help: 'Failed job attempts that will be retried',
      labelNames: ['queue'],
      registers,
    });
    this.jobsDeferred = new FastCounter({
      name: 'cell0_jobs_deferred_total',
      help: 'Jobs put back to wait without spending an attempt: backend breaker open, rate limit, model memory busy, backend unreachable or busy, or worker under resource pressure',
      labelNames: ['queue', 'reason'],
      registers,
    });
    this.jobWait = new FastHistogram({
      name: 'cell0_job_wait_seconds',
      help: 'Time a job waited in its queue before a worker started it',
      labelNames: ['queue'],
      buckets: JOB_BUCKETS,
      registers,
    });
    this.jobRun = new FastHistogram({
      name: 'cell0_job_run_seconds',
      help: 'Time a worker spent running a job that completed',
      labelNames: ['queue'],
      buckets: JOB_BUCKETS,
      registers,
    });
    this.jobEndToEnd = new FastHistogram({
      name: 'cell0_job_end_to_end_seconds',
      help: 'Time from a job being added to it completing',
      labelNames: ['queue'],
      buckets: JOB_BUCKETS,
      registers,
    });
    const active = this.activeSources;
    this.jobsActive = new Gauge({
      name: 'cell0_jobs_active',
      help: 'Jobs running in this process now',
      registers,
      collect() {
        let n = 0;
        for (const f of active) n += f();
        this.set(n);
      },
    });
    const caches = (this.caches = new CacheMetrics(this.registry));
    this.cacheLookups = new FastCounter({
      name: 'cell0_cache_lookups_total',
      help: 'Cache lookups by cache (semantic, search, http, l1) and result (exact, high, medium, low, miss)',
      labelNames: ['cache', 'result'],
      registers,
      collect() {
        caches.foldLookups(this);
      },
    });
    this.backends = new BackendMetrics(this.registry);
    this.resources = new ResourceMetrics(this.registry);
    this.fleet = new FleetMetrics(this.registry);
    this.batches = new BatchMetrics(this.registry);
    this.requestChildren = new LabelCache((k) => this.httpRequests.labels(...k));
    this.added = new LabelCache((k) => this.jobsAdded.labels(...k));
    this.coalesced = new LabelCache((k) => this.jobsCoalesced.labels(...k));
    this.completed = new LabelCache((k) => this.jobsCompleted.labels(...k));
    this.failed = new LabelCache((k) => this.jobsFailed.labels(...k));
    this.retried = new LabelCache((k) => this.jobsRetried.labels(...k));
    this.deferred = new LabelCache((k) => this.jobsDeferred.labels(...k));
    this.waits = new LabelCache((k) => this.jobWait.labels(...k));
    this.runs = new LabelCache((k) => this.jobRun.labels(...k));
    this.ends = new LabelCache((k) => this.jobEndToEnd.labels(...k));
    this.lookups = new LabelCache((k) => this.cacheLookups.labels(...k));
    this.durationChildren = new LabelCache((k) => this.httpDuration.labels(...k));
  }

  /** Counts one answered HTTP request. `route` must be a route pattern, never the raw path. */
  observeRequest(
    route: string,
    method: string,
    status: number,
    seconds: number,
    tenant: string | undefined,
  ): void {
    const s = statusText(status);
    if (this.tenantLabel) this.requestChildren.get4(route, method, s, tenant ?? 'none').inc();
    else this.requestChildren.get3(route, method, s).inc();
    this.durationChildren.get2(route, method).observe(seconds);
  }

  /** A producer added a job. */
  jobAdded(queue: string): void {
    this.added.get1(queue).inc();
  }

  /** A producer's request found its job already there. */
  jobCoalesced(queue: string, how: CoalescedHow): void {
    this.coalesced.get2(queue, how).inc();
  }

  /** A cache was asked; `result` is a {@link CacheResult}. */
  cacheLookup(cache: string, result: CacheResult | string): void {
    this.lookups.get2(cache, result).inc();
  }

  /** A worker completed a job: its wait in the queue, its run and its whole life, in seconds. */
  jobCompleted(queue: string, waitSeconds: number, runSeconds: number, endToEndSeconds: number): void {
    this.completed.get1(queue).inc();
    if (waitSeconds >= 0) this.waits.get1(queue).observe(waitSeconds);
    this.runs.get1(queue).observe(runSeconds);
    if (endToEndSeconds >= 0) this.ends.get1(queue).observe(endToEndSeconds);
  }

  /** A job attempt failed on a worker; `code` is the error's cell0 code or undefined. */
  jobFailed(queue: string, code: string | undefined, willRetry: boolean): void {
    this.failed.get2(queue, code ?? 'UNKNOWN').inc();
    if (willRetry) this.retried.get1(queue).inc();
  }

  /** A job went back to wait without spending an attempt. */
  jobDeferred(queue: string, reason: DeferReason): void {
    this.deferred.get2(queue, reason).inc();
  }

  /** Adds exposition text (already in the text format, families not in the registry) to {@link text}. */
  addText(source: () => Promise<string>): () => void {
    this.textSources.add(source);
    return () => this.textSources.delete(source);
  }

  /** The exposition text of every family (Prometheus text format 0.0.4). */
  async text(): Promise<string> {
    const own = await this.registry.metrics();
    if (this.textSources.size === 0) return own;
    const extra = await Promise.all([...this.textSources].map((f) => f().catch(() => '')));
    return [own.trimEnd(), ...extra.filter((t) => t.length > 0).map((t) => t.trimEnd())].join('\n') + '\n';
  }

  /** The content type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * Labelled children of one metric, looked up by their label values without building an object or a joined
 * key per call: nested maps, one level per label.
 */
export class LabelCache<C> {
  private readonly root = new Map<string, unknown>();
  constructor(private readonly make: (labels: string[]) => C) {}

  get1(a: string): C {
    const m = this.root as Map<string, C>;
    let c = m.get(a);
    if (c === undefined) m.set(a, (c = this.make([a])));
    return c;
  }

  get2(a: string, b: string): C {
    const m = sub<C>(this.root, a);
    let c = m.get(b);
    if (c === undefined) m.set(b, (c = this.make([a, b])));
    return c;
  }

  get3(a: string, b: string, x: string): C {
    const m = sub<C>(sub(this.root, a), b);
    let c = m.get(x);
    if (c === undefined) m.set(x, (c = this.make([a, b, x])));
    return c;
  }

  get4(a: string, b: string, x: string, y: string): C {
    const m = sub<C>(sub(sub(this.root, a), b), x);
    let c = m.get(y);
    if (c === undefined) m.set(y, (c = this.make([a, b, x, y])));
    return c;
  }
}

/** The map under `key`, made on first use. */
function sub<T = unknown>(m: Map<string, unknown>, key: string): Map<string, T> {
  let n = m.get(key) as Map<string, T> | undefined;
  if (n === undefined) m.set(key, (n = new Map()));
  return n;
}

const STATUS_TEXT: string[] = [];
for (let s = 100; s < 600; s++) STATUS_TEXT[s] = String(s);

/** A status code as a label value, without a string allocation per request. */
function statusText(status: number): string {
  return STATUS_TEXT[status] ?? String(status);
}
