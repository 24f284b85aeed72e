import { Job, Queue, type JobsOptions } from 'bullmq';
import { type RedisConnection } from '../shared/redis/cluster.js';
import { AsyncBatchProcessor } from '../shared/batch/index.js';
import { Cell0Error, ErrorCode, RedisUnavailableError } from '../shared/errors.js';
import { type Logger } from '../shared/logger.js';
import {
  closeRedis,
  createRedisConnection,
  beforeSend,
  flushWrites,
  waitUntilReady,
} from '../shared/redis/connection.js';
import { type RedisConnectionLog } from '../shared/redis/connection-log.js';
import { toRedisError, type RedisClient } from '../shared/redis/redis-client.js';
import { type JobOutcome } from '../shared/queues/job-outcome.js';
import {
  ADDER_OPTION,
  decodeAfterAdd,
  decodeOutcome,
  inboxKey,
  registerWaiters,
  WAITER_TTL_MS,
  type AfterAdd,
  type JobReply,
} from '../shared/queues/job-replies.js';
import { jobOptionsFor, TRIM_EVERY, withoutTrimming, type JobPolicy } from '../shared/queues/job-policy.js';
import { addsBatched, batchAdds, gatherAdds, type AddWaiter } from '../shared/queues/add-batch.js';
import { setQueueEvents } from '../shared/queues/event-writes.js';
import { type QueueName } from '../shared/queues/names.js';
import { sendTake, takeArguments, type LocalTaker } from '../shared/queues/take-jobs.js';
import { type AddTake } from '../shared/queues/add-batch.js';
import { shardKey, shardPrefix } from '../shared/queues/shards.js';
import { settledWithin } from '../shared/sleep.js';
import { telemetryOption, traceMetadata, tracingOn, withSpan } from '../shared/tracing/tracing.js';
import { JobWaiter, type JobEvent, type WaiterGroup } from './job-waiter.js';
import { ReplyInbox } from './reply-inbox.js';

/** What an add that created its job met: nothing. */
const MISSING: JobOutcome = { status: 'missing' };

/** One submission on its way to Redis: registered as waiter and added in one round trip. */
export interface AddItem {
  name: string;
  data: unknown;
  jobId: string;
  /** false: only register (and read the outcome), no add. */
  add: boolean;
  /** The submitter's trace context (bullmq-otel metadata), stored in the job's opts; tracing on only. */
  telemetry?: string | undefined;
}

/** What a lane shares with its JobSubmitter. */
export interface LaneContext {
  /** The producer's connection (the queue's). */
  conn: RedisConnection;
  /** The producer's Redis client (its breaker guards every call). */
  redis: RedisClient;
  redisUrl: string;
  prefix: string;
  /** Shards per queue (every lane of a producer has the same count). */
  shards: number;
  policy: JobPolicy;
  producerId: string;
  maxBatchSize: number;
  recheckAfterMs: number;
  /** Whether the batched adds and takes write BullMQ's event stream (JobSubmitterOptions.queueEvents). */
  queueEvents: boolean;
  log: Logger;
  connLog: RedisConnectionLog;
  /** The worker of this process that takes jobs right behind the adds (`cell0 start`), if any. */
  localTaker: () => LocalTaker | undefined;
}

/**
 * One queue (one shard of a sharded queue) of a JobSubmitter: the BullMQ queue, this producer's reply
 * inbox for it, the local waiters by job id, and the batcher that gathers concurrent registrations and
 * adds into one pipeline per round trip.
 */
export class SubmitLane {
  /** Local callers waiting for a job, by job id. Replies to this producer's inbox feed them all. */
  readonly waiters = new Map<string, WaiterGroup>();
  /** The queue's key (prefix:name). */
  readonly key: string;
  readonly queue: Queue;
  /** This producer's reply inbox for the queue, read on a connection of its own. */
  readonly inbox: ReplyInbox;
  readonly inboxConn: RedisConnection;
  /**
   * Gathers concurrent registrations and adds into one pipeline per round trip. Its items are groups: a
   * single submission, or the submissions of one request gathered by {@link group} (never split).
   */
  readonly adder: AsyncBatchProcessor<AddItem[], (AfterAdd | Error)[]>;
  /** The group being gathered by {@link group}, while its callback runs. */
  private gathering:
    { item: AddItem; resolve: (o: JobOutcome) => void; reject: (e: Error) => void }[] | undefined;
  /** Adds sent so far: one in TRIM_EVERY asks BullMQ to trim the completed set when it finishes. */
  private adds = 0;
  /** Adds sent so far, for each add's token (see job-replies.ts). */
  private tokens = 0;
  private untrimmed: JobsOptions | undefined;

