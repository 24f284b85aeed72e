import { UnrecoverableError, type Worker } from 'bullmq';
import { type RedisConnection } from '../shared/redis/cluster.js';
import { AsyncBatchProcessor } from '../shared/batch/index.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { defineReplyScripts, sendReplies, type JobReply } from '../shared/queues/job-replies.js';

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
 * One command hands over the whole batch: each job's waiter set is emptied and each waiting producer's
 * inbox gets its replies in one push. A reply that cannot be written is not retried here: the waiting producers notice on their own (they
 * re-read the outcome of a job they have waited on for a while), so nothing is lost, only later.
 */
export class ReplyPublisher {
  private readonly batcher: AsyncBatchProcessor<{ queueKey: string; reply: JobReply }, number>;
  private readonly log: Logger;
  private closing: Promise<void> | undefined;

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
  }

  /** Hands `reply` to the waiters of its job (asynchronously; failures are logged, never thrown). */
  publish(queueKey: string, reply: JobReply): void {
    this.batcher.add({ queueKey, reply }).catch((err: unknown) => {
      this.log.debug({ err, jobId: reply.jobId }, 'could not hand a result to its waiting producers');
    });
  }

  /** Sends what is pending and stops. Idempotent. */
  close(): Promise<void> {
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
  // 'completed' is emitted once the job is stored as completed: a producer that registers from then on
  // reads the outcome itself, every earlier one is in the waiter set the reply goes to.
  worker.on('completed', (job, returnvalue) => {
    if (job.id)
      publisher.publish(queueKey, {
        jobId: job.id,
        status: 'completed',
        returnvalue,
        finishedOn: job.finishedOn ?? Date.now(),
      });
  });
  worker.on('failed', (job, err) => {
    if (!job?.id || err.name === 'WaitingError' || err.name === 'DelayedError') return;
    const willRetry = !(err instanceof UnrecoverableError) && job.attemptsMade < (job.opts.attempts ?? 1);
    if (!willRetry)
      publisher.publish(queueKey, {
        jobId: job.id,
        status: 'failed',
        failedReason: err.message,
        finishedOn: job.finishedOn ?? Date.now(),
      });
  });
}
