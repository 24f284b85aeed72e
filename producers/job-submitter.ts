import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Job, Queue } from 'bullmq';
import { type ChainableCommander, type Redis } from 'ioredis';
import { AsyncBatchProcessor } from '../shared/batch/index.js';
import {
  Cell0Error,
  ErrorCode,
  RedisEvictionPolicyError,
  RedisUnavailableError,
  ClosedError,
} from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { type Cell0Metrics } from '../shared/metrics/metrics.js';
import { closeRedis, createRedisConnection, waitUntilReady } from '../shared/redis/connection.js';
import { RedisClient, toRedisError } from '../shared/redis/redis-client.js';
import { connectionLogFor, type RedisConnectionLog } from '../shared/redis/connection-log.js';
import { assertNoEviction } from '../shared/redis/redis-memory.js';
import { decodeFailure } from '../shared/queues/failure.js';
import { isJobId, jobIdFor } from '../shared/queues/job-id.js';
import { defineJobOutcome, readJobOutcome, type JobOutcome } from '../shared/queues/job-outcome.js';
import {
  decodeOutcome,
  defineReplyScripts,
  inboxKey,
  queueRegisterWaiter,
  registerWaiter,
  type JobReply,
} from '../shared/queues/job-replies.js';
import { DEFAULT_JOB_POLICY, jobOptionsFor, type JobPolicy } from '../shared/queues/job-policy.js';
import { QUEUE_NAMES, type QueueName } from '../shared/queues/names.js';
import { ReplyInbox } from './reply-inbox.js';
import { type BackendUnavailable } from '../shared/fleet/backend-health.js';
import { withDefaults } from '../shared/with-defaults.js';
import { settledWithin, sleep } from '../shared/sleep.js';

/** Options of {@link JobSubmitter}. */
export interface JobSubmitterOptions {
  /** redis:// or rediss:// URL. */
  redisUrl: string;
  /** Queue key prefix; a {hash tag}. Default "{cell0}". */
  prefix?: string;
  /** Retries and retention of the jobs this producer adds. */
  policy?: Partial<JobPolicy>;
  /**
   * Producer-side command timeout, ms: a slower command fails with RedisTimeoutError (not counted against
   * the breaker). Default 2000.
   */
  commandTimeoutMs?: number;
  /** Consecutive Redis failures that open the breaker. Default 5. */
  breakerThreshold?: number;
  /** Breaker open time before a trial call, ms. Default 5000. */
  breakerResetMs?: number;
  /** Queues this producer adds to. Default: all. */
  queues?: readonly QueueName[];
  /**
   * Largest number of submissions sent to Redis in one round trip. Submissions that arrive while a round
   * trip is under way are gathered and sent together in the next one. Default 256.
   */
  maxBatchSize?: number;
  /**
   * A waiter that has had no reply for this long re-reads its job's outcome (then again after twice as long,
   * up to 30 s), so a reply lost with a worker that died just after finishing the job is not waited out.
   * Default 2000 ms.
   */
  recheckAfterMs?: number;
  logger?: Logger;
}

/** How a submission ended, from the caller's point of view. */
export type SubmitResult<T = unknown> =
  | {
      state: 'completed';
      queue: QueueName;
      jobId: string;
      result: T;
      finishedOn: number;
      /** Set when a cache answered (no job ran for this request): how it matched, and how closely. */
      cached?: 'exact' | 'semantic';
      similarity?: number;
      /** The semantic-cache entry that answered (for reporting a wrong answer). */
      cacheEntry?: string;
      /** On a semantic hit: the stored prompt whose answer this is (a wrong pair is a labelled negative). */
      cachedPrompt?: string;
      /**
       * True when this caller shared a job another request had added (queued, running, or finished within
       * the result TTL); false when its own add ran the job.
       */
      joined?: boolean;
    }
  | { state: 'failed'; queue: QueueName; jobId: string; code: string | undefined; message: string }
  /**
   * Not finished within the wait; `jobState` is BullMQ's state (waiting, active, delayed, …) or "unknown".
   * `backendUnavailable`: answered without waiting because the job's backend is down fleet-wide.
   */
  | {
      state: 'pending';
      queue: QueueName;
      jobId: string;
      jobState: string;
      backendUnavailable?: BackendUnavailable;
    };

