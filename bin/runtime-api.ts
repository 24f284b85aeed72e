/*
 * The HTTP side of `cell0`: the API (with Bull Board mounted when asked, and batch jobs) and the dashboard
 * on its own port. Kept apart from bin/runtime.ts so that a worker-only process never loads express, Bull
 * Board or the producers' API (bin/cell0.ts imports each side only for the commands that run it).
 */
import express from 'express';
import { type Config, redactUrl } from '../shared/config/config.js';
import { type Logger } from '../shared/logger.js';
import { HttpServer } from '../shared/http-server.js';
import { QUEUE_NAMES } from '../shared/queues/names.js';
import { Cell0Client } from '../producers/cell0-client.js';
import { createApi } from '../producers/api/create-api.js';
import { AccessControl } from '../producers/api/access-control.js';
import { createDashboard } from '../dashboards/bull-board.js';
import { createFleetPage, fleetSources } from '../dashboards/fleet-page/index.js';
import { buildCaches, buildResponseCache } from '../shared/cache/from-config.js';
import { semanticEmbedder } from './embedder.js';
import { LoadShedder } from '../producers/load-shedder.js';
import { Batches } from '../producers/batches/batches.js';
import { RedisEvictionPolicyError } from '../shared/errors.js';
import { sleep } from '../shared/sleep.js';
import { type Cell0Metrics } from '../shared/metrics/metrics.js';
import { addApiSources, addQueueMetrics, processMetrics } from './observability.js';
import { type Service } from './runtime.js';

/**
 * The HTTP API, optionally with Bull Board mounted at /admin/queues. `onFatal` is called when the client
 * refuses the Redis it connected to after start (its maxmemory-policy is not noeviction); within the
 * first seconds, startApi rejects instead.
 */
export async function startApi(
  config: Config,
  log: Logger,
  opts: {
    port?: number;
    dashboard?: boolean;
    reusePort?: boolean;
    onFatal?: (err: Error) => void;
    /** Default: the process's (none when CELL0_METRICS=0); null = none. */
    metrics?: Cell0Metrics | null;
  } = {},
): Promise<Service & { url: string; client: Cell0Client }> {
  const client = Cell0Client.fromConfig(config, log);
  const metrics = opts.metrics === null ? undefined : (opts.metrics ?? processMetrics(config));
  client.metrics = metrics;
  // The queues' counts are the fleet's, not this process's: served here, by the API, not by each worker.
  const removeQueueMetrics = metrics ? addQueueMetrics(metrics, client.submitter) : undefined;
  const caches = buildCaches(config, client.submitter.redis, {
    embedder: semanticEmbedder(config),
    logger: log,
    l1: true,
  });
  if (caches) {
    client.caches.inference = caches.inference;
    client.caches.search = caches.search;
    client.caches.minConfidence = caches.minConfidence;
  }
  const responseCache = buildResponseCache(config, client.submitter.redis, log);
  const removeApiSources = metrics
    ? addApiSources(
        metrics,
        client,
        caches,
        responseCache,
        config.cache.l1Size > 0 && config.cache.l1TtlSeconds > 0,
      )
    : undefined;
  client.shedder = new LoadShedder({
    queues: () =>
      client.submitter.ready
        ? Object.fromEntries(QUEUE_NAMES.map((q) => [q, client.submitter.getQueues(q)]))
        : {},
    fleet: () => client.fleet(),
    maxQueueDepth: config.resources.maxQueueDepth,
    retryAfterMs: config.resources.overloadRetryAfterSec * 1000,
    redisMemory: client.redisMemory,
    behindWindowMs: config.resources.behindWindowMs,
    behindWaitAgeMs: config.resources.behindWaitAgeMs,
    logger: log,
  });
  const started = client.start().then(
    () => true,
    (err: unknown) => {
      if (err instanceof RedisEvictionPolicyError) {
        opts.onFatal?.(err);
        throw err;
      }
      log.debug({ err }, 'client start ended');
      return false;
    },
  );
  // Say "ready" only once the queues are connected; if Redis is down, come up anyway (healthz answers,
  // /v1 answers 503) and connect when it returns.
  let connected: boolean;
  try {
    connected = await Promise.race([started, sleep(10_000, { unref: true }).then(() => false)]);
  } catch (err) {
    await client.close();
    throw err;
  }
  if (!connected)
    log.warn(
      { redis: redactUrl(config.redis.url) },
      'Redis is not reachable yet; /v1 answers 503 until it is',
    );
  const access = accessFromConfig(config, client);
  // Batch jobs: their items run in this process, through the client (caches, shedding, coalescing).
  const batches = new Batches({
    client,
    concurrency: config.batches.concurrency,
    ttlSeconds: config.batches.ttlSeconds,
    logger: log,
  });
  client.batches = batches;
  if (connected) await batches.start();
  else void started.then((ok) => (ok ? batches.start() : undefined)).catch(() => undefined);
  const mounts = [];
  let fleetPage: ReturnType<typeof createFleetPage> | undefined;
  if (opts.dashboard) {
    const board = createDashboard({
      submitter: client.submitter,
      write: config.api.dashboardWrite,
      access,
    });
    mounts.push({ path: board.basePath, router: board.router });
    const page = createFleetPage({ sources: fleetSources(client, metrics), access });
    mounts.push({ path: page.basePath, router: page.router });
    fleetPage = page;
  }
  const app = createApi({
    client,
    access,
    resultWaitMs: config.api.resultWaitMs,
    maxWaitMs: config.api.maxWaitMs,
    maxBodyBytes: config.limits.maxBodyBytes,
    maxEmbedBodyBytes: config.limits.maxEmbedBodyBytes,
    ...(responseCache ? { responseCache } : {}),
    ...(metrics ? { metrics } : {}),
    ...(config.metrics.token !== undefined ? { metricsToken: config.metrics.token } : {}),
    batches: { batches, maxItems: config.batches.maxItems, maxBodyBytes: config.batches.maxBodyBytes },
    mounts,
    logger: log,
  });
  const server = new HttpServer(app, {
    host: config.api.host,
    port: opts.port ?? config.api.port,
    reusePort: opts.reusePort === true,
    keepAliveTimeoutMs: config.api.keepAliveMs,
    requestsPerTurn: config.api.requestsPerTurn,
  });
  const { url } = await server.start();
  log.info(
    {
      url,
      auth: access.tenantKeys,
      admin: access.adminMode,
      tenantSecret: config.api.tenantSecret ? 'env' : 'redis',
    },
    'api listening',
  );
  warnIfOpen(config, access, log);
  const banner = [
    `api        ${url}  (POST /v1/inference, POST /v1/search, POST /v1/embeddings, POST /v1/batches, GET /v1/jobs/:queue/:id; OpenAI: /v1/chat/completions, /v1/completions, /v1/models, /v1/files)`,
  ];
  if (opts.dashboard)
    banner.push(
      `dashboard  ${url}/admin/queues  (Bull Board, ${config.api.dashboardWrite ? 'read-write' : 'read-only'}; live fleet page /admin/fleet/)`,
    );
  if (metrics) banner.push(`metrics    ${url}/metrics  (Prometheus)`);
  banner.push(...access.describe());
  return {
    name: 'api',
    url,
    client,
    banner,
    close: async () => {
      removeQueueMetrics?.();
      removeApiSources?.();
      fleetPage?.sampler.stop();
      await server.close();
      await client.close();
    },
  };
}

