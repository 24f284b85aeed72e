import { type Worker } from 'bullmq';
import { type RedisConnection } from '../shared/redis/cluster.js';
import { AsyncBatchProcessor } from '../shared/batch/index.js';
import { beforeSend } from '../shared/redis/connection.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { willRetry } from './worker/job-outcome.js';
import { hookMoveToFinished, type FinishCall } from '../shared/queues/bullmq-internals.js';
import { LOCAL_ADDER, REPLY_FROM_FINISH, replyWithFinish } from '../shared/queues/finish-batch.js';
import {
  adderOf,
  rawReply,
  defineReplyScripts,
  encodeRawReply,
  INBOX_TTL_MS,
  inboxKey,
  waiterSetKey,
  sendFinishedReplies,
  sendReplies,
  type FinishedReply,
  type JobReply,
} from '../shared/queues/job-replies.js';

/** A reply sent behind its job's finish: whether it answered the waiters (undefined while in flight). */
interface BehindFinish {
  ok: boolean | undefined;
  /** The job's event, when it came before the answer. */
  event: { queueKey: string; reply: JobReply } | undefined;
  /** The finish, when its adder is the producer of this process (see {@link LocalReplies}): handed to it once stored. */
  local: { queueKey: string; call: FinishCall } | undefined;
}

/**
 * A producer in the worker's own process (`cell0 start`: the API and the worker in one process) that takes
 * the replies of the jobs it added straight from the worker, once each job is stored as finished, instead
 * of through its inbox in Redis (no push, no blocking read, no decode). Its other waiters (producers that
 * joined the job, itself included when it joined one added elsewhere) still get theirs through Redis.
 */
export interface LocalReplies {
  /** Its producer id: the adder named in the options of the jobs it adds. */
  readonly producerId: string;
  /** Whether it reads the replies of the queue whose keys start with `queueKey` (it has that queue). */
  serves(queueKey: string): boolean;
  /** Hands it the reply of a job of `queueKey` now stored as finished. Must not throw. */
  deliver(queueKey: string, reply: JobReply): void;
}

/** Options of {@link ReplyPublisher}. */
export interface ReplyPublisherOptions {
  /** The connection replies are written on, per queue key ("{prefix}:{queue}"). */
  connectionFor: (queueKey: string) => RedisConnection | undefined;
  /** Replies sent in one round trip at most. Default 256. */
  maxBatchSize?: number;
  logger?: Logger;
}

/**
 * The worker's half of the result path: once a job is completed (or finally failed), its outcome goes to
 * the inbox of every producer waiting for it. Replies of jobs that finish together share one round trip.
 * One command hands over the whole batch: each job's reply goes to the producer that added it (named in the
 * job's options) and to the producers in its waiter set, which is emptied, and each producer's inbox gets
 * its replies in one push. A reply that cannot be written is not retried here: the waiting producers notice on their own (they
 * re-read the outcome of a job they have waited on for a while), so nothing is lost, only later.
 */
export class ReplyPublisher {
  private readonly batcher: AsyncBatchProcessor<{ queueKey: string; reply: JobReply }, number>;
  private readonly log: Logger;
  private closing: Promise<void> | undefined;
  /**
   * Replies sent behind their jobs' finish, by job id, until the job's event comes. Two generations,
   * swapped every minute, so an entry whose job event never comes does not stay. No promise per job: the
   * answer of the batch settles each entry, and an event that came while it was in flight waits in it.
   */
  private sent = new Map<string, BehindFinish>();
  private older = new Map<string, BehindFinish>();
  /**
   * The producer that added each job being worked on ({@link adderOf} its options, '' for none), by queue
   * key and job id, noted when the job starts ({@link started}) and taken when it finishes. Two generations
   * like `sent`: a job that runs longer than that is looked up by the reply script instead.
   */
  private adders = new Map<string, Map<string, string>>();
  private olderAdders = new Map<string, Map<string, string>>();
  private readonly rotate: NodeJS.Timeout;
  /** Replies gathered in this turn, per connection, sent behind the finishes they follow. */
  private readonly gathering = new Map<
    RedisConnection,
    { queueKey: string; items: FinishedReply[]; entries: BehindFinish[] }
  >();
  private readonly counts = { withFinish: 0, afterEvent: 0, handedOver: 0 };
  /** The producer of this process, if any (see {@link handOverTo}). */
  private local: LocalReplies | undefined;

  constructor(opts: ReplyPublisherOptions) {
    this.log = opts.logger ?? silentLogger();
    this.batcher = new AsyncBatchProcessor({
      maxBatchSize: opts.maxBatchSize ?? 256,
      maxWaitMs: 0,
      maxConcurrentBatches: 2,
      maxQueuedItems: 100_000,
      keyOf: (i) => i.queueKey,
      handler: async (items, queueKey) => {
        const conn = opts.connectionFor(queueKey);
        if (!conn) throw new Error(`no connection for ${queueKey}`);
        defineReplyScripts(conn);
        // One command for the whole batch (see reply-waiters.lua).
        return sendReplies(
          conn,
          queueKey,
          items.map((i) => i.reply),
        );
      },
    });
    this.rotate = setInterval(() => {
      this.older = this.sent;
      this.sent = new Map();
      this.olderAdders = this.adders;
      this.adders = new Map();
    }, 60_000);
    this.rotate.unref();
  }

