import { type QueueName } from '../../shared/queues/names.js';
import { type JobSubmitter, type SubmitResult } from '../job-submitter.js';
import { type BatchResultLine, type BatchView } from './batch-model.js';

/** What batches need of a producer: its submitter and the one submission path of each queue. */
export interface BatchClient {
  readonly submitter: JobSubmitter;
  /** The fleet's Redis (batches open connections of their own). */
  readonly redisUrl: string;
  /** Validates and canonicalises one request of `queue` (throws ValidationError / InputTooLargeError). */
  parseFor(queue: QueueName, body: unknown): unknown;
  /** Submits a parsed request exactly as a single request is (caches, shedding, coalescing). */
  submitTo(
    queue: QueueName,
    data: unknown,
    opts: { waitMs: number; signal?: AbortSignal },
  ): Promise<SubmitResult>;
}

/** Progress of a batch, as `client.batch(…, {onProgress})` reports it. */
export interface BatchProgress {
  batchId: string;
  total: number;
  completed: number;
  failed: number;
  cancelled: number;
  /** Finished items per second since the batch was created. */
  itemsPerSecond: number;
  /** Estimated seconds until the last item finishes at that rate (undefined before the first). */
  etaSeconds: number | undefined;
}

/** Progress after `done` of `view`'s items have finished, `elapsedMs` after creation. */
export function progressOf(
  view: BatchView,
  counts: { completed: number; failed: number; cancelled: number },
  elapsedMs: number,
): BatchProgress {
  const done = counts.completed + counts.failed + counts.cancelled;
  const rate = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0;
  return {
    batchId: view.id,
    total: view.request_counts.total,
    ...counts,
    itemsPerSecond: Math.round(rate * 10) / 10,
    etaSeconds: rate > 0 ? Math.round((view.request_counts.total - done) / rate) : undefined,
  };
}

/** Counts one result line into running counts. */
export function countLine(
  counts: { completed: number; failed: number; cancelled: number },
  line: BatchResultLine,
): void {
  counts[line.status]++;
}