/** Tenant and admin keys from the configuration; the generated tenant secret lives in the client's Redis. */
function accessFromConfig(config: Config, client: Cell0Client): AccessControl {
  return new AccessControl({
    apiKeys: config.api.apiKeys,
    adminKeys: config.api.adminKeys,
    ...(config.api.tenantSecret !== undefined ? { tenantSecret: config.api.tenantSecret } : {}),
    redis: client.submitter.redis,
    prefix: client.submitter.prefix,
  });
}

/** Says loudly when no key guards a server that listens beyond this host. */
function warnIfOpen(config: Config, access: AccessControl, log: Logger): void {
  if (isLoopback(config.api.host)) return;
  if (access.adminMode === 'open')
    log.warn(
      { host: config.api.host },
      'no API keys: anyone who reaches this address can read every job and the dashboard; set CELL0_API_KEYS and CELL0_ADMIN_KEYS',
    );
  else if (!access.tenantKeys)
    log.warn(
      { host: config.api.host },
      'no tenant API keys: anyone who reaches this address can submit work and read every job; set CELL0_API_KEYS',
    );
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** Bull Board on its own port. */
export async function startDashboard(
  config: Config,
  log: Logger,
  opts: { port?: number; onFatal?: (err: Error) => void } = {},
): Promise<Service & { url: string }> {
  const client = Cell0Client.fromConfig(config, log);
  client.start().catch((err: unknown) => {
    if (err instanceof RedisEvictionPolicyError) opts.onFatal?.(err);
    else log.debug({ err }, 'client start ended');
  });
  const access = accessFromConfig(config, client);
  const board = createDashboard({
    submitter: client.submitter,
    write: config.api.dashboardWrite,
    access,
  });
  const page = createFleetPage({ sources: fleetSources(client), access });
  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/', (_req, res) => res.redirect(board.basePath));
  app.use(board.basePath, board.router);
  app.use(page.basePath, page.router);
  const server = new HttpServer(app, {
    host: config.api.host,
    port: opts.port ?? config.api.dashboardPort,
    keepAliveTimeoutMs: config.api.keepAliveMs,
  });
  const { url } = await server.start();
  log.info({ url: `${url}${board.basePath}`, admin: access.adminMode }, 'dashboard listening');
  warnIfOpen(config, access, log);
  return {
    name: 'dashboard',
    url,
    banner: [
      `dashboard  ${url}${board.basePath}  (Bull Board, ${config.api.dashboardWrite ? 'read-write' : 'read-only'}; live fleet page ${page.basePath}/)`,
      ...access.describe(),
    ],
    close: async () => {
      page.sampler.stop();
      await server.close();
      await client.close();
    },
  };
}
