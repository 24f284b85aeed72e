import { type Cell0Metrics } from '../shared/metrics/metrics.js';
import { type Logger } from '../shared/logger.js';
import { type JobPolicy } from '../shared/queues/job-policy.js';
import { type QueueName } from '../shared/queues/names.js';
import { type InferenceResult } from '../shared/queues/results.js';
import { type InputLimits } from '../shared/queues/schemas.js';
import { type SearchCache } from '../shared/cache/search-cache.js';
import { type InferenceCache } from '../shared/cache/inference-key.js';
import { type JobView } from './job-submitter.js';

/* The options and answer types of Cell0Client (cell0-client.ts), which re-exports them. */

/** Options of {@link Cell0Client}. */
export interface Cell0ClientOptions {
  /** redis:// or rediss:// URL of the fleet's Redis. Default redis://localhost:6379. */
  redisUrl?: string;
  /** Queue key prefix ({hash tag}) the fleet uses. Default "{cell0}". */
  prefix?: string;
  /** Shards per queue the fleet uses (CELL0_QUEUE_SHARDS; see JobSubmitterOptions.shards). Default 1. */
  shards?: number;
  /** How long infer() and search() wait for a result by default, ms. Default 30000. */
  waitMs?: number;
  /** Input limits checked before anything reaches Redis. Defaults: 32 KiB of prompt, 2 KiB of query. */
  limits?: Partial<InputLimits>;
  /** Most inputs of one embeddings request (each held to `limits.maxPromptBytes`). Default 2048. */
  maxEmbedInputs?: number;
  /** Retries and retention of the jobs this client adds. */
  policy?: Partial<JobPolicy>;
  /** A Redis command slower than this fails with RedisTimeoutError (retryable), ms. Default 2000. */
  commandTimeoutMs?: number;
  /**
   * Whether this client's batched adds write BullMQ's event stream entries, for QueueEvents listeners
   * (CELL0_QUEUE_EVENTS; see JobSubmitterOptions.queueEvents). Default false.
   */
  queueEvents?: boolean;
  /**
   * Redis memory use (% of maxmemory) at and over which new work is refused with RedisFullError (reason
   * `watermark`) before Redis itself refuses writes; 0 = off. Read in the background (INFO memory, once a
   * second) and checked by the load shedder given this client's `redisMemory`. Default 90.
   */
  memoryWatermarkPercent?: number;
  /** Consecutive Redis failures that open the breaker. Default 5. */
  breakerThreshold?: number;
  /** Breaker open time before a trial call, ms. Default 5000. */
  breakerResetMs?: number;
  /**
   * Caches asked before a job is added: a hit is answered at once, marked `cached`. Workers write results
   * through, so give the workers the same caches. Default: none.
   */
  caches?: {
    inference?: InferenceCache<InferenceResult>;
    search?: SearchCache;
    /** Lowest match level of the semantic cache that answers (exact, high, medium, low). Default high. */
    minConfidence?: string;
  };
  logger?: Logger;
}

/** Options of one call. */
export interface CallOptions {
  /** Wait this long for the result, ms (default: the client's waitMs). */
  waitMs?: number;
  /** Stop waiting when aborted (the job goes on). */
  signal?: AbortSignal;
  /**
   * Called after the caches missed and admission passed, just before the job is added or joined, with its
   * id (e.g. to open its token stream first). A rejection stops the call.
   */
  beforeAdd?: (jobId: string) => Promise<void>;
  /** Called once it is known whether the call joined an identical job (see JobSubmitter.submit). */
  onJoined?: (joined: boolean) => void;
  /**
   * The request's job id when the caller computed it already (`jobIdFor(queue, data)` of this very data; never
   * another id): it is not computed again (submitInference).
   */
  jobId?: string;
}

/** A finished job's id and result. */
export interface JobResult<T> {
  jobId: string;
  result: T;
  /** false when a job ran for this call; else how a cache matched it (and how closely). */
  cached: false | 'exact' | 'semantic';
  similarity?: number;
}

/** A job that was added (or joined); wait on it or read its state later. */
export interface JobHandle<T> {
  readonly queue: QueueName;
  readonly id: string;
  /** Waits for the result: rejects with WaitTimeoutError, JobFailedError or JobNotFoundError. */
  wait(timeoutMs?: number, signal?: AbortSignal): Promise<T>;
  /** The job's current state, or undefined when it no longer exists. */
  state(): Promise<JobView | undefined>;
}

/** What a client counts (see shared/metrics). */
export type ClientMetrics = Pick<Cell0Metrics, 'cacheLookup' | 'jobAdded' | 'jobCoalesced'>;
