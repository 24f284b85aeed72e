import { randomUUID } from 'node:crypto';
import express, {
  type ErrorRequestHandler,
  type Express,
  type Request,
  type Response,
  type Router,
} from 'express';
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
import { type Logger, silentLogger } from '../../shared/logger.js';
import { isQueueName, QueueName } from '../../shared/queues/names.js';
import { isJobId } from '../../shared/queues/job-id.js';
import { type Cell0Client } from '../cell0-client.js';
import { type SubmitResult } from '../job-submitter.js';
import { AccessControl, ADMIN_ROUTES, tenantOf } from './access-control.js';
import { CacheStrategy, type ResponseCache } from '../../shared/cache/http/index.js';
import { summarizeFleet } from '../../shared/fleet/worker-status.js';
import { httpMetrics, serveMetrics } from '../../shared/metrics/http-metrics.js';
import { type Cell0Metrics } from '../../shared/metrics/metrics.js';
import { summarizeBackendHealth, type FleetBackendHealth } from '../../shared/fleet/backend-health.js';

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
  /** Extra routers mounted before the 404 handler (Bull Board, fleet pages). */
  mounts?: { path: string; router: Router | Express }[];
  logger?: Logger;
}

/** The error body every 4xx/5xx carries. */
export interface ErrorBody {
  error: { code: string; message: string; issues?: FieldIssue[] };
}

function errorBody(code: string, message: string, issues?: FieldIssue[]): ErrorBody {
  return { error: { code, message, ...(issues ? { issues } : {}) } };
}

