import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { pinoHttp, type HttpLogger } from 'pino-http';
import { type Logger, sampleHotPathLine } from '../../shared/logger.js';

/** Longest caller-chosen X-Request-Id kept; a longer (or missing) one is replaced by a random UUID. */
const MAX_REQUEST_ID = 128;

/** A node:http / express middleware. */
export type RequestLogger = HttpLogger;

/**
 * Request logging through pino-http: every response carries an `X-Request-Id` (the caller's, when it sent a
 * short one), and every finished request is one log line `{ reqId, method, path, status, ms }`: at error
 * level for 5xx or a response error (always written), at debug level otherwise (a CELL0_LOG_SAMPLE
 * fraction of them). No query string, header or body is ever logged.
 *
 * Configured to stay cheap per request (pino-http's defaults cost ~3% of a busy API's CPU):
 * - one child logger per request, not two (`quietReqLogger` off: the request id goes in the line, not in a
 *   child's bindings), and that child binds nothing: its request binding is serialized to `undefined` under
 *   a key of its own (`httpReq`), so neither pino-std-serializers nor the `req.*` redaction paths run;
 * - the level is decided before the line is built: a success line that is not written (debug off, or the
 *   sampler declines it) returns at `silent` without building its object.
 */
export function requestLogger(log: Logger): RequestLogger {
  return pinoHttp({
    logger: log,
    wrapSerializers: false,
    customAttributeKeys: { req: 'httpReq', res: 'httpRes', responseTime: 'ms' },
    serializers: { httpReq: bindNothing },
    genReqId: requestId,
    customLogLevel: (_req, res, err) =>
      err !== undefined || res.statusCode >= 500
        ? 'error'
        : log.isLevelEnabled('debug') && sampleHotPathLine()
          ? 'debug'
          : 'silent',
    customSuccessObject: line,
    customErrorObject: (req, res, _err, val: { ms: number }) => line(req, res, val),
    customSuccessMessage: (_req, res) => (res.writableEnded ? 'request' : 'request aborted'),
    customErrorMessage: () => 'request failed',
  });
}

/** The per-request child logger's request binding: nothing (the line says what it needs itself). */
function bindNothing(): undefined {
  return undefined;
}

/** The caller's X-Request-Id when it sent a usable one, else a new UUID; echoed on the response. */
function requestId(req: IncomingMessage, res: ServerResponse): string {
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && given.length <= MAX_REQUEST_ID ? given : randomUUID();
  res.setHeader('X-Request-Id', id);
  return id;
}

function line(
  req: IncomingMessage,
  res: ServerResponse,
  val: { ms: number },
): { reqId: unknown; method: string | undefined; path: string; status: number; ms: number } {
  // express's req.path: the URL without its query string (which may carry anything a caller sent).
  const url = req.url ?? '';
  const q = url.indexOf('?');
  return {
    reqId: req.id,
    method: req.method,
    path: (req as IncomingMessage & { path?: string }).path ?? (q < 0 ? url : url.slice(0, q)),
    status: res.statusCode,
    ms: val.ms,
  };
}
