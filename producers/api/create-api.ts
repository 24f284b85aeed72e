import express, {
  type Express,
  type Request,
  type RequestHandler,
  type Response,
  type Router,
} from 'express';
import { type ResponseCache } from '../../shared/cache/http/index.js';
import { ErrorCode } from '../../shared/errors.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import { type Cell0Client } from '../cell0-client.js';
import { httpMetrics, serveMetrics } from '../../shared/metrics/http-metrics.js';
import { httpTracing, tracingOn } from '../../shared/tracing/tracing.js';
import { type Cell0Metrics } from '../../shared/metrics/metrics.js';
import { AccessControl, tenantOf } from './access-control.js';
import { errorHandler, sendError } from './error-mapper.js';
import { requestLogger } from './request-logger.js';
import { probesRouter } from './routes/probes.js';
import { v1Router } from './routes/v1.js';
import { inferenceHandler } from './routes/work.js';
import { inferenceFastPath } from './inference-fast-path.js';
import { OPENAI_PATHS, openAIRouter } from './openai/openai-router.js';
import { type BatchRoutesConfig } from './batches/batch-routes.js';

export { type ErrorBody } from './error-mapper.js';

/** Options of {@link createApi}. */
export interface ApiOptions {
  client: Cell0Client;
  /**
   * Tenant API keys: when not empty, the work routes need `Authorization: Bearer <key>` and each key sees
   * only its own jobs and cache entries (see docs/tenancy.md). Ignored when `access` is given.
   */
  apiKeys?: readonly string[];
  /** Admin keys: the only keys that open GET /v1/fleet and /v1/queues. Ignored when `access` is given. */
  adminKeys?: readonly string[];
  /**
   * Secret of the tenant ids (HMAC-SHA256 of each key). Default: the fleet's generated secret, kept in the
   * client's Redis. Ignored when `access` is given.
   */
  tenantSecret?: string;
  /** Who may call what; share one with the dashboard. Default: built from apiKeys, adminKeys, tenantSecret. */
  access?: AccessControl;
  /** Default wait for a result before answering 202, ms. Default 30000. */
  resultWaitMs?: number;
  /** Largest `wait` a request may ask for, ms. Default 120000. */
  maxWaitMs?: number;
  /** Largest request body; larger → 413. Default 65536. */
  maxBodyBytes?: number;
  /** Largest body of POST /v1/embeddings (a list of texts). Default 4 MiB. */
  maxEmbedBodyBytes?: number;
  /** readyz answers within this, ms. Default 900. */
  readyTimeoutMs?: number;
  /**
   * Redis-backed cache of the read endpoints: GET /v1/jobs/:queue/:id for finished jobs (5 s), /v1/queues
   * (1 s) and /v1/fleet (2 s), with ETag/304 and X-Cache; per API key when keys are configured. Default none.
   */
  responseCache?: ResponseCache;
  /**
   * The process's metrics: every request is counted and timed, and `GET /metrics` serves them (behind
   * `metricsToken` as a bearer token when set). Default none (no /metrics route).
   */
  metrics?: Cell0Metrics;
  metricsToken?: string;
  /**
   * Batch jobs at /v1/batches (docs/batches.md), with the route's own limits (CELL0_BATCH_MAX_ITEMS,
   * CELL0_BATCH_MAX_BODY_BYTES). Default: no batch routes.
   */
  batches?: BatchRoutesConfig;
  /**
   * Answer POST /v1/inference without entering express's app and router when the request allows it (see
   * inference-fast-path.ts: same middleware, handler and answers; ~20% of the API's own CPU per request).
   * Default true; false sends every request through express. Off while tracing is on.
   */
  inferenceFastPath?: boolean;
  /** Extra routers mounted before the 404 handler (Bull Board, fleet pages). */
  mounts?: { path: string; router: Router | Express }[];
  logger?: Logger;
}

/**
 * The HTTP API on express 5. Every path answers: validation and size errors are 4xx naming the field,
 * Redis trouble is 503 with Retry-After (fast: the producer's connection fails at once while Redis is
 * away), and anything unexpected is a 500 JSON body — never a crash or a hanging socket.
 */
