import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { DelayedError, Queue, UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import { type Redis } from 'ioredis';
import {
  BreakerOpenError,
  isPermanent,
  ModelMemoryBusyError,
  ProviderError,
  ProviderUnavailableError,
  RateLimitedError,
  ValidationError,
} from '../shared/errors.js';
import { sampleHotPathLine, silentLogger, type Logger } from '../shared/logger.js';
import { settledWithin } from '../shared/sleep.js';
import { withDefaults } from '../shared/with-defaults.js';
import { closeRedis, createRedisConnection } from '../shared/redis/connection.js';
import { connectionLogFor, type RedisConnectionLog } from '../shared/redis/connection-log.js';
import { assertNoEviction, isOomError } from '../shared/redis/redis-memory.js';
import { publishWorkerStatus, removeWorkerStatus, type WorkerStatus } from '../shared/fleet/worker-status.js';
import { type SearchProvider } from '../shared/queues/enums.js';
import { stopLockExtenderAndStalledChecker } from '../shared/queues/bullmq-internals.js';
import { encodeFailure } from '../shared/queues/failure.js';
import { MAINTENANCE_QUEUE, MaintenanceJob, QUEUE_NAMES, QueueName } from '../shared/queues/names.js';
import { type ResourceViolation } from '../shared/resources/types.js';
import { type ModelLeaser } from '../shared/resources/resource-management.js';
import {
  upsertMaintenanceSchedulers,
  type MaintenanceSchedule,
  type MaintenanceTasks,
} from './maintenance.js';
import { type InferenceResult, type SearchResult } from '../shared/queues/results.js';
import { type z } from 'zod';
import {
  inferenceRequestSchema,
  isInferenceJobData,
  isSearchJobData,
  searchRequestSchema,
  toFieldIssues,
} from '../shared/queues/schemas.js';
import { type InferenceBackend, type SearchBackend } from './providers/provider.js';
import { inferenceCacheKey, type InferenceCache } from '../shared/cache/inference-key.js';
import { searchCacheKey, type SearchCache } from '../shared/cache/search-cache.js';
import { attachReplyPublisher, ReplyPublisher } from './reply-publisher.js';

/** Options of {@link Cell0Worker}. */
export interface Cell0WorkerOptions {
  /** redis:// or rediss:// URL. */
  redisUrl: string;
  /** Queue key prefix ({hash tag}). Default "{cell0}". */
  prefix?: string;
  /** Queues to serve. Default: inference and search. */
  queues?: readonly QueueName[];
  /** Jobs run at once per queue. Defaults: inference 4, search 8. */
  concurrency?: { inference?: number; search?: number };
  /** Runs inference jobs; required when serving the inference queue. */
  inference?: InferenceBackend;
  /** Search backends by provider; required (at least one) when serving the search queue. */
  search?: Partial<Record<SearchProvider, SearchBackend>>;
  /** Longest a provider call may take before it is aborted (and retried). Default 120000 ms. */
  providerTimeoutMs?: number;
  /** Graceful close lets active jobs run this long, then puts them back to wait. Default 30000 ms. */
  shutdownTimeoutMs?: number;
  /** Job lock; a worker that dies loses its jobs to stalled recovery after about this long. Default 30000 ms. */
  lockDurationMs?: number;
  /** How often stalled jobs are looked for. Default 15000 ms. */
  stalledIntervalMs?: number;
  /** Times a job may stall before it fails. Default 2. */
  maxStalledCount?: number;
  /**
   * How long a job may keep going back to wait because its backend is unreachable, open-circuited or
   * rate-limited (no attempt is spent on those) before it fails with PROVIDER_UNAVAILABLE; counted from
   * the first time it had to wait. 0 = no limit. Default 3600000 (1 h).
   */
  backendWaitMaxMs?: number;
  /**
   * How often the worker publishes its status (queues, active jobs, and `status()`'s sections) to Redis
   * for `GET /v1/fleet`; the status expires after 3 intervals. 0 = do not publish. Default 5000 ms.
   */
  heartbeatMs?: number;
  /**
   * Caches the worker writes results through (the producers' caches): an inference answer goes to the
   * semantic cache under its request's scope, a search result to the search cache, unless the request
   * said `cache.noStore`. Written before the job completes, so a request that sees the job done also
   * finds the cache entry. Cache failures never fail a job.
   */
  caches?: { inference?: InferenceCache<InferenceResult>; search?: SearchCache };
  /** Extra sections of the published status, e.g. backend metrics. */
  status?: () => Record<string, unknown>;
  /**
   * Admission by resources: while the limiter reports pressure on memory, disk, heap or event-loop delay the
   * worker takes no new jobs (its queues' BullMQ workers are paused; active jobs finish), a job that reaches
   * it anyway is put back to wait without spending an attempt, and its published state is `paused`. It
   * resumes when the pressure ends. CPU over its limit alone does not pause it: a busy worker keeps working
   * (pausing it would only lower the fleet's throughput when it is needed most); it is published as
   * saturated, and producers shed new work only while every worker is saturated and the queue is behind.
   */
  limiter?: AdmissionLimiter;
  /**
   * The model memory manager of the backend serving a model, when that backend's models are managed: the
   * model is made resident (evicting others by policy) and held in use while the job runs.
   */
  models?: (model: string) => ModelLeaser | undefined;
  /**
   * Serve the fleet's maintenance queue (one job at a time) and upsert its `monitor` and `cleanup` job
   * schedulers at start.
   */
  maintenance?: MaintenanceSchedule & { tasks: MaintenanceTasks };
  /**
   * How long a BullMQ worker waits before fetching again after a failed fetch (Redis away, or full), ms.
   * Default 5000.
   */
  fetchRetryDelayMs?: number;
  logger?: Logger;
}

/** What admission reads of a ResourceLimiter: its state (synchronously) and its transitions. */
export interface AdmissionLimiter {
  readonly underPressure: boolean;
  readonly violations: ResourceViolation[];
  /** Pressure episodes so far. */
  readonly episodes: number;
  on(event: 'pressure:start' | 'pressure:change' | 'pressure:end', listener: () => void): unknown;
  off(event: 'pressure:start' | 'pressure:change' | 'pressure:end', listener: () => void): unknown;
}

/** Violations that stop a worker taking jobs: every resource but CPU (see Cell0WorkerOptions.limiter). */
export function pausingViolations(violations: readonly ResourceViolation[]): ResourceViolation[] {
  return violations.filter((v) => v.resource !== 'cpu');
}

const DEFAULTS = {
  prefix: '{cell0}',
  queues: QUEUE_NAMES,
  providerTimeoutMs: 120_000,
  shutdownTimeoutMs: 30_000,
  lockDurationMs: 30_000,
  stalledIntervalMs: 15_000,
  maxStalledCount: 2,
  backendWaitMaxMs: 3_600_000,
  heartbeatMs: 5000,
  fetchRetryDelayMs: 5000,
};

/** How often a worker that sees Redis refuse writes for memory runs the memory relief, at most, ms. */
const RELIEF_EVERY_MS = 5000;
/** How often a scheduler upsert refused at start is tried again, ms. */
const SCHEDULER_RETRY_MS = 5000;

/** Events of {@link Cell0Worker}. */
export interface Cell0WorkerEvents {
  'job:completed': [{ queue: QueueName; jobId: string; durationMs: number }];
  'job:failed': [{ queue: QueueName; jobId: string; error: string; willRetry: boolean }];
  /** A job went back to wait (delayed) because its backend is away or busy; no attempt was spent. */
  'job:deferred': [{ queue: QueueName; jobId: string; delayMs: number; reason: string }];
  /** A job reached the worker while it was under resource pressure and went back to wait (no attempt spent). */
  'job:handed-back': [{ queue: QueueName; jobId: string }];
  /** Resource pressure: the worker stopped taking jobs. */
  'worker:paused': [{ violations: ResourceViolation[] }];
  /** The pressure ended: the worker takes jobs again. */
  'worker:resumed': [{ pausedMs: number }];
  'worker:closed': [{ forced: boolean }];
}

/**
 * One worker process's share of the fleet: a BullMQ Worker per queue, with stalled-job recovery, job logs
 * (queue, job id, duration), typed failure reasons, and a graceful close: stop taking jobs, let active ones
 * finish until `shutdownTimeoutMs`, then abort what is left and put it back to wait (no attempt burned) so
 * another worker picks it up.
 */
export class Cell0Worker extends EventEmitter<Cell0WorkerEvents> {
  /** host:pid, with #n for the second and later workers of one process (ids must be unique in the fleet). */
  readonly id = `${hostname()}:${process.pid}` + (++instances > 1 ? `#${instances}` : '');
  private readonly opts: Cell0WorkerOptions & typeof DEFAULTS;
  private readonly log: Logger;
  private readonly workers = new Map<QueueName, Worker>();
  private readonly connections: Redis[] = [];
  private readonly connectionOf = new Map<QueueName, Redis>();
  private forced = false;
  /** Set as soon as close() starts: a job that reaches the processor after that is handed back. */
  private stopping = false;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private forcing: Promise<void> | undefined;
  private readonly connLog: RedisConnectionLog;
  private lastRelief = 0;
  private relieving: Promise<void> | undefined;
  private schedulerTimer: NodeJS.Timeout | undefined;
  private activeCount = 0;
  private readonly deadlines = new Set<Deadline>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly startedAt = new Date().toISOString();
  private pausedByPressure = false;
  private pausedAt = 0;
  private pressureChain: Promise<void> = Promise.resolve();
  private readonly onPressure = () => this.syncPressure();
  /**
   * Redis CLIENT ID of the connection the status is published on: readers check it is still connected.
   * Undefined until read; null where the server refuses CLIENT ID (readers then go by the status's age).
   */
  private clientId: number | null | undefined;
  private maintenanceWorker: Worker | undefined;
  private maintenanceQueue: Queue | undefined;
  private triggerForce: () => void = () => undefined;
  private readonly forceRequested = new Promise<'force'>((r) => (this.triggerForce = () => r('force')));
  /** Hands finished jobs' outcomes to the producers waiting for them (the result path). */
  private readonly replies: ReplyPublisher;

  constructor(options: Cell0WorkerOptions) {
    super();
    const opts = withDefaults<Cell0WorkerOptions & typeof DEFAULTS>(DEFAULTS, options);
    if (!opts.redisUrl) throw new TypeError('Cell0Worker: option "redisUrl" is required');
    for (const q of opts.queues)
      if (!QUEUE_NAMES.includes(q))
        throw new TypeError(`Cell0Worker: unknown queue "${q}" in option "queues"`);
    if (opts.queues.includes(QueueName.INFERENCE) && !opts.inference)
      throw new TypeError(
        'Cell0Worker: option "inference" (a backend) is required to serve the inference queue',
      );
    if (opts.queues.includes(QueueName.SEARCH) && Object.keys(opts.search ?? {}).length === 0)
      throw new TypeError(
        'Cell0Worker: option "search" (at least one backend) is required to serve the search queue',
      );
    for (const k of ['providerTimeoutMs', 'lockDurationMs', 'stalledIntervalMs'] as const)
      if (!(opts[k] > 0)) throw new TypeError(`Cell0Worker: option "${k}" must be > 0, got ${opts[k]}`);
    if (!(opts.heartbeatMs >= 0)) throw new TypeError(`Cell0Worker: option "heartbeatMs" must be >= 0`);
    if (!(opts.backendWaitMaxMs >= 0))
      throw new TypeError(`Cell0Worker: option "backendWaitMaxMs" must be >= 0`);
    if (!(opts.shutdownTimeoutMs >= 0))
      throw new TypeError(`Cell0Worker: option "shutdownTimeoutMs" must be >= 0`);
    this.opts = opts;
    const root = opts.logger ?? silentLogger();
    this.connLog = connectionLogFor(root);
    this.log = root.child({ worker: this.id });
    this.replies = new ReplyPublisher({
      connectionFor: (queueKey) => this.connectionOf.get(queueKey.slice(opts.prefix.length + 1) as QueueName),
      logger: this.log,
    });
  }

  /**
   * Starts taking jobs. Resolves when every queue's worker is connected; idempotent (the same promise).
   * Rejects with RedisEvictionPolicyError (CELL0_REDIS_EVICTION_POLICY) when Redis's maxmemory-policy is not
   * `noeviction`. Starts even when Redis is full (OOM): what it writes at start besides taking jobs (the
   * maintenance schedulers, its status) is retried later, and taking jobs is what frees memory.
   */
  start(): Promise<void> {
    this.starting ??= this.startWorkers();
    return this.starting;
  }

  private async startWorkers(): Promise<void> {
    for (const queue of this.opts.queues) {
      const concurrency =
        (queue === QueueName.INFERENCE ? this.opts.concurrency?.inference : this.opts.concurrency?.search) ??
        (queue === QueueName.INFERENCE ? 4 : 8);
      const conn = createRedisConnection({
        url: this.opts.redisUrl,
        role: 'worker',
        connectionName: `cell0:worker:${queue}`,
        logger: this.opts.logger ?? silentLogger(),
      });
      // A reconnect gives the connection a new CLIENT ID: the status connection's is read again after it.
      if (this.connections.length === 0) conn.on('ready', () => (this.clientId = undefined));
      this.connections.push(conn);
      this.connectionOf.set(queue, conn);
      // Before any BullMQ object exists: a Redis that may evict keys would lose jobs.
      if (this.connections.length === 1) await assertNoEviction(conn);
      const processor =
        queue === QueueName.INFERENCE
          ? (job: Job, token?: string, signal?: AbortSignal) => this.processInference(job, token, signal)
          : (job: Job, token?: string, signal?: AbortSignal) => this.processSearch(job, token, signal);
      const worker = new Worker(queue, processor, {
        connection: conn,
        prefix: this.opts.prefix,
        concurrency,
        lockDuration: this.opts.lockDurationMs,
        stalledInterval: this.opts.stalledIntervalMs,
        maxStalledCount: this.opts.maxStalledCount,
        runRetryDelay: this.opts.fetchRetryDelayMs,
        autorun: true,
      });
      worker.on('error', (err) => this.onWorkerError(queue, err));
      attachReplyPublisher(worker, `${this.opts.prefix}:${queue}`, this.replies);
      worker.on('failed', (job, err) => {
        if (!job || err instanceof WaitingError || err.name === 'WaitingError') return;
        const willRetry = !(err instanceof UnrecoverableError) && job.attemptsMade < (job.opts.attempts ?? 1);
        this.log.warn(
          { queue, jobId: job.id, attempt: job.attemptsMade, willRetry, error: err.message },
          'job failed',
        );
        this.emit('job:failed', { queue, jobId: job.id ?? '', error: err.message, willRetry });
      });
      worker.on('stalled', (jobId) => this.log.warn({ queue, jobId }, 'job stalled; it goes back to wait'));
      this.workers.set(queue, worker);
    }
    await Promise.all([...this.workers.values()].map((w) => w.waitUntilReady()));
    if (this.opts.maintenance) await this.startMaintenance(this.opts.maintenance);
    const limiter = this.opts.limiter;
    if (limiter) {
      limiter.on('pressure:start', this.onPressure);
      limiter.on('pressure:change', this.onPressure);
      limiter.on('pressure:end', this.onPressure);
      this.syncPressure();
    }
    this.sweepTimer = setInterval(
      () => this.sweepDeadlines(),
      Math.min(1000, Math.max(10, this.opts.providerTimeoutMs / 10)),
    );
    this.sweepTimer.unref();
    if (this.opts.heartbeatMs > 0) {
      await this.publishStatus();
      this.heartbeatTimer = setInterval(() => void this.publishStatus(), this.opts.heartbeatMs);
      this.heartbeatTimer.unref();
    }
    this.log.info({ queues: [...this.workers.keys()] }, 'worker started');
  }

  /** This worker's status as published for `GET /v1/fleet`. */
  statusSnapshot(): WorkerStatus {
    return {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      queues: [...this.workers.keys()],
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
      active: this.activeCount,
      state: this.stopping ? 'closing' : this.pausedByPressure ? 'paused' : 'running',
      ...(this.opts.heartbeatMs > 0 ? { heartbeatMs: this.opts.heartbeatMs } : {}),
      ...(typeof this.clientId === 'number' ? { clientId: this.clientId } : {}),
      ...(this.opts.limiter
        ? {
            pressure: {
              underPressure: this.opts.limiter.underPressure,
              violations: this.opts.limiter.violations,
              pausedSince: this.pausedByPressure ? new Date(this.pausedAt).toISOString() : null,
              // CPU over its limit: the worker keeps taking jobs, but counts as saturated for shedding.
              saturated:
                this.opts.limiter.underPressure &&
                this.opts.limiter.violations.some((v) => v.resource === 'cpu'),
              episodes: this.opts.limiter.episodes,
            },
          }
        : {}),
      ...(this.opts.maintenance ? { maintenance: true } : {}),
      ...(this.opts.status?.() ?? {}),
    };
  }

  /**
   * Publishes this worker's status now (besides the heartbeat): for changes producers should see at once,
   * such as a backend breaker opening or closing. Never throws; a no-op without a heartbeat.
   */
  async publishStatus(): Promise<void> {
    if (this.opts.heartbeatMs === 0) return;
    const conn = this.connections[0];
    if (!conn || conn.status !== 'ready') return;
    try {
      this.clientId ??= await conn.client('ID').then(
        (id) => Number(id),
        () => null,
      );
      await publishWorkerStatus(conn, this.opts.prefix, this.statusSnapshot(), this.opts.heartbeatMs * 3);
    } catch (err) {
      this.log.debug({ err }, 'could not publish worker status');
    }
  }

  /** True while resource pressure (on anything but CPU) keeps this worker from taking jobs. */
  get paused(): boolean {
    return this.pausedByPressure;
  }

  /**
   * Brings the queues' BullMQ workers in line with the limiter: paused under pressure, running otherwise.
   * Transitions are chained, so a quick pressure-on/pressure-off never leaves a worker paused by mistake.
   */
  private syncPressure(): void {
    this.pressureChain = this.pressureChain
      .then(() => this.applyPressure())
      .catch((err: unknown) => this.log.warn({ err }, 'could not pause or resume for resource pressure'));
  }

  /** The limiter's violations that pause this worker (none while it is not under pressure). */
  private pausing(): ResourceViolation[] {
    const l = this.opts.limiter;
    return l?.underPressure ? pausingViolations(l.violations) : [];
  }

  private async applyPressure(): Promise<void> {
    const violations = this.pausing();
    const want = !this.stopping && violations.length > 0;
    // No change of state, but perhaps of saturation (CPU alone): producers see it now, not at the heartbeat.
    if (want === this.pausedByPressure) return this.publishStatus();
    if (want) {
      this.pausedByPressure = true;
      this.pausedAt = Date.now();
      this.log.warn({ violations }, 'resource pressure: taking no new jobs (active ones finish)');
      // doNotWaitActive: the jobs running now finish on their own; pausing only stops the fetching.
      await Promise.all([...this.workers.values()].map((w) => w.pause(true)));
      this.emit('worker:paused', { violations });
    } else {
      this.pausedByPressure = false;
      const pausedMs = Date.now() - this.pausedAt;
      if (!this.stopping) await Promise.all([...this.workers.values()].map((w) => w.resume()));
      this.log.info({ pausedMs }, 'resource pressure over: taking jobs again');
      this.emit('worker:resumed', { pausedMs });
    }
    await this.publishStatus();
  }

  private async startMaintenance(m: NonNullable<Cell0WorkerOptions['maintenance']>): Promise<void> {
    const conn = createRedisConnection({
      url: this.opts.redisUrl,
      role: 'worker',
      connectionName: `cell0:worker:${MAINTENANCE_QUEUE}`,
      logger: this.opts.logger ?? silentLogger(),
    });
    this.connections.push(conn);
    this.maintenanceQueue = new Queue(MAINTENANCE_QUEUE, { connection: conn, prefix: this.opts.prefix });
    this.connLog.watch(this.maintenanceQueue, `queue:${MAINTENANCE_QUEUE}`);
    await this.upsertSchedulers(m);
    const worker = new Worker(
      MAINTENANCE_QUEUE,
      async (job: Job) => {
        const t0 = performance.now();
        let report: Record<string, unknown>;
        if (job.name === MaintenanceJob.MONITOR) report = await m.tasks.monitor();
        else if (job.name === MaintenanceJob.CLEANUP) report = await m.tasks.cleanup();
        else throw new UnrecoverableError(`unknown maintenance job "${job.name}"`);
        this.log.debug({ job: job.name, ms: Math.round(performance.now() - t0) }, 'maintenance job done');
        return { ...report, by: this.id };
      },
      {
        connection: conn,
        prefix: this.opts.prefix,
        concurrency: 1,
        lockDuration: this.opts.lockDurationMs,
        stalledInterval: this.opts.stalledIntervalMs,
        runRetryDelay: this.opts.fetchRetryDelayMs,
        autorun: true,
      },
    );
    worker.on('error', (err) => this.onWorkerError(MAINTENANCE_QUEUE, err));
    worker.on('failed', (job, err) =>
      this.log.warn(
        { queue: MAINTENANCE_QUEUE, job: job?.name, error: err.message },
        'maintenance job failed',
      ),
    );
    this.maintenanceWorker = worker;
    await worker.waitUntilReady();
  }

  /**
   * A BullMQ worker's error: to the process's connection log (one line per outage, not one per retry). An
   * OOM reply means Redis is full: the memory relief runs (at most every few seconds) so that taking jobs,
   * which needs a little memory, can go on.
   */
  private onWorkerError(source: string, err: Error): void {
    this.connLog.error(`worker:${source}`, err);
    if (isOomError(err)) this.relieveMemory();
  }

  /** Runs the maintenance tasks' memory relief, once at a time and at most every RELIEF_EVERY_MS. */
  private relieveMemory(): void {
    const relieve = this.opts.maintenance?.tasks.relieveMemory;
    if (!relieve || this.relieving || this.stopping || Date.now() - this.lastRelief < RELIEF_EVERY_MS) return;
    this.lastRelief = Date.now();
    this.relieving = relieve()
      .then((report: Record<string, unknown>) =>
        this.log.warn({ report }, 'Redis is full: trimmed finished jobs to free memory'),
      )
      .catch((err: unknown) => this.log.warn({ err }, 'Redis is full: memory relief failed'))
      .finally(() => (this.relieving = undefined));
  }

  /**
   * Upserts the maintenance schedulers; a refusal (Redis full, or away) does not stop the worker: it is
   * tried again every few seconds until it works.
   */
  private async upsertSchedulers(m: NonNullable<Cell0WorkerOptions['maintenance']>): Promise<void> {
    const queue = this.maintenanceQueue;
    if (!queue || this.stopping) return;
    try {
      await upsertMaintenanceSchedulers(queue, m);
    } catch (err) {
      if (this.stopping) return;
      this.connLog.error('maintenance:schedulers', err);
      if (isOomError(err)) this.relieveMemory();
      this.schedulerTimer = setTimeout(() => void this.upsertSchedulers(m), SCHEDULER_RETRY_MS);
      this.schedulerTimer.unref();
    }
  }

  /** Every BullMQ worker of this process: the queues' and the maintenance one. */
  private allWorkers(): Worker[] {
    return [...this.workers.values(), ...(this.maintenanceWorker ? [this.maintenanceWorker] : [])];
  }

  /** Jobs running now in this process. */
  get active(): number {
    return this.activeCount;
  }

  private async processInference(
    job: Job,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<InferenceResult> {
    const data = isInferenceJobData(job.data) ? job.data : parseJobData(inferenceRequestSchema, job.data);
    const backend = this.opts.inference!;
    const models = this.opts.models?.(data.model);
    const result = await this.run(job, token, signal, QueueName.INFERENCE, async (ctxSignal) => {
      // The model must be resident (others evicted by policy if it does not fit) and stays in use, so never
      // evicted, until the call is over.
      const lease = models ? await models.acquire(data.model, { signal: ctxSignal }) : undefined;
      try {
        return { ...(await backend.run(data, { signal: ctxSignal })), servedBy: this.id };
      } finally {
        lease?.release();
      }
    });
    const cache = this.opts.caches?.inference;
    if (cache && data.cache?.noStore !== true) {
      const key = inferenceCacheKey(data);
      if (key)
        await cache.set(key.prompt, { jobId: job.id ?? '', result }, key.scope, {
          ...(data.cache?.ttlSeconds !== undefined ? { ttlSeconds: data.cache.ttlSeconds } : {}),
        });
    }
    return result;
  }

  private async processSearch(
    job: Job,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<SearchResult> {
    const data = isSearchJobData(job.data) ? job.data : parseJobData(searchRequestSchema, job.data);
    const backend = this.opts.search?.[data.provider];
    if (!backend) throw new UnrecoverableError(encodeFailure(new ProviderUnavailableError(data.provider)));
    const result = await this.run(job, token, signal, QueueName.SEARCH, async (ctxSignal) => {
      const t0 = performance.now();
      const r = await backend.search(data, { signal: ctxSignal });
      return { ...r, tookMs: Math.round((performance.now() - t0) * 100) / 100, servedBy: this.id };
    });
    const cache = this.opts.caches?.search;
    if (cache && data.cache?.noStore !== true)
      await cache.set(searchCacheKey(data), result, data.cache?.ttlSeconds);
    return result;
  }

  /** Runs a provider call with the job's deadline and cancellation, and sorts its errors. */
  private async run<T>(
    job: Job,
    token: string | undefined,
    signal: AbortSignal | undefined,
    queue: QueueName,
    call: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    if (!this.stopping && this.pausing().length > 0) {
      // Admission: a job fetched just before (or while) the pressure began goes back for another worker.
      await job.moveToWait(token);
      this.syncPressure();
      this.log.info({ queue, jobId: job.id }, 'under resource pressure: job handed back to wait');
      this.emit('job:handed-back', { queue, jobId: job.id ?? '' });
      throw new WaitingError();
    }
    if (this.stopping) {
      // BullMQ can still hand over a job it fetched just before close(); this worker no longer takes jobs.
      await job.moveToWait(token);
      this.log.info({ queue, jobId: job.id }, 'closing: job handed back to wait');
      throw new WaitingError();
    }
    const t0 = performance.now();
    this.activeCount++;
    const jobSignal = signal ?? new AbortController().signal;
    // The provider deadline is enforced by one sweep timer for all jobs (see sweepDeadlines), which cancels
    // the job through BullMQ's own per-job signal: no timer, controller or listener per job.
    const entry: Deadline = {
      worker: this.workers.get(queue)!,
      jobId: job.id ?? '',
      at: Date.now() + this.opts.providerTimeoutMs,
      timedOut: false,
    };
    this.deadlines.add(entry);
    try {
      const result = await call(jobSignal);
      const durationMs = Math.round((performance.now() - t0) * 100) / 100;
      if (this.log.isLevelEnabled('info') && sampleHotPathLine())
        this.log.info({ queue, jobId: job.id, durationMs, attempt: job.attemptsMade + 1 }, 'job completed');
      this.emit('job:completed', { queue, jobId: job.id ?? '', durationMs });
      // Started more often than attempted: it waited for its backend at some point; clear that record so a
      // later re-run of the same job id starts a fresh waiting budget.
      if (job.attemptsStarted > job.attemptsMade + 1 && this.opts.backendWaitMaxMs > 0)
        this.connectionOf
          .get(queue)
          ?.del(waitingSinceKey(this.opts.prefix, queue, job.id))
          .catch(() => undefined);
      return result;
    } catch (err) {
      if (this.forced && signal?.aborted) {
        // Forced shutdown: hand the job back instead of failing it, so it does not lose an attempt.
        await job.moveToWait(token);
        this.log.warn({ queue, jobId: job.id }, 'shutdown deadline passed; job put back to wait');
        throw new WaitingError();
      }
      if (entry.timedOut) {
        throw new Error(
          encodeFailure(
            new ProviderError(
              'worker',
              `provider call timed out after ${this.opts.providerTimeoutMs} ms`,
              undefined,
              true,
            ),
          ),
          { cause: err },
        );
      }
      if (isBackendAway(err)) await this.defer(job, token, queue, err);
      if (isPermanent(err)) throw new UnrecoverableError(encodeFailure(err));
      throw new Error(encodeFailure(err), { cause: err });
    } finally {
      this.deadlines.delete(entry);
      this.activeCount--;
    }
  }

  /**
   * Puts a job whose backend is away (unreachable, open breaker, rate limit, 429/503) back to wait, delayed
   * by what the backend or breaker asked (jittered), without spending an attempt. Throws DelayedError on
   * success; returns (so the caller fails the job) once the job has waited longer than backendWaitMaxMs.
   */
  private async defer(
    job: Job,
    token: string | undefined,
    queue: QueueName,
    err: BreakerOpenError | RateLimitedError | ProviderError | ModelMemoryBusyError,
  ): Promise<void> {
    const max = this.opts.backendWaitMaxMs;
    if (max > 0) {
      // When the job first had to wait, kept in Redis so the budget holds across workers and restarts.
      // (The connection handed to BullMQ is its non-blocking one; blocking reads use a duplicate.)
      const client = this.connectionOf.get(queue)!;
      const key = waitingSinceKey(this.opts.prefix, queue, job.id);
      const now = Date.now();
      const since = await client.set(key, String(now), 'PX', max + 60_000, 'NX', 'GET');
      if (since !== null && now - Number(since) > max) {
        this.log.warn(
          { queue, jobId: job.id, waitedMs: now - Number(since) },
          'backend still away; job fails',
        );
        throw new UnrecoverableError(
          encodeFailure(
            new ProviderUnavailableError(
              err instanceof ProviderError ? err.provider : 'backend',
              `backend unavailable for longer than ${max} ms: ${err.message}`,
            ),
          ),
        );
      }
    }
    const asked = err.retryAfterMs ?? 0;
    const delayMs = Math.round(Math.min(60_000, Math.max(asked, 250) * (1 + Math.random() * 0.5)));
    await job.moveToDelayed(Date.now() + delayMs, token);
    this.log.info({ queue, jobId: job.id, delayMs, reason: err.message }, 'backend away; job waits');
    this.emit('job:deferred', { queue, jobId: job.id ?? '', delayMs, reason: err.message });
    throw new DelayedError();
  }

  /** Cancels every job whose provider call has run past providerTimeoutMs. */
  private sweepDeadlines(): void {
    const now = Date.now();
    for (const d of this.deadlines) {
      if (d.at <= now && !d.timedOut) {
        d.timedOut = true;
        d.worker.cancelJob(d.jobId, 'provider timeout');
      }
    }
  }

  /**
   * Stops taking jobs and waits for active ones up to `shutdownTimeoutMs`; then aborts the rest and puts
   * them back to wait. Closes every connection. Idempotent.
   */
  close(): Promise<void> {
    this.stopping = true;
    this.closing ??= (async () => {
      this.opts.limiter?.off('pressure:start', this.onPressure);
      this.opts.limiter?.off('pressure:change', this.onPressure);
      this.opts.limiter?.off('pressure:end', this.onPressure);
      this.log.info({ active: this.active }, 'worker closing: finishing active jobs');
      const graceful = Promise.allSettled(this.allWorkers().map((w) => w.close()));
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), this.opts.shutdownTimeoutMs);
      });
      const idle = this.idleFor(IDLE_CLOSE_GRACE_MS);
      const first = await Promise.race([
        graceful.then(() => 'done' as const),
        deadline,
        this.forceRequested,
        idle.promise,
      ]);
      clearTimeout(timer);
      idle.cancel();
      // 'idle': no job is running but BullMQ's close has not returned — it waits for a Redis that is not
      // there. Nothing is left to save, so the connections are simply cut.
      if (first === 'timeout' || first === 'force') await this.doForce(graceful);
      // A close cut short leaves BullMQ's lock extender and stalled checker re-arming: stop them.
      if (first !== 'done') for (const w of this.allWorkers()) await stopLockExtenderAndStalledChecker(w);
      await this.release();
      this.log.info({ forced: this.forced }, 'worker closed');
      this.emit('worker:closed', { forced: this.forced });
    })();
    return this.closing;
  }

  /** Like close(), without waiting for active jobs: they are aborted and put back to wait. */
  forceClose(): Promise<void> {
    this.triggerForce();
    return this.close();
  }

  private doForce(graceful: Promise<unknown>): Promise<void> {
    this.forcing ??= (async () => {
      this.forced = true;
      this.log.warn({ active: this.active }, 'forcing shutdown: aborting active jobs');
      for (const w of this.allWorkers()) w.cancelAllJobs('shutdown');
      // Give the aborted processors a moment to hand their jobs back before the connections go.
      await settledWithin(graceful, 3000);
      await settledWithin(Promise.allSettled(this.allWorkers().map((w) => w.close(true))), 2000);
    })();
    return this.forcing;
  }

  private async release(): Promise<void> {
    clearTimeout(this.schedulerTimer);
    await this.relieving;
    clearInterval(this.sweepTimer);
    clearInterval(this.heartbeatTimer);
    await settledWithin(this.replies.close(), 1000);
    const conn = this.connections[0];
    if (this.opts.heartbeatMs > 0 && conn?.status === 'ready')
      await settledWithin(removeWorkerStatus(conn, this.opts.prefix, this.id), 1000);
    if (this.maintenanceQueue) await settledWithin(this.maintenanceQueue.close(), 2000);
    await Promise.allSettled(this.connections.map((c) => closeRedis(c)));
    await settledWithin(
      Promise.allSettled([
        this.opts.inference?.close(),
        ...Object.values(this.opts.search ?? {}).map((b) => b?.close()),
      ]),
      5000,
    );
  }

  /** Resolves 'idle' once no job has been running for `ms` in a row. */
  private idleFor(ms: number): { promise: Promise<'idle'>; cancel: () => void } {
    let timer: NodeJS.Timeout | undefined;
    let since = this.activeCount === 0 ? Date.now() : 0;
    const promise = new Promise<'idle'>((resolve) => {
      timer = setInterval(() => {
        if (this.activeCount > 0) since = 0;
        else if (since === 0) since = Date.now();
        else if (Date.now() - since >= ms) resolve('idle');
      }, 100);
    });
    return { promise, cancel: () => clearInterval(timer) };
  }
}

