/*
 * The one error-code table: every code cell0 raises on purpose, and per code what it means to the worker
 * (permanent: the job fails at once, without spending its other attempts) and to the HTTP API (the status
 * of a request that fails with it). The worker (isPermanent) and the API (its error mapper, and the status
 * of a failed job) both read it; nothing else spells a code.
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
  /** No batch input file (or batch output file) with that id for this caller, or its retention ended. */
  FILE_NOT_FOUND: 'CELL0_FILE_NOT_FOUND',
  /** A batch item that had not started when its batch was cancelled: it was not run. */
  BATCH_CANCELLED: 'CELL0_BATCH_CANCELLED',
  /** Every caller streaming a job's tokens went away before it finished: the job was stopped. */
  JOB_CANCELLED: 'CELL0_JOB_CANCELLED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** What a code means to the worker and to the API. */
export interface ErrorCodeInfo {
  /** Trying again cannot fix it: the worker fails the job at once instead of burning its attempts. */
  readonly permanent: boolean;
  /**
   * HTTP status of a request that fails with this code. 500 means the API did not expect it: it is logged
   * and answered as CELL0_INTERNAL without its details.
   */
  readonly status: number;
}

/** Every code's {@link ErrorCodeInfo}. */
export const ERROR_CODES: { readonly [C in ErrorCode]: ErrorCodeInfo } = {
  // a configuration error is the operator's to fix, not the caller's
  [ErrorCode.CONFIG_INVALID]: { permanent: false, status: 500 },
  [ErrorCode.VALIDATION]: { permanent: true, status: 400 },
  [ErrorCode.INPUT_TOO_LARGE]: { permanent: true, status: 413 },
  [ErrorCode.REDIS_UNAVAILABLE]: { permanent: false, status: 503 },
  [ErrorCode.BREAKER_OPEN]: { permanent: false, status: 503 },
  [ErrorCode.RATE_LIMITED]: { permanent: false, status: 429 },
  // the API itself answers 202 with the job id: the job goes on
  [ErrorCode.WAIT_TIMEOUT]: { permanent: false, status: 504 },
  [ErrorCode.JOB_FAILED]: { permanent: false, status: 502 },
  [ErrorCode.JOB_NOT_FOUND]: { permanent: false, status: 404 },
  // permanent when the backend said so: see isPermanent
  [ErrorCode.PROVIDER_ERROR]: { permanent: false, status: 502 },
  [ErrorCode.PROVIDER_UNAVAILABLE]: { permanent: true, status: 422 },
  [ErrorCode.MODEL_NOT_FOUND]: { permanent: true, status: 422 },
  [ErrorCode.REDIS_NOT_INSTALLED]: { permanent: false, status: 500 },
  // the process is shutting down: another one takes the call
  [ErrorCode.CLOSED]: { permanent: false, status: 503 },
  [ErrorCode.UNAUTHORIZED]: { permanent: false, status: 401 },
  [ErrorCode.FORBIDDEN]: { permanent: false, status: 403 },
  [ErrorCode.ROUTE_NOT_FOUND]: { permanent: false, status: 404 },
  [ErrorCode.METHOD_NOT_ALLOWED]: { permanent: false, status: 405 },
  [ErrorCode.UNSUPPORTED_MEDIA_TYPE]: { permanent: false, status: 415 },
  [ErrorCode.INTERNAL]: { permanent: false, status: 500 },
  [ErrorCode.OVERLOADED]: { permanent: false, status: 503 },
  [ErrorCode.MODEL_TOO_LARGE]: { permanent: true, status: 422 },
  [ErrorCode.MODEL_MEMORY_BUSY]: { permanent: false, status: 503 },
  [ErrorCode.REDIS_FULL]: { permanent: false, status: 503 },
  [ErrorCode.REDIS_TIMEOUT]: { permanent: false, status: 503 },
  [ErrorCode.REDIS_EVICTION_POLICY]: { permanent: false, status: 500 },
  [ErrorCode.BATCH_QUEUE_FULL]: { permanent: false, status: 503 },
  // the API itself answers 202 with the job id: the job stays queued
  [ErrorCode.BACKEND_UNAVAILABLE]: { permanent: false, status: 503 },
  [ErrorCode.BATCH_NOT_FOUND]: { permanent: false, status: 404 },
  [ErrorCode.FILE_NOT_FOUND]: { permanent: false, status: 404 },
  // an item's outcome inside a batch, not a request's: the batch was cancelled before the item ran
  [ErrorCode.BATCH_CANCELLED]: { permanent: false, status: 409 },
  // nobody was left to read the job's answer: not retried; an identical request later runs it again
  [ErrorCode.JOB_CANCELLED]: { permanent: true, status: 409 },
};

/** The prefix of every code (how a code is found inside a failed job's reason). */
export const ERROR_CODE_PREFIX = 'CELL0_';

const KNOWN = new Set<string>(Object.values(ErrorCode));

/** True when `code` is one of the table's codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && KNOWN.has(code);
}

/** True when an error with this code cannot succeed on a retry (unknown codes: false). */
export function isPermanentCode(code: string | undefined): boolean {
  return isErrorCode(code) && ERROR_CODES[code].permanent;
}

/** HTTP status of a request that fails with this code (unknown codes: 500). */
export function httpStatusOf(code: string | undefined): number {
  return isErrorCode(code) ? ERROR_CODES[code].status : 500;
}

/**
 * HTTP status of a request whose job failed with this code: 422 when the code is permanent (the request
 * itself can never succeed), 502 otherwise (the backend or the fleet failed it).
 */
export function failedJobStatus(code: string | undefined): 422 | 502 {
  return isPermanentCode(code) ? 422 : 502;
}
