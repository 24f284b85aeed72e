import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** No job with that id exists (never did, or its retention ended). */
export class JobNotFoundError extends Cell0Error {
  constructor(
    readonly queue: string,
    readonly jobId: string,
  ) {
    super(ErrorCode.JOB_NOT_FOUND, `no job ${jobId} in queue ${queue}`);
  }
}
