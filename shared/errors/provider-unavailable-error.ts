import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

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
