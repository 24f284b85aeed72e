/**
 * Typed errors. Callers branch on `code`, never on `message`: messages are for people and may change,
 * codes are part of the public API.
 */

/** Every error code cell0 raises on purpose. */
export const ErrorCode = {
  CONFIG_INVALID: 'CELL0_CONFIG_INVALID',
  VALIDATION: 'CELL0_VALIDATION',
  INPUT_TOO_LARGE: 'CELL0_INPUT_TOO_LARGE',
  REDIS_UNAVAILABLE: 'CELL0_REDIS_UNAVAILABLE',
  BREAKER_OPEN: 'CELL0_BREAKER_OPEN',
  RATE_LIMITED: 'CELL0_RATE_LIMITED',
  WAIT_TIMEOUT: 'CELL0_WAIT_TIMEOUT',
  JOB_FAILED: 'CELL0_JOB_FAILED',
  JOB_NOT_FOUND: 'CELL0_JOB_NOT_FOUND',
  PROVIDER_ERROR: 'CELL0_PROVIDER_ERROR',
  PROVIDER_UNAVAILABLE: 'CELL0_PROVIDER_UNAVAILABLE',
  MODEL_NOT_FOUND: 'CELL0_MODEL_NOT_FOUND',
  REDIS_NOT_INSTALLED: 'CELL0_REDIS_NOT_INSTALLED',
  CLOSED: 'CELL0_CLOSED',
  UNAUTHORIZED: 'CELL0_UNAUTHORIZED',
  /** A valid key of the wrong kind (a tenant key on an admin route, or the reverse), or admin routes off. */
  FORBIDDEN: 'CELL0_FORBIDDEN',
  ROUTE_NOT_FOUND: 'CELL0_ROUTE_NOT_FOUND',
  METHOD_NOT_ALLOWED: 'CELL0_METHOD_NOT_ALLOWED',
  UNSUPPORTED_MEDIA_TYPE: 'CELL0_UNSUPPORTED_MEDIA_TYPE',
  INTERNAL: 'CELL0_INTERNAL',
  /** The fleet is overloaded (queue too deep, or every worker under resource pressure): retry later. */
  OVERLOADED: 'CELL0_OVERLOADED',
  /** A model is larger than the whole model-memory budget of the worker: it can never be loaded there. */
  MODEL_TOO_LARGE: 'CELL0_MODEL_TOO_LARGE',
  /** No room for a model now: every resident model is in use, pinned or loading. Retry later. */
  MODEL_MEMORY_BUSY: 'CELL0_MODEL_MEMORY_BUSY',
  /** Redis is at its maxmemory (or over the memory watermark): it takes no new work now. Retry later. */
  REDIS_FULL: 'CELL0_REDIS_FULL',
  /** Redis answers, but slowly: a command on a live connection took longer than the command timeout. */
  REDIS_TIMEOUT: 'CELL0_REDIS_TIMEOUT',
  /** Redis may evict keys (maxmemory-policy other than noeviction), which loses queued jobs: cell0 refuses to run. */
  REDIS_EVICTION_POLICY: 'CELL0_REDIS_EVICTION_POLICY',
  /** A batch processor's queue is full: the item was refused (backpressure). Retry later. */
  BATCH_QUEUE_FULL: 'CELL0_BATCH_QUEUE_FULL',
  /** The job was queued, but its backend is down on every worker (breakers open): it runs once one is back. */
  BACKEND_UNAVAILABLE: 'CELL0_BACKEND_UNAVAILABLE',
  /** No batch with that id for this caller (never created, another tenant's, or its retention ended). */
  BATCH_NOT_FOUND: 'CELL0_BATCH_NOT_FOUND',
  /** A batch item that had not started when its batch was cancelled: it was not run. */
  BATCH_CANCELLED: 'CELL0_BATCH_CANCELLED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every error cell0 raises on purpose. */
export class Cell0Error extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One problem with an input: the field (dotted path) and why it was refused. */
export interface FieldIssue {
  field: string;
  reason: string;
}

/** The environment (or options object) holds a value cell0 cannot run with. */
export class ConfigError extends Cell0Error {
  readonly issues: FieldIssue[];
  constructor(issues: FieldIssue[]) {
    super(
      ErrorCode.CONFIG_INVALID,
      'invalid configuration:\n' + issues.map((i) => `  ${i.field}: ${i.reason}`).join('\n'),
    );
    this.issues = issues;
  }
}

/** A request did not match its schema. */
export class ValidationError extends Cell0Error {
  readonly issues: FieldIssue[];
  constructor(issues: FieldIssue[]) {
    super(ErrorCode.VALIDATION, issues.map((i) => `${i.field}: ${i.reason}`).join('; '));
    this.issues = issues;
  }
}

/** An input is larger than the configured limit; it never reaches Redis. */
export class InputTooLargeError extends Cell0Error {
  constructor(
    readonly field: string,
    readonly limitBytes: number,
    readonly actualBytes: number,
  ) {
    super(
      ErrorCode.INPUT_TOO_LARGE,
      `${field}: ${actualBytes} bytes is over the limit of ${limitBytes} bytes`,
    );
  }
}

/** Redis could not be reached (connection down, command timed out). */
export class RedisUnavailableError extends Cell0Error {
  constructor(message = 'Redis is unavailable', options?: { cause?: unknown }) {
    super(ErrorCode.REDIS_UNAVAILABLE, message, options);
  }
}

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

/** A circuit breaker is open: the call was refused without being attempted. */
export class BreakerOpenError extends Cell0Error {
  constructor(
    readonly breaker: string,
    readonly retryAfterMs: number,
  ) {
    super(ErrorCode.BREAKER_OPEN, `circuit breaker "${breaker}" is open; retry in ${retryAfterMs} ms`);
  }
}

/** A caller stopped waiting for a job; the job itself goes on and can be fetched by id. */
export class WaitTimeoutError extends Cell0Error {
  constructor(
    readonly queue: string,
    readonly jobId: string,
    readonly waitedMs: number,
  ) {
    super(ErrorCode.WAIT_TIMEOUT, `job ${queue}/${jobId} did not finish within ${waitedMs} ms`);
  }
}

/** A job ended in the failed state. `failureCode` is the code of the error the worker raised, if any. */
export class JobFailedError extends Cell0Error {
  constructor(
    readonly queue: string,
    readonly jobId: string,
    readonly failedReason: string,
    readonly failureCode?: string,
  ) {
    super(ErrorCode.JOB_FAILED, `job ${queue}/${jobId} failed: ${failedReason}`);
  }
}

/** No job with that id exists (never did, or its retention ended). */
export class JobNotFoundError extends Cell0Error {
  constructor(
    readonly queue: string,
    readonly jobId: string,
  ) {
    super(ErrorCode.JOB_NOT_FOUND, `no job ${jobId} in queue ${queue}`);
  }
}

/**
 * What went wrong with a backend call: `http` = it answered with an error status; `connection` = it could
 * not be reached or dropped the connection; `timeout` = no full answer within the deadline; `protocol` =
 * it answered something that is not what its API promises (bad JSON, a stream cut short).
 */
export type ProviderFailureKind = 'http' | 'connection' | 'timeout' | 'protocol';

/** A backend (Ollama, search provider) answered with an error or could not be reached. */
export class ProviderError extends Cell0Error {
  /** How long the backend asked us to wait before trying again (from Retry-After), when it said. */
  readonly retryAfterMs: number | undefined;
  readonly kind: ProviderFailureKind;
  constructor(
    readonly provider: string,
    message: string,
    readonly status: number | undefined,
    /** Whether trying again later can succeed (5xx, 429, connection errors). */
    readonly retryable: boolean,
    options?: { cause?: unknown; retryAfterMs?: number; kind?: ProviderFailureKind },
  ) {
    super(
      ErrorCode.PROVIDER_ERROR,
      `${provider}: ${message}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.retryAfterMs = options?.retryAfterMs;
    this.kind = options?.kind ?? (status === undefined ? 'protocol' : 'http');
  }

  /**
   * True when the backend is down or asked us to back off (unreachable, 429, 503): the job should wait for
   * it rather than spend one of its attempts.
   */
  get backendUnavailable(): boolean {
    return this.kind === 'connection' || this.status === 429 || this.status === 503;
  }
}

/** A rate limit had no token for the call within the time the caller was willing to wait. */
export class RateLimitedError extends Cell0Error {
  constructor(
    readonly limiter: string,
    readonly retryAfterMs: number,
  ) {
    super(ErrorCode.RATE_LIMITED, `rate limit "${limiter}" has no capacity now; retry in ${retryAfterMs} ms`);
  }
}

/** The backend does not know the requested model. Not retryable. */
export class ModelNotFoundError extends Cell0Error {
  constructor(
    readonly provider: string,
    readonly model: string,
  ) {
    super(ErrorCode.MODEL_NOT_FOUND, `${provider}: model "${model}" not found`);
  }
}

/** The requested provider is not configured in this worker. Not retryable. */
export class ProviderUnavailableError extends Cell0Error {
  constructor(
    readonly provider: string,
    message?: string,
  ) {
    super(
      ErrorCode.PROVIDER_UNAVAILABLE,
      message ?? `provider "${provider}" is not configured on this worker`,
    );
  }
}

/** The object was closed; it takes no more calls. */
export class ClosedError extends Cell0Error {
  constructor(what: string) {
    super(ErrorCode.CLOSED, `${what} is closed`);
  }
}

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

/**
 * A job was added (or joined) but not waited for, because its backend is down on every worker that could run
 * it: it stays queued and runs once the backend is back. Fetch it later by `jobId`.
 */
export class BackendUnavailableError extends Cell0Error {
  constructor(
    readonly queue: string,
    readonly jobId: string,
    /** The backends whose breakers are open (or half-open) on every worker. */
    readonly backends: readonly string[],
    /** When a worker will try the backend again, ms. */
    readonly retryAfterMs: number,
  ) {
    super(
      ErrorCode.BACKEND_UNAVAILABLE,
      `job ${queue}/${jobId} is queued, but its backend (${backends.join(', ')}) is down on every worker; it runs once the backend is back`,
    );
  }
}

/** A model does not fit the model-memory budget even with every other model evicted. Not retryable. */
export class ModelTooLargeError extends Cell0Error {
  constructor(
    readonly model: string,
    readonly memoryBytes: number,
    readonly budgetBytes: number,
  ) {
    super(
      ErrorCode.MODEL_TOO_LARGE,
      `model "${model}" needs ${memoryBytes} bytes, more than the model-memory budget of ${budgetBytes} bytes (CELL0_MODEL_MEMORY_BUDGET)`,
    );
  }
}

/**
 * No room for a model within the wait allowed: the memory is held by models that are in use, pinned,
 * loading, or of higher priority. Retryable: the job waits and tries again.
 */
export class ModelMemoryBusyError extends Cell0Error {
  constructor(
    readonly model: string,
    message: string,
    /** Suggested wait before the next try. */
    readonly retryAfterMs: number,
  ) {
    super(ErrorCode.MODEL_MEMORY_BUSY, message);
  }
}

/** A batch processor holds its bound of unfinished items: a new one is refused instead of queued. */
export class BatchQueueFullError extends Cell0Error {
  constructor(readonly maxQueuedItems: number) {
    super(
      ErrorCode.BATCH_QUEUE_FULL,
      `the batch queue holds its bound of ${maxQueuedItems} unfinished items; retry later`,
    );
  }
}

/** True when `err` is a cell0 error with the given code. */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof Cell0Error && err.code === code;
}