  private constructor(
    private readonly ctx: LaneContext,
    name: QueueName,
    /** Which shard of the queue (0 when the queue is not sharded). */
    readonly shard: number,
  ) {
    this.key = shardKey(ctx.prefix, name, shard, ctx.shards);
    this.queue = new Queue(name, {
      connection: ctx.conn,
      prefix: shardPrefix(ctx.prefix, name, shard, ctx.shards),
      defaultJobOptions: jobOptionsFor(ctx.policy),
      ...telemetryOption(),
    });
    const label = shard === 0 ? name : `${name}:${shard}`;
    ctx.connLog.watch(this.queue, `queue:${label}`);
    this.inboxConn = createRedisConnection({
      url: ctx.redisUrl,
      role: 'events',
      connectionName: `cell0:replies:${label}`,
      logger: ctx.log,
    });
    this.inbox = new ReplyInbox({
      connection: this.inboxConn,
      key: inboxKey(this.key, ctx.producerId),
      onReply: (r) => {
        this.replyCounts.inbox++;
        this.onReply(r);
      },
      logger: ctx.log,
    });
    this.adder = new AsyncBatchProcessor<AddItem[], (AfterAdd | Error)[]>({
      handler: (groups) => this.sendBatch(groups),
      maxBatchSize: ctx.maxBatchSize,
      // maxBatchSize counts submissions; a group is never split (a larger one leaves alone).
      sizeOf: (group) => group.length,
      // Gathered within the current tick; under load, while a round trip is in flight, batches grow.
      maxWaitMs: 0,
      // Sent as the connection's held writes of this turn leave (the lookups of the requests that came in
      // this turn), in the same socket write, rather than from a setImmediate of its own behind them.
      endOfTurn: (fire) => beforeSend(ctx.conn, fire),
      maxConcurrentBatches: 2,
      maxQueuedItems: 1_000_000,
    });
  }

  /**
   * A ready lane for shard `shard` of queue `name`. `created` is told of it before it is ready, so a close()
   * that comes while it connects reaches it too; it is taken out again when it fails.
   */
  static async open(
    ctx: LaneContext,
    name: QueueName,
    shard: number,
    created: SubmitLane[],
  ): Promise<SubmitLane> {
    const lane = new SubmitLane(ctx, name, shard);
    created.push(lane);
    try {
      await Promise.all([lane.queue.waitUntilReady(), waitUntilReady(lane.inboxConn, 3000)]);
      // BullMQ's scripts are loaded on the connection now: the adds of one round trip can go as one call.
      setQueueEvents(ctx.conn, ctx.queueEvents);
      await batchAdds(ctx.conn);
      lane.inbox.start();
      return lane;
    } catch (err) {
      created.splice(created.indexOf(lane), 1);
      await settledWithin(Promise.allSettled([lane.queue.close(), lane.adder.close()]), 500);
      await closeRedis(lane.inboxConn);
      throw err;
    }
  }

  /**
   * One round trip for a batch of submissions: BullMQ's add of each item that adds, in one script call that
   * tells, per item, whether its add created the job (its reply will come to this producer, named in the
   * job's options: nothing more is written) or met an existing one (then, in the same step, this producer is
   * registered as the job's waiter and the job's outcome is read); then, only for items that join without
   * adding, one command (register-waiters.lua) that registers and reads the same way. (In a MULTI, and
   * without batched adds, register-waiters.lua tells created from met for every item.) The commands are
   * issued in one tick on one connection, so they leave in one write (see coalesceWrites) and run in that
   * order, without an ioredis Pipeline (whose constructor copies every script BullMQ defines on the
   * connection). Each item gets what its add found, or its own error. When a
   * group adds more than one job (one request's texts), the round trip is one MULTI: Redis runs it whole,
   * so no worker can take some of a request's jobs before the others are queued (without it, a write Redis
   * reads in two parts lets a worker's fetch in between).
   */
  private async sendBatch(groups: AddItem[][]): Promise<(AfterAdd | Error)[][]> {
    const items = groups.flat();
    const atomic = groups.some((g) => g.filter((it) => it.add).length > 1);
    const tokens = items.map((it) =>
      it.add ? `${this.ctx.producerId}.${(this.tokens++).toString(36)}` : '',
    );
    // The batch is sent from a setImmediate callback (the adder's maxWaitMs 0): send its write at the end of
    // this callback rather than on the loop's next turn (see flushWrites).
    // A nextTick queued from a microtask runs once the microtask queue is drained, i.e. after the awaits
    // below that need no I/O (the ones that issue the commands).
    queueMicrotask(() => process.nextTick(flushWrites));
    const out = atomic ? await this.sendAtomic(items, tokens) : await this.sendItems(items, tokens);
    let i = 0;
    return groups.map((g) => out.slice(i, (i += g.length)));
  }

