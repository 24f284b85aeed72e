import { type Response } from 'express';
import { ErrorCode, ERROR_CODE_PREFIX, type FieldIssue } from '../../../shared/errors.js';
import { openAIParam } from './openai-request.js';

/*
 * Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, which the OpenAI SDKs turn
 * into their typed errors by status (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, …).
 */

/** OpenAI's error types, by what went wrong. */
export const OpenAIErrorType = {
  INVALID_REQUEST: 'invalid_request_error',
  AUTHENTICATION: 'authentication_error',
  PERMISSION: 'permission_error',
  NOT_FOUND: 'not_found_error',
  RATE_LIMIT: 'rate_limit_error',
  SERVER: 'server_error',
  TIMEOUT: 'timeout_error',
} as const;

/** OpenAI's own error codes that clients branch on; other errors carry cell0's code, lower-cased. */
export const OpenAIErrorCode = {
  INVALID_API_KEY: 'invalid_api_key',
  MODEL_NOT_FOUND: 'model_not_found',
} as const;

/** The OpenAI error body. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** cell0's code as an OpenAI `code`: CELL0_WAIT_TIMEOUT → wait_timeout. */
export function openAICode(code: string | undefined): string | null {
  if (code === ErrorCode.UNAUTHORIZED) return OpenAIErrorCode.INVALID_API_KEY;
  if (code === ErrorCode.MODEL_NOT_FOUND) return OpenAIErrorCode.MODEL_NOT_FOUND;
  return code
    ? (code.startsWith(ERROR_CODE_PREFIX) ? code.slice(ERROR_CODE_PREFIX.length) : code).toLowerCase()
    : null;
}

function typeFor(status: number): string {
  if (status === 401) return OpenAIErrorType.AUTHENTICATION;
  if (status === 403) return OpenAIErrorType.PERMISSION;
  if (status === 404) return OpenAIErrorType.NOT_FOUND;
  if (status === 429) return OpenAIErrorType.RATE_LIMIT;
  if (status === 504) return OpenAIErrorType.TIMEOUT;
  if (status >= 500) return OpenAIErrorType.SERVER;
  return OpenAIErrorType.INVALID_REQUEST;
}

export function openAIError(
  status: number,
  message: string,
  opts: { code?: string | undefined; param?: string | null } = {},
): OpenAIErrorBody {
  return {
    error: { message, type: typeFor(status), param: opts.param ?? null, code: openAICode(opts.code) },
  };
}

function isCell0ErrorBody(
  body: unknown,
): body is { error: { code: string; message: string; issues?: FieldIssue[] } } {
  const e = (body as { error?: unknown } | null)?.error as Record<string, unknown> | undefined;
  return typeof e === 'object' && e !== null && typeof e.code === 'string' && typeof e.message === 'string';
}

/**
 * Makes every cell0 error body this response sends (from the auth guard, the body reader or the API's error
 * handler) an OpenAI one, with the same status: the OpenAI routes then answer errors in one shape, however
 * far down the chain the error was raised.
 */
export function speakOpenAIErrors(res: Response): void {
  const json = res.json.bind(res);
  res.json = (body: unknown) => {
    if (!isCell0ErrorBody(body)) return json(body);
    const status = res.statusCode;
    const e = body.error;
    const param = openAIParam(e.issues?.[0]);
    const message =
      e.issues && e.issues.length > 0
        ? e.issues.map((i) => `${openAIParam(i) ?? i.field}: ${i.reason}`).join('; ')
        : e.message;
    return json(openAIError(status, message, { code: e.code, param }));
  };
}

/** HTTP status of a job that failed, for the OpenAI routes (an unknown model is 404, as OpenAI's). */
export function failedJobStatus(code: string | undefined): number {
  switch (code) {
    case ErrorCode.MODEL_NOT_FOUND:
    case ErrorCode.PROVIDER_UNAVAILABLE:
      return 404;
    case ErrorCode.VALIDATION:
    case ErrorCode.INPUT_TOO_LARGE:
    case ErrorCode.MODEL_TOO_LARGE:
      return 400;
    default:
      return 502;
  }
}

/** The OpenAI body of a failed job. */
export function failedJobError(
  code: string | undefined,
  message: string,
): { status: number; body: OpenAIErrorBody } {
  const status = failedJobStatus(code);
  // No route for a model is a model the fleet cannot serve: OpenAI's model_not_found.
  const c =
    code === ErrorCode.PROVIDER_UNAVAILABLE ? ErrorCode.MODEL_NOT_FOUND : (code ?? ErrorCode.JOB_FAILED);
  return { status, body: openAIError(status, message, { code: c, param: status === 404 ? 'model' : null }) };
}
