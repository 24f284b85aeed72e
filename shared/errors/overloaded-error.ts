import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** Producers refuse new work while the fleet is overloaded; the API answers 503 with Retry-After. */
export class OverloadedError extends Cell0Error {
  constructor(
    /** What is over its bound. */
    readonly reason: 'queue_depth' | 'fleet_pressure',
    message: string,
    /** When to try again. */
    readonly retryAfterMs: number,
  ) {
    super(ErrorCode.OVERLOADED, message);
  }
}
