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
import { settledWithin } from '../shared/sleep.js';

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
    faults: config.simulator.faults,
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
  opts: { queues?: readonly QueueName[]; concurrency?: number; ollamaUrl?: string } = {},
): Promise<Service & { worker: Cell0Worker; providers: ProviderSet }> {
  const queues = opts.queues ?? QUEUE_NAMES;
  const fleetLimits = config.providers.rateLimitScope === 'fleet';
  // Fleet-wide rate limits take one Redis round trip per backend call: a connection of their own, which
  // keeps retrying while Redis is away (the worker cannot take jobs then anyway).
  const redis = fleetLimits
    ? createRedisConnection({ url: config.redis.url, role: 'worker', connectionName: 'cell0:ratelimit' })
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
      })
    : undefined;
  const caches = cacheRedis
    ? buildCaches(config, cacheRedis, { embedder: semanticEmbedder(config), logger: log })
    : undefined;
  const providers = buildProviders(config, {
    inference: queues.includes('inference'),
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
  });
  const workQueues = QUEUE_NAMES.map(
    (q) => new Queue(q, { connection: maintRedis, prefix: config.redis.prefix }),
  );
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
    logger: log,
  });
  const worker = new Cell0Worker({
    redisUrl: config.redis.url,
    prefix: config.redis.prefix,
    queues,
    concurrency: {
      inference: opts.concurrency ?? config.workers.inferenceConcurrency,
      search: opts.concurrency ?? config.workers.searchConcurrency,
    },
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
      ...(caches
        ? { caches: { semantic: caches.inference.getStats(), search: caches.search.getStats() } }
        : {}),
    }),
    ...(caches ? { caches: { inference: caches.inference, search: caches.search } } : {}),
    logger: log,
  });
  const release = async (): Promise<void> => {
    await resources.close();
    await Promise.allSettled(workQueues.map((q) => q.close()));
    await closeRedis(maintRedis);
    await providers.close();
    if (redis) await closeRedis(redis);
    await cacheRedis?.close();
  };
  try {
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
    banner: [
      `worker     queues ${queues.join(', ')} (+ maintenance)`,
      ...providers.describe().map((l) => `  ${l}`),
      `  limits: memory ${config.limits.maxMemoryPercent}%, cpu ${config.limits.maxCpuPercent}%, disk ${config.limits.maxDiskPercent || 'off'}%` +
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

/** The HTTP API, optionally with Bull Board mounted at /admin/queues. */
export async function startApi(
  config: Config,
  log: Logger,
  opts: { port?: number; dashboard?: boolean } = {},
): Promise<Service & { url: string; client: Cell0Client }> {
  const client = Cell0Client.fromConfig(config, log);
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
    logger: log,
  });
  const started = client.start().catch((err: unknown) => log.debug({ err }, 'client start ended'));
  // Say "ready" only once the queues are connected; if Redis is down, come up anyway (healthz answers,
  // /v1 answers 503) and connect when it returns.
  const connected = await settledWithin(started, 10_000);
  if (!connected)
    log.warn(
      { redis: redactUrl(config.redis.url) },
      'Redis is not reachable yet; /v1 answers 503 until it is',
    );
  const mounts = [];
  if (opts.dashboard) {
    const board = createDashboard({
      submitter: client.submitter,
      write: config.api.dashboardWrite,
      apiKeys: config.api.apiKeys,
    });
    mounts.push({ path: board.basePath, router: board.router });
  }
  const app = createApi({
    client,
    apiKeys: config.api.apiKeys,
    resultWaitMs: config.api.resultWaitMs,
    maxWaitMs: config.api.maxWaitMs,
    maxBodyBytes: config.limits.maxBodyBytes,
    ...(responseCache ? { responseCache } : {}),
    mounts,
    logger: log,
  });
  const server = new HttpServer(app, { host: config.api.host, port: opts.port ?? config.api.port });
  const { url } = await server.start();
  log.info({ url, auth: config.api.apiKeys.length > 0 }, 'api listening');
  const banner = [`api        ${url}  (POST /v1/inference, POST /v1/search, GET /v1/jobs/:queue/:id)`];
  if (opts.dashboard)
    banner.push(
      `dashboard  ${url}/admin/queues  (Bull Board, ${config.api.dashboardWrite ? 'read-write' : 'read-only'})`,
    );
  return {
    name: 'api',
    url,
    client,
    banner,
    close: async () => {
      await server.close();
      await client.close();
    },
  };
}

/** Bull Board on its own port. */
export async function startDashboard(
  config: Config,
  log: Logger,
  opts: { port?: number } = {},
): Promise<Service & { url: string }> {
  const client = Cell0Client.fromConfig(config, log);
  client.start().catch((err: unknown) => log.debug({ err }, 'client start ended'));
  const board = createDashboard({
    submitter: client.submitter,
    write: config.api.dashboardWrite,
    apiKeys: config.api.apiKeys,
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
  log.info({ url: `${url}${board.basePath}` }, 'dashboard listening');
  return {
    name: 'dashboard',
    url,
    banner: [
      `dashboard  ${url}${board.basePath}  (Bull Board, ${config.api.dashboardWrite ? 'read-write' : 'read-only'})`,
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
