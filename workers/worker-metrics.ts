import { decodeFailure } from '../shared/queues/failure.js';
import { type Cell0Metrics } from '../shared/metrics/metrics.js';
import { type Cell0Worker, type Cell0WorkerEvents } from './cell0-worker.js';

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