export function createApi(opts: ApiOptions): Express {
  const client = opts.client;
  const log = opts.logger ?? silentLogger();
  const maxBodyBytes = opts.maxBodyBytes ?? 65_536;

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // A span per request while tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT); no middleware at all when off.
  const tracing = tracingOn();
  if (tracing) app.use(httpTracing());
  // The middleware every request passes before the routes (the inference fast path runs them too).
  const before: RequestHandler[] = [requestLogger(log)];
  if (opts.metrics) before.push(httpMetrics(opts.metrics, tenantOf));
  for (const mw of before) app.use(mw);
  if (opts.metrics) app.get('/metrics', serveMetrics(opts.metrics, { token: opts.metricsToken }));
  // Entered only by the paths it serves (see onlyUnder): a router that serves nothing of a request still
  // walks its layers and hands the request on through a setImmediate, a turn of the event loop.
  app.use(
    onlyUnder(['/healthz', '/readyz'], probesRouter({ client, readyTimeoutMs: opts.readyTimeoutMs ?? 900 })),
  );

  const access =
    opts.access ??
    new AccessControl({
      apiKeys: opts.apiKeys ?? [],
      adminKeys: opts.adminKeys ?? [],
      ...(opts.tenantSecret !== undefined ? { tenantSecret: opts.tenantSecret } : {}),
      redis: client.submitter.redis,
      prefix: client.submitter.prefix,
    });
  // Start reading the tenant secret now, so the first request does not wait for it (it retries then).
  if (access.tenantKeys)
    access.ready().catch((err: unknown) => log.debug({ err }, 'tenant secret not read yet'));

  const maxWaitMs = opts.maxWaitMs ?? 120_000;
  // The OpenAI-compatible routes: their own guard with the same keys, every error in OpenAI's shape.
  // Only its own paths enter it (the native routes skip its walk and its turn of the event loop); what it
  // does not answer goes on to the native router, as when both were mounted at /v1 one after the other.
  const openAI = onlyUnder(
    OPENAI_PATHS,
    openAIRouter({ client, access, maxWaitMs, maxBodyBytes, logger: log }),
  );
  const v1 = v1Router({
    client,
    access,
    resultWaitMs: opts.resultWaitMs ?? 30_000,
    maxWaitMs,
    maxBodyBytes,
    ...(opts.maxEmbedBodyBytes !== undefined ? { maxEmbedBodyBytes: opts.maxEmbedBodyBytes } : {}),
    ...(opts.responseCache ? { responseCache: opts.responseCache } : {}),
    ...(opts.batches ? { batches: opts.batches } : {}),
  });
  app.use('/v1', (req, res, next) => {
    openAI(req, res, (err?: unknown) => (err ? next(err) : v1(req, res, next)));
  });
  for (const m of opts.mounts ?? []) app.use(m.path, m.router);
  app.use((req, res) => {
    sendError(res, ErrorCode.ROUTE_NOT_FOUND, `no route ${req.method} ${req.path}`);
  });
  const onError = errorHandler({ maxBodyBytes, logger: log });
  app.use(onError);

  if (opts.inferenceFastPath !== false && !tracing) {
    const fast = inferenceFastPath({
      app,
      before,
      guard: access.tenantRoute(),
      keysConfigured: access.tenantKeys,
      maxBodyBytes,
      handler: inferenceHandler({
        client,
        keysConfigured: access.tenantKeys,
        resultWaitMs: opts.resultWaitMs ?? 30_000,
        maxWaitMs,
        maxBodyBytes,
      }),
      onError,
    });
    // express calls app.handle for every request it is given (as a server's listener, or by supertest).
    type Handle = (req: Request, res: Response, callback?: unknown) => void;
    const withHandle = app as unknown as { handle: Handle };
    const handle = withHandle.handle.bind(app);
    withHandle.handle = (req, res, callback) => {
      if (callback === undefined && fast(req, res)) return;
      handle(req, res, callback);
    };
  }
  return app;
}

/**
 * `handler` for requests whose path is one of `paths` or under one (as a `use` mount matches: case-insensitive,
 * at a segment boundary), `next()` at once for any other. A request this cannot tell (a URL not starting with
 * a slash) goes to `handler`, so only requests that no layer of it could match skip it.
 */
function onlyUnder(paths: readonly string[], handler: RequestHandler): RequestHandler {
  const lower = paths.map((p) => p.toLowerCase());
  return (req, res, next) => {
    const url = req.url;
    if (url.charCodeAt(0) !== 47 /* / */) return handler(req, res, next);
    const q = url.indexOf('?');
    const path = (q < 0 ? url : url.slice(0, q)).toLowerCase();
    for (const p of lower)
      if (path.startsWith(p) && (path.length === p.length || path.charCodeAt(p.length) === 47))
        return handler(req, res, next);
    next();
  };
}
