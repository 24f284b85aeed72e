import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** A job was stopped because every caller streaming its tokens went away. Not retried. */
export class JobCancelledError extends Cell0Error {
  constructor(readonly jobId: string) {
    super(ErrorCode.JOB_CANCELLED, `job ${jobId} was cancelled: no caller was reading its token stream`);
  }
}
