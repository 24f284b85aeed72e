import { ProviderError } from '../errors.js';

/** Error codes of failures to reach a server or of a connection dropped mid-answer: worth a retry. */
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/** The `code` of an error, looking inside AggregateError (happy-eyeballs connects carry none of their own). */
export function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  if (err instanceof AggregateError) {
    for (const inner of err.errors) {
      const innerCode = errorCode(inner);
      if (innerCode !== undefined) return innerCode;
    }
  }
  return undefined;
}

/** True for socket-level failures (refused, reset, closed by the peer, undici's UND_ERR_* errors). */
export function isConnectionError(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && (TRANSIENT_CODES.has(code) || code.startsWith('UND_ERR_'));
}

/** Wraps a connection failure as a retryable ProviderError of kind "connection"; `cause` keeps the original. */
export function connectionError(provider: string, endpoint: string, err: unknown): ProviderError {
  const code = errorCode(err);
  const detail = err instanceof Error && err.message ? err.message : String(err);
  return new ProviderError(
    provider,
    `${endpoint}: connection failed (${code ?? 'unknown'}): ${detail}`,
    undefined,
    true,
    {
      cause: err,
      kind: 'connection',
    },
  );
}

/**
 * Milliseconds to wait from a Retry-After header: delta-seconds or an HTTP date (a date in the past means
 * 0). Undefined when absent or unreadable.
 */
export function parseRetryAfter(
  value: string | string[] | undefined,
  nowMs = Date.now(),
): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return undefined;
  const text = raw.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

/**
 * The generic mapping of an HTTP error answer: 429, 408 and 5xx are retryable (with Retry-After as
 * retryAfterMs); any other status is not. `detail` is what the backend said, already extracted from its
 * error body by the caller.
 */
export function httpStatusError(
  provider: string,
  endpoint: string,
  status: number,
  retryAfter: string | string[] | undefined,
  detail: string,
): ProviderError {
  const retryable = status === 429 || status === 408 || status >= 500;
  const retryAfterMs = retryable ? parseRetryAfter(retryAfter) : undefined;
  const text = detail.trim().slice(0, 300);
  return new ProviderError(
    provider,
    `${endpoint}: ${text.length > 0 ? text : `HTTP ${status}`} (HTTP ${status})`,
    status,
    retryable,
    { retryAfterMs, kind: 'http' },
  );
}
