import { Cell0Client } from '../../producers/cell0-client';
import { createApi } from '../../producers/api/create-api';
import { AccessControl } from '../../producers/api/access-control';
import { createDashboard } from '../../dashboards/bull-board';
import { createFleetPage, fleetSources } from '../../dashboards/fleet-page';
import { HttpServer } from '../../shared/http-server';
import { SearchProvider } from '../../shared/queues/enums';
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';
import { LocalSearch } from '../../workers/providers/local-search/local-search';
import { MeteredInference, MeteredSearch } from '../../workers/providers/metered';
import {
  OllamaSimulator,
  type OllamaSimulatorOptions,
} from '../../workers/providers/simulator/ollama-simulator';
import { testRedisUrl, uniquePrefix } from './redis';
import { RedisClient } from '../../shared/redis/redis-client';
import { waitUntilReady } from '../../shared/redis/connection';
import { SemanticCache } from '../../shared/cache/semantic';
import { SearchCache } from '../../shared/cache/search-cache';
import { ResponseCache } from '../../shared/cache/http';
import { type CachedInference } from '../../shared/cache/inference-key';
import { type InferenceResult } from '../../shared/queues/results';
import { type Cell0Metrics } from '../../shared/metrics/metrics';
import { bindWorkerMetrics } from '../../workers/worker-metrics';
import { addApiSources, addQueueMetrics } from '../../bin/observability';
import { Batches, type BatchesOptions } from '../../producers/batches/batches';
import { type EmbeddingBatchOptions } from '../../workers/embedding/index';

/** A whole fleet in this process: simulator, worker, client, API (and Bull Board), on its own prefix. */
export interface TestFleet {
  url: string;
  prefix: string;
  client: Cell0Client;
  worker: Cell0Worker | undefined;
  /** Every worker of the fleet (`worker` is the first). */
  workers: Cell0Worker[];
  sim: OllamaSimulator;
  /** The batch jobs of the fleet's API (POST /v1/batches), when asked for. */
  batches: Batches | undefined;
  close(): Promise<void>;
}

let search: LocalSearch | undefined;

