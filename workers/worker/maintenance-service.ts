import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import { type Logger } from '../../shared/logger.js';
import { createRedisConnection } from '../../shared/redis/connection.js';
import { type RedisConnectionLog } from '../../shared/redis/connection-log.js';
import { isOomError } from '../../shared/redis/redis-memory.js';
import { MAINTENANCE_QUEUE, MaintenanceJob, queuePrefix } from '../../shared/queues/names.js';
import { settledWithin } from '../../shared/sleep.js';
import {
  upsertMaintenanceSchedulers,
  type MaintenanceSchedule,
  type MaintenanceTasks,
} from '../maintenance.js';

/** How often a worker that sees Redis refuse writes for memory runs the memory relief, at most, ms. */
const RELIEF_EVERY_MS = 5000;
/** How often a scheduler upsert refused at start is tried again, ms. */
const SCHEDULER_RETRY_MS = 5000;

/** What the maintenance side of a worker needs. */
export interface MaintenanceServiceOptions {
  /** The schedule and tasks; without them the service only stays idle. */
  maintenance: (MaintenanceSchedule & { tasks: MaintenanceTasks }) | undefined;
  redisUrl: string;
  prefix: string;
  lockDurationMs: number;
  stalledIntervalMs: number;
  fetchRetryDelayMs: number;
  /** Id of the worker, written into each job's report. */
  workerId: string;
  /** The process's logger (its connections log through it). */
  rootLogger: Logger;
  log: Logger;
  connLog: RedisConnectionLog;
  /** True once the worker is closing. */
  stopping: () => boolean;
  /** Takes ownership of a connection (the worker closes it last). */
  adopt: (conn: RedisConnection) => void;
}

/**
 * The fleet's maintenance queue on this worker (one job at a time), its `monitor` and `cleanup` job
 * schedulers (upserted at start, retried while Redis refuses), and the memory relief run when Redis is full.
 */
export class MaintenanceService {
  private queue: Queue | undefined;
  private bullWorker: Worker | undefined;
  private schedulerTimer: NodeJS.Timeout | undefined;
  private lastRelief = 0;
  private relieving: Promise<void> | undefined;
  private starting: Promise<void> | undefined;

  constructor(private readonly opts: MaintenanceServiceOptions) {}

  /** The BullMQ worker of the maintenance queue, once started. */
  get worker(): Worker | undefined {
    return this.bullWorker;
  }

  /** Starts serving the maintenance queue (a no-op without maintenance). Idempotent. */
  start(): Promise<void> {
    this.starting ??= this.opts.maintenance ? this.run(this.opts.maintenance) : Promise.resolve();
    return this.starting;
  }

  private async run(m: MaintenanceSchedule & { tasks: MaintenanceTasks }): Promise<void> {
    const o = this.opts;
    const conn = createRedisConnection({
      url: o.redisUrl,
      role: 'worker',
      connectionName: `cell0:worker:${MAINTENANCE_QUEUE}`,
      logger: o.rootLogger,
    });
    o.adopt(conn);
    this.queue = new Queue(MAINTENANCE_QUEUE, {
      connection: conn,
      prefix: queuePrefix(o.prefix, MAINTENANCE_QUEUE),
    });
    o.connLog.watch(this.queue, `queue:${MAINTENANCE_QUEUE}`);
    await this.upsertSchedulers(m);
    const worker = new Worker(
      MAINTENANCE_QUEUE,
      async (job: Job) => {
        const t0 = performance.now();
        let report: Record<string, unknown>;
        if (job.name === MaintenanceJob.MONITOR) report = await m.tasks.monitor();
        else if (job.name === MaintenanceJob.CLEANUP) report = await m.tasks.cleanup();
        else throw new UnrecoverableError(`unknown maintenance job "${job.name}"`);
        o.log.debug({ job: job.name, ms: Math.round(performance.now() - t0) }, 'maintenance job done');
        return { ...report, by: o.workerId };
      },
      {
        connection: conn,
        prefix: queuePrefix(o.prefix, MAINTENANCE_QUEUE),
        concurrency: 1,
        lockDuration: o.lockDurationMs,
        stalledInterval: o.stalledIntervalMs,
        runRetryDelay: o.fetchRetryDelayMs,
        autorun: true,
      },
    );
    worker.on('error', (err) => this.onWorkerError(MAINTENANCE_QUEUE, err));
    worker.on('failed', (job, err) =>
      o.log.warn({ queue: MAINTENANCE_QUEUE, job: job?.name, error: err.message }, 'maintenance job failed'),
    );
    this.bullWorker = worker;
    await worker.waitUntilReady();
  }

  /**
   * A BullMQ worker's error: to the process's connection log (one line per outage, not one per retry). An
   * OOM reply means Redis is full: the memory relief runs (at most every few seconds) so that taking jobs,
   * which needs a little memory, can go on.
   */
  onWorkerError(source: string, err: Error): void {
    this.opts.connLog.error(`worker:${source}`, err);
    if (isOomError(err)) this.relieveMemory();
  }

  /** Runs the maintenance tasks' memory relief, once at a time and at most every RELIEF_EVERY_MS. */
  relieveMemory(): void {
    const relieve = this.opts.maintenance?.tasks.relieveMemory;
    if (!relieve || this.relieving || this.opts.stopping() || Date.now() - this.lastRelief < RELIEF_EVERY_MS)
      return;
    this.lastRelief = Date.now();
    this.relieving = relieve()
      .then((report: Record<string, unknown>) =>
        this.opts.log.warn({ report }, 'Redis is full: trimmed finished jobs to free memory'),
      )
      .catch((err: unknown) => this.opts.log.warn({ err }, 'Redis is full: memory relief failed'))
      .finally(() => (this.relieving = undefined));
  }

  /**
   * Upserts the maintenance schedulers; a refusal (Redis full, or away) does not stop the worker: it is
   * tried again every few seconds until it works.
   */
  private async upsertSchedulers(m: MaintenanceSchedule): Promise<void> {
    const queue = this.queue;
    if (!queue || this.opts.stopping()) return;
    try {
      await upsertMaintenanceSchedulers(queue, m);
    } catch (err) {
      if (this.opts.stopping()) return;
      this.opts.connLog.error('maintenance:schedulers', err);
      if (isOomError(err)) this.relieveMemory();
      this.schedulerTimer = setTimeout(() => void this.upsertSchedulers(m), SCHEDULER_RETRY_MS);
      this.schedulerTimer.unref();
    }
  }

  /**
   * Stops the scheduler retries, waits for a memory relief under way and closes the maintenance queue (its
   * BullMQ worker is closed with the worker's others). Safe to call more than once.
   */
  async close(): Promise<void> {
    clearTimeout(this.schedulerTimer);
    await this.relieving;
    if (this.queue) await settledWithin(this.queue.close(), 2000);
  }
}
