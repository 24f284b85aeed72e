import { type Queue } from 'bullmq';
import { OverloadedError } from '../shared/errors.js';
import { workerPressure, type WorkerStatus } from '../shared/fleet/worker-status.js';
import {
  unavailableBackend,
  type BackendTarget,
  type BackendUnavailable,
} from '../shared/fleet/backend-health.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { QUEUE_NAMES, type QueueName } from '../shared/queues/names.js';
import { withDefaults } from '../shared/with-defaults.js';

/** Options of {@link LoadShedder}. */
export interface LoadShedderOptions {
  /**
   * The queues whose depth is watched (the producer's own Queue objects); a sharded queue gives one per
   * shard, and its depth is theirs added up (its oldest job the oldest of theirs).
   */
  queues: () => Partial<Record<QueueName, Queue | readonly Queue[]>>;
  /** Reads the live workers (the fleet registry). */
  fleet: () => Promise<WorkerStatus[]>;
  /** Jobs waiting in one queue above which new work is refused; 0 = no bound. Default 10000. */
  maxQueueDepth?: number;
  /**
   * Refuse new work when every live worker serving a queue is paused by resource pressure or CPU-saturated
   * — saturated ones only while the queue is behind (see behindWindowMs). Default true.
   */
  shedOnFleetPressure?: boolean;
  /**
   * The queue is behind when its waiting count grew over this window (by at least 1 and 10% of where it
   * started), ms. Readings are taken on refresh, at most once per refreshMs. Default 10000.
   */
  behindWindowMs?: number;
  /** The queue is also behind when its oldest waiting job has waited longer than this, ms; 0 = never. Default 30000. */
  behindWaitAgeMs?: number;
  /** Clock of the readings (tests). Default Date.now. */
  now?: () => number;
  /** Retry-After of a refusal, ms. Default 5000. */
  retryAfterMs?: number;
  /**
   * Redis memory, read in the background (Cell0Client's `redisMemory`): new work is refused with
   * RedisFullError (503 CELL0_REDIS_FULL) while Redis is over its memory watermark or full, before Redis
   * itself refuses writes. Checked first: it holds for every queue. Default: not checked.
   */
  redisMemory?: { check(): void };
  /** How old the last reading may be before a check refreshes it (in the background), ms. Default 1000. */
  refreshMs?: number;
  logger?: Logger;
}

const DEFAULTS = {
  maxQueueDepth: 10_000,
  shedOnFleetPressure: true,
  retryAfterMs: 5000,
  refreshMs: 1000,
  behindWindowMs: 10_000,
  behindWaitAgeMs: 30_000,
  now: Date.now,
};

/** What the shedder last read of one queue. */
export interface QueueLoad {
  /** Jobs waiting to be taken (wait + prioritized). */
  waiting: number;
  /** Live workers serving the queue. */
  workers: number;
  /** Of those, paused by memory, disk, heap or event-loop pressure. */
  paused: number;
  /** Of those, taking jobs with their CPU over its limit. */
  saturated: number;
  /** Waiting now minus waiting at the start of the behind window. */
  growth: number;
  /** How long the oldest waiting job has waited, ms; null when none waits. */
  oldestWaitMs: number | null;
  /** Growing over the window, or its oldest job waited longer than behindWaitAgeMs. */
  behind: boolean;
}

/**
 * Producers' half of admission: refuses new jobs (OverloadedError → 503 with Retry-After) while a queue is
 * deeper than its bound, or while every live worker serving it is paused by resource pressure, instead of
 * growing the backlog without limit. CPU weighs only together with the queue: when some of those workers
 * are merely CPU-saturated (still working), new work is refused only while the queue is behind — growing
 * over `behindWindowMs`, or its oldest job waiting longer than `behindWaitAgeMs` — so a busy fleet that
 * keeps up is never turned into an outage. Decides synchronously on its last reading and refreshes that
 * reading in the background at most once per `refreshMs` (counts, the oldest waiting job and the fleet
 * registry), so a check costs no Redis round trip. With no live worker at all it does not shed: jobs wait
 * for workers to come. The same reading says whether a request's backend is down fleet-wide
 * (backendUnavailable).
 */
export class LoadShedder {
  private readonly opts: LoadShedderOptions & typeof DEFAULTS;
  private readonly log: Logger;
  private loads = new Map<QueueName, QueueLoad>();
  /** Waiting counts read within the behind window, oldest first, per queue. */
  private readonly history = new Map<QueueName, { at: number; waiting: number }[]>();
  private workers: WorkerStatus[] = [];
  private readAt = 0;
  private refreshing: Promise<void> | undefined;
  /** Refusals since start, by reason. */
  readonly refused = { queue_depth: 0, fleet_pressure: 0, redis_memory: 0 };

  constructor(options: LoadShedderOptions) {
    const opts = withDefaults<LoadShedderOptions & typeof DEFAULTS>(DEFAULTS, options);
    if (!(Number.isInteger(opts.maxQueueDepth) && opts.maxQueueDepth >= 0))
      throw new TypeError(`LoadShedder: option "maxQueueDepth" must be an integer >= 0`);
    if (!(opts.retryAfterMs > 0)) throw new TypeError(`LoadShedder: option "retryAfterMs" must be > 0`);
    if (!(opts.refreshMs >= 0)) throw new TypeError(`LoadShedder: option "refreshMs" must be >= 0`);
    if (!(opts.behindWindowMs > 0)) throw new TypeError(`LoadShedder: option "behindWindowMs" must be > 0`);
    if (!(opts.behindWaitAgeMs >= 0))
      throw new TypeError(`LoadShedder: option "behindWaitAgeMs" must be >= 0 (0 = off)`);
    this.opts = opts;
    this.log = opts.logger ?? silentLogger();
  }

