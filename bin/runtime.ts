/*
 * How each `cell0` command is put together from the parts. Every function returns a Service whose close()
 * is idempotent; bin/cell0.ts owns the signals and calls close() (first signal) or forceClose() (second).
 */
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';
import { resolve } from 'node:path';
import { Queue } from 'bullmq';
import express from 'express';
import { type Config, redactUrl } from '../shared/config/config.js';
import { type Logger } from '../shared/logger.js';
import { HttpServer } from '../shared/http-server.js';
import { redisAnswers, startEmbeddedRedis } from '../shared/redis/embedded-redis.js';
import { QUEUE_NAMES, type QueueName } from '../shared/queues/names.js';
import { Cell0Client } from '../producers/cell0-client.js';
import { createApi } from '../producers/api/create-api.js';
import { AccessControl } from '../producers/api/access-control.js';
import { createDashboard } from '../dashboards/bull-board.js';
import { Cell0Worker } from '../workers/cell0-worker.js';
import { buildProviders, type ProviderSet } from '../workers/providers/from-config.js';
import { closeRedis, createRedisConnection } from '../shared/redis/connection.js';
import { RedisClient } from '../shared/redis/redis-client.js';
import { buildCaches, buildResponseCache } from '../shared/cache/from-config.js';
import { semanticEmbedder } from './embedder.js';
import { OllamaSimulator } from '../workers/providers/simulator/ollama-simulator.js';
import { ResourceManagement, type ManagedBackend } from '../shared/resources/resource-management.js';
import { modelDriverFor } from '../workers/providers/model-driver.js';
import { createMaintenanceTasks } from '../workers/maintenance.js';
import { LoadShedder } from '../producers/load-shedder.js';
import { Batches } from '../producers/batches/batches.js';
import { RedisEvictionPolicyError } from '../shared/errors.js';
import { connectionLogFor } from '../shared/redis/connection-log.js';
import { sleep } from '../shared/sleep.js';
import { type Cell0Metrics } from '../shared/metrics/metrics.js';
import { MetricsServer } from '../shared/metrics/metrics-server.js';
import { bindWorkerMetrics } from '../workers/worker-metrics.js';
import { addQueueMetrics, processMetrics } from './observability.js';

/** Something running that can be stopped. */
export interface Service {
  name: string;
  /** Lines for people: where it listens, what it uses. */
  banner: string[];
  close(): Promise<void>;
  /** Stop without waiting for work in progress (second signal). Defaults to close(). */
  forceClose?(): Promise<void>;
}

export { DEFAULT_OLLAMA_URL } from '../workers/providers/from-config.js';

/**
 * For `cell0 start`: the configured Redis if it answers; else, unless REDIS_URL was given or
 * CELL0_EMBEDDED_REDIS=never, a private redis-server with its data under CELL0_DATA_DIR.
 */
export async function ensureRedis(
  config: Config,
  log: Logger,
): Promise<{ config: Config; service?: Service }> {
  if (await redisAnswers(config.redis.url)) return { config };
  if (config.redis.explicitUrl || config.embeddedRedis === 'never') {
    throw new Error(
      `Redis at ${redactUrl(config.redis.url)} does not answer` +
        (config.redis.explicitUrl
          ? ' (REDIS_URL is set, so no private Redis is started).'
          : ' and CELL0_EMBEDDED_REDIS=never.'),
    );
  }
  const embedded = await startEmbeddedRedis({ port: config.redis.port, dataDir: config.dataDir });
  log.info({ url: embedded.url, dataDir: embedded.dataDir }, 'started a private redis-server');
  return {
    config: { ...config, redis: { ...config.redis, url: embedded.url } },
    service: {
      name: 'redis',
      banner: [`redis      ${embedded.url}  (private redis-server, data in ${embedded.dataDir})`],
      close: () => embedded.close(),
    },
  };
}

