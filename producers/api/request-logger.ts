import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { pinoHttp, type HttpLogger } from 'pino-http';
import { type Logger, sampleHotPathLine } from '../../shared/logger.js';

/** Longest caller-chosen X-Request-Id kept; a longer (or missing) one is replaced by a random UUID. */
const MAX_REQUEST_ID = 128;

/**
 * Request logging (pino-http): every response carries an `X-Request-Id` (the caller's, when it sent a
 * short one), and every finished request is one log line `{ reqId, method, path, status, ms }`: at error
 * level for 5xx (always written), at debug level otherwise (a CELL0_LOG_SAMPLE fraction of them).
 *
 * Kept cheap per request: pino-http's request and response serializers (headers, remote address) are
 * turned off, and a success line is not even built unless the logger writes debug lines.
 */
export function requestLogger(log: Logger): HttpLogger {
  return pinoHttp({
    logger: log,
    // The line carries only what is below; pino-http would otherwise serialize the whole request (its
    // headers) into a child logger on every request.
    wrapSerializers: false,
    serializers: { httpReq: () => undefined, httpRes: () => undefined },
    customAttributeKeys: { req: 'httpReq', res: 'httpRes', responseTime: 'ms' },
    quietReqLogger: true,
    quietResLogger: true,
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
): { method: string | undefined; path: string; status: number; ms: number } {
  // express's req.path: the URL without its query string (which may carry anything a caller sent).
  const url = req.url ?? '';
  const q = url.indexOf('?');
  return {
    method: req.method,
    path: (req as IncomingMessage & { path?: string }).path ?? (q < 0 ? url : url.slice(0, q)),
    status: res.statusCode,
    ms: val.ms,
  };
}
