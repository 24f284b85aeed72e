import { type Queue } from 'bullmq';
import { OverloadedError } from '../shared/errors.js';
import { type WorkerStatus } from '../shared/fleet/worker-status.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { QUEUE_NAMES, type QueueName } from '../shared/queues/names.js';
import { withDefaults } from '../shared/with-defaults.js';

/** Options of {@link LoadShedder}. */
export interface LoadShedderOptions {
  /** The queues whose depth is watched (the producer's own Queue objects). */
  queues: () => Partial<Record<QueueName, Queue>>;
  /** Reads the live workers (the fleet registry). */
  fleet: () => Promise<WorkerStatus[]>;
  /** Jobs waiting in one queue above which new work is refused; 0 = no bound. Default 10000. */
  maxQueueDepth?: number;
  /** Refuse new work when every live worker serving a queue is paused by resource pressure. Default true. */
  shedOnFleetPressure?: boolean;
  /** Retry-After of a refusal, ms. Default 5000. */
  retryAfterMs?: number;
  /** How old the last reading may be before a check refreshes it (in the background), ms. Default 1000. */
  refreshMs?: number;
  logger?: Logger;
}

const DEFAULTS = {
  maxQueueDepth: 10_000,
  shedOnFleetPressure: true,
  retryAfterMs: 5000,
  refreshMs: 1000,
};

/** What the shedder last read of one queue. */
export interface QueueLoad {
  /** Jobs waiting to be taken (wait + prioritized). */
  waiting: number;
  /** Live workers serving the queue, and how many of them are paused by pressure. */
  workers: number;
  paused: number;
}

/**
 * Producers' half of admission: refuses new jobs (OverloadedError → 503 with Retry-After) while a queue is
 * deeper than its bound, or while every live worker serving it is paused by resource pressure, instead of
 * growing the backlog without limit. Decides synchronously on its last reading and refreshes that reading in
 * the background at most once per `refreshMs` (one pipelined read of the counts and the fleet registry), so a
 * check costs no Redis round trip. With no live worker at all it does not shed: jobs wait for workers to come.
 */
export class LoadShedder {
  private readonly opts: LoadShedderOptions & typeof DEFAULTS;
  private readonly log: Logger;
  private loads = new Map<QueueName, QueueLoad>();
  private readAt = 0;
  private refreshing: Promise<void> | undefined;
  /** Refusals since start, by reason. */
  readonly refused = { queue_depth: 0, fleet_pressure: 0 };

  constructor(options: LoadShedderOptions) {
    const opts = withDefaults<LoadShedderOptions & typeof DEFAULTS>(DEFAULTS, options);
    if (!(Number.isInteger(opts.maxQueueDepth) && opts.maxQueueDepth >= 0))
      throw new TypeError(`LoadShedder: option "maxQueueDepth" must be an integer >= 0`);
    if (!(opts.retryAfterMs > 0)) throw new TypeError(`LoadShedder: option "retryAfterMs" must be > 0`);
    if (!(opts.refreshMs >= 0)) throw new TypeError(`LoadShedder: option "refreshMs" must be >= 0`);
    this.opts = opts;
    this.log = opts.logger ?? silentLogger();
  }

  /**
   * Throws OverloadedError when new work for `queue` must be refused now. Never waits on Redis: a stale
   * reading starts a refresh and this check uses what it has.
   */
  check(queue: QueueName): void {
    if (Date.now() - this.readAt >= this.opts.refreshMs) void this.refresh();
    const load = this.loads.get(queue);
    if (!load) return;
    const bound = this.opts.maxQueueDepth;
    if (bound > 0 && load.waiting >= bound) {
      this.refused.queue_depth++;
      throw new OverloadedError(
        'queue_depth',
        `the ${queue} queue holds ${load.waiting} waiting jobs, at or over its bound of ${bound} (CELL0_MAX_QUEUE_DEPTH); retry later`,
        this.opts.retryAfterMs,
      );
    }
    if (this.opts.shedOnFleetPressure && load.workers > 0 && load.paused === load.workers) {
      this.refused.fleet_pressure++;
      throw new OverloadedError(
        'fleet_pressure',
        `every worker serving the ${queue} queue (${load.workers}) is paused by resource pressure; retry later`,
        this.opts.retryAfterMs,
      );
    }
  }

  /** Reads the queue depths and the fleet registry now (shared by concurrent callers). */
  refresh(): Promise<void> {
    this.refreshing ??= this.read()
      .catch((err: unknown) => this.log.debug({ err }, 'load shedder: could not read the fleet state'))
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  /** The last reading, by queue. */
  snapshot(): Partial<Record<QueueName, QueueLoad>> {
    return Object.fromEntries(this.loads);
  }

  private async read(): Promise<void> {
    const queues = this.opts.queues();
    const names = QUEUE_NAMES.filter((q) => queues[q]);
    if (names.length === 0) return;
    const [counts, workers] = await Promise.all([
      Promise.all(names.map((q) => queues[q]!.getJobCounts('wait', 'prioritized'))),
      this.opts.fleet(),
    ]);
    const next = new Map<QueueName, QueueLoad>();
    names.forEach((q, i) => {
      const c = counts[i] ?? {};
      const serving = workers.filter((w) => w.queues.includes(q) && w.state !== 'closing');
      next.set(q, {
        waiting: (c.wait ?? 0) + (c.prioritized ?? 0),
        workers: serving.length,
        paused: serving.filter((w: WorkerStatus) => w.state === 'paused').length,
      });
    });
    this.loads = next;
    this.readAt = Date.now();
  }
}
