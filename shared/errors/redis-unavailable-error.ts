import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** Redis could not be reached (connection down, command timed out). */
export class RedisUnavailableError extends Cell0Error {
  constructor(message = 'Redis is unavailable', options?: { cause?: unknown }) {
    super(ErrorCode.REDIS_UNAVAILABLE, message, options);
  }
}
