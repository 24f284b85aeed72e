import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** A rate limit had no token for the call within the time the caller was willing to wait. */
export class RateLimitedError extends Cell0Error {
  constructor(
    readonly limiter: string,
    readonly retryAfterMs: number,
  ) {
    super(ErrorCode.RATE_LIMITED, `rate limit "${limiter}" has no capacity now; retry in ${retryAfterMs} ms`);
  }
}
