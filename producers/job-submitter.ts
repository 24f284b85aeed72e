import { EventEmitter } from 'node:events';
import { Job, Queue, QueueEvents } from 'bullmq';
import { type Redis } from 'ioredis';
import { RedisUnavailableError, ClosedError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { closeRedis, createRedisConnection, waitUntilReady } from '../shared/redis/connection.js';
import { RedisClient } from '../shared/redis/redis-client.js';
import { decodeFailure } from '../shared/queues/failure.js';
import { jobIdFor } from '../shared/queues/job-id.js';
import { defineJobOutcome, readJobOutcome, type JobOutcome } from '../shared/queues/job-outcome.js';
import { DEFAULT_JOB_POLICY, jobOptionsFor, type JobPolicy } from '../shared/queues/job-policy.js';
import { QUEUE_NAMES, type QueueName } from '../shared/queues/names.js';

/** Options of {@link JobSubmitter}. */
export interface JobSubmitterOptions {
  /** redis:// or rediss:// URL. */
  redisUrl: string;
  /** Queue key prefix; a {hash tag}. Default "{cell0}". */
  prefix?: string;
  /** Retries and retention of the jobs this producer adds. */
  policy?: Partial<JobPolicy>;
  /** Producer-side command timeout, ms. Default 500. */
  commandTimeoutMs?: number;
  /** Consecutive Redis failures that open the breaker. Default 5. */
  breakerThreshold?: number;
  /** Breaker open time before a trial call, ms. Default 5000. */
  breakerResetMs?: number;
  /** Queues this producer adds to. Default: all. */
  queues?: readonly QueueName[];
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
    }
  | { state: 'failed'; queue: QueueName; jobId: string; code: string | undefined; message: string }
  /** Not finished within the wait; `jobState` is BullMQ's state (waiting, active, delayed, …) or "unknown". */
  | { state: 'pending'; queue: QueueName; jobId: string; jobState: string };

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
  | { kind: 'completed'; returnvalue: unknown }
  | { kind: 'failed'; failedReason: string }
  | { kind: 'duplicated' }
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

/**
 * The local waiters of one job id. A `duplicated` event goes only to waiters that have not seen one yet
 * (each needs one look at the existing job), so a stampede of n identical requests costs O(n), not O(n²).
 */
interface WaiterGroup {
  all: Set<JobWaiter>;
  /** Leaders that have not seen a `duplicated` event yet. */
  awaitingDuplicate: JobWaiter[];
  /** The local caller that added (or is adding) the job; others in `all` follow it. */
  leader: JobWaiter | undefined;
  /** A completed/failed event reached the group: a newcomer must not join, but look for itself. */
  finished: boolean;
}

interface Lane {
  queue: Queue;
  events: QueueEvents;
  eventsConn: Redis;
  /** Local callers waiting for a job, by job id. One QueueEvents stream per queue feeds them all. */
  waiters: Map<string, WaiterGroup>;
  key: string;
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
 * How: every caller registers its waiter, then adds the job. BullMQ ignores an add whose id exists, but
 * writes a `duplicated` event; only a caller that sees one for its id reads the existing job's state (one
 * Lua script) and applies the rule above, so a new request costs a single Redis command. Within this
 * process, identical requests are single-flight: later callers follow the one that added the job. The
 * queue's event stream is read from a position taken before any waiter exists, so no event can slip past
 * a waiter.
 * When the wait ends the job's state is read once more under the same rule (this also covers a `wait: 0`
 * request and a `duplicated` event lost to stream trimming). A wait that runs out is not an error: the
 * caller gets `pending` with the job id to poll.
 */
