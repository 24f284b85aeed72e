import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

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
