import { type Cell0Error, ModelNotFoundError, ProviderError } from '../../../shared/errors.js';

export const PROVIDER = 'ollama';

/** Error codes of failures to reach the server or of a connection dropped mid-answer: worth a retry. */
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

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  // Happy-eyeballs connects fail with an AggregateError that may carry no code of its own.
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

/** Wraps a connection failure; the underlying error is kept as `cause`. */
export function connectionError(endpoint: string, err: unknown): ProviderError {
  const code = errorCode(err);
  const detail = err instanceof Error && err.message ? err.message : String(err);
  return new ProviderError(
    PROVIDER,
    `${endpoint}: connection failed (${code ?? 'unknown'}): ${detail}`,
    undefined,
    true,
    { cause: err },
  );
}

/** The `error` string of an Ollama error body (`{"error": "..."}`), if the text is one. */
export function ollamaErrorMessage(text: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
      const error = (parsed as { error?: unknown }).error;
      if (typeof error === 'string') return error;
    }
  } catch {
    // Not JSON: the caller falls back to the raw text.
  }
  return undefined;
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
 * Maps an HTTP error answer to a typed error. 404 "model not found" → ModelNotFoundError; 429 and 5xx →
 * retryable ProviderError (with retryAfterMs from Retry-After); any other status → non-retryable.
 */
export function httpError(
  endpoint: string,
  status: number,
  retryAfter: string | string[] | undefined,
  bodyText: string,
  model: string | undefined,
): Cell0Error {
  const ollamaMessage = ollamaErrorMessage(bodyText);
  if (
    status === 404 &&
    model !== undefined &&
    ollamaMessage !== undefined &&
    /not found/i.test(ollamaMessage)
  ) {
    return new ModelNotFoundError(PROVIDER, model);
  }
  const snippet = bodyText.trim().slice(0, 200);
  const message = `${endpoint}: ${ollamaMessage ?? (snippet.length > 0 ? snippet : `HTTP ${status}`)} (HTTP ${status})`;
  const retryable = status === 429 || status >= 500;
  const retryAfterMs = retryable ? parseRetryAfter(retryAfter) : undefined;
  return new ProviderError(PROVIDER, message, status, retryable, { retryAfterMs });
}