export class JobSubmitter extends EventEmitter<{ ready: []; error: [Error] }> {
  /** The producer's Redis client; its breaker guards every Redis call the submitter makes. */
  readonly redis: RedisClient;
  readonly policy: JobPolicy;
  readonly prefix: string;
  private readonly conn: Redis;
  private readonly opts: JobSubmitterOptions;
  private readonly log: Logger;
  private readonly lanes = new Map<QueueName, Lane>();
  private readonly others = new Map<string, Queue>();
  /** Every lane created, ready or not, so close() reaches the half-built ones too. */
  private readonly created: Lane[] = [];
  private readonly queueNames: readonly QueueName[];
  private initializing: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private isInitialized = false;

  constructor(opts: JobSubmitterOptions) {
    super();
    if (!opts.redisUrl) throw new TypeError('JobSubmitter: option "redisUrl" is required');
    this.opts = opts;
    this.prefix = opts.prefix ?? '{cell0}';
    this.policy = { ...DEFAULT_JOB_POLICY, ...stripUndefined(opts.policy ?? {}) };
    for (const [k, v] of Object.entries(this.policy)) {
      if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0))
        throw new TypeError(`JobSubmitter: option "policy.${k}" must be a number >= 0, got ${String(v)}`);
    }
    this.queueNames = opts.queues ?? QUEUE_NAMES;
    this.log = opts.logger ?? silentLogger();
    this.conn = createRedisConnection({
      url: opts.redisUrl,
      role: 'producer',
      commandTimeoutMs: opts.commandTimeoutMs ?? 500,
      connectionName: 'cell0:producer',
    });
    defineJobOutcome(this.conn);
    this.redis = new RedisClient({
      connection: this.conn,
      commandTimeoutMs: opts.commandTimeoutMs ?? 500,
      breakerThreshold: opts.breakerThreshold ?? 5,
      breakerResetMs: opts.breakerResetMs ?? 5000,
      name: 'redis',
    });
  }

  /**
   * Connects. Resolves once the queues are ready; until then submit() throws RedisUnavailableError. If
   * Redis is down it keeps trying in the background (the returned promise resolves when it succeeds), so
   * a process started before Redis still comes up.
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
        for (const name of this.queueNames) {
          if (!this.lanes.has(name)) this.lanes.set(name, await this.openLane(name));
        }
        break;
      } catch (err) {
        if (this.closing) throw new ClosedError('JobSubmitter');
        if (attempt % 5 === 0) this.log.warn({ attempt, err: (err as Error).message }, 'waiting for Redis');
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    this.isInitialized = true;
    this.emit('ready');
  }

  private async openLane(name: QueueName): Promise<Lane> {
    const key = `${this.prefix}:${name}`;
    // Start reading the event stream at its current end, before any waiter exists (see class comment).
    const last = await this.conn.xrevrange(`${key}:events`, '+', '-', 'COUNT', 1);
    const lastEventId = last[0]?.[0] ?? '0-0';
    const queue = new Queue(name, {
      connection: this.conn,
      prefix: this.prefix,
      defaultJobOptions: jobOptionsFor(this.policy),
    });
    queue.on('error', (err) => this.log.debug({ err, queue: name }, 'queue connection error'));
    const eventsConn = createRedisConnection({
      url: this.opts.redisUrl,
      role: 'events',
      connectionName: `cell0:events:${name}`,
    });
    const events = new QueueEvents(name, { connection: eventsConn, prefix: this.prefix, lastEventId });
    events.on('error', (err) => this.log.debug({ err, queue: name }, 'queue events connection error'));
    const lane: Lane = { queue, events, eventsConn, waiters: new Map(), key };
    this.created.push(lane);
    events.on('completed', ({ jobId, returnvalue }) =>
      this.dispatch(lane, jobId, { kind: 'completed', returnvalue }),
    );
    events.on('failed', ({ jobId, failedReason }) =>
      this.dispatch(lane, jobId, { kind: 'failed', failedReason }),
    );
    events.on('duplicated', ({ jobId }) => this.dispatch(lane, jobId, { kind: 'duplicated' }));
    try {
      await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
      return lane;
    } catch (err) {
      this.created.splice(this.created.indexOf(lane), 1);
      await withTimeout(Promise.allSettled([events.close(), queue.close()]), 500);
      await closeRedis(eventsConn);
      throw err;
    }
  }

  private dispatch(lane: Lane, jobId: string, e: JobEvent): void {
    const group = lane.waiters.get(jobId);
    if (!group) return;
    if (e.kind === 'duplicated') {
      const list = group.awaitingDuplicate;
      group.awaitingDuplicate = [];
      for (const w of list) w.push(e);
    } else {
      if (e.kind === 'completed' || e.kind === 'failed') group.finished = true;
      for (const w of group.all) w.push(e);
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
   * The common case, a new request, costs one Redis command (the add). Only when BullMQ reports the add
   * as a duplicate (its `duplicated` event) is the existing job's state read and the retention rule applied.
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
    },
  ): Promise<SubmitResult<T>> {
    const lane = this.lane(queue);
    const jobId = jobIdFor(queue, data);
    const started = Date.now();
    // Single flight within this process: while another local caller is adding (or has added) this job and
    // it has not finished, join that caller instead of sending another add. A stampede of identical
    // requests then costs one add per producer process, not one per request.
    const existing = lane.waiters.get(jobId);
    let leader = !(existing?.leader && !existing.finished);
    const waiter = this.register(lane, jobId, leader);
    try {
      if (leader) await this.addAsLeader(lane, name, data, jobId);
      let reconciled = false;
      for (;;) {
        const e = await waiter.next(started + opts.waitMs, opts.signal);
        if (e === undefined) break;
        const done = eventResult<T>(queue, jobId, e);
        if (done) return done;
        if (e.kind === 'leader-gone') {
          // The local caller this one joined could not add the job: add it ourselves.
          if (!leader) {
            leader = true;
            this.promote(lane, jobId, waiter);
            await this.addAsLeader(lane, name, data, jobId);
          }
          continue;
        }
        // 'duplicated': an add of this id met an existing job (ours, or another caller's). Once per leader,
        // look at that job and apply the retention rule; the answer, if any, goes to every local waiter.
        if (!reconciled) {
          reconciled = true;
          const r = await this.reconcile<T>(lane, queue, name, data, jobId, started, opts.maxAgeMs);
          if (r) return r;
        }
      }
      return await this.finalCheck<T>(lane, queue, jobId, () =>
        this.reconcile<T>(lane, queue, name, data, jobId, started, opts.maxAgeMs),
      );
    } finally {
      waiter.release();
    }
  }

  /** Adds the job; if that fails, the callers who joined this one are told to try themselves. */
  private async addAsLeader(lane: Lane, name: string, data: unknown, jobId: string): Promise<void> {
    try {
      await this.redis.run(() => lane.queue.add(name, data, { jobId }));
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
   * The retention rule for a job that already existed when this caller added it. Returns the caller's
   * answer when there is one now (a result within its TTL, or a failure that happened while the caller
   * waited); otherwise re-runs or re-adds the job as the rule says and returns undefined (keep waiting).
   */
  private async reconcile<T>(
    lane: Lane,
    queue: QueueName,
    name: string,
    data: unknown,
    jobId: string,
    started: number,
    maxAgeMs?: number,
  ): Promise<SubmitResult<T> | undefined> {
    const outcome = await this.redis.run((r) => readJobOutcome(r, lane.key, jobId));
    const maxAge = Math.min(maxAgeMs ?? Infinity, this.policy.resultTtlSeconds * 1000);
    switch (outcome.status) {
      case 'completed':
        // A result that landed while this caller waited is always its answer.
        if (outcome.finishedOn >= started || started - outcome.finishedOn <= maxAge) {
          this.dispatch(lane, jobId, { kind: 'completed', returnvalue: outcome.returnvalue });
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
        await this.redis.run(() => lane.queue.add(name, data, { jobId }));
        return undefined;
      default:
        return undefined;
    }
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
    const started = Date.now();
    const waiter = this.register(lane, jobId);
    try {
      const outcome = await this.redis.run((r) => readJobOutcome(r, lane.key, jobId));
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

  /** Registers a local waiter for the job's events (before anything is added or read: see class comment). */
  private register(lane: Lane, jobId: string, leader = false): JobWaiter {
    const w = new JobWaiter(lane.waiters, jobId);
    let group = lane.waiters.get(jobId);
    if (!group)
      lane.waiters.set(
        jobId,
        (group = { all: new Set(), awaitingDuplicate: [], leader: undefined, finished: false }),
      );
    group.all.add(w);
    if (leader) this.promote(lane, jobId, w);
    return w;
  }

  /** Makes `w` the caller that adds the job for this process; only leaders act on `duplicated` events. */
  private promote(lane: Lane, jobId: string, w: JobWaiter): void {
    const group = lane.waiters.get(jobId);
    if (!group) return;
    w.isLeader = true;
    group.leader = w;
    group.finished = false;
    group.awaitingDuplicate.push(w);
  }

  /** Retries a finished job in place. Losing the race to another producer that retried it first is fine. */
  private async rerun(lane: Lane, jobId: string, from: 'completed' | 'failed'): Promise<void> {
    const job = await this.redis.run(() => Job.fromId(lane.queue, jobId));
    if (!job) return;
    try {
      await this.redis.run(() => job.retry(from, { resetAttemptsMade: true, resetAttemptsStarted: true }));
      this.log.debug({ queue: lane.queue.name, jobId, from }, 're-running finished job');
    } catch (err) {
      if (err instanceof RedisUnavailableError || (err as { code?: string }).code === 'CELL0_BREAKER_OPEN')
        throw err;
      // Another producer re-ran it first (the job is no longer in the `from` set): join that run.
    }
  }

  /**
   * After the wait: one last look, in case the result landed just as the timer fired. With `reconcile`
   * (submit), a job that existed before the request is judged by the retention rule first — this is
   * what a `wait: 0` request relies on, and what covers a `duplicated` event that never arrived.
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

  /** A job's state and result, or undefined when no such job exists (never did, or was trimmed). */
  async getJob(queue: QueueName, jobId: string): Promise<JobView | undefined> {
    const lane = this.lane(queue);
    const job = await this.redis.run(() => Job.fromId(lane.queue, jobId));
    if (!job) return undefined;
    const state = await this.redis.run(() => job.getState());
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
      q.on('error', (err) => this.log.debug({ err, queue: name }, 'queue connection error'));
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
      const lanes = this.created.splice(0);
      this.lanes.clear();
      if (lanes.length > 0) {
        await withTimeout(
          Promise.allSettled(lanes.flatMap((l) => [l.events.close(), l.queue.close()])),
          graceMs,
        );
      }
      const others = [...this.others.values()];
      this.others.clear();
      if (others.length > 0) await withTimeout(Promise.allSettled(others.map((q) => q.close())), graceMs);
      await Promise.allSettled(lanes.map((l) => closeRedis(l.eventsConn)));
      await this.redis.close();
      await closeRedis(this.conn);
      // init() may still be waiting for Redis; it sees `closing` and stops.
      await withTimeout(this.initializing?.catch(() => undefined) ?? Promise.resolve(), 100);
    })();
    return this.closing;
  }
}

/** The caller's answer for a completed/failed event; undefined for other events. */
function eventResult<T>(queue: QueueName, jobId: string, e: JobEvent): SubmitResult<T> | undefined {
  if (e.kind === 'completed')
    return { state: 'completed', queue, jobId, result: e.returnvalue as T, finishedOn: Date.now() };
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

/** Resolves when `p` settles or after `ms`, whichever is first. */
function withTimeout(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((r) => (timer = setTimeout(r, ms))),
  ]).finally(() => clearTimeout(timer));
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
