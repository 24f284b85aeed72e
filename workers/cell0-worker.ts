import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { MetricsTime, Worker } from 'bullmq';
import { type RedisConnection } from '../shared/redis/cluster.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { settledWithin } from '../shared/sleep.js';
import { withDefaults } from '../shared/with-defaults.js';
import { closeRedis, createRedisConnection } from '../shared/redis/connection.js';
import { connectionLogFor } from '../shared/redis/connection-log.js';
import { assertNoEviction } from '../shared/redis/redis-memory.js';
import { type WorkerStatus } from '../shared/fleet/worker-status.js';
import { QueueName } from '../shared/queues/names.js';
import { servedShards, shardKey, shardPrefix, shareOf } from '../shared/queues/shards.js';
import { watchFailures } from './worker/job-outcome.js';
import { attachReplyPublisher, ReplyPublisher, type LocalReplies } from './reply-publisher.js';
import { Admission } from './worker/admission.js';
import { BackendWait } from './worker/backend-wait.js';
import { CapacityFollower } from './worker/capacity.js';
import { ProviderDeadlines } from './worker/deadlines.js';
import { Heartbeat } from './worker/heartbeat.js';
import { JobRunner } from './worker/job-runner.js';
import { MaintenanceService } from './worker/maintenance-service.js';
import {
  concurrencyFor,
  DEFAULTS,
  defaultQueues,
  validateOptions,
  type Cell0WorkerEvents,
  type Cell0WorkerOptions,
  type ResolvedWorkerOptions,
} from './worker/options.js';
import { Shutdown } from './worker/shutdown.js';
import { ModelList } from './worker/model-list.js';
import { TokenStreams } from './worker/token-streams.js';
import { LocalTake } from './worker/local-take.js';
import { sendTake, type LocalTaker } from '../shared/queues/take-jobs.js';
import { setQueueEvents } from '../shared/queues/event-writes.js';
import { type LocalStreamReaders } from '../shared/queues/token-stream.js';
import { EmbeddingBatcher } from './embedding/index.js';
import {
  freeSlots,
  leanJobPath,
  wakeFetchLoop,
  waitingJobsOnShards,
} from '../shared/queues/bullmq-internals.js';
import { batchFinishes } from '../shared/queues/finish-batch.js';
import { telemetryOption } from '../shared/tracing/tracing.js';

export {
  pausingViolations,
  type AdmissionLimiter,
  type Cell0WorkerEvents,
  type DeferKind,
  type Cell0WorkerOptions,
} from './worker/options.js';

/**
 * One worker process's share of the fleet: a BullMQ Worker per queue, with stalled-job recovery, job logs
 * (queue, job id, duration), typed failure reasons, and a graceful close: stop taking jobs, let active ones
 * finish until `shutdownTimeoutMs`, then abort what is left and put it back to wait (no attempt burned) so
 * another worker picks it up.
 *
 * It composes one part per concern (workers/worker/): running the jobs (job-runner.ts), admission by resources, provider deadlines, backend
 * waits, the maintenance queue, the status heartbeat and the shutdown. `start()` and `close()` are
 * idempotent (each keeps its promise).
 */
