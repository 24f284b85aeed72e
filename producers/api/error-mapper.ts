import { type ErrorRequestHandler, type Response } from 'express';
import {
  BreakerOpenError,
  Cell0Error,
  ErrorCode,
  failedJobStatus,
  httpStatusOf,
  InputTooLargeError,
  RedisUnavailableError,
  ValidationError,
  type FieldIssue,
} from '../../shared/errors.js';
import { type Logger } from '../../shared/logger.js';
import { BatchValidationError } from '../batches/batch-input.js';

/** The error body every 4xx/5xx carries. */
export interface ErrorBody {
  error: {
    code: string;
    message: string;
    issues?: FieldIssue[];
    reason?: string;
    /** A refused batch: how many of its lines are bad. */
    bad_lines?: number;
  };
}

/** An error as the API answers it: status, extra headers and body. */
export interface HttpErrorAnswer {
  status: number;
  headers?: Record<string, string>;
  body: ErrorBody;
}

export function errorBody(code: string, message: string, issues?: FieldIssue[]): ErrorBody {
  return { error: { code, message, ...(issues ? { issues } : {}) } };
}

/** Answers an error with its code's status (from the error-code table) and the error body. */
export function sendError(res: Response, code: ErrorCode, message: string, issues?: FieldIssue[]): void {
  res.status(httpStatusOf(code)).json(errorBody(code, message, issues));
}

/** HTTP status of a request whose job failed with this code (the error-code table's permanence). */
export const failedStatus = failedJobStatus;

const REDIS_AWAY = 'the queue store (Redis) is unavailable; retry later';

/**
 * The messages of ioredis's client-side refusals: a command on a connection that is not up with the offline
 * queue off, on a closed connection, or out of retries. Only these: a generic ECONNREFUSED may be another
 * service's.
 */
const IOREDIS_AWAY =
  /^(Stream isn't writeable and enableOfflineQueue options is false|Connection is closed\.?$|Reached the max retries per request limit)/;

/**
 * The one error → HTTP map of the API: a thrown error (cell0's typed errors, or the body reader's) as the
 * answer the caller gets. A cell0 error answers its code's status from the error-code table, with its
 * message, its field issues or reason, and Retry-After when it says when to retry. Undefined for an error
 * the API did not expect (or whose code's status is 500): the caller logs it and answers 500.
 */
export function toHttpError(err: unknown, maxBodyBytes: number): HttpErrorAnswer | undefined {
  if (err instanceof Cell0Error) return cell0Answer(err);
  // ioredis's own refusals that reached the API unmapped (a connection not up yet or closed): Redis is
  // away, so 503 with Retry-After as for any other Redis outage, not a 500.
  if (err instanceof Error && IOREDIS_AWAY.test(err.message))
    return cell0Answer(new RedisUnavailableError(`Redis is unavailable: ${err.message}`, { cause: err }));
  // The body reader's errors (express.json / raw-body).
  const e = err as { type?: string; status?: number; statusCode?: number; message?: string } | undefined;
  if (e?.type === 'entity.too.large')
    return answer(ErrorCode.INPUT_TOO_LARGE, `request body is over the limit of ${maxBodyBytes} bytes`, [
      { field: '(body)', reason: `over ${maxBodyBytes} bytes` },
    ]);
  if (e?.type === 'entity.parse.failed')
    return answer(ErrorCode.VALIDATION, `malformed JSON: ${e.message ?? 'parse error'}`, [
      { field: '(body)', reason: 'malformed JSON' },
    ]);
  if (e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported')
    return answer(ErrorCode.UNSUPPORTED_MEDIA_TYPE, e.message ?? 'unsupported encoding');
  const status = e?.status ?? e?.statusCode;
  // Other body-reader errors: aborted request, bad content length, …
  if (typeof status === 'number' && status >= 400 && status < 500)
    return { status, body: errorBody(ErrorCode.VALIDATION, e?.message ?? 'bad request') };
  return undefined;
}

function answer(code: ErrorCode, message: string, issues?: FieldIssue[]): HttpErrorAnswer {
  return { status: httpStatusOf(code), body: errorBody(code, message, issues) };
}

function cell0Answer(err: Cell0Error): HttpErrorAnswer | undefined {
  // The API's only breaker guards Redis: an open one means the queue store is away.
  const code = err instanceof BreakerOpenError ? ErrorCode.REDIS_UNAVAILABLE : err.code;
  const status = httpStatusOf(code);
  if (status === 500) return undefined;
  const e = err as Cell0Error & { retryAfterMs?: unknown; reason?: unknown };
  const retryMs = typeof e.retryAfterMs === 'number' ? e.retryAfterMs : 1000;
  const message = code === ErrorCode.REDIS_UNAVAILABLE ? REDIS_AWAY : err.message;
  const body = errorBody(code, message, issuesOf(err));
  if (typeof e.reason === 'string') body.error.reason = e.reason;
  if (err instanceof BatchValidationError) body.error.bad_lines = err.badLines;
  return {
    status,
    // Unavailable or rate-limited: when to try again (the error's own figure, else a second).
    ...(status === 503 || status === 429
      ? { headers: { 'Retry-After': String(Math.max(1, Math.ceil(retryMs / 1000))) } }
      : {}),
    body,
  };
}

/**
 * The field issues an error carries: its own list (a validation error's, a refused batch's), else the one
 * field of a size error.
 */
function issuesOf(err: Cell0Error): FieldIssue[] | undefined {
  if (err instanceof ValidationError) return err.issues;
  const own = (err as { issues?: unknown }).issues;
  if (Array.isArray(own)) return own as FieldIssue[];
  if (err instanceof InputTooLargeError)
    return [
      {
        field: err.field,
        reason: `${err.actualBytes} bytes is over the limit of ${err.limitBytes} bytes`,
      },
    ];
  return undefined;
}

/** Sends an error answer. */
function send(res: Response, a: HttpErrorAnswer): void {
  for (const [k, v] of Object.entries(a.headers ?? {})) res.setHeader(k, v);
  res.status(a.status).json(a.body);
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
    const a = toHttpError(err, opts.maxBodyBytes);
    if (a) return send(res, a);
    opts.logger.error({ err, path: req.path }, 'unhandled error');
    send(res, answer(ErrorCode.INTERNAL, 'internal error'));
  };
}
