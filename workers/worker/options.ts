import { type EmbeddingBatchOptions } from '../embedding/index.js';
import { QUEUE_NAMES, QueueName } from '../../shared/queues/names.js';
import { checkShardCount, servedShards } from '../../shared/queues/shards.js';
import { type SearchProvider } from '../../shared/queues/enums.js';
import { type InferenceResult } from '../../shared/queues/results.js';
import { type ResourceViolation } from '../../shared/resources/types.js';
import { type ModelLeaser } from '../../shared/resources/resource-management.js';
import { type InferenceCache } from '../../shared/cache/inference-key.js';
import { type SearchCache } from '../../shared/cache/search-cache.js';
import { type Logger } from '../../shared/logger.js';
import { type MaintenanceSchedule, type MaintenanceTasks } from '../maintenance.js';
import { type InferenceBackend, type SearchBackend } from '../providers/provider.js';

/** Options of {@link Cell0Worker}. */
export interface Cell0WorkerOptions {
  /** redis:// or rediss:// URL. */
  redisUrl: string;
  /** Queue key prefix ({hash tag}). Default "{cell0}". */
  prefix?: string;
  /** Queues to serve. Default: inference, search, and embedding when the inference backend embeds. */
  queues?: readonly QueueName[];
  /**
   * Shards per queue, as the producers use them (see shared/queues/shards.ts): every producer and worker
   * of a fleet must agree. Default 1 (unsharded).
   */
  shards?: number;
  /**
   * The shards (0..shards-1) this worker serves on each of its queues. Default: all. A queue's
   * `concurrency` is split evenly over them, at least 1 each.
   */
  servedShards?: readonly number[];
  /**
   * Whether the batched finishes (and the takes) of this worker write BullMQ's event stream entries
   * (`active`, `completed` with the result, `failed`, `drained`) for QueueEvents listeners. Nothing in cell0
   * reads them. Default false (see shared/queues/event-writes.ts).
   */
  queueEvents?: boolean;
  /**
   * Jobs run at once per queue. Defaults: inference 4, search 8, embedding 256 (embedding jobs wait together
   * for their shared backend call: see `embedding`).
   */
  concurrency?: { inference?: number; search?: number; embedding?: number };
  /**
   * Calls the backends of a queue take at once now (e.g. the sum of their adaptive limits): the worker then
   * holds at most twice that many of the queue's jobs (at least 1, at most `concurrency`), so it does not
   * take jobs another worker could run while they would only wait here for a backend permit. Read every
   * 250 ms, and at once whenever `backendCapacityRaised` says it rose. Default none: `concurrency` jobs.
   */
  backendCapacity?: Partial<Record<QueueName, () => number | undefined>>;
  /**
   * Subscribes a listener called as soon as a `backendCapacity` rises (e.g. an adaptive limit's slow start
   * doubling it on a prompt first token), so the worker takes the jobs it now has room for at once, in one
   * call, instead of at its next re-read and one fetch per job (see CapacityFollower). Returns the
   * unsubscribe. Default none (the 250 ms re-read alone).
   */
  backendCapacityRaised?: (listener: () => void) => () => void;
  /**
   * How embedding jobs are gathered into backend calls (one call per model for the jobs that are ready).
   * They are embedded by the `inference` backend's models.
   */
  embedding?: EmbeddingBatchOptions;
  /** Runs inference jobs; required when serving the inference queue. */
  inference?: InferenceBackend;
  /** Search backends by provider; required (at least one) when serving the search queue. */
  search?: Partial<Record<SearchProvider, SearchBackend>>;
  /** Longest a provider call may take before it is aborted (and retried). Default 120000 ms. */
  providerTimeoutMs?: number;
  /** Graceful close lets active jobs run this long, then puts them back to wait. Default 30000 ms. */
  shutdownTimeoutMs?: number;
  /** Job lock; a worker that dies loses its jobs to stalled recovery after about this long. Default 30000 ms. */
  lockDurationMs?: number;
  /** How often stalled jobs are looked for. Default 15000 ms. */
  stalledIntervalMs?: number;
  /** Times a job may stall before it fails. Default 2. */
  maxStalledCount?: number;
  /**
   * How long a job may keep going back to wait because its backend is unreachable, open-circuited or
   * rate-limited (no attempt is spent on those) before it fails with PROVIDER_UNAVAILABLE; counted from
   * the first time it had to wait. 0 = no limit. Default 3600000 (1 h).
   */
  backendWaitMaxMs?: number;
  /**
   * How often the worker publishes its status (queues, active jobs, and `status()`'s sections) to Redis
   * for `GET /v1/fleet`; the status expires after 3 intervals. 0 = do not publish. Default 5000 ms.
   */
  heartbeatMs?: number;
  /**
   * Caches the worker writes results through (the producers' caches): an inference answer goes to the
   * semantic cache under its request's scope, a search result to the search cache, unless the request
   * said `cache.noStore`. Written before the job completes, so a request that sees the job done also
   * finds the cache entry. Cache failures never fail a job.
   */
  caches?: { inference?: InferenceCache<InferenceResult>; search?: SearchCache };
  /** Extra sections of the published status, e.g. backend metrics. */
  status?: () => Record<string, unknown>;
  /**
   * Admission by resources: while the limiter reports pressure on memory, disk, heap or event-loop delay the
   * worker takes no new jobs (its queues' BullMQ workers are paused; active jobs finish), a job that reaches
   * it anyway is put back to wait without spending an attempt, and its published state is `paused`. It
   * resumes when the pressure ends. CPU over its limit alone does not pause it: a busy worker keeps working
   * (pausing it would only lower the fleet's throughput when it is needed most); it is published as
   * saturated, and producers shed new work only while every worker is saturated and the queue is behind.
   */
  limiter?: AdmissionLimiter;
  /**
   * The model memory manager of the backend serving a model, when that backend's models are managed: the
   * model is made resident (evicting others by policy) and held in use while the job runs.
   */
  models?: (model: string) => ModelLeaser | undefined;
  /**
   * Serve the fleet's maintenance queue (one job at a time) and upsert its `monitor` and `cleanup` job
   * schedulers at start.
   */
  maintenance?: MaintenanceSchedule & { tasks: MaintenanceTasks };
  /**
   * How long a BullMQ worker waits before fetching again after a failed fetch (Redis away, or full), ms.
   * Default 5000.
   */
  fetchRetryDelayMs?: number;
  /**
   * Token streams (see shared/queues/token-stream.ts): when a caller asked to stream a job, its text is
   * written to a Redis Stream as the backend produces it, on a connection of its own. `maxLen` bounds the
   * entries kept (default 10000), `ttlMs` is the stream's lifetime after its end (at least half of it after any write; default 300000).
   * false: never stream (a streaming caller then gets the whole answer when the job finishes).
   */
  tokenStreams?: { maxLen?: number; ttlMs?: number } | false;
  logger?: Logger;
}

