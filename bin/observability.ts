/*
 * The process's metrics: one registry per process, shared by everything `cell0 start` runs in it.
 */
import { type Config } from '../shared/config/config.js';
import { Cell0Metrics } from '../shared/metrics/metrics.js';
import { queueMetricsText, type PrometheusQueue } from '../shared/metrics/queue-metrics.js';
import { QUEUE_NAMES } from '../shared/queues/names.js';
import { type JobSubmitter } from '../producers/job-submitter.js';
import { type Cell0Client } from '../producers/cell0-client.js';
import { type Caches } from '../shared/cache/from-config.js';
import { type ResponseCache } from '../shared/cache/http/index.js';

let processWide: Cell0Metrics | undefined;

/** This process's metrics, made on first use; undefined when CELL0_METRICS=0. */
export function processMetrics(config: Config): Cell0Metrics | undefined {
  if (!config.metrics.enabled) return undefined;
  return (processWide ??= new Cell0Metrics({ tenantLabel: config.metrics.tenantLabel }));
}

/**
 * Adds BullMQ's queue metrics (job counts by state, completed and failed counters) to `metrics`, read
 * through the submitter's queues at each scrape. Returns the function that removes them.
 */
export function addQueueMetrics(metrics: Cell0Metrics, submitter: JobSubmitter): () => void {
  return metrics.addText(() =>
    submitter.ready ? queueMetricsText(metricQueues(submitter)) : Promise.resolve(''),
  );
}

/** The queues whose metrics are served: with shards, one per shard, its series labelled `shard`. */
function metricQueues(submitter: JobSubmitter): PrometheusQueue[] {
  return QUEUE_NAMES.flatMap((q) =>
    submitter.shards === 1
      ? [submitter.getQueue(q)]
      : submitter.getQueues(q).map((queue, shard) => ({
          exportPrometheusMetrics: (labels?: Record<string, string>) =>
            queue.exportPrometheusMetrics({ ...labels, shard: String(shard) }),
        })),
  );
}

/**
 * The API's scrape-time families: live workers by state, Redis memory, requests shed (the fleet's view,
 * served once per fleet by the API); its caches' own figures (the HTTP response cache and the search cache's
 * in-process tier folded into the lookup counter, guard rejections, false hits, entries); its batched adds.
 * Returns the function that removes them.
 */
export function addApiSources(
  metrics: Cell0Metrics,
  client: Cell0Client,
  caches: Pick<Caches, 'inference' | 'search'> | undefined,
  responseCache: ResponseCache | undefined,
  l1: boolean,
): () => void {
  const stops = [
    metrics.fleet.addSource({
      workerStates: async () => (await client.fleet()).map((w) => w.state),
      redisMemory: () => client.redisMemory.snapshot(),
      shed: () => ({ ...(client.shedder?.refused ?? {}) }),
    }),
    metrics.caches.addSource({
      lookups: () => {
        const out: Record<string, Record<string, number>> = {};
        if (responseCache) {
          const h = responseCache.getStats();
          out.http = { exact: h.hits + h.stale, miss: h.misses };
        }
        if (caches && l1) {
          const s = caches.search.getStats();
          out.l1 = { exact: s.l1Hits, miss: s.hits + s.misses - s.l1Hits };
        }
        return out;
      },
      ...(caches
        ? {
            guardRejections: () => caches.inference.getStats().guardRejectionsByRule,
            falseHits: () => caches.inference.getStats().falseHitReports,
          }
        : {}),
      entries: async () => {
        const out: Record<string, number> = {};
        if (caches) {
          out.search = await caches.search.size();
          // Live entries over every scope (a walk of the model index sets): at most once a minute.
          const semantic = await caches.inference.size().catch(() => undefined);
          if (semantic !== undefined) out.semantic = semantic;
          if (l1) out.l1 = caches.search.getStats().l1Entries;
        }
        if (responseCache) out.http = await responseCache.countEntries();
        return out;
      },
    }),
    metrics.batches.addSource(() =>
      client.submitter.ready ? [{ batcher: 'enqueue', ...client.submitter.addBatchStats() }] : [],
    ),
  ];
  return () => {
    for (const stop of stops) stop();
  };
}
