import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/**
 * A command on a live connection did not answer within the command timeout: Redis is slow (or this host
 * is), not unreachable. It does not count toward the Redis breaker. The command may still have been
 * applied; retrying is safe (job ids are hashes of the request, so a retried add joins the same job).
 */
export class RedisTimeoutError extends Cell0Error {
  constructor(
    readonly timeoutMs: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(
      ErrorCode.REDIS_TIMEOUT,
      `Redis did not answer within ${timeoutMs ?? 'the command timeout'} ms (it is reachable, but slow); retry`,
      options,
    );
  }
}
