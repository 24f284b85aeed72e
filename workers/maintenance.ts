import { type Queue } from 'bullmq';
import { type RedisConnection } from '../shared/redis/cluster.js';
import { readWorkerStatuses, summarizeFleet, type FleetSummary } from '../shared/fleet/worker-status.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { MaintenanceJob } from '../shared/queues/names.js';
import { isFull, readRedisMemory, type RedisMemoryInfo } from '../shared/redis/redis-memory.js';
import { type CleanupReport } from '../shared/resources/disk-cleanup.js';

/** What the maintenance queue's jobs do; each returns a small report (kept as the job's return value). */
export interface MaintenanceTasks {
  /** Every few seconds: read the fleet, publish its summary, drop dead workers from the registry. */
  monitor(): Promise<Record<string, unknown>>;
  /**
   * Every few minutes: disk cleanup, expired cache records, old job data. Under Redis memory pressure (at
   * or over the watermark) finished jobs are trimmed harder: see {@link MaintenanceTaskOptions.pressure}.
   */
  cleanup(): Promise<Record<string, unknown>>;
  /**
   * Run by a worker, outside the queue, when Redis refuses writes for memory (a full Redis cannot even
   * hand out the maintenance jobs): removes every finished job beyond the pressure bounds and trims the
   * queues' event streams. Deleting needs no memory, so this works on a full Redis.
   */
  relieveMemory?(): Promise<Record<string, unknown>>;
}

/** Periods of the two job schedulers, ms. */
export interface MaintenanceSchedule {
  monitorEveryMs: number;
  cleanupEveryMs: number;
}

/**
 * Creates or updates the `monitor` and `cleanup` job schedulers. Idempotent: every worker calls it at start,
 * and the fleet still has one scheduler of each (BullMQ keys a scheduler by its id), so each tick runs once
 * for the whole fleet, not once per process. A changed period replaces the old one.
 */
export async function upsertMaintenanceSchedulers(
  queue: Queue,
  schedule: MaintenanceSchedule,
): Promise<void> {
  // Finished maintenance jobs are kept briefly: enough to see the last runs on the board.
  const opts = {
    removeOnComplete: { count: 20, age: 3600 },
    removeOnFail: { count: 50, age: 86_400 },
    attempts: 1,
  };
  await queue.upsertJobScheduler(
    MaintenanceJob.MONITOR,
    { every: schedule.monitorEveryMs },
    { name: MaintenanceJob.MONITOR, data: {}, opts },
  );
  await queue.upsertJobScheduler(
    MaintenanceJob.CLEANUP,
    { every: schedule.cleanupEveryMs },
    { name: MaintenanceJob.CLEANUP, data: {}, opts },
  );
}

/** Options of {@link createMaintenanceTasks}. */
export interface MaintenanceTaskOptions {
  /** A non-blocking connection. */
  redis: RedisConnection;
  /** Queue key prefix. */
  prefix: string;
  /** The work queues whose counts are reported and whose old jobs are cleaned. */
  queues: Queue[];
  /** How long the published fleet summary lives, ms (a few monitor periods). */
  summaryTtlMs: number;
  /** Removes expired semantic-cache records (SemanticCache.sweepExpired). */
  semantic?: { sweepExpired(): Promise<{ removed: number; scopes: number }> };
  /** Disk cleanup of the registered folders (on the host of the worker that takes the job). */
  disk?: { run(): Promise<CleanupReport>; paths(): unknown[] };
  /** Finished jobs older than these are removed even when no new job completes to trim them, ms. */
  retention: { completedMs: number; failedMs: number };
  /**
   * Redis used memory (% of maxmemory) at and over which cleanup trims harder; 0 = never. Default 90
   * (CELL0_REDIS_MEMORY_WATERMARK).
   */
  memoryWatermarkPercent?: number;
  /**
   * Retention under memory pressure, ms: finished jobs older than these go; event streams are cut to
   * `eventsMaxLen` entries. When Redis is full, completed jobs go whatever their age (their waiting callers
   * were answered from the event stream). Defaults: completed 60000, failed 600000, eventsMaxLen 1000.
   */
  pressure?: { completedMs?: number; failedMs?: number; eventsMaxLen?: number };
  logger?: Logger;
}

const PRESSURE_DEFAULTS = { completedMs: 60_000, failedMs: 600_000, eventsMaxLen: 1000 };
/** Jobs removed per clean call; cleaning repeats until a call removes fewer. */
const CLEAN_BATCH = 1000;

/** Where the monitor job publishes the fleet summary. */
export function fleetSummaryKey(prefix: string): string {
  return `${prefix}:fleet:summary`;
}

/** The fleet summary the monitor job publishes: the fleet at a glance, queue counts and Redis memory. */
export interface PublishedFleetSummary extends FleetSummary {
  at: string;
  queues: Record<string, Record<string, number>>;
  redis: { usedMemoryBytes: number; maxMemoryBytes: number; usedPercent: number | null };
}