  /**
   * Replies, from now on, in the same round trip as the worker's finish of each job: each time BullMQ sends
   * a job's `moveToFinished` on `conn` (the connection `worker` runs on), the reply rides in the same script
   * call when the finish is batched there (finish-batch.ts replyWithFinish), else goes out on `conn` right
   * behind it (reply-finished.lua, one command per turn of the event loop); either way Redis runs it once the job is stored as
   * finished, and the waiting producers have their result without the worker waiting for the finish to
   * return first. A job the script does not find finished is answered the ordinary way when its event
   * comes (so the worker must be attached with {@link attachReplyPublisher} too). Call it once BullMQ has
   * loaded its scripts on `conn` (the worker is ready). Returns false when BullMQ's finish could not be
   * hooked: then every reply follows the job's event.
   */
  replyBehindFinish(conn: RedisConnection, queueKey: string): boolean {
    const hooked = hookMoveToFinished(conn, (call) => this.behindFinish(conn, queueKey, call));
    if (!hooked)
      this.log.warn({ queueKey }, 'replies follow the job events (no BullMQ finish on the connection)');
    return hooked;
  }

  /**
   * Replies sent so far: with the finish (see attachToFinish), after the job's event, and of those with
   * the finish, the ones handed to the producer of this process ({@link handOverTo}).
   */
  stats(): { withFinish: number; afterEvent: number; handedOver: number } {
    return { ...this.counts };
  }

  /**
   * From now on, the replies sent behind a finish of the jobs `local` added go to it directly once the
   * finish has stored the job (the script does not push them to its inbox); see {@link LocalReplies}. A
   * finish that did not store the job is answered when the job's event comes, through Redis as before.
   */
  handOverTo(local: LocalReplies): void {
    this.local = local;
  }

  /**
   * A job of `queueKey` starts: notes the producer that added it (named in its options), so its reply goes
   * to that producer's inbox without a read of the job (see job-replies.ts).
   */
  started(queueKey: string, jobId: string, opts: object | undefined): void {
    let m = this.adders.get(queueKey);
    if (!m) this.adders.set(queueKey, (m = new Map()));
    m.set(jobId, adderOf(opts));
  }

  /** The adder noted for a job, taken out; '?' (the reply script reads it) when it was not noted. */
  private takeAdder(queueKey: string, jobId: string): string {
    for (const gen of [this.adders, this.olderAdders]) {
      const m = gen.get(queueKey);
      const a = m?.get(jobId);
      if (a !== undefined) {
        m!.delete(jobId);
        return a;
      }
    }
    return '?';
  }

  /** The inbox key prefix of each queue key (the same string for every reply of the queue). */
  private readonly inboxPrefixes = new Map<string, string>();

  private inboxPrefixOf(queueKey: string): string {
    let p = this.inboxPrefixes.get(queueKey);
    if (p === undefined) this.inboxPrefixes.set(queueKey, (p = inboxKey(queueKey, '')));
    return p;
  }

  private behindFinish(conn: RedisConnection, queueKey: string, call: FinishCall): void {
    if (this.closing) return;
    let adder = this.takeAdder(queueKey, call.jobId);
    const entry: BehindFinish = { ok: undefined, event: undefined, local: undefined };
    // What the finish script is told: the local producer as such (no inbox, and no event entries, see
    // finish-batch.ts), where the fallback script below is told '' (no inbox).
    let finishAdder = adder;
    if (this.local !== undefined && adder === this.local.producerId && this.local.serves(queueKey)) {
      // Handed over in settle(), once the script has found the job finished; the script skips its inbox.
      entry.local = { queueKey, call };
      adder = '';
      finishAdder = LOCAL_ADDER;
    }
    // Usually the reply rides in the finish's own script call (finish-batch.ts): no command of its own, and
    // the script builds it from the finish's arguments (the job's value is not sent a second time).
    const withFinish = replyWithFinish(conn, call.jobId, {
      waiterKey: waiterSetKey(queueKey, call.jobId),
      reply: REPLY_FROM_FINISH,
      adder: finishAdder,
      inboxPrefix: this.inboxPrefixOf(queueKey),
      inboxTtlMs: INBOX_TTL_MS,
      done: (count) => {
        if (count >= 0) this.counts.withFinish++;
        this.settle(entry, count >= 0);
      },
    });
    this.sent.set(call.jobId, entry);
    if (withFinish) return;
    let batch = this.gathering.get(conn);
    if (!batch) {
      batch = { queueKey, items: [], entries: [] };
      this.gathering.set(conn, batch);
      // Still in the tick of the finish: the batch goes out behind every finish gathered so far (they are
      // sent as the connection's held writes leave, see finish-batch.ts, and this follows them).
      const send = () => this.sendBehind(conn);
      if (!beforeSend(conn, send)) process.nextTick(send);
    }
    const reply = encodeRawReply(call.jobId, call.target, call.finishedOn, call.value);
    batch.items.push({ jobId: call.jobId, finishedSetKey: call.finishedSetKey, reply, adder });
    batch.entries.push(entry);
  }

