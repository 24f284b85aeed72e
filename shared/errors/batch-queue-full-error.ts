import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** A batch processor holds its bound of unfinished items: a new one is refused instead of queued. */
export class BatchQueueFullError extends Cell0Error {
  constructor(readonly maxQueuedItems: number) {
    super(
      ErrorCode.BATCH_QUEUE_FULL,
      `the batch queue holds its bound of ${maxQueuedItems} unfinished items; retry later`,
    );
  }
}
