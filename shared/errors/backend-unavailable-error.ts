import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/**
 * A job was added (or joined) but not waited for, because its backend is down on every worker that could run
 * it: it stays queued and runs once the backend is back. Fetch it later by `jobId`.
 */
export class BackendUnavailableError extends Cell0Error {
  constructor(
    readonly queue: string,
    readonly jobId: string,
    /** The backends whose breakers are open (or half-open) on every worker. */
    readonly backends: readonly string[],
    /** When a worker will try the backend again, ms. */
    readonly retryAfterMs: number,
  ) {
    super(
      ErrorCode.BACKEND_UNAVAILABLE,
      `job ${queue}/${jobId} is queued, but its backend (${backends.join(', ')}) is down on every worker; it runs once the backend is back`,
    );
  }
}