/** Where the time a job first had to wait for its backend is kept. */
function waitingSinceKey(prefix: string, queue: string, jobId: string | undefined): string {
  return `${prefix}:${queue}:${jobId ?? ''}:cell0-waiting-since`;
}

/** The backend is down or asked to back off: the job waits for it instead of spending an attempt. */
function isBackendAway(
  err: unknown,
): err is BreakerOpenError | RateLimitedError | ProviderError | ModelMemoryBusyError {
  return (
    err instanceof BreakerOpenError ||
    err instanceof ModelMemoryBusyError ||
    err instanceof RateLimitedError ||
    (err instanceof ProviderError && err.backendUnavailable)
  );
}

/**
 * Job data that failed the fast shape check (written by something other than cell0's producers, e.g.
 * without defaults): the full schema either fills it in or says which field is wrong, failing the job
 * without retries.
 */
function parseJobData<S extends z.ZodType>(schema: S, data: unknown): z.output<S> {
  const r = schema.safeParse(data);
  if (!r.success) throw new UnrecoverableError(encodeFailure(new ValidationError(toFieldIssues(r.error))));
  return r.data;
}

/** Workers created in this process, for unique ids. */
let instances = 0;

/** A running job's provider deadline. */
interface Deadline {
  worker: Worker;
  jobId: string;
  at: number;
  timedOut: boolean;
}

/** How long a closing worker with no running job waits for BullMQ's close before cutting connections. */
const IDLE_CLOSE_GRACE_MS = 2000;
