import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** A caller stopped waiting for a job; the job itself goes on and can be fetched by id. */
export class WaitTimeoutError extends Cell0Error {
  constructor(
    readonly queue: string,
    readonly jobId: string,
    readonly waitedMs: number,
  ) {
    super(ErrorCode.WAIT_TIMEOUT, `job ${queue}/${jobId} did not finish within ${waitedMs} ms`);
  }
}
