import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { type Logger, sampleHotPathLine } from '../../shared/logger.js';

/** Longest caller-chosen X-Request-Id kept; a longer (or missing) one is replaced by a random UUID. */
const MAX_REQUEST_ID = 128;

/** A node:http / express middleware. */
export type RequestLogger = (req: IncomingMessage, res: ServerResponse, next: () => void) => void;

/**
 * Request logging: every response carries an `X-Request-Id` (the caller's, when it sent a short one), and
 * every finished request is one log line `{ reqId, method, path, status, ms }`: at error level for 5xx or a
 * response error (always written), at debug level otherwise (a CELL0_LOG_SAMPLE fraction of them).
 *
 * Kept cheap per request, which is why this is not pino-http: no child logger per request (pino-http builds
 * two, with their bindings serialized and redacted, even when the line is never written), and a success line
 * is not even built unless the logger writes debug lines and the sampler takes it.
 */
export function requestLogger(log: Logger): RequestLogger {
  return (req, res, next) => {
    const reqId = requestId(req, res);
    const t0 = performance.now();
    const done = (err?: unknown): void => {
      res.off('close', done);
      res.off('finish', done);
      res.off('error', done);
      if (err !== undefined || res.statusCode >= 500) {
        log.error({ reqId, ...line(req, res, t0) }, 'request failed');
      } else if (log.isLevelEnabled('debug') && sampleHotPathLine()) {
        log.debug({ reqId, ...line(req, res, t0) }, res.writableEnded ? 'request' : 'request aborted');
      }
    };
    res.on('close', done);
    res.on('finish', done);
    res.on('error', done);
    next();
  };
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
  t0: number,
): { method: string | undefined; path: string; status: number; ms: number } {
  // express's req.path: the URL without its query string (which may carry anything a caller sent).
  const url = req.url ?? '';
  const q = url.indexOf('?');
  return {
    method: req.method,
    path: (req as IncomingMessage & { path?: string }).path ?? (q < 0 ? url : url.slice(0, q)),
    status: res.statusCode,
    ms: Math.round(performance.now() - t0),
  };
}
