import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Queue } from 'bullmq';
import { type RedisConnection } from '../shared/redis/cluster.js';
import { RedisEvictionPolicyError, RedisUnavailableError, ClosedError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { type Cell0Metrics } from '../shared/metrics/metrics.js';
import { closeRedis, createRedisConnection, waitUntilReady } from '../shared/redis/connection.js';
import { RedisClient } from '../shared/redis/redis-client.js';
import { connectionLogFor, type RedisConnectionLog } from '../shared/redis/connection-log.js';
import { assertNoEviction } from '../shared/redis/redis-memory.js';
import { isJobId, jobIdFor } from '../shared/queues/job-id.js';
import { defineJobOutcome, readJobOutcome, type JobOutcome } from '../shared/queues/job-outcome.js';
import { defineReplyScripts, registerWaiter, type JobReply } from '../shared/queues/job-replies.js';
import { type JobPolicy } from '../shared/queues/job-policy.js';
import { type QueueName, queuePrefix } from '../shared/queues/names.js';
import { shardOf } from '../shared/queues/shards.js';
import { addBatchStats, readShardCounts, sumShardCounts, type ShardCounts } from './queue-counts.js';
import { resolveSubmitterOptions, type JobSubmitterOptions } from './job-submitter-options.js';
import { settledWithin, sleep } from '../shared/sleep.js';
import { applyRetention, countAdd, resultMaxAge } from './retention.js';
import { SubmitLane, type LaneContext } from './submit-lane.js';
import { type LocalTaker } from '../shared/queues/take-jobs.js';
import {
  eventResult,
  finishedResult,
  readJobView,
  type JobView,
  type SubmitOptions,
  type SubmitResult,
} from './submit-result.js';

export type { JobView, SubmitOptions, SubmitResult } from './submit-result.js';
export type { JobSubmitterOptions } from './job-submitter-options.js';

/**
 * Adds jobs with coalescing ids and waits for their results.
 *
 * The job id is a hash of the canonical request, so identical requests from any number of producer
 * processes map to one BullMQ job. The retention rule, which decides what a later identical request gets:
 *
 * - job running or queued → the caller joins it and gets its result;
 * - job completed less than `resultTtlSeconds` ago → its stored result at once, no new run;
 * - job completed longer ago (even if BullMQ has not trimmed it yet) → the job is re-run (retried in
 *   place, same id) and the caller waits for the fresh result;
 * - job failed → it is re-run the same way: a failure is never served to a request that arrived after it;
 * - job gone (trimmed, removed) → added again.
 *
 * How (the result path): a caller registers this producer as a waiter of the job and reads the job's
 * outcome, in one script, and adds the job, in the same round trip. BullMQ ignores an add whose id exists,
 * so the outcome read just before the add says what the caller met: nothing (its add created the job), a
 * job under way (it joined), or a finished one (the retention rule applies at once, with no further read).
 * When the job finishes, the worker pushes its outcome to the reply inbox of every registered producer
 * (see shared/queues/job-replies.ts), and each producer reads only its own inbox — so delivering a result
 * costs the same however many producers the fleet has. Submissions that arrive while a round trip is
 * under way are gathered and sent together in the next one (one pipeline), and within this process
 * identical requests are single-flight: later callers follow the one that registered. A waiter that has
 * heard nothing for a while re-reads the outcome (a reply lost with a worker that died just after the job
 * finished is not waited out), and when the wait ends the job's state is read once more under the same
 * rule (this also serves a `wait: 0` request). A wait that runs out is not an error: the caller gets
 * `pending` with the job id to poll.
 */
export class JobSubmitter extends EventEmitter<{ ready: []; error: [Error] }> {
  /** The producer's Redis client; its breaker guards every Redis call the submitter makes. */
  readonly redis: RedisClient;
  readonly policy: JobPolicy;
  readonly prefix: string;
  /** Shards per queue. */
  readonly shards: number;
  /** This producer's id in waiter sets; its reply inbox per queue is named after it. */
  readonly producerId = randomBytes(8).toString('hex');
  private readonly conn: RedisConnection;
  private readonly opts: JobSubmitterOptions;
  private readonly log: Logger;
  private readonly connLog: RedisConnectionLog;
  /** Each queue's lanes, one per shard (index = shard). */
  private readonly lanes = new Map<QueueName, SubmitLane[]>();
  private readonly others = new Map<string, Queue>();
  /** Every lane created, ready or not, so close() reaches the half-built ones too. */
  private readonly created: SubmitLane[] = [];
  private readonly queueNames: readonly QueueName[];
  private readonly maxBatchSize: number;
  private readonly recheckAfterMs: number;
  private recheckTimer: NodeJS.Timeout | undefined;
  private initializing: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private isInitialized = false;
  /** Counts adds and coalesced requests (jobs added, joined, answered from a stored result, re-run). */
  metrics: Pick<Cell0Metrics, 'jobAdded' | 'jobCoalesced'> | undefined;
  private readonly queueEvents: boolean;

  constructor(opts: JobSubmitterOptions) {
    super();
    this.opts = opts;
    const resolved = resolveSubmitterOptions(opts);
    this.prefix = resolved.prefix;
    this.shards = resolved.shards;
    this.policy = resolved.policy;
    this.maxBatchSize = resolved.maxBatchSize;
    this.recheckAfterMs = resolved.recheckAfterMs;
    this.queueEvents = resolved.queueEvents;
    this.queueNames = resolved.queues;
    this.log = opts.logger ?? silentLogger();
    this.connLog = connectionLogFor(this.log);
    this.conn = createRedisConnection({
      url: opts.redisUrl,
      role: 'producer',
      commandTimeoutMs: opts.commandTimeoutMs ?? 2000,
      connectionName: 'cell0:producer',
      logger: this.log,
    });
    defineJobOutcome(this.conn);
    defineReplyScripts(this.conn);
    this.redis = new RedisClient({
      connection: this.conn,
      commandTimeoutMs: opts.commandTimeoutMs ?? 2000,
      breakerThreshold: opts.breakerThreshold ?? 5,
      breakerResetMs: opts.breakerResetMs ?? 5000,
      name: 'redis',
    });
  }

  /**
   * Connects. Resolves once the queues are ready; until then submit() throws RedisUnavailableError. If
   * Redis is down it keeps trying in the background (the returned promise resolves when it succeeds), so
   * a process started before Redis still comes up. Rejects with RedisEvictionPolicyError, and stops, when
   * Redis's maxmemory-policy is not `noeviction` (BullMQ would lose jobs).
   */
  start(): Promise<void> {
    this.initializing ??= this.init();
    return this.initializing;
  }

  /** True once start() has connected the queues. */
  get ready(): boolean {
    return this.isInitialized;
  }

  /**
   * Connects every queue, retrying until it works or close() is called. A BullMQ Queue whose first
   * connection attempt failed stays broken, so a failed lane is thrown away and built again.
   */
  private async init(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.closing) throw new ClosedError('JobSubmitter');
      try {
        await waitUntilReady(this.conn, 3000);
        await assertNoEviction(this.conn);
        for (const name of this.queueNames) {
          const lanes = this.lanes.get(name) ?? [];
          this.lanes.set(name, lanes);
          for (let shard = lanes.length; shard < this.shards; shard++)
            lanes.push(await SubmitLane.open(this.laneContext(), name, shard, this.created));
        }
        break;
      } catch (err) {
        if (this.closing) throw new ClosedError('JobSubmitter');
        if (err instanceof RedisEvictionPolicyError) {
          this.log.error({ err }, 'refusing to use this Redis');
          throw err;
        }
        // Connection trouble is logged once per outage by the connection log.
        if (attempt % 5 === 0) this.log.debug({ attempt, err: (err as Error).message }, 'waiting for Redis');
        await sleep(500);
      }
    }
    this.recheckTimer = setInterval(
      () => this.recheck(),
      Math.max(50, Math.min(1000, this.recheckAfterMs / 2)),
    );
    this.recheckTimer.unref();
    this.isInitialized = true;
    this.emit('ready');
  }

  /** Re-reads the outcomes of jobs whose waiters have heard nothing for a while (see SubmitLane.recheck). */
  private recheck(): void {
    const now = Date.now();
    for (const lane of this.allLanes()) lane.recheck(now);
  }

  private laneContext(): LaneContext {
    return {
      conn: this.conn,
      redis: this.redis,
      redisUrl: this.opts.redisUrl,
      prefix: this.prefix,
      shards: this.shards,
      policy: this.policy,
      producerId: this.producerId,
      maxBatchSize: this.maxBatchSize,
      recheckAfterMs: this.recheckAfterMs,
      queueEvents: this.queueEvents,
      log: this.log,
      connLog: this.connLog,
      localTaker: () => this.taker,
    };
  }

  /** The worker of this process that takes the jobs this producer adds (see {@link takeLocallyWith}). */
  private taker: LocalTaker | undefined;

  /**
   * A worker in the same process (`cell0 start`; Cell0Worker#localTaker) takes the jobs this producer adds
   * right behind their adds, up to its free slots, instead of through its fetch loop (see
   * shared/queues/take-jobs.ts). The jobs stay durable: taken, they are active and locked as any other.
   */
  takeLocallyWith(taker: LocalTaker): void {
    this.taker = taker;
  }

  /** Every lane, of every queue and shard. */
  private *allLanes(): Generator<SubmitLane> {
    for (const lanes of this.lanes.values()) yield* lanes;
  }

  /**
   * This producer as the taker of the replies a worker in the same process hands over (`cell0 start`; see
   * Cell0Worker.handRepliesTo): the replies of the jobs it added, of the queues it has, once each job is
   * stored as finished, without its inbox in Redis. Replies of jobs it joined still come through the inbox.
   */
  readonly localReplies = {
    producerId: this.producerId,
    serves: (queueKey: string): boolean => this.laneByKey(queueKey) !== undefined,
    deliver: (queueKey: string, reply: JobReply): void => this.laneByKey(queueKey)?.handOver(reply),
  };

  /** Replies taken so far: read from the inboxes, or handed over by a worker of this process. */
  replyStats(): { inbox: number; handedOver: number } {
    const r = { inbox: 0, handedOver: 0 };
    for (const lane of this.allLanes()) {
      r.inbox += lane.replyCounts.inbox;
      r.handedOver += lane.replyCounts.handedOver;
    }
    return r;
  }

  /** The ready lane whose queue key is `key` (a queue's, or one shard's). */
  private laneByKey(key: string): SubmitLane | undefined {
    for (const lane of this.allLanes()) if (lane.key === key) return lane;
    return undefined;
  }

  /** The lanes (one per shard) of `queue`. */
  private lanesOf(queue: QueueName): SubmitLane[] {
    if (this.closing) throw new ClosedError('JobSubmitter');
    const lanes = this.lanes.get(queue);
    if (!lanes || lanes.length < this.shards) {
      if (!this.queueNames.includes(queue))
        throw new TypeError(`JobSubmitter: queue "${queue}" is not enabled`);
      throw new RedisUnavailableError('not connected to Redis yet');
    }
    return lanes;
  }

  /** The lane of the shard job `jobId` of `queue` belongs to (see shardOf). */
  private lane(queue: QueueName, jobId: string): SubmitLane {
    return this.lanesOf(queue)[shardOf(jobId, this.shards)]!;
  }

  /** Batched adds so far over every queue (each batch is one pipeline): for the metrics. */
  addBatchStats(): { batches: number; items: number; sizes: number[] } {
    return addBatchStats(this.allLanes());
  }

  /** The BullMQ queue object of `queue`'s first shard (the whole queue when it is not sharded). */
  getQueue(queue: QueueName): Queue {
    return this.lanesOf(queue)[0]!.queue;
  }

  /** The BullMQ queue objects of `queue`, one per shard (index = shard), for dashboards and metrics. */
  getQueues(queue: QueueName): Queue[] {
    return this.lanesOf(queue).map((l) => l.queue);
  }

  /** The job id `data` would get on `queue`. */
  jobIdFor(queue: QueueName, data: unknown): string {
    return jobIdFor(queue, data);
  }

  /**
   * Adds (or joins) the job for `data` and waits up to `waitMs` for it to finish. `data` must already be
   * validated and canonical (defaults filled): its hash is the job id.
   *
   * A new request costs its share of one pipelined round trip (the waiter registration and the add), plus
   * its share of one inbox read when the result comes.
   */
  async submit<T = unknown>(
    queue: QueueName,
    name: string,
    data: unknown,
    opts: SubmitOptions,
    /** jobIdFor(queue, data) when the caller has it already (it is not computed again); never another id. */
    knownJobId?: string,
  ): Promise<SubmitResult<T>> {
    const jobId = knownJobId ?? jobIdFor(queue, data);
    // The job's shard follows from its id: identical requests meet on one shard, in every process.
    const lane = this.lane(queue, jobId);
    let joined: boolean | undefined;
    const noteJoined = (j: boolean) => {
      if (joined !== undefined) return;
      joined = j;
      opts.onJoined?.(j);
    };
    const withJoined = (r: SubmitResult<T>): SubmitResult<T> =>
      r.state === 'completed' && joined !== undefined && r.cached === undefined ? { ...r, joined } : r;
    const started = Date.now();
    // Single flight within this process: while another local caller is adding (or has added) this job and
    // it has not finished, join that caller instead of sending another add. A stampede of identical
    // requests then costs one add per producer process, not one per request.
    const existing = lane.waiters.get(jobId);
    let leader = !(existing?.leader && !existing.finished);
    const waiter = lane.register(jobId, leader);
    try {
      if (leader) {
        const before = await lane.addAsLeader(name, data, jobId);
        if (this.metrics)
          countAdd(this.metrics, queue, before, started, resultMaxAge(this.policy, opts.maxAgeMs));
        // The add created the job (the usual case): the retention rule has nothing to say (applyRetention
        // returns undefined for a missing job without a re-add), so it is not called.
        const r =
          before.status === 'missing'
            ? undefined
            : await this.apply<T>(lane, queue, jobId, before, started, opts.maxAgeMs);
        // Joined: the job was there (queued or running), or its stored result answered.
        noteJoined(before.status === 'pending' || (r !== undefined && before.status === 'completed'));
        if (r) return withJoined(r);
      } else {
        noteJoined(true);
        this.metrics?.jobCoalesced(queue, 'joined');
      }
      for (;;) {
        const e = await waiter.next(started + opts.waitMs, opts.signal);
        if (e === undefined) break;
        const done = eventResult<T>(queue, jobId, e);
        if (done) return withJoined(done);
        // 'leader-gone': the local caller this one joined could not add the job: add it ourselves.
        if (!leader) {
          leader = true;
          lane.promote(jobId, waiter);
          const before = await lane.addAsLeader(name, data, jobId);
          const r = await this.apply<T>(lane, queue, jobId, before, started, opts.maxAgeMs);
          if (r) return withJoined(r);
        }
      }
      return withJoined(
        await this.finalCheck<T>(lane, queue, jobId, async () => {
          const outcome = await this.redis.run((r) => readJobOutcome(r, lane.key, jobId));
          return this.apply<T>(lane, queue, jobId, outcome, started, opts.maxAgeMs, { name, data });
        }),
      );
    } finally {
      waiter.release();
    }
  }

  /**
   * submit() for many requests of one queue at once (the texts of one embeddings request): the jobs they
   * add reach Redis together, in one round trip (atomically when several), never split between round trips
   * by other submissions; each keeps submit()'s coalescing and retention exactly. Results in `datas` order.
   * On a sharded queue each shard's part goes in one round trip of its own (one slot each).
   */
  submitMany<T = unknown>(
    queue: QueueName,
    name: string,
    datas: readonly unknown[],
    opts: SubmitOptions,
  ): Promise<SubmitResult<T>[]> {
    const all = () => datas.map((d) => this.submit<T>(queue, name, d, opts));
    const gathered = this.lanesOf(queue).reduce((f, lane) => () => lane.group(f), all);
    return Promise.all(gathered());
  }

  private apply<T>(
    lane: SubmitLane,
    queue: QueueName,
    jobId: string,
    outcome: JobOutcome,
    started: number,
    maxAgeMs?: number,
    readd?: { name: string; data: unknown },
  ): Promise<SubmitResult<T> | undefined> {
    const maxAge = resultMaxAge(this.policy, maxAgeMs);
    return applyRetention<T>({ lane, queue, jobId, outcome, started, maxAge, ...(readd ? { readd } : {}) });
  }

  /**
   * Waits up to `waitMs` for an existing job without adding or re-running anything: a failed job stays
   * failed. Resolves `missing` when there is no such job.
   */
  async waitFor<T = unknown>(
    queue: QueueName,
    jobId: string,
    opts: { waitMs: number; signal?: AbortSignal },
  ): Promise<SubmitResult<T> | { state: 'missing'; queue: QueueName; jobId: string }> {
    const lanes = this.lanesOf(queue);
    // An id from outside names a Redis key: anything that is not a job id of this queue is no job.
    if (!isJobId(queue, jobId)) return { state: 'missing', queue, jobId };
    const lane = lanes[shardOf(jobId, this.shards)]!;
    const started = Date.now();
    const waiter = lane.register(jobId);
    try {
      const outcome = await this.redis.run((r) => registerWaiter(r, lane.key, jobId, this.producerId));
      if (outcome.status === 'missing') return { state: 'missing', queue, jobId };
      const finished = finishedResult<T>(queue, jobId, outcome);
      if (finished) return finished;
      for (;;) {
        const e = await waiter.next(started + opts.waitMs, opts.signal);
        if (e === undefined) break;
        const done = eventResult<T>(queue, jobId, e);
        if (done) return done;
      }
      return await this.finalCheck<T>(lane, queue, jobId);
    } finally {
      waiter.release();
    }
  }

  /**
   * After the wait: one last look, in case the result landed just as the timer fired. With `reconcile`
   * (submit), a job that existed before the request is judged by the retention rule first — this is
   * what a `wait: 0` request relies on.
   */
  private async finalCheck<T>(
    lane: SubmitLane,
    queue: QueueName,
    jobId: string,
    reconcile?: () => Promise<SubmitResult<T> | undefined>,
  ): Promise<SubmitResult<T>> {
    try {
      if (reconcile) {
        const r = await reconcile();
        if (r) return r;
      } else {
        const outcome = await this.redis.run((r) => readJobOutcome(r, lane.key, jobId));
        const finished = finishedResult<T>(queue, jobId, outcome);
        if (finished) return finished;
      }
      const jobState = await this.redis.run(() => lane.queue.getJobState(jobId));
      return { state: 'pending', queue, jobId, jobState };
    } catch {
      // The job was accepted; Redis trouble now only means we cannot say more than "pending".
      return { state: 'pending', queue, jobId, jobState: 'unknown' };
    }
  }

  /**
   * A job's state and result, or undefined when no such job exists (never did, or was trimmed), when
   * `jobId` is not a job id of `queue` (nothing is read then), or when `owner` is given and the job is not
   * that tenant's (its request's `cache.namespace` is neither `owner` nor `owner:…`). A job of another
   * tenant costs the same one read as an unknown id: its state is read only once it is known to be the
   * caller's.
   */
  async getJob(queue: QueueName, jobId: string, opts: { owner?: string } = {}): Promise<JobView | undefined> {
    const lanes = this.lanesOf(queue);
    if (!isJobId(queue, jobId)) return undefined;
    const lane = lanes[shardOf(jobId, this.shards)]!;
    return readJobView(this.redis, lane.queue, queue, jobId, opts.owner);
  }

  /** Counts of jobs per state, per queue (over all its shards). */
  async getCounts(): Promise<Record<string, Record<string, number>>> {
    return sumShardCounts(await this.getShardCounts());
  }

  /** Counts of jobs per state of each shard of each queue, with the shard's hash tag. */
  getShardCounts(): Promise<Record<string, ShardCounts[]>> {
    const queues = [...this.lanes].map(([name, lanes]): [string, Queue[]] => [
      name,
      lanes.map((l) => l.queue),
    ]);
    return readShardCounts(this.redis, queues);
  }

  /**
   * A read-only handle on another queue under the same prefix (the fleet's maintenance queue, for the
   * board), on the producer's connection; created once, closed with the submitter.
   */
  otherQueue(name: string): Queue {
    let q = this.others.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.conn, prefix: queuePrefix(this.prefix, name) });
      this.connLog.watch(q, `queue:${name}`);
      this.others.set(name, q);
    }
    return q;
  }

  /**
   * Stops waiting callers (they get `pending`), closes queues and connections. Idempotent, and bounded:
   * with Redis unreachable BullMQ's own close can wait forever for a reconnect, so after `graceMs` the
   * connections are cut instead.
   */
  close(graceMs = 1500): Promise<void> {
    this.closing ??= (async () => {
      for (const lane of this.allLanes()) {
        for (const group of lane.waiters.values()) for (const w of group.all) w.push(undefined);
      }
      clearInterval(this.recheckTimer);
      const lanes = this.created.splice(0);
      this.lanes.clear();
      if (lanes.length > 0) {
        // Submissions still gathering are sent (their callers were told "pending" above, with their ids).
        await settledWithin(Promise.allSettled(lanes.map((l) => l.adder.close())), graceMs);
        await settledWithin(Promise.allSettled(lanes.map((l) => l.queue.close())), graceMs);
      }
      const others = [...this.others.values()];
      this.others.clear();
      if (others.length > 0) await settledWithin(Promise.allSettled(others.map((q) => q.close())), graceMs);
      // Cutting the inbox connections ends their blocking reads (a QUIT would queue behind them).
      const inboxes = lanes.map((l) => l.inbox.close());
      for (const l of lanes) l.inboxConn.disconnect(false);
      await settledWithin(Promise.allSettled(inboxes), graceMs);
      await this.redis.close();
      await closeRedis(this.conn);
      // init() may still be waiting for Redis; it sees `closing` and stops.
      await settledWithin(this.initializing?.catch(() => undefined) ?? Promise.resolve(), 100);
    })();
    return this.closing;
  }
}
