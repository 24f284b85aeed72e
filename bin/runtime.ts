/*
 * How each `cell0` command is put together from the parts: Redis and the worker here; the API and the
 * dashboard in runtime-api.ts, the simulator in runtime-simulator.ts (a worker process loads neither).
 * Every function returns a Service whose close() is idempotent; bin/cell0.ts owns the signals and calls
 * close() (first signal) or forceClose() (second).
 */
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';
import { resolve } from 'node:path';
import { Queue } from 'bullmq';
import { type Config, redactUrl } from '../shared/config/config.js';
import { type Logger } from '../shared/logger.js';
import { redisAnswers, startEmbeddedRedis } from '../shared/redis/embedded-redis.js';
import { QUEUE_NAMES, QueueName } from '../shared/queues/names.js';
import { shardPrefix } from '../shared/queues/shards.js';
import { Cell0Worker } from '../workers/cell0-worker.js';
import { buildProviders, type ProviderSet } from '../workers/providers/from-config.js';
import { closeRedis, createRedisConnection } from '../shared/redis/connection.js';
import { RedisClient } from '../shared/redis/redis-client.js';
import { buildCaches } from '../shared/cache/from-config.js';
import { semanticEmbedder } from './embedder.js';
import { ResourceManagement, type ManagedBackend } from '../shared/resources/resource-management.js';
import { modelDriverFor } from '../workers/providers/model-driver.js';
import { createMaintenanceTasks } from '../workers/maintenance.js';
import { connectionLogFor } from '../shared/redis/connection-log.js';
import { type Cell0Metrics } from '../shared/metrics/metrics.js';
import { MetricsServer } from '../shared/metrics/metrics-server.js';
import { bindWorkerMetrics, bindWorkerSources } from '../workers/worker-metrics.js';
import { MeteredInference, MeteredSearch } from '../workers/providers/metered.js';
import { processMetrics } from './observability.js';

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
          ? ` (${config.redis.cluster ? 'a Redis Cluster is configured' : 'REDIS_URL is set'}, so no private Redis is started).`
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
        // One store per finished job, many jobs at once: the stores of one event-loop turn share a write.
        autoPipelining: true,
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
  const workQueues = QUEUE_NAMES.flatMap((q) =>
    Array.from(
      { length: config.redis.queueShards },
      (_, shard) =>
        new Queue(q, {
          connection: maintRedis,
          prefix: shardPrefix(config.redis.prefix, q, shard, config.redis.queueShards),
        }),
    ),
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
    shards: config.redis.queueShards,
    queueEvents: config.redis.queueEvents,
    ...(config.workers.shards ? { servedShards: config.workers.shards } : {}),
    queues,
    concurrency: {
      inference: opts.concurrency ?? config.workers.inferenceConcurrency,
      search: opts.concurrency ?? config.workers.searchConcurrency,
      embedding: opts.concurrency ?? config.workers.embeddingConcurrency,
    },
    embedding: config.workers.embedBatch,
    // With metrics on, backend calls are counted (by route) on their way through.
    ...(providers.inference
      ? {
          inference: metrics
            ? new MeteredInference(providers.inference, metrics.backends)
            : providers.inference,
        }
      : {}),
    // The worker holds about twice the inference jobs its backends' limits let through now (their cap while
    // a limit is in slow start), raised the moment a limit rises.
    ...(providers.inference
      ? {
          backendCapacity: { [QueueName.INFERENCE]: () => providers.inference?.concurrencyCapacity() },
          backendCapacityRaised: (listener: () => void) =>
            providers.inference?.onCapacityRaised(listener) ?? (() => undefined),
        }
      : {}),
    search: metrics ? meteredSearch(providers.search, metrics) : providers.search,
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
  const unbindSources = metrics ? bindWorkerSources(metrics, { worker, providers, resources }) : undefined;
  const metricsServerOn = (port: number): MetricsServer | undefined =>
    metrics && opts.serveMetrics
      ? new MetricsServer({ metrics, host: config.api.host, port, token: config.metrics.token })
      : undefined;
  let metricsServer = metricsServerOn(config.metrics.port);
  const release = async (): Promise<void> => {
    unbindMetrics?.();
    unbindSources?.();
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
    if (metricsServer) {
      try {
        metricsUrl = `${(await metricsServer.start()).url}/metrics`;
      } catch (err) {
        // Several workers on one host is the normal way to scale: the second one must not fail to start
        // because the first holds the metrics port. It serves on a free port instead (printed in its
        // banner and logged) and says how to pin one.
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || config.metrics.port === 0) throw err;
        metricsServer = metricsServerOn(0)!;
        metricsUrl = `${(await metricsServer.start()).url}/metrics`;
        log.warn(
          { port: config.metrics.port, metricsUrl },
          'metrics port in use (another worker on this host?): serving metrics on a free port instead; set CELL0_METRICS_PORT per worker to pin it',
        );
      }
    }
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

/** Each search backend wrapped so its calls are counted. */
function meteredSearch(search: ProviderSet['search'], metrics: Cell0Metrics): ProviderSet['search'] {
  return Object.fromEntries(
    Object.entries(search).map(([k, b]) => [k, new MeteredSearch(b, metrics.backends)]),
  ) as ProviderSet['search'];
}

/** A percent limit for the banner: "90%", or "off" for 0. */
function limitText(percent: number): string {
  return percent > 0 ? `${percent}%` : 'off';
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