  /**
   * The options of the add of `it` (one add in TRIM_EVERY trims the completed set), with the add's token
   * naming this producer (see job-replies.ts).
   */
  private jobOpts(it: AddItem, token: string): JobsOptions {
    const trimmed = this.queue.defaultJobOptions;
    const untrimmed = (this.untrimmed ??= withoutTrimming(trimmed));
    return {
      ...(this.adds++ % TRIM_EVERY === 0 ? trimmed : untrimmed),
      jobId: it.jobId,
      ...{ [ADDER_OPTION]: token },
      // With tracing on, the request's context, for the worker's span of the job (bullmq-otel).
      ...(it.telemetry ? { telemetry: { metadata: it.telemetry } } : {}),
    };
  }

  /** The jobs of register-waiters.lua for `items`. */
  private static added(items: AddItem[], tokens: string[]): { jobId: string; token: string }[] {
    return items.map((it, i) => ({ jobId: it.jobId, token: tokens[i]! }));
  }

  /** sendBatch's round trip as one MULTI (the adds, then register-waiters.lua). */
  private sendAtomic(items: AddItem[], tokens: string[]): Promise<(AfterAdd | Error)[]> {
    return this.ctx.redis.run(async () => {
      const client = await this.queue.getBackend().client;
      const multi = client.multi();
      items.forEach((it, i) => {
        if (it.add)
          void new Job(this.queue, it.name, it.data, this.jobOpts(it, tokens[i]!), it.jobId)
            .addJob(multi as unknown as typeof client)
            .catch(() => undefined);
      });
      void registerWaiters(
        multi as unknown as RedisConnection,
        this.key,
        SubmitLane.added(items, tokens),
        this.ctx.producerId,
      ).catch(() => undefined);
      const res = (await multi.exec()) ?? [];
      const [regErr, regRaw] = res[res.length - 1] ?? [new Error('MULTI discarded'), undefined];
      if (regErr) throw regErr;
      const found = (regRaw as unknown[]).map(decodeAfterAdd);
      let k = 0;
      return items.map((it, i) => {
        if (!it.add) return found[i]!;
        const [err] = res[k++] ?? [new Error('MULTI discarded')];
        return err ? err : found[i]!;
      });
    });
  }

  private sendItems(items: AddItem[], tokens: string[]): Promise<(AfterAdd | Error)[]> {
    return this.ctx.redis.run(async () => {
      // BullMQ's client for its add; it wraps ctx.conn, so all commands go out on one connection, in order.
      const client = await this.queue.getBackend().client;
      // The adds go as one script call that runs BullMQ's add once per job (shared/queues/add-batch.ts) and
      // tells, per add, whether it created its job; one that met an existing job registers this producer as
      // its waiter and reads its outcome in the same step. Without batched adds, register-waiters.lua behind
      // the adds tells the same for all of them.
      const waiter: AddWaiter | undefined = addsBatched(this.ctx.conn)
        ? { producerId: this.ctx.producerId, ttlMs: WAITER_TTL_MS, found: new Map() }
        : undefined;
      // A worker of this process with free slots takes the jobs right behind their adds, in the same script
      // call when the adds are batched, else in one of its own right behind them (take-jobs.ts).
      let count = 0;
      for (const it of items) if (it.add) count++;
      const pending = this.ctx.localTaker()?.reserve(this.key, count);
      let take: AddTake | undefined;
      if (pending) {
        const { keys, args } = takeArguments(pending.request);
        take = {
          keys,
          args,
          answered: (res) => pending.answered(res),
          alone: () => sendTake(this.ctx.conn, pending),
        };
      }
      const adds: (Promise<unknown> | undefined)[] = gatherAdds(
        this.ctx.conn,
        () =>
          items.map((it, i) =>
            it.add
              ? new Job(this.queue, it.name, it.data, this.jobOpts(it, tokens[i]!), it.jobId).addJob(client)
              : undefined,
          ),
        waiter,
        take,
      );
      // The registration command, sent behind the adds: the joins only, or every item.
      const regIdx: number[] = [];
      items.forEach((it, i) => {
        if (!waiter || !it.add) regIdx.push(i);
      });
      const registered =
        regIdx.length > 0
          ? registerWaiters(
              this.ctx.conn,
              this.key,
              regIdx.map((i) => ({ jobId: items[i]!.jobId, token: tokens[i]! })),
              this.ctx.producerId,
            )
          : Promise.resolve([] as AfterAdd[]);
      const [reg, ...added] = await Promise.allSettled([registered, ...adds]);
      // Redis away, slow or full is the whole round trip's failure, thrown as it came so the client
      // classifies it (a timeout on a connection that is up is slow, not down: not counted by the breaker).
      for (const r of [reg!, ...added]) {
        if (r.status === 'rejected' && toRedisError(r.reason) instanceof Cell0Error) throw r.reason;
      }
      if (reg!.status === 'rejected') throw reg!.reason;
      const out: (AfterAdd | Error | undefined)[] = new Array<undefined>(items.length);
      reg!.value.forEach((f, k) => (out[regIdx[k]!] = f));
      // Adds the batched script did not answer (not a standard add): told apart behind them, as before.
      const unanswered: number[] = [];
      items.forEach((it, i) => {
        const a = added[i]!;
        if (a.status === 'rejected') out[i] = a.reason as Error;
        else if (waiter && it.add) {
          const f = waiter.found.get(it.jobId);
          if (f === true) out[i] = { status: 'created' };
          else if (f) out[i] = decodeAfterAdd(f);
          else unanswered.push(i);
        }
      });
      if (unanswered.length > 0) {
        const more = await registerWaiters(
          this.ctx.conn,
          this.key,
          unanswered.map((i) => ({ jobId: items[i]!.jobId, token: tokens[i]! })),
          this.ctx.producerId,
        );
        unanswered.forEach((i, k) => (out[i] = more[k]));
      }
      return out as (AfterAdd | Error)[];
    });
  }