  private sendBehind(conn: RedisConnection): void {
    const batch = this.gathering.get(conn);
    this.gathering.delete(conn);
    if (!batch) return;
    defineReplyScripts(conn);
    sendFinishedReplies(conn, batch.queueKey, batch.items).then(
      (counts) => {
        for (let i = 0; i < batch.entries.length; i++) {
          const ok = (counts[i] ?? -1) >= 0;
          if (ok) this.counts.withFinish++;
          this.settle(batch.entries[i]!, ok);
        }
      },
      (err: unknown) => {
        this.log.debug({ err }, 'could not reply behind the finish; replying after the job event');
        for (const entry of batch.entries) this.settle(entry, false);
      },
    );
  }

  /** The answer for a reply sent behind its finish: a job event that came meanwhile is handled now. */
  private settle(entry: BehindFinish, ok: boolean): void {
    entry.ok = ok;
    const local = entry.local;
    if (local !== undefined) {
      entry.local = undefined;
      if (ok) this.handOver(local.queueKey, local.call);
    }
    const event = entry.event;
    if (!event) return;
    entry.event = undefined;
    if (!ok) this.publish(event.queueKey, event.reply);
  }

  /** A finished job's reply to the producer of this process: the reply its inbox would have had. */
  private handOver(queueKey: string, call: FinishCall): void {
    // What its inbox would have read (decodeReply of encodeRawReply), without the text in between.
    const reply = rawReply(call.jobId, call.target, call.finishedOn, call.value);
    if (!reply) return;
    this.counts.handedOver++;
    try {
      this.local?.deliver(queueKey, reply);
    } catch (err) {
      this.log.error({ err }, 'a reply handed to the producer of this process threw');
    }
  }

  /**
   * The job's event came and the reply sent behind its finish has answered its waiters already: forgets that
   * reply and returns true (nothing more to do, no reply to build). False otherwise: then call
   * {@link finished}.
   */
  answeredBehindFinish(jobId: string): boolean {
    if (this.sent.get(jobId)?.ok !== true) return false;
    this.sent.delete(jobId);
    return true;
  }

  /**
   * The job's event came (it is stored as finished): its reply, unless the one sent behind its finish
   * answered the waiters already.
   */
  finished(queueKey: string, reply: JobReply): void {
    const sent = this.sent.get(reply.jobId) ?? this.older.get(reply.jobId);
    if (!sent) return this.publish(queueKey, reply);
    this.sent.delete(reply.jobId);
    this.older.delete(reply.jobId);
    // Still in flight: settled with the batch's answer (and published then if it did not answer).
    if (sent.ok === undefined) sent.event = { queueKey, reply };
    else if (!sent.ok) this.publish(queueKey, reply);
  }

  /** Hands `reply` to the waiters of its job (asynchronously; failures are logged, never thrown). */
  publish(queueKey: string, reply: JobReply): void {
    this.counts.afterEvent++;
    this.batcher.add({ queueKey, reply }).catch((err: unknown) => {
      this.log.debug({ err, jobId: reply.jobId }, 'could not hand a result to its waiting producers');
    });
  }

  /** Sends what is pending and stops. Idempotent. */
  close(): Promise<void> {
    clearInterval(this.rotate);
    this.closing ??= this.batcher.close();
    return this.closing;
  }
}

/**
 * Makes a BullMQ worker of a cell0 queue hand its finished jobs to their waiting producers: completed ones,
 * and failed ones that will not be retried. Cell0Worker does this for its own workers; a BullMQ Worker of
 * one's own on a cell0 queue needs it too, or its producers learn of results only when they re-read them.
 */
export function attachReplyPublisher(worker: Worker, queueKey: string, publisher: ReplyPublisher): void {
  // The producer that added the job is named in its options (read with the job when it was taken).
  worker.on('active', (job) => {
    if (job.id) publisher.started(queueKey, job.id, job.opts);
  });
  // 'completed' is emitted once the job is stored as completed: a producer that registers from then on
  // reads the outcome itself, every earlier one is in the waiter set the reply goes to.
  worker.on('completed', (job, returnvalue) => {
    // Usually the reply rode in the job's finish call and has been answered: no reply to build.
    if (job.id && !publisher.answeredBehindFinish(job.id))
      publisher.finished(queueKey, {
        jobId: job.id,
        status: 'completed',
        returnvalue,
        finishedOn: job.finishedOn ?? Date.now(),
        adder: adderOf(job.opts),
      });
  });
  worker.on('failed', (job, err) => {
    if (!job?.id || err.name === 'WaitingError' || err.name === 'DelayedError') return;
    if (!willRetry(job, err))
      publisher.finished(queueKey, {
        jobId: job.id,
        status: 'failed',
        failedReason: err.message,
        finishedOn: job.finishedOn ?? Date.now(),
        adder: adderOf(job.opts),
      });
  });
}
