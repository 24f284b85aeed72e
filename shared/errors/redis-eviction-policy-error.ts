import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** Redis's maxmemory-policy lets it evict keys: BullMQ would lose jobs silently, so cell0 does not run. */
export class RedisEvictionPolicyError extends Cell0Error {
  constructor(readonly policy: string) {
    super(
      ErrorCode.REDIS_EVICTION_POLICY,
      [
        `Redis maxmemory-policy is "${policy}": Redis may evict queued jobs' data and lose them. cell0 needs "noeviction".`,
        'Fix it with one of:',
        '  redis-cli CONFIG SET maxmemory-policy noeviction   (then CONFIG REWRITE to keep it across restarts)',
        '  redis.conf:  maxmemory-policy noeviction',
        '  managed Redis (ElastiCache, Memorystore, Azure Cache, …): set maxmemory-policy to noeviction in the parameter group / instance configuration',
      ].join('\n'),
    );
  }
}
