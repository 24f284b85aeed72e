import { decodeFailure } from '../shared/queues/failure.js';
import { type Cell0Metrics } from '../shared/metrics/metrics.js';
import { type ResourceManagement } from '../shared/resources/resource-management.js';
import { type Cell0Worker, type Cell0WorkerEvents } from './cell0-worker.js';
import { type ProviderSet } from './providers/from-config.js';

type Listener<E extends keyof Cell0WorkerEvents> = (...args: Cell0WorkerEvents[E]) => void;

/**
 * Counts a worker's jobs in the process's metrics from its events: completed (with wait, run and end-to-end
 * times), failed by code (and retried), deferred by reason, handed back under resource pressure; and its
 * running jobs. Returns a function that stops counting.
 */
export function bindWorkerMetrics(worker: Cell0Worker, metrics: Cell0Metrics): () => void {
  const completed: Listener<'job:completed'> = (e) =>
    metrics.jobCompleted(e.queue, e.waitMs / 1000, e.durationMs / 1000, e.endToEndMs / 1000);
  const failed: Listener<'job:failed'> = (e) =>
    metrics.jobFailed(e.queue, decodeFailure(e.error).code, e.willRetry);
  const deferred: Listener<'job:deferred'> = (e) => metrics.jobDeferred(e.queue, e.kind);
  const handedBack: Listener<'job:handed-back'> = (e) => metrics.jobDeferred(e.queue, 'pressure');
  const active = () => worker.active;
  worker.on('job:completed', completed);
  worker.on('job:failed', failed);
  worker.on('job:deferred', deferred);
  worker.on('job:handed-back', handedBack);
  metrics.activeSources.add(active);
  return () => {
    worker.off('job:completed', completed);
    worker.off('job:failed', failed);
    worker.off('job:deferred', deferred);
    worker.off('job:handed-back', handedBack);
    metrics.activeSources.delete(active);
  };
}

/**
 * Reads a worker process's parts at each scrape: its backends' guards and pools (breakers, retries, rate
 * limits, connections), its resources (memory/CPU/disk %, event-loop delay, pressure, model memory) and its
 * embedding batches; and observes model load times as loads finish. Returns a function that stops it.
 */
export function bindWorkerSources(
  metrics: Cell0Metrics,
  parts: { worker: Cell0Worker; providers?: ProviderSet; resources?: ResourceManagement },
): () => void {
  const { worker, providers, resources } = parts;
  const stops: (() => void)[] = [];
  if (providers)
    stops.push(
      metrics.backends.addSource({
        guards: () => providers.guards.map((g) => g.metrics()),
        pools: () => providers.pools.metrics(),
      }),
    );
  if (resources) {
    stops.push(
      metrics.resources.addSource({
        usage: () => resources.monitor.getCurrentUsage(),
        pressure: () => (worker.paused ? 2 : resources.limiter.underPressure ? 1 : 0),
        models: () => resources.managers.map((m) => ({ backend: m.name, stats: m.manager.getStats() })),
      }),
    );
    for (const { name, manager } of resources.managers) {
      // The series exists (at 0) before the first load, so dashboards and alerts find it.
      metrics.resources.modelLoadSeconds.zero({ backend: name });
      const loads = metrics.resources.modelLoadSeconds.labels(name);
      const loaded = (e: { loadMs: number }) => loads.observe(e.loadMs / 1000);
      manager.on('model:loaded', loaded);
      stops.push(() => manager.off('model:loaded', loaded));
    }
  }
  stops.push(
    metrics.batches.addSource(() => {
      const s = worker.embeddingStats();
      return s
        ? [
            {
              batcher: 'embedding',
              batches: s.batches,
              items: s.items,
              backendCalls: s.backendCalls,
              sizes: worker.embeddingSizeCounts() ?? [],
            },
          ]
        : [];
    }),
  );
  return () => {
    for (const stop of stops) stop();
  };
}