  /**
   * What a submission learns from its round trip, as the outcome its job had just before its add: an add
   * that created the job met nothing (`missing`); one that met a job gone since is sent again.
   */
  private settle(it: AddItem, o: AfterAdd | Error | undefined): JobOutcome | Promise<JobOutcome> {
    if (o === undefined) throw new Error('no answer for a submission');
    if (o instanceof Error) throw o;
    if (o.status === 'created') return MISSING;
    if (o.status === 'vanished') return this.add(it);
    return o;
  }

  /**
   * Adds a job through the batcher. With tracing on, in a producer span whose context goes into the job
   * (bullmq-otel's metadata), so the worker's span of it joins the request's trace; the batched pipeline
   * adds jobs the way Queue.add would, which BullMQ's own telemetry does not see.
   */
  add(item: AddItem): Promise<JobOutcome> {
    // Tracing off (the usual case): no span, no copy of the item, no closure per add.
    if (!tracingOn()) return this.addTraced(item);
    return withSpan(
      `add ${this.queue.name}`,
      'producer',
      { 'messaging.destination.name': this.queue.name, 'cell0.job_id': item.jobId },
      () => this.addTraced({ ...item, telemetry: traceMetadata() }),
    );
  }

  /** {@link add} of an item that carries its trace context (or none: tracing off). */
  private addTraced(it: AddItem): Promise<JobOutcome> {
    const group = this.gathering;
    if (group) return new Promise<JobOutcome>((resolve, reject) => group.push({ item: it, resolve, reject }));
    return this.adder.add([it]).then(([o]) => this.settle(it, o));
  }

  /**
   * Runs `fn` and sends the adds it makes synchronously (the submissions of one request) as one group:
   * they reach Redis together, in one round trip, never split between two (and atomically when there are
   * several, see sendBatch). Adds made later (a retry) go on their own.
   */
  group<T>(fn: () => T): T {
    const group: NonNullable<typeof this.gathering> = [];
    const outer = this.gathering;
    this.gathering = group;
    try {
      return fn();
    } finally {
      this.gathering = outer;
      if (group.length > 0 && !outer) {
        this.adder.add(group.map((g) => g.item)).then(
          (outcomes) =>
            group.forEach((g, i) => {
              try {
                void Promise.resolve(this.settle(g.item, outcomes[i])).then(g.resolve, g.reject);
              } catch (err) {
                g.reject(err as Error);
              }
            }),
          (err: unknown) => {
            for (const g of group) g.reject(err instanceof Error ? err : new Error(String(err)));
          },
        );
      } else if (outer) outer.push(...group);
    }
  }

  /** Replies taken so far: read from the inbox, or handed over by the worker of this process. */
  readonly replyCounts = { inbox: 0, handedOver: 0 };