/** What admission reads of a ResourceLimiter: its state (synchronously) and its transitions. */
export interface AdmissionLimiter {
  readonly underPressure: boolean;
  readonly violations: ResourceViolation[];
  /** Pressure episodes so far. */
  readonly episodes: number;
  on(event: 'pressure:start' | 'pressure:change' | 'pressure:end', listener: () => void): unknown;
  off(event: 'pressure:start' | 'pressure:change' | 'pressure:end', listener: () => void): unknown;
}

/** Violations that stop a worker taking jobs: every resource but CPU (see Cell0WorkerOptions.limiter). */
export function pausingViolations(violations: readonly ResourceViolation[]): ResourceViolation[] {
  return violations.filter((v) => v.resource !== 'cpu');
}

/** Defaults of the options. */
export const DEFAULTS = {
  prefix: '{cell0}',
  queues: QUEUE_NAMES,
  shards: 1,
  queueEvents: false,
  providerTimeoutMs: 120_000,
  shutdownTimeoutMs: 30_000,
  lockDurationMs: 30_000,
  stalledIntervalMs: 15_000,
  maxStalledCount: 2,
  backendWaitMaxMs: 3_600_000,
  heartbeatMs: 5000,
  fetchRetryDelayMs: 5000,
  tokenStreams: {} as NonNullable<Cell0WorkerOptions['tokenStreams']>,
};