export async function startSimulator(config: Config, log: Logger): Promise<Service & { url: string }> {
  const sim = new OllamaSimulator({
    host: config.simulator.host,
    port: config.simulator.port,
    ttftMs: config.simulator.ttftMs,
    tokensPerSec: config.simulator.tokensPerSec,
    loadMsPerGb: config.simulator.loadMsPerGb,
    maxLoaded: config.simulator.maxLoaded,
    allowAnyModel: config.simulator.allowAnyModel,
    embedCallMs: config.simulator.embedCallMs,
    embedItemMs: config.simulator.embedItemMs,
    embedParallel: config.simulator.embedParallel,
    faults: config.simulator.faults,
    gpu: config.simulator.gpu,
  });
  const { url } = await sim.start();
  log.info({ url }, 'simulator listening');
  return {
    name: 'simulator',
    url,
    banner: [`simulator  ${url}  (Ollama-compatible; stats at ${url}/_sim/stats)`],
    close: () => sim.close(),
  };
}

export async function startWorker(
  config: Config,
  log: Logger,
  opts: {
    queues?: readonly QueueName[];
    concurrency?: number;
    ollamaUrl?: string;
    /** Default: the process's (none when CELL0_METRICS=0); null = none. */
    metrics?: Cell0Metrics | null;
    /** Serve GET /metrics on CELL0_METRICS_PORT (`cell0 worker`). */
    serveMetrics?: boolean;
  } = {},
): Promise<Service & { worker: Cell0Worker; providers: ProviderSet; metricsUrl?: string }> {
  const queues = opts.queues ?? QUEUE_NAMES;
  const metrics = opts.metrics === null ? undefined : (opts.metrics ?? processMetrics(config));
  const fleetLimits = config.providers.rateLimitScope === 'fleet';
  // Fleet-wide rate limits take one Redis round trip per backend call: a connection of their own, which
  // keeps retrying while Redis is away (the worker cannot take jobs then anyway).
  const redis = fleetLimits
    ? createRedisConnection({
        url: config.redis.url,
        role: 'worker',
        connectionName: 'cell0:ratelimit',
        logger: log,
      })
    : undefined;
  // The worker writes results through to the caches producers read; its own fail-fast connection, so a
  // Redis outage costs a cache write nothing but a quick error.
  const cacheRedis = config.cache.enabled
    ? new RedisClient({
        url: config.redis.url,
        commandTimeoutMs: config.redis.commandTimeoutMs,
        breakerThreshold: config.redis.breakerThreshold,
        breakerResetMs: config.redis.breakerResetMs,
        name: 'cache',
        logger: log,
      })
    : undefined;
  const caches = cacheRedis
    ? buildCaches(config, cacheRedis, { embedder: semanticEmbedder(config), logger: log })
    : undefined;
  const providers = buildProviders(config, {
    // Embeddings are made by the inference backends' models.
    inference: queues.includes('inference') || queues.includes('embedding'),
    search: queues.includes('search'),
    ...(opts.ollamaUrl !== undefined ? { ollamaUrl: opts.ollamaUrl } : {}),
    ...(redis ? { redis } : {}),
    logger: log,
  });
  const resources = buildResourceManagement(config, providers, log);
  // The maintenance jobs' own connection and queue handles (counts, cleaning old jobs).
  const maintRedis = createRedisConnection({
    url: config.redis.url,
    role: 'worker',
    connectionName: 'cell0:maintenance',
    logger: log,
  });
  const workQueues = QUEUE_NAMES.map(
    (q) => new Queue(q, { connection: maintRedis, prefix: config.redis.prefix }),
  );
  // A BullMQ Queue with no `error` listener prints every connection error to the console with its stack.
  for (const q of workQueues) connectionLogFor(log).watch(q, `maintenance:queue:${q.name}`);
  const maintenance = createMaintenanceTasks({
    redis: maintRedis,
    prefix: config.redis.prefix,
    queues: workQueues,
    summaryTtlMs: config.resources.monitorEveryMs * 3,
    ...(caches ? { semantic: caches.inference } : {}),
    disk: resources.disk,
    retention: {
      completedMs: config.jobs.resultTtlSeconds * 1000,
      failedMs: config.jobs.failedTtlSeconds * 1000,
    },
    memoryWatermarkPercent: config.redis.memoryWatermarkPercent,
    logger: log,
  });
  const worker = new Cell0Worker({
    redisUrl: config.redis.url,
    prefix: config.redis.prefix,
    queues,
    concurrency: {
      inference: opts.concurrency ?? config.workers.inferenceConcurrency,
      search: opts.concurrency ?? config.workers.searchConcurrency,
      embedding: opts.concurrency ?? config.workers.embeddingConcurrency,
    },
    embedding: config.workers.embedBatch,
    ...(providers.inference ? { inference: providers.inference } : {}),
    search: providers.search,
    providerTimeoutMs: config.workers.providerTimeoutMs,
    shutdownTimeoutMs: config.workers.shutdownTimeoutMs,
    backendWaitMaxMs: config.providers.backendWaitMaxMs,
    limiter: resources.limiter,
    models: (model) => resources.modelsFor(model),
    maintenance: {
      tasks: maintenance,
      monitorEveryMs: config.resources.monitorEveryMs,
      cleanupEveryMs: config.resources.cleanupEveryMs,
    },
    status: () => ({
      ...resources.status(),
      ...providers.metrics(),
      backendHealth: providers.health(),
      ...(caches
        ? { caches: { semantic: caches.inference.getStats(), search: caches.search.getStats() } }
        : {}),
    }),
    ...(caches ? { caches: { inference: caches.inference, search: caches.search } } : {}),
    logger: log,
  });
  const unbindMetrics = metrics ? bindWorkerMetrics(worker, metrics) : undefined;
  const metricsServer =
    metrics && opts.serveMetrics
      ? new MetricsServer({
          metrics,
          host: config.api.host,
          port: config.metrics.port,
          token: config.metrics.token,
        })
      : undefined;
  const release = async (): Promise<void> => {
    unbindMetrics?.();
    await metricsServer?.close();
    await resources.close();
    await Promise.allSettled(workQueues.map((q) => q.close()));
    await closeRedis(maintRedis);
    await providers.close();
    if (redis) await closeRedis(redis);
    await cacheRedis?.close();
  };
  // Producers answer at once while a backend is down fleet-wide: a breaker transition is published at once,
  // not at the next heartbeat.
  for (const guard of providers.guards)
    for (const event of ['breaker:open', 'breaker:half-open', 'breaker:close'] as const)
      guard.on(event, () => void worker.publishStatus());
  let metricsUrl: string | undefined;
  try {
    if (metricsServer) metricsUrl = `${(await metricsServer.start()).url}/metrics`;
    await resources.start();
    await worker.start();
  } catch (err) {
    await worker.close().catch(() => undefined);
    await release();
    throw err;
  }
  return {
    name: 'worker',
    worker,
    providers,
    ...(metricsUrl ? { metricsUrl } : {}),
    banner: [
      `worker     queues ${queues.join(', ')} (+ maintenance)`,
      ...(metricsUrl ? [`  metrics: ${metricsUrl}`] : []),
      ...providers.describe().map((l) => `  ${l}`),
      `  limits: memory ${limitText(config.limits.maxMemoryPercent)}, cpu ${limitText(config.limits.maxCpuPercent)} (${resources.monitor.getCurrentUsage()?.cpuScope === 'cgroup' ? 'of the cgroup quota' : 'of one core'}), disk ${limitText(config.limits.maxDiskPercent)}` +
        (resources.managers.length > 0
          ? `; models: ${config.resources.evictionPolicy}, budget ${(resources.managers[0]!.manager.budgetBytes / 1e9).toFixed(1)} GB`
          : '; models: not managed'),
    ],
    close: async () => {
      await worker.close();
      await release();
    },
    forceClose: async () => {
      await worker.forceClose();
      await release();
    },
  };
}

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
  client.shedder = new LoadShedder({
    queues: () =>
      client.submitter.ready
        ? Object.fromEntries(QUEUE_NAMES.map((q) => [q, client.submitter.getQueue(q)]))
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
  if (opts.dashboard) {
    const board = createDashboard({
      submitter: client.submitter,
      write: config.api.dashboardWrite,
      access,
    });
    mounts.push({ path: board.basePath, router: board.router });
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
    `api        ${url}  (POST /v1/inference, POST /v1/search, POST /v1/embeddings, POST /v1/batches, GET /v1/jobs/:queue/:id)`,
  ];
  if (opts.dashboard)
    banner.push(
      `dashboard  ${url}/admin/queues  (Bull Board, ${config.api.dashboardWrite ? 'read-write' : 'read-only'})`,
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

/** A percent limit for the banner: "90%", or "off" for 0. */
function limitText(percent: number): string {
  return percent > 0 ? `${percent}%` : 'off';
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
  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/', (_req, res) => res.redirect(board.basePath));
  app.use(board.basePath, board.router);
  const server = new HttpServer(app, { host: config.api.host, port: opts.port ?? config.api.dashboardPort });
  const { url } = await server.start();
  log.info({ url: `${url}${board.basePath}`, admin: access.adminMode }, 'dashboard listening');
  warnIfOpen(config, access, log);
  return {
    name: 'dashboard',
    url,
    banner: [
      `dashboard  ${url}${board.basePath}  (Bull Board, ${config.api.dashboardWrite ? 'read-write' : 'read-only'})`,
      ...access.describe(),
    ],
    close: async () => {
      await server.close();
      await client.close();
    },
  };
}

/**
 * The worker's resource-management block from the configuration: limits, sampling of the data folder's
 * disk, one model manager per backend that can load and unload models (Ollama), and cleanup folders.
 */
export function buildResourceManagement(
  config: Config,
  providers: ProviderSet,
  log: Logger,
): ResourceManagement {
  const budget = config.resources.modelBudget;
  const backends: ManagedBackend[] = [];
  if (budget.kind !== 'off' && providers.inference) {
    for (const backend of providers.inference.backends()) {
      const driver = modelDriverFor(backend);
      if (!driver) continue;
      backends.push({
        name: backend.origin ?? backend.name,
        driver,
        serves: (model) => providers.inference?.routeFor(model)?.backend === backend,
      });
    }
  }
  const dataDir = resolve(config.dataDir);
  return new ResourceManagement({
    limits: {
      maxMemoryPercent: config.limits.maxMemoryPercent,
      maxCpuPercent: config.limits.maxCpuPercent,
      maxDiskPercent: config.limits.maxDiskPercent,
      maxHeapPercent: config.limits.maxHeapPercent,
      maxEventLoopDelayMs: config.limits.maxEventLoopDelayMs,
    },
    hysteresis: config.resources.hysteresis,
    sampleMs: config.resources.sampleMs,
    cpu: { windowMs: config.resources.cpuWindowMs },
    // The data folder's filesystem when it exists (it holds the private Redis's data), else the working one.
    diskPath: existsSync(dataDir) ? dataDir : process.cwd(),
    ...(backends.length > 0
      ? {
          models: {
            backends,
            budgetBytes: budget.kind === 'bytes' ? budget.bytes : Math.floor(totalmem() / 2),
            policy: config.resources.evictionPolicy,
            keepAliveMs: config.resources.modelKeepAliveMs,
            priorities: config.resources.modelPriorities,
          },
        }
      : {}),
    cleanup: { paths: config.resources.cleanupPaths, threshold: config.resources.diskCleanupThreshold },
    logger: log,
  });
}