export class Cell0Worker extends EventEmitter<Cell0WorkerEvents> {
  /** host:pid, with #n for the second and later workers of one process (ids must be unique in the fleet). */
  readonly id = `${hostname()}:${process.pid}` + (++instances > 1 ? `#${instances}` : '');
  private readonly opts: ResolvedWorkerOptions;
  private readonly root: Logger;
  private readonly log: Logger;
  /** Each queue's BullMQ workers, one per shard served (in the order of `served`). */
  private readonly workers = new Map<QueueName, Worker[]>();
  /** The shards served on each queue (all by default). */
  private readonly served: number[];
  /** Each shard's BullMQ worker and connection, by the shard's queue key ("{cell0:inference:2}:inference"). */
  private readonly byKey = new Map<string, { worker: Worker; conn: RedisConnection }>();
  private readonly connections: RedisConnection[] = [];
  /** A connection of each queue (its first shard's), for the queue's own records (backend waits). */
  private readonly connectionOf = new Map<QueueName, RedisConnection>();
  /** Set as soon as close() starts: a job that reaches the processor after that is handed back. */
  private stopping = false;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly startedAt = new Date().toISOString();
  /** Hands finished jobs' outcomes to the producers waiting for them (the result path). */
  private readonly replies: ReplyPublisher;
  private readonly admission: Admission;
  private readonly deadlines: ProviderDeadlines;
  private readonly capacity: CapacityFollower;
  private readonly backendWait: BackendWait;
  private readonly maintenance: MaintenanceService;
  private readonly heartbeat: Heartbeat;
  private readonly shutdown: Shutdown;
  /** Runs the jobs: processors, deadlines, cancellation, completion and failure (workers/worker/job-runner.ts). */
  private readonly jobs: JobRunner;
  /** The models the inference backend lists (status section `backendModels`, for GET /v1/models). */
  private readonly modelList: ModelList;
  /** Writers of inference jobs' token streams; undefined when streams are off or inference is not served. */
  private readonly tokenStreams: TokenStreams | undefined;
  /** Gathers the embedding jobs that are ready into one backend call per model. */
  private readonly embeddings: EmbeddingBatcher | undefined;
  /** Takes jobs behind the adds of the producer of this process (see {@link localTaker}). */
  private readonly localTake: LocalTake;