/** Why a job went back to wait: its backend's breaker, a rate limit, model memory, or the backend itself. */
export type DeferKind = 'breaker' | 'rate_limit' | 'memory' | 'backend';

/** Events of {@link Cell0Worker}. */
export interface Cell0WorkerEvents {
  /**
   * `waitMs`: from the job being added (or re-run) to this attempt starting; `endToEndMs`: from being added
   * to now (both -1 when the job carries no timestamps).
   */
  'job:completed': [
    { queue: QueueName; jobId: string; durationMs: number; waitMs: number; endToEndMs: number },
  ];
  'job:failed': [{ queue: QueueName; jobId: string; error: string; willRetry: boolean }];
  /** A job went back to wait (delayed) because its backend is away or busy; no attempt was spent. */
  'job:deferred': [{ queue: QueueName; jobId: string; delayMs: number; reason: string; kind: DeferKind }];
  /** A job reached the worker while it was under resource pressure and went back to wait (no attempt spent). */
  'job:handed-back': [{ queue: QueueName; jobId: string }];
  /** Resource pressure: the worker stopped taking jobs. */
  'worker:paused': [{ violations: ResourceViolation[] }];
  /** The pressure ended: the worker takes jobs again. */
  'worker:resumed': [{ pausedMs: number }];
  'worker:closed': [{ forced: boolean }];
}

/** The options with their defaults filled in. */
export type ResolvedWorkerOptions = Cell0WorkerOptions & typeof DEFAULTS;

/** Fails with a message naming the option when the options cannot run a worker. */
export function validateOptions(opts: ResolvedWorkerOptions): void {
  if (!opts.redisUrl) throw new TypeError('Cell0Worker: option "redisUrl" is required');
  checkShardCount(opts.shards, 'Cell0Worker: option "shards"');
  servedShards(opts.shards, opts.servedShards, 'Cell0Worker: option "servedShards"');
  for (const q of opts.queues)
    if (!QUEUE_NAMES.includes(q)) throw new TypeError(`Cell0Worker: unknown queue "${q}" in option "queues"`);
  if (opts.queues.includes(QueueName.INFERENCE) && !opts.inference)
    throw new TypeError(
      'Cell0Worker: option "inference" (a backend) is required to serve the inference queue',
    );
  if (opts.queues.includes(QueueName.EMBEDDING) && typeof opts.inference?.embed !== 'function')
    throw new TypeError(
      'Cell0Worker: option "inference" (a backend that embeds) is required to serve the embedding queue',
    );
  if (opts.queues.includes(QueueName.SEARCH) && Object.keys(opts.search ?? {}).length === 0)
    throw new TypeError(
      'Cell0Worker: option "search" (at least one backend) is required to serve the search queue',
    );
  for (const k of ['providerTimeoutMs', 'lockDurationMs', 'stalledIntervalMs'] as const)
    if (!(opts[k] > 0)) throw new TypeError(`Cell0Worker: option "${k}" must be > 0, got ${opts[k]}`);
  if (!(opts.heartbeatMs >= 0)) throw new TypeError(`Cell0Worker: option "heartbeatMs" must be >= 0`);
  if (!(opts.backendWaitMaxMs >= 0))
    throw new TypeError(`Cell0Worker: option "backendWaitMaxMs" must be >= 0`);
  if (!(opts.shutdownTimeoutMs >= 0))
    throw new TypeError(`Cell0Worker: option "shutdownTimeoutMs" must be >= 0`);
}

/** The queues served when the options name none: all, the embedding one only with a backend that embeds. */
export function defaultQueues(options: Cell0WorkerOptions): readonly QueueName[] {
  return (
    options.queues ??
    QUEUE_NAMES.filter((q) => q !== QueueName.EMBEDDING || typeof options.inference?.embed === 'function')
  );
}

/** Jobs a worker runs at once on `queue` (the configured figure, or the default per queue). */
export function concurrencyFor(c: Cell0WorkerOptions['concurrency'], queue: QueueName): number {
  if (queue === QueueName.INFERENCE) return c?.inference ?? 4;
  if (queue === QueueName.EMBEDDING) return c?.embedding ?? 256;
  return c?.search ?? 8;
}
