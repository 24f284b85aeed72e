import { type Worker } from 'bullmq';
import { type QueueName } from '../../shared/queues/names.js';
import { shareOf } from '../../shared/queues/shards.js';

/**
 * Keeps each BullMQ worker's concurrency in step with what its backends take now: twice their current
 * limit (jobs ready for the next permits), at least 1, at most the configured concurrency. A worker at a
 * small backend's limit thus leaves the other jobs in the queue for other workers instead of holding them.
 *
 * The capacities are re-read every `intervalMs`, and at once (in a microtask, however many rises came in
 * the same turn) when `watch` reports a rise: an adaptive limit in slow start doubles every first-token
 * time, far quicker than the re-read. BullMQ's worker reads a raised concurrency only when one of its jobs
 * ends (its fetch loop waits for a job while it holds `concurrency` of them), so each raise is also handed to
 * `raised`, which fills the new room (a take of the waiting jobs in one call, or a wake-up of the loop).
 */
export class CapacityFollower {
  private timer: NodeJS.Timeout | undefined;
  private unwatch: (() => void) | undefined;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly opts: {
      capacity: Partial<Record<QueueName, () => number | undefined>>;
      /** Each queue's BullMQ workers, one per shard served: the queue's figure is split over them. */
      workers: () => Iterable<[QueueName, readonly Worker[]]>;
      cap: (queue: QueueName) => number;
      intervalMs?: number;
      /** Subscribes to rises of the capacities (applied at once); returns the unsubscribe. */
      watch?: (onRaised: () => void) => () => void;
      /** A worker's concurrency was raised: fill the room now (must not throw; a throw is swallowed). */
      raised?: (queue: QueueName, worker: Worker) => void;
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
        const before = worker.concurrency;
        if (before === share) return;
        worker.concurrency = share;
        if (share > before && this.opts.raised) {
          try {
            this.opts.raised(queue, worker);
          } catch {
            // The room is filled by the worker's own fetch loop then (when one of its jobs ends).
          }
        }
      });
    }
  }

  /** Starts following (idempotent). */
  start(): void {
    if (this.closed || this.timer || Object.keys(this.opts.capacity).length === 0) return;
    this.apply();
    this.timer = setInterval(() => this.apply(), this.opts.intervalMs ?? 250);
    this.timer.unref();
    this.unwatch = this.opts.watch?.(() => this.applySoon());
  }

  /** Applies once the current synchronous work is done: one apply for the rises of one turn. */
  private applySoon(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      if (!this.closed) this.apply();
    });
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    this.unwatch?.();
    this.unwatch = undefined;
  }
}
