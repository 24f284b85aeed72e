import { type Worker } from 'bullmq';
import { type QueueName } from '../../shared/queues/names.js';
import { shareOf } from '../../shared/queues/shards.js';

/**
 * Keeps each BullMQ worker's concurrency in step with what its backends take now: twice their current
 * limit (jobs ready for the next permits), at least 1, at most the configured concurrency. A worker at a
 * small backend's limit thus leaves the other jobs in the queue for other workers instead of holding them.
 */
export class CapacityFollower {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: {
      capacity: Partial<Record<QueueName, () => number | undefined>>;
      /** Each queue's BullMQ workers, one per shard served: the queue's figure is split over them. */
      workers: () => Iterable<[QueueName, readonly Worker[]]>;
      cap: (queue: QueueName) => number;
      intervalMs?: number;
    },
  ) {}

  /** The concurrency a queue's worker should have for a backend capacity of `capacity` calls. */
  static concurrencyFor(capacity: number | undefined, cap: number): number {
    if (capacity === undefined || !Number.isFinite(capacity)) return cap;
    return Math.max(1, Math.min(cap, Math.ceil(capacity * 2)));
  }

  /** Applies the current capacities once. */
  apply(): void {
    for (const [queue, workers] of this.opts.workers()) {
      const read = this.opts.capacity[queue];
      if (!read) continue;
      const want = CapacityFollower.concurrencyFor(read(), this.opts.cap(queue));
      workers.forEach((worker, i) => {
        const share = shareOf(want, i, workers.length);
        if (worker.concurrency !== share) worker.concurrency = share;
      });
    }
  }

  /** Starts following (idempotent). */
  start(): void {
    if (this.timer || Object.keys(this.opts.capacity).length === 0) return;
    this.apply();
    this.timer = setInterval(() => this.apply(), this.opts.intervalMs ?? 250);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