/** HTTP status for a job that failed, by the code of the error the worker raised. */
function failedStatus(code: string | undefined): number {
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

/**
 * The HTTP API on express 5. Every path answers: validation and size errors are 4xx naming the field,
 * Redis trouble is 503 with Retry-After (fast: the producer's connection fails at once while Redis is
 * away), and anything unexpected is a 500 JSON body — never a crash or a hanging socket.
 */
export function createApi(opts: ApiOptions): Express {
  const client = opts.client;
  const log = opts.logger ?? silentLogger();
  const resultWaitMs = opts.resultWaitMs ?? 30_000;
  const maxWaitMs = opts.maxWaitMs ?? 120_000;
  const maxBodyBytes = opts.maxBodyBytes ?? 65_536;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 900;
  const started = Date.now();

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  if (opts.metrics) {
    app.use(httpMetrics(opts.metrics, tenantOf));
    app.get('/metrics', serveMetrics(opts.metrics, { token: opts.metricsToken }));
  }

  app.use((req, res, next) => {
    const id =
      typeof req.headers['x-request-id'] === 'string' && req.headers['x-request-id'].length <= 128
        ? req.headers['x-request-id']
        : randomUUID();
    res.setHeader('X-Request-Id', id);
    const t0 = performance.now();
    res.on('finish', () => {
      const line = {
        reqId: id,
        method: req.method,
        path: req.path,
        status: res.statusCode,
        ms: Math.round((performance.now() - t0) * 10) / 10,
      };
      if (res.statusCode >= 500) log.error(line, 'request failed');
      else log.debug(line, 'request');
    });
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', uptimeSeconds: Math.round((Date.now() - started) / 1000) });
  });

  app.get('/readyz', async (req, res) => {
    // ?backends=1: the fleet's backend breakers too (read alongside); reported, never a reason for 503:
    // jobs for a down backend are still accepted and wait for it.
    const backendsRead = isTrue(req.query.backends) ? backendHealth(client, readyTimeoutMs) : undefined;
    const health = await Promise.race([
      client.health(),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), readyTimeoutMs).unref()),
    ]);
    const backends = await backendsRead;
    // Redis memory: over the watermark or full, new work is refused, so this instance is not ready for it;
    // a policy other than noeviction (changed while running) loses jobs.
    const memory = client.redisMemory.snapshot();
    const memoryState = memory?.state ?? 'ok';
    const reason = !client.submitter.ready
      ? 'queues_not_connected'
      : health?.healthy !== true
        ? 'redis_unavailable'
        : memoryState === 'full'
          ? 'redis_full'
          : memoryState === 'watermark'
            ? 'redis_memory_watermark'
            : memoryState === 'eviction_policy'
              ? 'redis_eviction_policy'
              : undefined;
    const ready = reason === undefined;
    if (!ready) {
      const retryMs =
        reason.startsWith('redis_') && memoryState !== 'ok' ? 5000 : (health?.retryAfterMs ?? 1000);
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(retryMs / 1000))));
    }
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      ...(reason ? { reason } : {}),
      queuesConnected: client.submitter.ready,
      redis: health ?? { healthy: false, error: `no answer within ${readyTimeoutMs} ms` },
      ...(memory
        ? {
            redisMemory: {
              state: memory.state,
              usedBytes: memory.usedBytes,
              maxBytes: memory.maxBytes,
              usedPercent: memory.usedPercent,
              watermarkPercent: memory.watermarkPercent,
              policy: memory.policy ?? 'unknown',
              policyOk: memory.policy === undefined || memory.policy === 'noeviction',
            },
          }
        : {}),
      ...backends,
    });
  });

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
  const keysConfigured = access.tenantKeys;

  const v1 = express.Router();
  // The admin routes' guard runs first (express matches these paths exactly as it matches the routes
  // below); every other /v1 request then needs a tenant key. Both run before the response cache.
  v1.get([...ADMIN_ROUTES], access.adminRoute());
  v1.use(access.tenantRoute());
  // A job id from outside becomes a Redis key: anything not shaped like one of its queue's ids is no job,
  // answered before any key is built (not even the response cache's).
  v1.get('/jobs/:queue/:id', (req, res, next) => {
    const queue = req.params.queue as string;
    const id = req.params.id as string;
    if (!isQueueName(queue)) {
      res
        .status(404)
        .json(
          errorBody(
            ErrorCode.JOB_NOT_FOUND,
            `no queue "${clip(queue)}"; queues are ${Object.values(QueueName).join(', ')}`,
          ),
        );
      return;
    }
    if (!isJobId(queue, id)) {
      res
        .status(404)
        .json(
          errorBody(
            ErrorCode.JOB_NOT_FOUND,
            `no job "${clip(id)}" in queue ${queue}: its job ids are ${queue === QueueName.INFERENCE ? 'i' : 's'}- and 32 hex digits`,
          ),
        );
      return;
    }
    next();
  });
  if (opts.responseCache) {
    const rc = opts.responseCache;
    const perUser = access.tenantKeys || access.adminMode === 'keys';
    // A finished job changes only when an identical request re-runs it: a few seconds of staleness at most.
    rc.configureEndpoint('/v1/jobs/:queue/:id', CacheStrategy.CACHE_CONTROL, 5, { perUser });
    // Counts and the fleet list are polled by dashboards; a second or two of age spares Redis.
    rc.configureEndpoint('/v1/queues', CacheStrategy.ALWAYS, 1, { perUser });
    rc.configureEndpoint('/v1/fleet', CacheStrategy.ALWAYS, 2, { perUser });
    v1.use(rc.middleware());
  }
  const json = express.json({ limit: maxBodyBytes, strict: true, type: () => true });

  /** Checks the content type, parses JSON, splits the envelope (`wait`) from the request proper. */
  const readBody = (req: Request, res: Response): { body: Record<string, unknown>; waitMs: number } => {
    const body = req.body as unknown;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ValidationError([{ field: '(body)', reason: 'expected a JSON object' }]);
    }
    const { wait, ...rest } = body as Record<string, unknown>;
    // The tenant partition: with API keys, the namespace always starts with the caller's tenant id (which
    // makes it part of the job id and of every cache scope). A malformed `cache` is left for the schema.
    const cache = rest.cache ?? {};
    const tenant = tenantOf(res);
    if (keysConfigured && tenant !== undefined && isPlainObject(cache)) {
      const requested = cache.namespace;
      if (requested === undefined || typeof requested === 'string')
        rest.cache = { ...cache, namespace: requested === undefined ? tenant : `${tenant}:${requested}` };
    }
    let waitMs = resultWaitMs;
    if (wait !== undefined) {
      if (typeof wait !== 'number' || !Number.isInteger(wait) || wait < 0 || wait > maxWaitMs) {
        throw new ValidationError([
          { field: 'wait', reason: `expected an integer number of ms from 0 to ${maxWaitMs}` },
        ]);
      }
      waitMs = wait;
    }
    return { body: rest, waitMs };
  };

  const requireJson: express.RequestHandler = (req, res, next) => {
    if (!req.is(['application/json', 'application/*+json'])) {
      res
        .status(415)
        .json(errorBody(ErrorCode.UNSUPPORTED_MEDIA_TYPE, 'send the request body as application/json'));
      return;
    }
    next();
  };

  const respond = (req: Request, res: Response, r: SubmitResult) => {
    if (r.state === 'completed') {
      res.status(200).json({
        jobId: r.jobId,
        queue: r.queue,
        status: 'completed',
        cached: r.cached ?? false,
        ...(r.similarity !== undefined ? { similarity: r.similarity } : {}),
        ...(r.cacheEntry !== undefined ? { cacheEntry: r.cacheEntry } : {}),
        ...(r.cachedPrompt !== undefined ? { cachedPrompt: r.cachedPrompt } : {}),
        result: r.result,
      });
    } else if (r.state === 'failed') {
      res.status(failedStatus(r.code)).json({
        jobId: r.jobId,
        queue: r.queue,
        status: 'failed',
        error: { code: r.code ?? ErrorCode.JOB_FAILED, message: r.message },
      });
    } else {
      const poll = `${req.baseUrl}/jobs/${r.queue}/${r.jobId}`;
      const away = r.backendUnavailable;
      res.setHeader('Location', poll);
      res.setHeader('Retry-After', away ? String(Math.ceil(away.retryAfterMs / 1000)) : '1');
      res.status(202).json({
        jobId: r.jobId,
        queue: r.queue,
        status: 'pending',
        state: r.jobState,
        poll,
        // Answered without waiting: the backend is down on every worker; the job runs once it is back.
        ...(away
          ? {
              reason: 'backend_unavailable',
              backends: away.backends,
              retryAfterSec: Math.ceil(away.retryAfterMs / 1000),
            }
          : {}),
      });
    }
  };

  /** Aborts the wait (not the job) when the caller goes away. */
  const disconnectSignal = (res: Response): AbortSignal => {
    const ac = new AbortController();
    res.on('close', () => {
      if (!res.writableEnded) ac.abort();
    });
    return ac.signal;
  };

  v1.post('/inference', requireJson, json, async (req, res) => {
    const { body, waitMs } = readBody(req, res);
    const data = client.parseInference(body);
    respond(req, res, await client.submitInference(data, { waitMs, signal: disconnectSignal(res) }));
  });

  v1.post('/search', requireJson, json, async (req, res) => {
    const { body, waitMs } = readBody(req, res);
    const data = client.parseSearch(body);
    respond(req, res, await client.submitSearch(data, { waitMs, signal: disconnectSignal(res) }));
  });

  // A caller that found a cached answer wrong says so: the entry goes, and the report is counted.
  v1.post('/cache/false-hits', requireJson, json, async (req, res) => {
    const body = req.body as unknown;
    const entry = isPlainObject(body) ? body.cacheEntry : undefined;
    if (typeof entry !== 'string' || entry.length === 0 || entry.length > 512)
      throw new ValidationError([
        { field: 'cacheEntry', reason: 'expected the cacheEntry of a cached answer' },
      ]);
    await client.reportFalseHit(entry);
    res.status(204).end();
  });

  v1.get('/fleet', async (_req, res) => {
    const workers = await client.fleet();
    res.json({ workers, count: workers.length, summary: summarizeFleet(workers) });
  });

  v1.get('/jobs/:queue/:id', async (req, res) => {
    const queue = req.params.queue as QueueName;
    const id = req.params.id as string;
    // With tenant keys a caller reads only its own jobs; another tenant's job is answered exactly as an
    // unknown one (same status, body and number of Redis reads).
    const tenant = tenantOf(res);
    const view = await client.getJob(queue, id, tenant !== undefined ? { owner: tenant } : {});
    if (!view) {
      res
        .status(404)
        .json(
          errorBody(
            ErrorCode.JOB_NOT_FOUND,
            `no job ${id} in queue ${queue} (never added, or its retention ended)`,
          ),
        );
      return;
    }
    // Only a finished job's view may be cached (and only briefly: a later identical request can re-run it).
    res.setHeader(
      'Cache-Control',
      view.state === 'completed' || view.state === 'failed' ? 'max-age=5' : 'no-store',
    );
    res.json(view);
  });

  v1.get('/queues', async (_req, res) => {
    res.json({ queues: await client.submitter.getCounts() });
  });

  for (const path of ['/inference', '/search']) {
    v1.all(path, (req, res) => {
      res.setHeader('Allow', 'POST');
      res
        .status(405)
        .json(
          errorBody(ErrorCode.METHOD_NOT_ALLOWED, `${req.method} is not allowed on /v1${path}; use POST`),
        );
    });
  }

  app.use('/v1', v1);
  for (const m of opts.mounts ?? []) app.use(m.path, m.router);

  app.use((req, res) => {
    res.status(404).json(errorBody(ErrorCode.ROUTE_NOT_FOUND, `no route ${req.method} ${req.path}`));
  });

  const onError: ErrorRequestHandler = (err: unknown, req, res, _next) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const e = err as {
      type?: string;
      status?: number;
      statusCode?: number;
      message?: string;
      limit?: number;
      length?: number;
    };
    if (err instanceof ValidationError) {
      res.status(400).json(errorBody(err.code, err.message, err.issues));
    } else if (err instanceof InputTooLargeError) {
      res.status(413).json(
        errorBody(err.code, err.message, [
          {
            field: err.field,
            reason: `${err.actualBytes} bytes is over the limit of ${err.limitBytes} bytes`,
          },
        ]),
      );
    } else if (err instanceof OverloadedError) {
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
      res.status(503).json({ error: { code: err.code, message: err.message, reason: err.reason } });
    } else if (err instanceof RedisFullError) {
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
      res.status(503).json({ error: { code: err.code, message: err.message, reason: err.reason } });
    } else if (err instanceof RedisTimeoutError) {
      res.setHeader('Retry-After', '1');
      res.status(503).json(errorBody(err.code, err.message));
    } else if (err instanceof BreakerOpenError) {
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
      res
        .status(503)
        .json(errorBody(ErrorCode.REDIS_UNAVAILABLE, 'the queue store (Redis) is unavailable; retry later'));
    } else if (err instanceof Cell0Error && err.code === ErrorCode.REDIS_UNAVAILABLE) {
      res.setHeader('Retry-After', '1');
      res.status(503).json(errorBody(err.code, 'the queue store (Redis) is unavailable; retry later'));
    } else if (e?.type === 'entity.too.large') {
      res
        .status(413)
        .json(
          errorBody(ErrorCode.INPUT_TOO_LARGE, `request body is over the limit of ${maxBodyBytes} bytes`, [
            { field: '(body)', reason: `over ${maxBodyBytes} bytes` },
          ]),
        );
    } else if (e?.type === 'entity.parse.failed') {
      res
        .status(400)
        .json(
          errorBody(ErrorCode.VALIDATION, `malformed JSON: ${e.message ?? 'parse error'}`, [
            { field: '(body)', reason: 'malformed JSON' },
          ]),
        );
    } else if (e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported') {
      res.status(415).json(errorBody(ErrorCode.UNSUPPORTED_MEDIA_TYPE, e.message ?? 'unsupported encoding'));
    } else if (
      typeof (e?.status ?? e?.statusCode) === 'number' &&
      (e.status ?? e.statusCode)! >= 400 &&
      (e.status ?? e.statusCode)! < 500
    ) {
      // Other body-reader errors: aborted request, bad content length, …
      res
        .status((e.status ?? e.statusCode)!)
        .json(errorBody(ErrorCode.VALIDATION, e.message ?? 'bad request'));
    } else {
      log.error({ err, path: req.path }, 'unhandled error');
      res.status(500).json(errorBody(ErrorCode.INTERNAL, 'internal error'));
    }
  };
  app.use(onError);
  return app;
}

/** At most 80 characters of an echoed path segment. */
function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

function isTrue(v: unknown): boolean {
  return v === '1' || v === 'true';
}

/**
 * Backend health across the live workers (`backends`, and `backendsHealthy` when every breaker is closed),
 * or `backendsError` when the fleet registry could not be read in time.
 */
async function backendHealth(
  client: Cell0Client,
  timeoutMs: number,
): Promise<{ backendsHealthy: boolean; backends: FleetBackendHealth[] } | { backendsError: string }> {
  const workers = await Promise.race([
    client.fleet().catch((err: unknown) => (err instanceof Error ? err : new Error(String(err)))),
    new Promise<undefined>((r) => setTimeout(() => r(undefined), timeoutMs).unref()),
  ]);
  if (workers === undefined)
    return { backendsError: `the fleet registry did not answer within ${timeoutMs} ms` };
  if (workers instanceof Error)
    return { backendsError: `could not read the fleet registry: ${workers.message}` };
  const backends = summarizeBackendHealth(workers);
  return { backendsHealthy: backends.every((b) => b.state === 'closed'), backends };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
