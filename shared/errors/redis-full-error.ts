import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/**
 * Redis refuses writes because it is at its maxmemory (an OOM reply), or producers shed new work because
 * its memory use is over the watermark (CELL0_REDIS_MEMORY_WATERMARK). The API answers 503 with
 * Retry-After; nothing was added.
 */
export class RedisFullError extends Cell0Error {
  constructor(
    /** `oom`: Redis refused a write; `watermark`: shed before Redis fills up. */
    readonly reason: 'oom' | 'watermark',
    message: string,
    /** When to try again. */
    readonly retryAfterMs: number,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.REDIS_FULL, message, options);
  }
}