  constructor(options: Cell0WorkerOptions) {
    super();
    const opts = withDefaults<ResolvedWorkerOptions>(DEFAULTS, {
      ...options,
      queues: defaultQueues(options),
    });
    validateOptions(opts);
    this.opts = opts;
    this.served = servedShards(opts.shards, opts.servedShards, 'servedShards');
    this.root = opts.logger ?? silentLogger();
    const connLog = connectionLogFor(this.root);
    const log = (this.log = this.root.child({ worker: this.id }));
    const stopping = () => this.stopping;
    this.replies = new ReplyPublisher({
      connectionFor: (key) => this.byKey.get(key)?.conn,
      logger: log,
    });
    this.heartbeat = new Heartbeat({
      intervalMs: opts.heartbeatMs,
      prefix: opts.prefix,
      workerId: this.id,
      connection: () => this.connections[0],
      snapshot: () => this.statusSnapshot(),
      log,
    });
    this.admission = new Admission({
      limiter: opts.limiter,
      workers: () => [...this.workers.values()].flat(),
      stopping,
      publishStatus: () => this.publishStatus(),
      log,
      onPaused: (violations) => this.emit('worker:paused', { violations }),
      onResumed: (pausedMs) => this.emit('worker:resumed', { pausedMs }),
      onHandedBack: (queue, jobId) => this.emit('job:handed-back', { queue, jobId }),
    });
    this.deadlines = new ProviderDeadlines(opts.providerTimeoutMs);
    this.capacity = new CapacityFollower({
      capacity: opts.backendCapacity ?? {},
      workers: () => this.workers.entries(),
      cap: (queue) => this.concurrencyOf(queue),
      ...(opts.backendCapacityRaised ? { watch: opts.backendCapacityRaised } : {}),
      raised: (_queue, worker) => this.fillRoom(worker),
    });
    this.backendWait = new BackendWait({
      prefix: opts.prefix,
      maxMs: opts.backendWaitMaxMs,
      connectionOf: (queue) => this.connectionOf.get(queue),
      log,
      onDeferred: (queue, jobId, delayMs, reason, kind) =>
        this.emit('job:deferred', { queue, jobId, delayMs, reason, kind }),
    });
    this.maintenance = new MaintenanceService({
      maintenance: opts.maintenance,
      redisUrl: opts.redisUrl,
      prefix: opts.prefix,
      lockDurationMs: opts.lockDurationMs,
      stalledIntervalMs: opts.stalledIntervalMs,
      fetchRetryDelayMs: opts.fetchRetryDelayMs,
      workerId: this.id,
      rootLogger: this.root,
      log,
      connLog,
      stopping,
      adopt: (conn) => this.connections.push(conn),
    });
    this.modelList = new ModelList(opts.inference, log);
    this.tokenStreams = TokenStreams.forWorker(opts, {
      rootLogger: this.root,
      log,
      adopt: (conn) => this.connections.push(conn),
    });
    if (opts.queues.includes(QueueName.EMBEDDING))
      this.embeddings = new EmbeddingBatcher({
        ...opts.embedding,
        // Every job the worker holds may be waiting in the batcher: it never refuses one of them.
        maxQueuedItems: Math.max(
          opts.embedding?.maxQueuedItems ?? 0,
          this.concurrencyOf(QueueName.EMBEDDING),
        ),
        backend: opts.inference!,
        capacity: this.concurrencyOf(QueueName.EMBEDDING),
        readyJobs: () => this.readyJobs(QueueName.EMBEDDING),
        ...(opts.models ? { models: opts.models } : {}),
        servedBy: this.id,
        logger: log,
      });
    this.localTake = new LocalTake({
      // Unsharded queues only (a sharded queue's marks are kept on its first shard's keys), and not the
      // embedding queue, whose batcher gathers the jobs that wait together.
      workerOf: (key) =>
        opts.shards === 1 && !key.endsWith(`:${QueueName.EMBEDDING}`)
          ? this.byKey.get(key)?.worker
          : undefined,
      lockDurationMs: opts.lockDurationMs,
      marksGateOf: (key) => this.tokenStreams?.marksGate(key),
      onMarks: (jobId, processedOn, marks) => this.tokenStreams?.keepMarks(jobId, processedOn, marks),
      stopping,
      log,
    });
    this.shutdown = new Shutdown({
      timeoutMs: opts.shutdownTimeoutMs,
      workers: () => this.allWorkers(),
      active: () => this.jobs.active,
      redisReady: () => this.connections.some((c) => c.status === 'ready'),
      log,
    });
    this.jobs = new JobRunner({
      workerId: this.id,
      opts,
      log,
      admission: this.admission,
      deadlines: this.deadlines,
      backendWait: this.backendWait,
      shutdown: this.shutdown,
      tokenStreams: this.tokenStreams,
      embeddings: this.embeddings,
      stopping,
      workerOf: (key) => this.byKey.get(key)!.worker,
      connectionOf: (key) => this.byKey.get(key)?.conn,
      events: this,
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
    for (const queue of this.opts.queues)
      for (const [i, shard] of this.served.entries()) await this.startQueue(queue, shard, i);
    // The token streams' connection is ready before the first job (its marks are read as each job starts).
    await Promise.all([
      ...[...this.byKey.values()].map((s) => s.worker.waitUntilReady()),
      this.tokenStreams?.start(),
    ]);
    // BullMQ's scripts are loaded now: each job's reply can go out right behind its finish, and each
    // inference job's token stream marks be read right behind its fetch (where they share its slot).
    for (const [key, { conn, worker }] of this.byKey) {
      // BullMQ's start and completion of each job without their empty layers (see leanJobPath).
      if (!(await leanJobPath(worker)))
        this.log.debug({ queueKey: key }, "jobs start and finish BullMQ's own way (lean path not installed)");
      // First: the hooks below then see each finish of a batch as its own call, and their commands go
      // out behind the batch.
      setQueueEvents(conn, this.opts.queueEvents);
      if (!(await batchFinishes(conn)))
        this.log.warn({ queueKey: key }, 'finishes go one script call each (BullMQ finish not batched)');
      this.replies.replyBehindFinish(conn, key);
      this.tokenStreams?.readMarksBehindFetches(conn, key);
    }
    await this.maintenance.start();
    this.admission.start();
    this.deadlines.start();
    this.capacity.start();
    if (this.opts.heartbeatMs > 0) await settledWithin(this.modelList.refresh(), 2000);
    await this.heartbeat.start();
    this.log.info({ queues: [...this.workers.keys()], shards: this.served }, 'worker started');
  }

  /** The connection and BullMQ worker of one shard of a queue (the i-th shard served). */
  private async startQueue(queue: QueueName, shard: number, i: number): Promise<void> {
    const concurrency = shareOf(this.concurrencyOf(queue), i, this.served.length);
    const conn = createRedisConnection({
      url: this.opts.redisUrl,
      role: 'worker',
      connectionName: `cell0:worker:${queue}${shard > 0 ? `:${shard}` : ''}`,
      logger: this.root,
    });
    // A reconnect gives the connection a new CLIENT ID: the status connection's is read again after it.
    if (this.connections.length === 0) conn.on('ready', () => this.heartbeat.reconnected());
    this.connections.push(conn);
    if (!this.connectionOf.has(queue)) this.connectionOf.set(queue, conn);
    // Before any BullMQ object exists: a Redis that may evict keys would lose jobs.
    if (this.connections.length === 1) await assertNoEviction(conn);
    const worker = new Worker(queue, this.jobs.processorFor(queue), {
      connection: conn,
      prefix: shardPrefix(this.opts.prefix, queue, shard, this.opts.shards),
      concurrency,
      lockDuration: this.opts.lockDurationMs,
      stalledInterval: this.opts.stalledIntervalMs,
      maxStalledCount: this.opts.maxStalledCount,
      runRetryDelay: this.opts.fetchRetryDelayMs,
      autorun: true,
      // BullMQ's own completed/failed counts per minute (Queue.exportPrometheusMetrics reads them).
      metrics: { maxDataPoints: MetricsTime.ONE_WEEK },
      // Traces (bullmq-otel) while tracing is on: a span per job, child of the span that added it.
      ...telemetryOption(),
    });
    worker.on('error', (err) => this.maintenance.onWorkerError(queue, err));
    const key = shardKey(this.opts.prefix, queue, shard, this.opts.shards);
    attachReplyPublisher(worker, key, this.replies);
    watchFailures(worker, queue, this.log, (e) => this.emit('job:failed', e));
    this.workers.set(queue, [...(this.workers.get(queue) ?? []), worker]);
    this.byKey.set(key, { worker, conn });
  }

  /**
   * `worker`'s concurrency was raised: its fetch loop, waiting for one of its jobs to end, would not fetch
   * until then. Takes the waiting jobs it now has room for in one call (the take of take-jobs.ts, on the
   * worker's connection), or, where a take does not apply (sharded or embedding queues), wakes the loop.
   */
  private fillRoom(worker: Worker): void {
    for (const [key, s] of this.byKey) {
      if (s.worker !== worker) continue;
      const room = freeSlots(worker);
      const take = room > 0 ? this.localTake.reserve(key, room) : undefined;
      if (take) sendTake(s.conn, take);
      else wakeFetchLoop(worker);
      return;
    }
  }

  /** Jobs run at once on `queue`. */
  private concurrencyOf(queue: QueueName): number {
    return concurrencyFor(this.opts.concurrency, queue);
  }

  /** Jobs waiting for a worker on the shards of `queue` this worker serves. */
  private readyJobs(queue: QueueName): Promise<number> {
    const connOf = (shard: number) =>
      this.byKey.get(shardKey(this.opts.prefix, queue, shard, this.opts.shards))?.conn;
    return waitingJobsOnShards(connOf, this.opts.prefix, queue, this.served, this.opts.shards);
  }

  /** Token stream marks of inference jobs so far: read behind the job's fetch, or as it started. */
  marksStats(): { behindFetch: number; atStart: number } | undefined {
    return this.tokenStreams?.marksStats();
  }

  /**
   * Replies to waiting producers so far: sent behind the job's finish, or after its event; of the former,
   * those handed to the producer of this process ({@link handRepliesTo}).
   */
  replyStats(): { withFinish: number; afterEvent: number; handedOver: number } {
    return this.replies.stats();
  }

  /**
   * The producer in this process (`cell0 start`): the replies of the jobs it added go to it directly once
   * their finish has stored them, not through its inbox in Redis (see {@link LocalReplies}).
   */
  handRepliesTo(local: LocalReplies): void {
    this.replies.handOverTo(local);
  }

  /**
   * The token stream readers of this process (`cell0 start`: the API's hub, TokenStreamHub#local): the
   * entries of the streams this worker writes are handed to them as they are written, besides going to
   * Redis, so the API's readers get each token without a round trip through Redis (see LocalStreamReaders).
   */
  relayTokensTo(readers: LocalStreamReaders): void {
    this.tokenStreams?.relayTo(readers);
  }

  /**
   * This worker as the taker of the jobs the producer of this process (`cell0 start`) adds: right behind
   * the adds, in the same write, a take moves up to as many waiting jobs to active for this worker as it has
   * free slots, and it runs them at once, without the round trips of its fetch loop (see
   * shared/queues/take-jobs.ts). Hand it to the producer with JobSubmitter#takeLocallyWith.
   */
  get localTaker(): LocalTaker {
    return this.localTake;
  }

  /** Jobs taken behind the adds of the producer of this process so far: script calls, asked, taken. */
  localTakeStats(): { calls: number; asked: number; taken: number } {
    return this.localTake.stats();
  }

  /** Figures of the embedding batches (calls, sizes, waits); undefined when not serving embeddings. */
  embeddingStats(): ReturnType<EmbeddingBatcher['stats']> | undefined {
    return this.embeddings?.stats();
  }

  /** The embedding batches by size (for the batch-size histogram); undefined when not serving embeddings. */
  embeddingSizeCounts(): number[] | undefined {
    return this.embeddings?.sizeCounts();
  }

  /** This worker's status as published for `GET /v1/fleet`. */
  statusSnapshot(): WorkerStatus {
    const clientId = this.heartbeat.clientId;
    const clientNode = this.heartbeat.clientNode;
    const pressure = this.admission.status();
    return {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      queues: [...this.workers.keys()],
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
      active: this.jobs.active,
      state: this.stopping ? 'closing' : this.admission.pausedByPressure ? 'paused' : 'running',
      ...(this.opts.heartbeatMs > 0 ? { heartbeatMs: this.opts.heartbeatMs } : {}),
      ...(clientId !== undefined ? { clientId } : {}),
      ...(clientNode !== undefined ? { clientNode } : {}),
      ...(pressure ? { pressure } : {}),
      ...(this.opts.maintenance ? { maintenance: true } : {}),
      ...(this.modelList.models ? { backendModels: this.modelList.models } : {}),
      ...(this.embeddings ? { embeddingBatches: this.embeddings.stats() } : {}),
      ...(this.opts.status?.() ?? {}),
    };
  }

  /**
   * Publishes this worker's status now (besides the heartbeat): for changes producers should see at once,
   * such as a backend breaker opening or closing. Never throws; a no-op without a heartbeat.
   */
  publishStatus(): Promise<void> {
    void this.modelList.refresh();
    return this.heartbeat.publish();
  }

  /** True while resource pressure (on anything but CPU) keeps this worker from taking jobs. */
  get paused(): boolean {
    return this.admission.pausedByPressure;
  }

  /** Every BullMQ worker of this process: the queues' and the maintenance one. */
  private allWorkers(): Worker[] {
    const m = this.maintenance.worker;
    return [...[...this.workers.values()].flat(), ...(m ? [m] : [])];
  }

  /** Jobs running now in this process. */
  get active(): number {
    return this.jobs.active;
  }
  /**
   * Stops taking jobs and waits for active ones up to `shutdownTimeoutMs`; then aborts the rest and puts
   * them back to wait. Closes every connection. Idempotent.
   */
  close(): Promise<void> {
    this.stopping = true;
    this.closing ??= (async () => {
      this.admission.close();
      await this.shutdown.run();
      await this.release();
      this.log.info({ forced: this.shutdown.forced }, 'worker closed');
      this.emit('worker:closed', { forced: this.shutdown.forced });
    })();
    return this.closing;
  }

  /** Like close(), without waiting for active jobs: they are aborted and put back to wait. */
  forceClose(): Promise<void> {
    this.shutdown.force();
    return this.close();
  }

  /** Every part's timers and connections, once the BullMQ workers are closed. */
  private async release(): Promise<void> {
    // Cache writes of answered jobs still awaiting Redis's reply (see JobRunner.store).
    await settledWithin(this.jobs.drainStores(), 5000);
    this.deadlines.close();
    this.capacity.close();
    this.tokenStreams?.close();
    await this.maintenance.close();
    await settledWithin(this.replies.close(), 1000);
    await settledWithin(this.embeddings?.close() ?? Promise.resolve(), 1000);
    await this.heartbeat.close();
    await Promise.allSettled(this.connections.map((c) => closeRedis(c)));
    await settledWithin(
      Promise.allSettled([
        this.opts.inference?.close(),
        ...Object.values(this.opts.search ?? {}).map((b) => b?.close()),
      ]),
      5000,
    );
  }
}

/** Workers created in this process, for unique ids. */
let instances = 0;
