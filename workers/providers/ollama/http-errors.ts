import { type Cell0Error, ModelNotFoundError } from '../../../shared/errors.js';
import { httpStatusError } from '../../../shared/http/errors.js';

export const PROVIDER = 'ollama';

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
  return httpStatusError(PROVIDER, endpoint, status, retryAfter, ollamaMessage ?? bodyText);
}