/** The monitor and cleanup tasks. Each step's failure is reported in its result and does not stop the rest. */
export function createMaintenanceTasks(opts: MaintenanceTaskOptions): MaintenanceTasks {
  const log = opts.logger ?? silentLogger();
  const watermark = opts.memoryWatermarkPercent ?? 90;
  const pressure = { ...PRESSURE_DEFAULTS, ...opts.pressure };

  /** Over the watermark, full, or fine; undefined when memory could not be read. */
  const memoryPressure = async (): Promise<{ level: 'none' | 'high' | 'full'; info?: RedisMemoryInfo }> => {
    try {
      const info = await readRedisMemory(opts.redis);
      if (isFull(info)) return { level: 'full', info };
      if (watermark > 0 && info.usedPercent !== null && info.usedPercent >= watermark)
        return { level: 'high', info };
      return { level: 'none', info };
    } catch {
      return { level: 'none' };
    }
  };

  /** Removes finished jobs older than the given ages, in batches; counts per queue. */
  const trimJobs = async (completedMs: number, failedMs: number, max = Infinity) => {
    const out: Record<string, { completed: number; failed: number }> = {};
    for (const q of opts.queues) {
      const clean = async (grace: number, type: 'completed' | 'failed') => {
        let total = 0;
        for (;;) {
          const n = (await q.clean(grace, CLEAN_BATCH, type)).length;
          total += n;
          if (n < CLEAN_BATCH || total >= max) return total;
        }
      };
      // A sharded queue is several BullMQ queues of one name: their figures add up.
      const sum = (out[q.name] ??= { completed: 0, failed: 0 });
      sum.completed += await clean(completedMs, 'completed');
      sum.failed += await clean(failedMs, 'failed');
    }
    return out;
  };

  /** Cuts each queue's event stream to its newest `maxLen` entries (XTRIM frees memory, needs none). */
  const trimEvents = async (maxLen: number) => {
    const out: Record<string, number> = {};
    for (const q of opts.queues)
      out[q.name] = (out[q.name] ?? 0) + (await opts.redis.xtrim(q.keys.events!, 'MAXLEN', '~', maxLen));
    return out;
  };

  return {
    async monitor() {
      const [workers, counts, info] = await Promise.all([
        readWorkerStatuses(opts.redis, opts.prefix),
        Promise.all(
          opts.queues.map((q) => q.getJobCounts('wait', 'prioritized', 'active', 'delayed', 'failed')),
        ),
        opts.redis.info('memory'),
      ]);
      const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
      const max = Number(/maxmemory:(\d+)/.exec(info)?.[1] ?? 0);
      const summary: PublishedFleetSummary = {
        at: new Date().toISOString(),
        ...summarizeFleet(workers),
        queues: countsByName(opts.queues, counts),
        redis: {
          usedMemoryBytes: used,
          maxMemoryBytes: max,
          usedPercent: max > 0 ? Math.round((used / max) * 1000) / 10 : null,
        },
      };
      await opts.redis.set(fleetSummaryKey(opts.prefix), JSON.stringify(summary), 'PX', opts.summaryTtlMs);
      if (summary.paused > 0 && summary.paused === summary.workers)
        log.warn({ workers: summary.workers }, 'every worker is paused by resource pressure');
      if (summary.redis.usedPercent !== null && summary.redis.usedPercent >= 90)
        log.warn({ redis: summary.redis }, 'Redis is at 90% or more of its maxmemory');
      return { workers: summary.workers, paused: summary.paused, queues: summary.queues };
    },

    async cleanup() {
      const report: Record<string, unknown> = {};
      const errors: string[] = [];
      const step = async (name: string, fn: () => Promise<unknown>) => {
        try {
          report[name] = await fn();
        } catch (err) {
          errors.push(`${name}: ${err instanceof Error ? err.message : String(err)}`);
        }
      };
      if (opts.disk && opts.disk.paths().length > 0)
        await step('disk', async () => {
          const r = await opts.disk!.run();
          return { removedFiles: r.removedFiles, removedBytes: r.removedBytes, errors: r.errors.length };
        });
      if (opts.semantic) await step('semanticCache', () => opts.semantic!.sweepExpired());
      const mem = await memoryPressure();
      if (mem.level !== 'none') {
        report.redisMemory = { pressure: mem.level, usedPercent: mem.info?.usedPercent ?? null };
        await step('jobs', () =>
          trimJobs(
            mem.level === 'full' ? 0 : Math.min(opts.retention.completedMs, pressure.completedMs),
            Math.min(opts.retention.failedMs, pressure.failedMs),
          ),
        );
        await step('events', () => trimEvents(pressure.eventsMaxLen));
      } else {
        await step('jobs', () => trimJobs(opts.retention.completedMs, opts.retention.failedMs, CLEAN_BATCH));
      }
      if (errors.length > 0) {
        report.errors = errors;
        log.warn({ errors }, 'cleanup: some steps failed');
      }
      log.info({ report }, 'cleanup done');
      return report;
    },

    async relieveMemory() {
      const mem = await memoryPressure();
      const jobs = await trimJobs(
        mem.level === 'full' ? 0 : Math.min(opts.retention.completedMs, pressure.completedMs),
        Math.min(opts.retention.failedMs, pressure.failedMs),
      );
      const events = await trimEvents(pressure.eventsMaxLen);
      return { pressure: mem.level, usedPercent: mem.info?.usedPercent ?? null, jobs, events };
    },
  };
}

/** Each queue's counts by name, the shards of a sharded queue (same name) added up. */
function countsByName(
  queues: readonly Queue[],
  counts: readonly Record<string, number>[],
): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  queues.forEach((q, i) => {
    const sum = (out[q.name] ??= {});
    for (const [k, n] of Object.entries(counts[i] ?? {})) sum[k] = (sum[k] ?? 0) + n;
  });
  return out;
}