  /**
   * Throws OverloadedError when new work for `queue` must be refused now. Never waits on Redis: a stale
   * reading starts a refresh and this check uses what it has.
   */
  check(queue: QueueName): void {
    if (this.opts.now() - this.readAt >= this.opts.refreshMs) void this.refresh();
    try {
      this.opts.redisMemory?.check();
    } catch (err) {
      this.refused.redis_memory++;
      throw err;
    }
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
    if (
      this.opts.shedOnFleetPressure &&
      load.workers > 0 &&
      load.paused + load.saturated === load.workers &&
      (load.saturated === 0 || load.behind)
    ) {
      this.refused.fleet_pressure++;
      throw new OverloadedError(
        'fleet_pressure',
        load.saturated === 0
          ? `every worker serving the ${queue} queue (${load.workers}) is paused by resource pressure; retry later`
          : `every worker serving the ${queue} queue (${load.workers}) is paused or at its CPU limit and the queue is behind (${describeBehind(load)}); retry later`,
        this.opts.retryAfterMs,
      );
    }
  }

  /**
   * Whether the target's backend is down on every live worker that could run it (their published breakers:
   * see unavailableBackend), from the last reading; no Redis round trip.
   */
  backendUnavailable(target: BackendTarget): BackendUnavailable | undefined {
    if (this.opts.now() - this.readAt >= this.opts.refreshMs) void this.refresh();
    return unavailableBackend(this.workers, target);
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
    const [counts, oldest, workers] = await Promise.all([
      Promise.all(
        names.map((q) => sumCounts(shardsOf(queues[q]!).map((s) => s.getJobCounts('wait', 'prioritized')))),
      ),
      // The oldest waiting job (one job read per queue; asc = from the oldest end of the wait list).
      Promise.all(
        names.map((q) => oldestOf(shardsOf(queues[q]!).map((s) => s.getJobs(['wait'], 0, 0, true)))),
      ),
      this.opts.fleet(),
    ]);
    const now = this.opts.now();
    const next = new Map<QueueName, QueueLoad>();
    names.forEach((q, i) => {
      const c = counts[i] ?? {};
      const waiting = (c.wait ?? 0) + (c.prioritized ?? 0);
      const serving = workers.filter((w) => w.queues.includes(q) && w.state !== 'closing');
      const pressure = serving.map(workerPressure);
      const growth = this.trend(q, now, waiting);
      const first = oldest[i]?.[0];
      const oldestWaitMs = first && waiting > 0 ? Math.max(0, now - first.timestamp) : null;
      const ageBehind =
        this.opts.behindWaitAgeMs > 0 && oldestWaitMs !== null && oldestWaitMs > this.opts.behindWaitAgeMs;
      next.set(q, {
        waiting,
        workers: serving.length,
        paused: pressure.filter((p) => p === 'paused').length,
        saturated: pressure.filter((p) => p === 'saturated').length,
        growth: growth.by,
        oldestWaitMs,
        behind: growth.growing || ageBehind,
      });
    });
    this.loads = next;
    this.workers = workers;
    this.readAt = now;
  }

  /** Records a waiting count and compares it with the oldest one still within the behind window. */
  private trend(q: QueueName, now: number, waiting: number): { by: number; growing: boolean } {
    const h = this.history.get(q) ?? [];
    h.push({ at: now, waiting });
    // Keep the newest reading that is at least a window old, as the start of the window.
    while (h.length > 2 && now - h[1]!.at >= this.opts.behindWindowMs) h.shift();
    this.history.set(q, h);
    const start = h[0]!.waiting;
    const by = waiting - start;
    // Noise around a steady backlog is not growth: at least 1 job and 10% more than at the start.
    return { by, growing: by >= Math.max(1, Math.ceil(start * 0.1)) };
  }
}

function describeBehind(load: QueueLoad): string {
  const parts = [];
  if (load.growth > 0) parts.push(`${load.growth} more jobs waiting than in the last window`);
  if (load.oldestWaitMs !== null) parts.push(`oldest waiting ${Math.round(load.oldestWaitMs / 1000)} s`);
  return parts.join(', ');
}

function shardsOf(q: Queue | readonly Queue[]): readonly Queue[] {
  return Array.isArray(q) ? q : [q as Queue];
}

/** The shards' counts added up. */
async function sumCounts(counts: Promise<Record<string, number>>[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const c of await Promise.all(counts))
    for (const [k, n] of Object.entries(c)) out[k] = (out[k] ?? 0) + n;
  return out;
}

/** The oldest of the shards' oldest waiting jobs (as a list of at most one, as getJobs gives it). */
async function oldestOf<J extends { timestamp: number }>(lists: Promise<J[]>[]): Promise<J[]> {
  const firsts = (await Promise.all(lists)).flatMap((l) => l.slice(0, 1));
  return firsts.sort((a, b) => a.timestamp - b.timestamp).slice(0, 1);
}
