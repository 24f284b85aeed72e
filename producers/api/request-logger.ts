import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { type RequestHandler } from 'express';
import { type Logger, sampleHotPathLine } from '../../shared/logger.js';

/** Longest caller-chosen X-Request-Id kept; a longer (or missing) one is replaced by a random UUID. */
const MAX_REQUEST_ID = 128;

/**
 * Request logging: every response carries an `X-Request-Id` (the caller's, when it sent a short one), and
 * every finished request is one log line `{ reqId, method, path, status, ms }`: at error level for 5xx
 * (always written), at debug level otherwise (a CELL0_LOG_SAMPLE fraction of them).
 *
 * Kept cheap per request: no child logger, no request or response serialization; a success line is not
 * even built unless the logger writes debug lines. One listener on the response, for its end.
 */
export function requestLogger(log: Logger): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    const reqId = requestId(req, res);
    let logged = false;
    const onEnd = (): void => {
      if (logged) return;
      logged = true;
      res.off('finish', onEnd);
      res.off('close', onEnd);
      const failed = res.statusCode >= 500;
      if (!failed && !(log.isLevelEnabled('debug') && sampleHotPathLine())) return;
      const entry = { reqId, ...line(req, res, { ms: Math.round(performance.now() - started) }) };
      if (failed) log.error(entry, 'request failed');
      else log.debug(entry, res.writableEnded ? 'request' : 'request aborted');
    };
    res.on('finish', onEnd);
    res.on('close', onEnd);
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
