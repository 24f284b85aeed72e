import { Cell0Error } from './cell0-error.js';
import { isPermanentCode } from './error-codes.js';
import { ProviderError } from './provider-error.js';

/**
 * Whether the worker fails a job at once (without its other attempts) for this error: by the error-code
 * table, except that a backend's own error is permanent exactly when the backend said a retry cannot help
 * (`ProviderError.retryable`, e.g. a 400 or 404; not a 5xx, 429 or a dropped connection).
 */
export function isPermanent(err: unknown): boolean {
  if (err instanceof ProviderError) return !err.retryable;
  return err instanceof Cell0Error && isPermanentCode(err.code);
}
