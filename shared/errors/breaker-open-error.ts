import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** A circuit breaker is open: the call was refused without being attempted. */
export class BreakerOpenError extends Cell0Error {
  constructor(
    readonly breaker: string,
    readonly retryAfterMs: number,
  ) {
    super(ErrorCode.BREAKER_OPEN, `circuit breaker "${breaker}" is open; retry in ${retryAfterMs} ms`);
  }
}