/** A job as GET /v1/jobs shows it. */
export interface JobView {
  queue: QueueName;
  jobId: string;
  name: string;
  /** waiting | active | delayed | prioritized | completed | failed | … */
  state: string;
  result?: unknown;
  error?: { code: string | undefined; message: string };
  attemptsMade: number;
  createdAt: number;
  processedAt?: number;
  finishedAt?: number;
}

type JobEvent =
  | { kind: 'completed'; returnvalue: unknown; finishedOn: number }
  | { kind: 'failed'; failedReason: string }
  /** Sent to local followers when the caller they joined could not add the job. */
  | { kind: 'leader-gone' };

/**
 * One caller waiting for one job. `next(deadline, signal)` gives the job's next event, or undefined once
 * the deadline passes, the signal aborts or the submitter closes. A class, not closures: one is made per
 * request.
 */
class JobWaiter {
  private readonly queued: (JobEvent | undefined)[] = [];
  private wake: (() => void) | undefined;
  released = false;
  isLeader = false;

  constructor(
    private readonly registry: Map<string, WaiterGroup>,
    private readonly jobId: string,
  ) {}

  push(e: JobEvent | undefined): void {
    if (this.released) return;
    this.queued.push(e);
    this.wake?.();
  }

  async next(deadline: number, signal: AbortSignal | undefined): Promise<JobEvent | undefined> {
    if (this.queued.length === 0) {
      const remaining = deadline - Date.now();
      if (remaining <= 0 || signal?.aborted) return undefined;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => this.wake?.();
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        timer = setTimeout(resolve, remaining);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      this.wake = undefined;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    return this.queued.shift();
  }

  release(): void {
    this.released = true;
    const group = this.registry.get(this.jobId);
    if (!group) return;
    group.all.delete(this);
    if (group.leader === this) group.leader = undefined;
    if (group.all.size === 0) this.registry.delete(this.jobId);
  }
}

/** The local waiters of one job id. */
interface WaiterGroup {
  all: Set<JobWaiter>;
  /** The local caller that added (or is adding) the job; others in `all` follow it. */
  leader: JobWaiter | undefined;
  /** A completed/failed event reached the group: a newcomer must not join, but look for itself. */
  finished: boolean;
  /** When the group's job outcome is re-read if no reply came by then (see recheckAfterMs), and the step. */
  recheckAt: number;
  recheckStep: number;
}

/** One submission on its way to Redis: registered as waiter and added in one round trip. */
interface AddItem {
  name: string;
  data: unknown;
  jobId: string;
  /** false: only register (and read the outcome), no add. */
  add: boolean;
}

interface Lane {
  queue: Queue;
  /** This producer's reply inbox for the queue, read on a connection of its own. */
  inbox: ReplyInbox;
  inboxConn: Redis;
  /** Local callers waiting for a job, by job id. Replies to this producer's inbox feed them all. */
  waiters: Map<string, WaiterGroup>;
  key: string;
  /** Gathers concurrent registrations and adds into one pipeline per round trip. */
  adder: AsyncBatchProcessor<AddItem, JobOutcome>;
}

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
  /** This producer's id in waiter sets; its reply inbox per queue is named after it. */
  readonly producerId = randomBytes(8).toString('hex');
  private readonly conn: Redis;
  private readonly opts: JobSubmitterOptions;
  private readonly log: Logger;
  private readonly connLog: RedisConnectionLog;
  private readonly lanes = new Map<QueueName, Lane>();
  private readonly others = new Map<string, Queue>();
  /** Every lane created, ready or not, so close() reaches the half-built ones too. */
  private readonly created: Lane[] = [];
  private readonly queueNames: readonly QueueName[];
  private readonly maxBatchSize: number;
  private readonly recheckAfterMs: number;
  private recheckTimer: NodeJS.Timeout | undefined;
  private initializing: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private isInitialized = false;
  /** Counts adds and coalesced requests (jobs added, joined, answered from a stored result, re-run). */
  metrics: Pick<Cell0Metrics, 'jobAdded' | 'jobCoalesced'> | undefined;

