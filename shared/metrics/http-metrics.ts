import { timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { type ErrorRequestHandler, type Request, type RequestHandler, type Response } from 'express';
import { ErrorCode } from '../errors.js';
import { type Cell0Metrics } from './metrics.js';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * Counts every request with its route pattern (`/v1/jobs/:queue/:id`, never the raw path: ids and typos
 * would make the label unbounded), method and status, and times it. Requests no route matched count as
 * `unmatched`. `tenantOf` gives the tenant id (a hash of the key) when the tenant label is on.
 */
export function httpMetrics(
  metrics: Cell0Metrics,
  tenantOf?: (res: Response) => string | undefined,
): RequestHandler {
  return (req, res, next) => {
    const t0 = performance.now();
    res.once('finish', () => {
      const seconds = (performance.now() - t0) / 1000;
      metrics.observeRequest(
        routeOf(req),
        METHODS.has(req.method) ? req.method : 'OTHER',
        res.statusCode,
        seconds,
        metrics.tenantLabel ? tenantOf?.(res) : undefined,
      );
    });
    next();
  };
}

/** Where {@link keepRouteLabel} leaves a request's route label on its response. */
const ROUTE_LABEL = Symbol('cell0.routeLabel');

/** The matched route's pattern with its mount path, or "unmatched". */
function routeOf(req: Request): string {
  const kept = (req.res as { [ROUTE_LABEL]?: string } | undefined)?.[ROUTE_LABEL];
  if (kept !== undefined) return kept;
  const route = req.route as { path?: unknown } | undefined;
  if (!route || typeof route.path !== 'string') return 'unmatched';
  return `${req.baseUrl}${route.path}`;
}

/**
 * Keeps the request's route label (mount path and pattern) as it is now. An error thrown by a route leaves its
 * router, which gives `req.baseUrl` back to the level above before the app's error handler answers; the
 * answer would then be counted under the pattern without its mount (`/inference`, not `/v1/inference`).
 */
export function keepRouteLabel(req: Request, res: Response): void {
  const route = req.route as { path?: unknown } | undefined;
  const r = res as Response & { [ROUTE_LABEL]?: string };
  if (route && typeof route.path === 'string' && r[ROUTE_LABEL] === undefined)
    r[ROUTE_LABEL] = `${req.baseUrl}${route.path}`;
}

/** The last layer of a router: keeps the route label of an error on its way out (see keepRouteLabel). */
export function keepRouteLabelOnError(): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    keepRouteLabel(req, res);
    next(err);
  };
}

/** Options of {@link serveMetrics}. */
export interface ServeMetricsOptions {
  /** When set, a request needs `Authorization: Bearer <token>` (else 401). */
  token?: string | undefined;
}

/**
 * Answers a scrape: the exposition text, or 401 without the bearer token when one is set. A plain node:http
 * handler, so a worker's small listener and the express API share it.
 */
export function serveMetrics(
  metrics: Cell0Metrics,
  opts: ServeMetricsOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const expected = opts.token ? Buffer.from(`Bearer ${opts.token}`) : undefined;
  return (req, res) => {
    if (expected) {
      const got = Buffer.from(req.headers.authorization ?? '');
      if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': 'Bearer realm="cell0 metrics"',
        });
        res.end(
          JSON.stringify({
            error: { code: ErrorCode.UNAUTHORIZED, message: 'metrics need Authorization: Bearer <token>' },
          }),
        );
        return;
      }
    }
    metrics.text().then(
      (text) => {
        res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
        res.end(text);
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            error: {
              code: ErrorCode.INTERNAL,
              message: `metrics failed: ${err instanceof Error ? err.message : String(err)}`,
            },
          }),
        );
      },
    );
  };
}
