import { ErrorCode } from '../errors.js';
import { HttpServer } from '../http-server.js';
import { serveMetrics } from './http-metrics.js';
import { type Cell0Metrics } from './metrics.js';

/** Options of {@link MetricsServer}. */
export interface MetricsServerOptions {
  metrics: Cell0Metrics;
  host: string;
  /** 0 = any free port. */
  port: number;
  /** Bearer token a scrape must carry; unset = none. */
  token?: string | undefined;
}

/**
 * A worker's small metrics listener: `GET /metrics` (and `/healthz`), nothing else. Workers have no HTTP API
 * of their own; this is what Prometheus scrapes on each of them.
 */
export class MetricsServer {
  private readonly http: HttpServer;

  constructor(opts: MetricsServerOptions) {
    const metrics = serveMetrics(opts.metrics, { token: opts.token });
    this.http = new HttpServer(
      (req, res) => {
        const path = (req.url ?? '/').split('?')[0];
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          res.writeHead(405, { allow: 'GET', 'content-type': 'application/json' });
          res.end(errorJson(ErrorCode.METHOD_NOT_ALLOWED, `${req.method ?? ''} is not allowed; use GET`));
        } else if (path === '/metrics') metrics(req, res);
        else if (path === '/healthz') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"status":"ok"}');
        } else {
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end(errorJson(ErrorCode.ROUTE_NOT_FOUND, 'this listener serves GET /metrics and /healthz'));
        }
      },
      { host: opts.host, port: opts.port, closeGraceMs: 1000 },
    );
  }

  /** Listens; resolves with its URL. Idempotent. */
  start(): Promise<{ url: string; port: number }> {
    return this.http.start();
  }

  /** Idempotent. */
  close(): Promise<void> {
    return this.http.close();
  }
}

function errorJson(code: string, message: string): string {
  return JSON.stringify({ error: { code, message } });
}
