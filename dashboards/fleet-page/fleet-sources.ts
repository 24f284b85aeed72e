import { type Cell0Client } from '../../producers/cell0-client.js';
import { type SemanticCacheStats } from '../../shared/cache/semantic/index.js';
import { type Cell0Metrics } from '../../shared/metrics/metrics.js';
import { QUEUE_NAMES } from '../../shared/queues/names.js';
import { type Bucket, type CacheCounts, type FleetSources } from './fleet-sampler.js';

/**
 * The fleet page's sources in an API process: the workers' statuses and the queues' counts through the
 * client (the same reads as GET /v1/fleet and /v1/queues), the fleet's completed jobs from BullMQ's metrics
 * counter (kept by the workers), and this API's own request durations (its metrics, when on) and cache
 * lookups.
 */
export function fleetSources(client: Cell0Client, metrics?: Cell0Metrics): FleetSources {
  const submitter = client.submitter;
  return {
    fleet: () => client.fleet(),
    queueCounts: () => submitter.getCounts(),
    completedTotal: async () => {
      if (!submitter.ready) throw new Error('queues not connected');
      const all = await Promise.all(
        QUEUE_NAMES.flatMap((q) =>
          submitter
            .getQueues(q)
            .map((queue) => submitter.redis.run(() => queue.getMetrics('completed', 0, 0))),
        ),
      );
      return all.reduce((n, m) => n + (Number(m.meta.count) || 0), 0);
    },
    ...(metrics ? { requestBuckets: () => workRequestBuckets(metrics) } : {}),
    caches: () => {
      const out: Record<string, CacheCounts> = {};
      // The semantic cache counts its lookups (another InferenceCache may not: then it is left out).
      const semantic = (client.caches.inference as { getStats?: () => unknown } | undefined)?.getStats?.() as
        Partial<SemanticCacheStats> | undefined;
      if (semantic && typeof semantic.lookups === 'number' && semantic.semanticHits) {
        const s = semantic.semanticHits;
        out.semantic = {
          hits: (semantic.exactHits ?? 0) + s.high + s.medium + s.low,
          lookups: semantic.lookups,
        };
      }
      const search = client.caches.search?.getStats();
      if (search) out.search = { hits: search.hits, lookups: search.hits + search.misses };
      return out;
    },
  };
}

/** Cumulative duration buckets of the work requests (POST) this API answered, all routes together. */
async function workRequestBuckets(metrics: Cell0Metrics): Promise<Bucket[]> {
  const { values } = await metrics.httpDuration.get();
  const byLe = new Map<number, number>();
  for (const v of values) {
    if (!v.metricName?.endsWith('_bucket') || v.labels.method !== 'POST') continue;
    const labels = v.labels as Record<string, string | number | undefined>;
    const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
    byLe.set(le, (byLe.get(le) ?? 0) + v.value);
  }
  return [...byLe].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
}
