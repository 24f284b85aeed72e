import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/**
 * No room for a model within the wait allowed: the memory is held by models that are in use, pinned,
 * loading, or of higher priority. Retryable: the job waits and tries again.
 */
export class ModelMemoryBusyError extends Cell0Error {
  constructor(
    readonly model: string,
    message: string,
    /** Suggested wait before the next try. */
    readonly retryAfterMs: number,
  ) {
    super(ErrorCode.MODEL_MEMORY_BUSY, message);
  }
}
