import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** A job ended in the failed state. `failureCode` is the code of the error the worker raised, if any. */
export class JobFailedError extends Cell0Error {
  constructor(
    readonly queue: string,
    readonly jobId: string,
    readonly failedReason: string,
    readonly failureCode?: string,
  ) {
    super(ErrorCode.JOB_FAILED, `job ${queue}/${jobId} failed: ${failedReason}`);
  }
}