  /**
   * A reply handed over by the worker of this process (the job is stored as finished): as if read from the
   * inbox.
   */
  handOver(r: JobReply): void {
    this.replyCounts.handedOver++;
    this.onReply(r);
  }

  /** A reply from a worker: the job finished; every local waiter of it gets the outcome. */
  private onReply(r: JobReply): void {
    if (r.status === 'completed')
      this.dispatch(r.jobId, { kind: 'completed', returnvalue: r.returnvalue, finishedOn: r.finishedOn });
    else this.dispatch(r.jobId, { kind: 'failed', failedReason: r.failedReason });
  }

  /** Gives `e` to every local waiter of the job. */
  dispatch(jobId: string, e: JobEvent): void {
    const group = this.waiters.get(jobId);
    if (!group) return;
    if (e.kind === 'completed' || e.kind === 'failed') group.finished = true;
    for (const w of group.all) w.push(e);
  }

  /**
   * Re-reads the outcome of every job whose waiters have heard nothing for a while (one pipeline): the
   * safety net under the replies. Each group is re-read after recheckAfterMs, then after twice as long, up
   * to 30 s apart.
   */
  recheck(now: number): void {
    const due: string[] = [];
    for (const [jobId, g] of this.waiters) {
      if (g.finished || g.recheckAt > now) continue;
      g.recheckStep = Math.min(g.recheckStep * 2, 30_000);
      g.recheckAt = now + g.recheckStep;
      due.push(jobId);
    }
    if (due.length === 0) return;
    void this.ctx.redis
      .run(async (r) => {
        const pipe = r.pipeline();
        for (const id of due)
          (pipe as unknown as { cell0JobOutcome: (...a: unknown[]) => void }).cell0JobOutcome(
            `${this.key}:completed`,
            `${this.key}:failed`,
            `${this.key}:${id}`,
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
            this.dispatch(id, { kind: 'completed', returnvalue: o.returnvalue, finishedOn: o.finishedOn });
          else if (o.status === 'failed') this.dispatch(id, { kind: 'failed', failedReason: o.failedReason });
        });
      })
      .catch((err: unknown) => this.ctx.log.debug({ err }, 'could not re-read waited-for jobs'));
  }

  /** Registers a local waiter for the job's replies (before anything is added or read). */
  register(jobId: string, leader = false): JobWaiter {
    const w = new JobWaiter(this.waiters, jobId);
    let group = this.waiters.get(jobId);
    if (!group)
      this.waiters.set(
        jobId,
        (group = {
          all: new Set(),
          leader: undefined,
          finished: false,
          recheckAt: Date.now() + this.ctx.recheckAfterMs,
          recheckStep: this.ctx.recheckAfterMs,
        }),
      );
    group.all.add(w);
    if (leader) this.promote(jobId, w);
    return w;
  }

  /**
   * Registers this producer as the job's waiter and adds the job (one pipelined round trip, shared with
   * concurrent submissions); resolves with the job's outcome just before the add. If that fails, the
   * callers who joined this one are told to try themselves.
   */
  async addAsLeader(name: string, data: unknown, jobId: string): Promise<JobOutcome> {
    try {
      return await this.add({ name, data, jobId, add: true });
    } catch (err) {
      const group = this.waiters.get(jobId);
      if (group) {
        group.leader = undefined;
        for (const w of group.all) if (!w.isLeader) w.push({ kind: 'leader-gone' });
      }
      throw err;
    }
  }

  /** Makes `w` the caller that adds the job for this process. */
  promote(jobId: string, w: JobWaiter): void {
    const group = this.waiters.get(jobId);
    if (!group) return;
    w.isLeader = true;
    group.leader = w;
    group.finished = false;
  }

  /** Retries a finished job in place. Losing the race to another producer that retried it first is fine. */
  async rerun(jobId: string, from: 'completed' | 'failed'): Promise<void> {
    const job = await this.ctx.redis.run(() => Job.fromId(this.queue, jobId));
    if (!job) return;
    try {
      await this.ctx.redis.run(() =>
        job.retry(from, { resetAttemptsMade: true, resetAttemptsStarted: true }),
      );
      this.ctx.log.debug({ queue: this.queue.name, jobId, from }, 're-running finished job');
    } catch (err) {
      if (err instanceof RedisUnavailableError || (err as { code?: string }).code === ErrorCode.BREAKER_OPEN)
        throw err;
      // Another producer re-ran it first (the job is no longer in the `from` set): join that run.
    }
  }
}
