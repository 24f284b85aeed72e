/**
 * Typed errors. Callers branch on `code`, never on `message`: messages are for people and may change,
 * codes are part of the public API. One error per file; the codes, and what each means for the worker
 * (permanent or not) and for the API (its HTTP status), are in one table: error-codes.ts.
 */
export {
  ErrorCode,
  ERROR_CODES,
  ERROR_CODE_PREFIX,
  type ErrorCodeInfo,
  isErrorCode,
  isPermanentCode,
  httpStatusOf,
  failedJobStatus,
} from './error-codes.js';
export { isPermanent } from './permanence.js';
export { Cell0Error, hasCode } from './cell0-error.js';
export { type FieldIssue } from './field-issue.js';
export { ConfigError } from './config-error.js';
export { ValidationError } from './validation-error.js';
export { InputTooLargeError } from './input-too-large-error.js';
export { RedisUnavailableError } from './redis-unavailable-error.js';
export { RedisFullError } from './redis-full-error.js';
export { RedisTimeoutError } from './redis-timeout-error.js';
export { RedisEvictionPolicyError } from './redis-eviction-policy-error.js';
export { BreakerOpenError } from './breaker-open-error.js';
export { WaitTimeoutError } from './wait-timeout-error.js';
export { JobFailedError } from './job-failed-error.js';
export { JobNotFoundError } from './job-not-found-error.js';
export { ProviderError, type ProviderFailureKind } from './provider-error.js';
export { RateLimitedError } from './rate-limited-error.js';
export { ModelNotFoundError } from './model-not-found-error.js';
export { ProviderUnavailableError } from './provider-unavailable-error.js';
export { ClosedError } from './closed-error.js';
export { OverloadedError } from './overloaded-error.js';
export { BackendUnavailableError } from './backend-unavailable-error.js';
export { ModelTooLargeError } from './model-too-large-error.js';
export { ModelMemoryBusyError } from './model-memory-busy-error.js';
export { BatchQueueFullError } from './batch-queue-full-error.js';