  constructor(opts: JobSubmitterOptions) {
    super();
    if (!opts.redisUrl) throw new TypeError('JobSubmitter: option "redisUrl" is required');
    this.opts = opts;
    this.prefix = opts.prefix ?? '{cell0}';
    this.policy = withDefaults(DEFAULT_JOB_POLICY, opts.policy);
    for (const [k, v] of Object.entries(this.policy)) {
      if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0))
        throw new TypeError(`JobSubmitter: option "policy.${k}" must be a number >= 0, got ${String(v)}`);
    }
    this.maxBatchSize = opts.maxBatchSize ?? 256;
    if (!(Number.isInteger(this.maxBatchSize) && this.maxBatchSize >= 1))
      throw new TypeError(`JobSubmitter: option "maxBatchSize" must be an integer >= 1`);
    this.recheckAfterMs = opts.recheckAfterMs ?? 2000;
    if (!(this.recheckAfterMs > 0)) throw new TypeError(`JobSubmitter: option "recheckAfterMs" must be > 0`);
    this.queueNames = opts.queues ?? QUEUE_NAMES;
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
          if (!this.lanes.has(name)) this.lanes.set(name, await this.openLane(name));
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

  private async openLane(name: QueueName): Promise<Lane> {
    const key = `${this.prefix}:${name}`;
    const queue = new Queue(name, {
      connection: this.conn,
      prefix: this.prefix,
      defaultJobOptions: jobOptionsFor(this.policy),
    });
    this.connLog.watch(queue, `queue:${name}`);
    const inboxConn = createRedisConnection({
      url: this.opts.redisUrl,
      role: 'events',
      connectionName: `cell0:replies:${name}`,
      logger: this.log,
    });
    const waiters = new Map<string, WaiterGroup>();
    const inbox = new ReplyInbox({
      connection: inboxConn,
      key: inboxKey(key, this.producerId),
      onReply: (r) => this.onReply(lane, r),
      logger: this.log,
    });
    const lane: Lane = {
      queue,
      inbox,
      inboxConn,
      waiters,
      key,
      adder: new AsyncBatchProcessor<AddItem, JobOutcome>({
        handler: (items) => this.sendBatch(lane, items),
        maxBatchSize: this.maxBatchSize,
        // Gathered within the current tick; under load, while a round trip is in flight, batches grow.
        maxWaitMs: 0,
        maxConcurrentBatches: 2,
        maxQueuedItems: 1_000_000,
      }),
    };
    this.created.push(lane);
    try {
      await Promise.all([queue.waitUntilReady(), waitUntilReady(inboxConn, 3000)]);
      inbox.start();
      return lane;
    } catch (err) {
      this.created.splice(this.created.indexOf(lane), 1);
      await settledWithin(Promise.allSettled([queue.close(), lane.adder.close()]), 500);
      await closeRedis(inboxConn);
      throw err;
    }
  }

  /**
   * One round trip for a batch of submissions: per item, the waiter registration with the outcome read, then
   * (for adds) BullMQ's add, all on one pipeline. Each item gets the outcome its job had just before its add,
   * or its own error.
   */
  private sendBatch(lane: Lane, items: AddItem[]): Promise<(JobOutcome | Error)[]> {
    return this.redis.run(async () => {
      // BullMQ's own client wrapper: its pipelines take BullMQ's add, and ours (defined on the same
      // connection) too.
      const client = await lane.queue.getBackend().client;
      const pipe = client.pipeline();
      const jobOpts = lane.queue.defaultJobOptions;
      for (const it of items) {
        queueRegisterWaiter(pipe as unknown as ChainableCommander, lane.key, it.jobId, this.producerId);
        if (it.add) {
          const job = new Job(lane.queue, it.name, it.data, { ...jobOpts, jobId: it.jobId }, it.jobId);
          // Queued on the pipeline synchronously; its answer is read from exec() below.
          job.addJob(pipe).catch(() => undefined);
        }
      }
      const res = (await pipe.exec()) ?? [];
      const out: (JobOutcome | Error)[] = [];
      let n = 0;
      for (const it of items) {
        const [regErr, reg] = res[n++] ?? [new RedisUnavailableError('no answer from Redis')];
        const [addErr] = it.add ? (res[n++] ?? [new RedisUnavailableError('no answer from Redis')]) : [null];
        const err = regErr ?? addErr;
        if (err) {
          // Redis away, full or slow is the whole round trip's failure, for the breaker to see: thrown as it
          // came, so that run() classifies it knowing the connection's state (a command timeout on a
          // connection that is up is slow, not down).
          if (toRedisError(err) instanceof Cell0Error) throw err;
          out.push(err);
        } else out.push(decodeOutcome(reg));
      }
      return out;
    });
  }

  /** A reply from a worker: the job finished; every local waiter of it gets the outcome. */
  private onReply(lane: Lane, r: JobReply): void {
    if (r.status === 'completed')
      this.dispatch(lane, r.jobId, {
        kind: 'completed',
        returnvalue: r.returnvalue,
        finishedOn: r.finishedOn,
      });
    else this.dispatch(lane, r.jobId, { kind: 'failed', failedReason: r.failedReason });
  }

  private dispatch(lane: Lane, jobId: string, e: JobEvent): void {
    const group = lane.waiters.get(jobId);
    if (!group) return;
    if (e.kind === 'completed' || e.kind === 'failed') group.finished = true;
    for (const w of group.all) w.push(e);
  }

  /**
   * Re-reads the outcome of every job whose waiters have heard nothing for a while (one pipeline per lane):
   * the safety net under the replies. Each group is re-read after recheckAfterMs, then after twice as long,
   * up to 30 s apart.
   */
  private recheck(): void {
    const now = Date.now();
    for (const lane of this.lanes.values()) {
      const due: string[] = [];
      for (const [jobId, g] of lane.waiters) {
        if (g.finished || g.recheckAt > now) continue;
        g.recheckStep = Math.min(g.recheckStep * 2, 30_000);
        g.recheckAt = now + g.recheckStep;
        due.push(jobId);
      }
      if (due.length === 0) continue;
      void this.redis
        .run(async (r) => {
          const pipe = r.pipeline();
          for (const id of due)
            (pipe as unknown as { cell0JobOutcome: (...a: unknown[]) => void }).cell0JobOutcome(
              `${lane.key}:completed`,
              `${lane.key}:failed`,
              `${lane.key}:${id}`,
              id,
            );
          return (await pipe.exec()) ?? [];
        })
        .then((res) => {
          due.forEach((id, i) => {
            const [err, raw] = res[i] ?? [null, undefined];
            if (err || raw === undefined) return;
            const o = decodeOutcome(raw);
            if (o.status === 'completed')
              this.dispatch(lane, id, {
                kind: 'completed',
                returnvalue: o.returnvalue,
                finishedOn: o.finishedOn,
              });
            else if (o.status === 'failed')
              this.dispatch(lane, id, { kind: 'failed', failedReason: o.failedReason });
          });
        })
        .catch((err: unknown) => this.log.debug({ err }, 'could not re-read waited-for jobs'));
    }
  }

  private lane(queue: QueueName): Lane {
    if (this.closing) throw new ClosedError('JobSubmitter');
    const lane = this.lanes.get(queue);
    if (!lane) {
      if (!this.queueNames.includes(queue))
        throw new TypeError(`JobSubmitter: queue "${queue}" is not enabled`);
      throw new RedisUnavailableError('not connected to Redis yet');
    }
    return lane;
  }

  /** The BullMQ queue object (for dashboards and tests). */
  getQueue(queue: QueueName): Queue {
    return this.lane(queue).queue;
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
    opts: {
      waitMs: number;
      signal?: AbortSignal;
      /**
       * Oldest completed result this caller accepts, ms (default: the result TTL). 0 = none from before
       * this request: an identical job that already finished is run again (one running is joined).
       */
      maxAgeMs?: number;
      /**
       * Called once it is known whether this caller joined an identical job (queued, running or finished
       * within the result TTL: true) or ran one (false), right after its add (or as it follows a local one).
       */
      onJoined?: (joined: boolean) => void;
    },
  ): Promise<SubmitResult<T>> {
    const lane = this.lane(queue);
    const jobId = jobIdFor(queue, data);
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
    const waiter = this.register(lane, jobId, leader);
    try {
      if (leader) {
        const before = await this.addAsLeader(lane, name, data, jobId);
        if (this.metrics) this.countAdd(queue, before, started, opts.maxAgeMs);
        const r = await this.apply<T>(lane, queue, jobId, before, started, opts.maxAgeMs);
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
          this.promote(lane, jobId, waiter);
          const before = await this.addAsLeader(lane, name, data, jobId);
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
   * Registers this producer as the job's waiter and adds the job (one pipelined round trip, shared with
   * concurrent submissions); resolves with the job's outcome just before the add. If that fails, the
   * callers who joined this one are told to try themselves.
   */
  private async addAsLeader(lane: Lane, name: string, data: unknown, jobId: string): Promise<JobOutcome> {
    try {
      return await lane.adder.add({ name, data, jobId, add: true });
    } catch (err) {
      const group = lane.waiters.get(jobId);
      if (group) {
        group.leader = undefined;
        for (const w of group.all) if (!w.isLeader) w.push({ kind: 'leader-gone' });
      }
      throw err;
    }
  }

  /**
   * The retention rule for the job's outcome as a caller found it. Returns the caller's answer when there
   * is one now (a result within its TTL, or a failure that happened while the caller waited); otherwise
   * re-runs (or, with `readd`, re-adds a vanished job) as the rule says and returns undefined: keep waiting.
   */
  private async apply<T>(
    lane: Lane,
    queue: QueueName,
    jobId: string,
    outcome: JobOutcome,
    started: number,
    maxAgeMs?: number,
    readd?: { name: string; data: unknown },
  ): Promise<SubmitResult<T> | undefined> {
    const maxAge = Math.min(maxAgeMs ?? Infinity, this.policy.resultTtlSeconds * 1000);
    switch (outcome.status) {
      case 'completed':
        // A result that landed while this caller waited is always its answer.
        if (outcome.finishedOn >= started || started - outcome.finishedOn <= maxAge) {
          this.dispatch(lane, jobId, {
            kind: 'completed',
            returnvalue: outcome.returnvalue,
            finishedOn: outcome.finishedOn,
          });
          return finishedResult<T>(queue, jobId, outcome);
        }
        await this.rerun(lane, jobId, 'completed');
        return undefined;
      case 'failed':
        // A failure from before this request is never served to it; one that happened while it waited is.
        if (outcome.finishedOn >= started) {
          this.dispatch(lane, jobId, { kind: 'failed', failedReason: outcome.failedReason });
          return finishedResult<T>(queue, jobId, outcome);
        }
        await this.rerun(lane, jobId, 'failed');
        return undefined;
      case 'missing':
        // Gone since it was added (removed, trimmed): add it again, registered as before.
        if (readd) await lane.adder.add({ ...readd, jobId, add: true });
        return undefined;
      default:
        return undefined;
    }
  }

  /** What an add met, for the metrics: nothing (added), a job under way (joined), or a finished one. */
  private countAdd(queue: QueueName, before: JobOutcome, started: number, maxAgeMs?: number): void {
    const m = this.metrics!;
    if (before.status === 'missing') return m.jobAdded(queue);
    if (before.status === 'pending') return m.jobCoalesced(queue, 'joined');
    // The same rule as apply(): a result within its age is served; anything else finished is re-run.
    const maxAge = Math.min(maxAgeMs ?? Infinity, this.policy.resultTtlSeconds * 1000);
    const served =
      before.finishedOn >= started ||
      (before.status === 'completed' && started - before.finishedOn <= maxAge);
    m.jobCoalesced(queue, served ? 'stored_result' : 'rerun');
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
    const lane = this.lane(queue);
    // An id from outside names a Redis key: anything that is not a job id of this queue is no job.
    if (!isJobId(queue, jobId)) return { state: 'missing', queue, jobId };
    const started = Date.now();
    const waiter = this.register(lane, jobId);
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

  /** Registers a local waiter for the job's replies (before anything is added or read). */
  private register(lane: Lane, jobId: string, leader = false): JobWaiter {
    const w = new JobWaiter(lane.waiters, jobId);
    let group = lane.waiters.get(jobId);
    if (!group)
      lane.waiters.set(
        jobId,
        (group = {
          all: new Set(),
          leader: undefined,
          finished: false,
          recheckAt: Date.now() + this.recheckAfterMs,
          recheckStep: this.recheckAfterMs,
        }),
      );
    group.all.add(w);
    if (leader) this.promote(lane, jobId, w);
    return w;
  }

  /** Makes `w` the caller that adds the job for this process. */
  private promote(lane: Lane, jobId: string, w: JobWaiter): void {
    const group = lane.waiters.get(jobId);
    if (!group) return;
    w.isLeader = true;
    group.leader = w;
    group.finished = false;
  }

  /** Retries a finished job in place. Losing the race to another producer that retried it first is fine. */
  private async rerun(lane: Lane, jobId: string, from: 'completed' | 'failed'): Promise<void> {
    const job = await this.redis.run(() => Job.fromId(lane.queue, jobId));
    if (!job) return;
    try {
      await this.redis.run(() => job.retry(from, { resetAttemptsMade: true, resetAttemptsStarted: true }));
      this.log.debug({ queue: lane.queue.name, jobId, from }, 're-running finished job');
    } catch (err) {
      if (err instanceof RedisUnavailableError || (err as { code?: string }).code === ErrorCode.BREAKER_OPEN)
        throw err;
      // Another producer re-ran it first (the job is no longer in the `from` set): join that run.
    }
  }

  /**
   * After the wait: one last look, in case the result landed just as the timer fired. With `reconcile`
   * (submit), a job that existed before the request is judged by the retention rule first — this is
   * what a `wait: 0` request relies on.
   */
  private async finalCheck<T>(
    lane: Lane,
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
    const lane = this.lane(queue);
    if (!isJobId(queue, jobId)) return undefined;
    const read = await this.redis.run(() => Job.fromId(lane.queue, jobId));
    if (!read) return undefined;
    if (opts.owner !== undefined && !ownedBy(read.data, opts.owner)) return undefined;
    const state = await this.redis.run(() => read.getState());
    // It finished between the two reads: read it again, or a completed job would show no result.
    const job =
      (state === 'completed' || state === 'failed') && !read.finishedOn
        ? ((await this.redis.run(() => Job.fromId(lane.queue, jobId))) ?? read)
        : read;
    const view: JobView = {
      queue,
      jobId,
      name: job.name,
      state,
      attemptsMade: job.attemptsMade,
      createdAt: job.timestamp,
    };
    if (job.processedOn) view.processedAt = job.processedOn;
    if (job.finishedOn) view.finishedAt = job.finishedOn;
    if (state === 'completed') view.result = job.returnvalue;
    if (state === 'failed' || (job.failedReason && state !== 'completed'))
      view.error = decodeFailure(job.failedReason);
    return view;
  }

  /** Counts of jobs per state, per queue. */
  async getCounts(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, lane] of this.lanes) {
      out[name] = await this.redis.run(() =>
        lane.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed'),
      );
    }
    return out;
  }

  /**
   * A read-only handle on another queue under the same prefix (the fleet's maintenance queue, for the
   * board), on the producer's connection; created once, closed with the submitter.
   */
  otherQueue(name: string): Queue {
    let q = this.others.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.conn, prefix: this.prefix });
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
      for (const lane of this.lanes.values()) {
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

/** True when job data was submitted by tenant `owner`: its namespace is the tenant id, or starts with it. */
function ownedBy(data: unknown, owner: string): boolean {
  const ns = (data as { cache?: { namespace?: unknown } } | null | undefined)?.cache?.namespace;
  return (
    typeof ns === 'string' &&
    owner.length > 0 &&
    (ns === owner || (ns.length > owner.length && ns.startsWith(owner) && ns[owner.length] === ':'))
  );
}

/** The caller's answer for a completed/failed event; undefined for other events. */
function eventResult<T>(queue: QueueName, jobId: string, e: JobEvent): SubmitResult<T> | undefined {
  if (e.kind === 'completed')
    return {
      state: 'completed',
      queue,
      jobId,
      result: e.returnvalue as T,
      finishedOn: e.finishedOn || Date.now(),
    };
  if (e.kind === 'failed') return { state: 'failed', queue, jobId, ...decodeFailure(e.failedReason) };
  return undefined;
}

/** The caller's view of a finished job's outcome; undefined while it is not finished. */
function finishedResult<T>(
  queue: QueueName,
  jobId: string,
  outcome: JobOutcome,
): SubmitResult<T> | undefined {
  if (outcome.status === 'completed')
    return {
      state: 'completed',
      queue,
      jobId,
      result: outcome.returnvalue as T,
      finishedOn: outcome.finishedOn,
    };
  if (outcome.status === 'failed')
    return { state: 'failed', queue, jobId, ...decodeFailure(outcome.failedReason) };
  return undefined;
}
