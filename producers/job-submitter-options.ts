import { DEFAULT_JOB_POLICY, type JobPolicy } from '../shared/queues/job-policy.js';
import { QUEUE_NAMES, type QueueName } from '../shared/queues/names.js';
import { checkShardCount } from '../shared/queues/shards.js';
import { type Logger } from '../shared/logger.js';
import { withDefaults } from '../shared/with-defaults.js';

/** Options of {@link JobSubmitter}. */
export interface JobSubmitterOptions {
  /** redis:// or rediss:// URL. */
  redisUrl: string;
  /** Queue key prefix; a {hash tag}. Default "{cell0}". */
  prefix?: string;
  /** Retries and retention of the jobs this producer adds. */
  policy?: Partial<JobPolicy>;
  /**
   * Producer-side command timeout, ms: a slower command fails with RedisTimeoutError (not counted against
   * the breaker). Default 2000.
   */
  commandTimeoutMs?: number;
  /** Consecutive Redis failures that open the breaker. Default 5. */
  breakerThreshold?: number;
  /** Breaker open time before a trial call, ms. Default 5000. */
  breakerResetMs?: number;
  /** Queues this producer adds to. Default: all. */
  queues?: readonly QueueName[];
  /**
   * Shards per queue (see shared/queues/shards.ts): each shard is a BullMQ queue under a hash tag of its
   * own, and a job goes to the shard its id hashes to. Every producer and worker of a fleet must use the
   * same count. Default 1 (unsharded).
   */
  shards?: number;
  /**
   * Largest number of submissions sent to Redis in one round trip. Submissions that arrive while a round
   * trip is under way are gathered and sent together in the next one. Default 256.
   */
  maxBatchSize?: number;
  /**
   * Whether the adds (and the takes behind them) this producer batches write BullMQ's event stream entries
   * (`added`, `waiting`, `active`) for QueueEvents listeners. Nothing in cell0 reads them. Default false
   * (see shared/queues/event-writes.ts).
   */
  queueEvents?: boolean;
  /**
   * A waiter that has had no reply for this long re-reads its job's outcome (then again after twice as long,
   * up to 30 s), so a reply lost with a worker that died just after finishing the job is not waited out.
   * Default 2000 ms.
   */
  recheckAfterMs?: number;
  logger?: Logger;
}

/** {@link JobSubmitterOptions} checked, with their defaults. */
export interface ResolvedSubmitterOptions {
  prefix: string;
  shards: number;
  policy: JobPolicy;
  maxBatchSize: number;
  recheckAfterMs: number;
  queueEvents: boolean;
  queues: readonly QueueName[];
}

/** Checks a JobSubmitter's options (a TypeError naming the option when one is bad) and fills defaults. */
export function resolveSubmitterOptions(opts: JobSubmitterOptions): ResolvedSubmitterOptions {
  if (!opts.redisUrl) throw new TypeError('JobSubmitter: option "redisUrl" is required');
  const shards = checkShardCount(opts.shards ?? 1, 'JobSubmitter: option "shards"');
  const policy = withDefaults(DEFAULT_JOB_POLICY, opts.policy);
  for (const [k, v] of Object.entries(policy)) {
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0))
      throw new TypeError(`JobSubmitter: option "policy.${k}" must be a number >= 0, got ${String(v)}`);
  }
  const maxBatchSize = opts.maxBatchSize ?? 256;
  if (!(Number.isInteger(maxBatchSize) && maxBatchSize >= 1))
    throw new TypeError(`JobSubmitter: option "maxBatchSize" must be an integer >= 1`);
  const recheckAfterMs = opts.recheckAfterMs ?? 2000;
  if (!(recheckAfterMs > 0)) throw new TypeError(`JobSubmitter: option "recheckAfterMs" must be > 0`);
  return {
    prefix: opts.prefix ?? '{cell0}',
    shards,
    policy,
    maxBatchSize,
    recheckAfterMs,
    queueEvents: opts.queueEvents ?? false,
    queues: opts.queues ?? QUEUE_NAMES,
  };
}