export async function startTestFleet(
  opts: {
    redisUrl?: string;
    apiKeys?: string[];
    /** Admin keys (Bull Board, /v1/fleet, /v1/queues). */
    adminKeys?: string[];
    /** Secret of the tenant ids; default: the fleet's generated one in Redis. */
    tenantSecret?: string;
    /** Queue prefix; default a fresh one (give another fleet's to share its queues). */
    prefix?: string;
    sim?: OllamaSimulatorOptions;
    worker?: boolean;
    resultWaitMs?: number;
    maxBodyBytes?: number;
    maxPromptBytes?: number;
    dashboardWrite?: boolean;
    breakerResetMs?: number;
    /** Semantic and search caches on the fleet's Redis, in the client and the worker (as in production). */
    caches?: boolean;
    /** Count in these metrics (client, worker, API) and serve them at GET /metrics, with the queue metrics. */
    metrics?: Cell0Metrics;
    /** Batch routes (and a batch runner in this process) with these options. Default: none. */
    batches?: Omit<BatchesOptions, 'client'> & { maxItems?: number; maxBodyBytes?: number };
    /** Worker concurrency per queue. Default 8. */
    workerConcurrency?: number;
    /** How the workers gather embedding jobs into backend calls. Default: the worker's defaults. */
    embedding?: EmbeddingBatchOptions;
    /** Workers started (each a Cell0Worker with its own id). Default 1; `worker: false` means none. */
    workers?: number;
    /** Extra sections of worker i's published status (resources, models, backends), as the CLI adds. */
    workerStatus?: (i: number) => Record<string, unknown>;
    /** Fleet page sampling interval, ms (the page polls at this pace). Default 2000. */
    fleetPageIntervalMs?: number;
    /**
     * As `cell0 start` (API and worker in one process): the first worker hands the replies of the client's
     * jobs to it directly, takes the jobs it adds right behind the adds and hands its token stream entries
     * to the client's hub as it writes them. Default false.
     */
    oneProcess?: boolean;
    /** Shards per queue (client and workers). Default 1. */
    shards?: number;
    /** The shards worker i serves. Default: all. */
    workerShards?: (i: number) => number[] | undefined;
  } = {},
): Promise<TestFleet> {
  const redisUrl = opts.redisUrl ?? testRedisUrl();
  const prefix = opts.prefix ?? uniquePrefix('api');
  const cacheRedis = opts.caches ? new RedisClient({ url: redisUrl }) : undefined;
  const caches = cacheRedis
    ? {
        inference: new SemanticCache<CachedInference<InferenceResult>>({ redis: cacheRedis, prefix }),
        search: new SearchCache({ redis: cacheRedis, prefix }),
      }
    : undefined;
  if (cacheRedis) await waitUntilReady(cacheRedis.connection, 5000);
  const sim = new OllamaSimulator({ ttftMs: 5, tokensPerSec: 2000, loadMsPerGb: 5, ...opts.sim });
  const { url: simUrl } = await sim.start();
  search ??= new LocalSearch();
  const count = opts.worker === false ? 0 : (opts.workers ?? 1);
  const workers = Array.from(
    { length: count },
    (_, i) =>
      new Cell0Worker({
        redisUrl,
        prefix,
        ...(opts.shards !== undefined ? { shards: opts.shards } : {}),
        ...(opts.workerShards?.(i) ? { servedShards: opts.workerShards(i)! } : {}),
        // With metrics, backend calls are counted on their way through, as `cell0 worker` does.
        inference: opts.metrics
          ? new MeteredInference(
              new OllamaBackend(new OllamaClient({ baseUrl: simUrl })),
              opts.metrics.backends,
            )
          : new OllamaBackend(new OllamaClient({ baseUrl: simUrl })),
        search: {
          [SearchProvider.LOCAL]: opts.metrics ? new MeteredSearch(search!, opts.metrics.backends) : search!,
        },
        concurrency: { inference: opts.workerConcurrency ?? 8, search: opts.workerConcurrency ?? 8 },
        shutdownTimeoutMs: 5000,
        ...(opts.embedding ? { embedding: opts.embedding } : {}),
        ...(caches ? { caches } : {}),
        ...(opts.workerStatus ? { status: () => opts.workerStatus!(i) } : {}),
      }),
  );
  const worker = workers[0];
  const unbind = worker && opts.metrics ? bindWorkerMetrics(worker, opts.metrics) : undefined;
  await Promise.all(workers.map((w) => w.start()));
  const client = new Cell0Client({
    redisUrl,
    prefix,
    ...(opts.shards !== undefined ? { shards: opts.shards } : {}),
    waitMs: opts.resultWaitMs ?? 10_000,
    limits: { maxPromptBytes: opts.maxPromptBytes ?? 32 * 1024 },
    policy: { attempts: 1 },
    ...(opts.breakerResetMs !== undefined ? { breakerResetMs: opts.breakerResetMs } : {}),
    ...(caches ? { caches } : {}),
  });
  void client.start().catch(() => undefined);
  client.metrics = opts.metrics;
  if (opts.oneProcess && worker) {
    worker.handRepliesTo(client.submitter.localReplies);
    client.submitter.takeLocallyWith(worker.localTaker);
    worker.relayTokensTo(client.tokenStreams().local);
  }
  const responseCache = cacheRedis ? new ResponseCache({ redis: cacheRedis, config: { prefix } }) : undefined;
  // As `cell0 start`'s API: the queue metrics and the scrape-time families (fleet, caches, batched adds).
  const removeSources = opts.metrics
    ? [
        addQueueMetrics(opts.metrics, client.submitter),
        addApiSources(opts.metrics, client, caches, responseCache, false),
      ]
    : [];
  const access = new AccessControl({
    apiKeys: opts.apiKeys ?? [],
    adminKeys: opts.adminKeys ?? [],
    ...(opts.tenantSecret !== undefined ? { tenantSecret: opts.tenantSecret } : {}),
    redis: client.submitter.redis,
    prefix,
  });
  const board = createDashboard({
    submitter: client.submitter,
    access,
    write: opts.dashboardWrite ?? false,
  });
  const page = createFleetPage({
    sources: fleetSources(client, opts.metrics),
    access,
    ...(opts.fleetPageIntervalMs !== undefined ? { sampler: { intervalMs: opts.fleetPageIntervalMs } } : {}),
  });
  const { maxItems, maxBodyBytes, ...batchOpts } = opts.batches ?? {};
  const batches = opts.batches ? new Batches({ client, ...batchOpts }) : undefined;
  client.batches = batches;
  const app = createApi({
    client,
    access,
    ...(batches
      ? {
          batches: { batches, maxItems: maxItems ?? 50_000, maxBodyBytes: maxBodyBytes ?? 64 * 1024 * 1024 },
        }
      : {}),
    resultWaitMs: opts.resultWaitMs ?? 10_000,
    maxBodyBytes: opts.maxBodyBytes ?? 65_536,
    ...(responseCache ? { responseCache } : {}),
    mounts: [
      { path: board.basePath, router: board.router },
      { path: page.basePath, router: page.router },
    ],
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
  });
  // Requests started per turn as in `cell0 api` (CELL0_API_REQUESTS_PER_TURN's default).
  const server = new HttpServer(app, { host: '127.0.0.1', port: 0, requestsPerTurn: 4 });
  const { url } = await server.start();
  if (opts.redisUrl === undefined) await client.start();
  return {
    url,
    prefix,
    client,
    worker,
    workers,
    sim,
    batches,
    close: async () => {
      unbind?.();
      for (const remove of removeSources) remove();
      page.sampler.stop();
      await server.close();
      await Promise.all(workers.map((w) => w.close()));
      await client.close();
      await cacheRedis?.close();
      await sim.close();
    },
  };
}

/** POST JSON (or raw text) and read the JSON answer. */
export async function post(
  url: string,
  body: unknown,
  opts: { raw?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...opts.headers },
    body: opts.raw ?? JSON.stringify(body),
  });
  return readJson(res);
}

export async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(url, { headers });
  return readJson(res);
}

/** A response's status, headers and JSON body (non-JSON text lands in `_text`). */
async function readJson(
  res: Response,
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const text = await res.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { _text: text };
  }
  return { status: res.status, body: parsed, headers: res.headers };
}
