import { type ErrorRequestHandler, type Response } from 'express';
import {
  BreakerOpenError,
  Cell0Error,
  ErrorCode,
  InputTooLargeError,
  OverloadedError,
  RedisFullError,
  RedisTimeoutError,
  ValidationError,
  type FieldIssue,
} from '../../shared/errors.js';
import { type Logger } from '../../shared/logger.js';

/** The error body every 4xx/5xx carries. */
export interface ErrorBody {
  error: { code: string; message: string; issues?: FieldIssue[] };
}

/** An error as the API answers it: status, extra headers and body. */
export interface HttpErrorAnswer {
  status: number;
  headers?: Record<string, string>;
  body: ErrorBody | { error: { code: string; message: string; reason: string } };
}

export function errorBody(code: string, message: string, issues?: FieldIssue[]): ErrorBody {
  return { error: { code, message, ...(issues ? { issues } : {}) } };
}

/** Sends an error answer. */
export function sendError(res: Response, answer: HttpErrorAnswer): void {
  for (const [k, v] of Object.entries(answer.headers ?? {})) res.setHeader(k, v);
  res.status(answer.status).json(answer.body);
}

/** HTTP status for a job that failed, by the code of the error the worker raised. */
export function failedStatus(code: string | undefined): number {
  switch (code) {
    case ErrorCode.MODEL_NOT_FOUND:
    case ErrorCode.PROVIDER_UNAVAILABLE:
    case ErrorCode.VALIDATION:
    case ErrorCode.INPUT_TOO_LARGE:
    case ErrorCode.MODEL_TOO_LARGE:
      return 422;
    default:
      return 502;
  }
}

const REDIS_AWAY = 'the queue store (Redis) is unavailable; retry later';

function retryAfter(ms: number): Record<string, string> {
  return { 'Retry-After': String(Math.max(1, Math.ceil(ms / 1000))) };
}

/**
 * The one error → HTTP map of the API: a thrown error (cell0's typed errors, or the body reader's) as the
 * answer the caller gets. Undefined for an error the API did not expect: the caller answers 500 and logs it.
 */
export function toHttpError(err: unknown, maxBodyBytes: number): HttpErrorAnswer | undefined {
  if (err instanceof ValidationError)
    return { status: 400, body: errorBody(err.code, err.message, err.issues) };
  if (err instanceof InputTooLargeError)
    return {
      status: 413,
      body: errorBody(err.code, err.message, [
        { field: err.field, reason: `${err.actualBytes} bytes is over the limit of ${err.limitBytes} bytes` },
      ]),
    };
  if (err instanceof OverloadedError || err instanceof RedisFullError)
    return {
      status: 503,
      headers: retryAfter(err.retryAfterMs),
      body: { error: { code: err.code, message: err.message, reason: err.reason } },
    };
  if (err instanceof RedisTimeoutError)
    return { status: 503, headers: { 'Retry-After': '1' }, body: errorBody(err.code, err.message) };
  if (err instanceof BreakerOpenError)
    return {
      status: 503,
      headers: retryAfter(err.retryAfterMs),
      body: errorBody(ErrorCode.REDIS_UNAVAILABLE, REDIS_AWAY),
    };
  if (err instanceof Cell0Error && err.code === ErrorCode.REDIS_UNAVAILABLE)
    return { status: 503, headers: { 'Retry-After': '1' }, body: errorBody(err.code, REDIS_AWAY) };
  // The body reader's errors (express.json / raw-body).
  const e = err as { type?: string; status?: number; statusCode?: number; message?: string } | undefined;
  if (e?.type === 'entity.too.large')
    return {
      status: 413,
      body: errorBody(ErrorCode.INPUT_TOO_LARGE, `request body is over the limit of ${maxBodyBytes} bytes`, [
        { field: '(body)', reason: `over ${maxBodyBytes} bytes` },
      ]),
    };
  if (e?.type === 'entity.parse.failed')
    return {
      status: 400,
      body: errorBody(ErrorCode.VALIDATION, `malformed JSON: ${e.message ?? 'parse error'}`, [
        { field: '(body)', reason: 'malformed JSON' },
      ]),
    };
  if (e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported')
    return {
      status: 415,
      body: errorBody(ErrorCode.UNSUPPORTED_MEDIA_TYPE, e.message ?? 'unsupported encoding'),
    };
  const status = e?.status ?? e?.statusCode;
  // Other body-reader errors: aborted request, bad content length, …
  if (typeof status === 'number' && status >= 400 && status < 500)
    return { status, body: errorBody(ErrorCode.VALIDATION, e?.message ?? 'bad request') };
  return undefined;
}

/**
 * The API's express error handler: every error becomes a JSON answer ({@link toHttpError}); an
 * unexpected one is logged and answered 500 without its details. A response already under way is cut.
 */
export function errorHandler(opts: { maxBodyBytes: number; logger: Logger }): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const answer = toHttpError(err, opts.maxBodyBytes);
    if (answer) return sendError(res, answer);
    opts.logger.error({ err, path: req.path }, 'unhandled error');
    sendError(res, { status: 500, body: errorBody(ErrorCode.INTERNAL, 'internal error') });
  };
}
