import { type Worker } from 'bullmq';
import { type Logger } from '../../shared/logger.js';
import { stopCutShortWorker } from '../../shared/queues/bullmq-internals.js';
import { settledWithin } from '../../shared/sleep.js';

/** How long a closing worker with no running job waits for BullMQ's close before cutting connections. */
const IDLE_CLOSE_GRACE_MS = 2000;

/** What a shutdown needs of the worker. */
export interface ShutdownOptions {
  /** Active jobs run this long, then are aborted and put back to wait. */
  timeoutMs: number;
  /** Every BullMQ worker of the process. */
  workers: () => Worker[];
  /** Jobs running now. */
  active: () => number;
  /**
   * False while the worker's Redis connections are down (none is ready): an idle close then cuts them at
   * once instead of waiting IDLE_CLOSE_GRACE_MS for a BullMQ close that needs Redis. Default: always true.
   */
  redisReady?: () => boolean;
  log: Logger;
}

/**
 * A worker's graceful close: stop taking jobs, let active ones finish until the timeout (or a forced
 * close), then abort what is left (the processors put those jobs back to wait, no attempt burned).
 */
export class Shutdown {
  private isForced = false;
  private forcing: Promise<void> | undefined;
  private triggerForce: () => void = () => undefined;
  private readonly forceRequested = new Promise<'force'>((r) => (this.triggerForce = () => r('force')));

  constructor(private readonly opts: ShutdownOptions) {}

  /** True once active jobs were aborted (timeout or forced close). */
  get forced(): boolean {
    return this.isForced;
  }

  /** Ends the graceful wait now: active jobs are aborted. */
  force(): void {
    this.triggerForce();
  }

  /** Closes the BullMQ workers, gracefully as far as the timeout allows. Call once (the worker keeps the promise). */
  async run(): Promise<void> {
    const { log, workers } = this.opts;
    log.info({ active: this.opts.active() }, 'worker closing: finishing active jobs');
    const graceful = Promise.allSettled(workers().map((w) => w.close()));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), this.opts.timeoutMs);
    });
    const idle = this.idleFor(IDLE_CLOSE_GRACE_MS);
    const first = await Promise.race([
      graceful.then(() => 'done' as const),
      deadline,
      this.forceRequested,
      idle.promise,
    ]);
    clearTimeout(timer);
    idle.cancel();
    // 'idle': no job is running but BullMQ's close has not returned — it waits for a Redis that is not
    // there. Nothing is left to save, so the connections are simply cut.
    if (first === 'timeout' || first === 'force') await this.abort(graceful);
    // A close cut short leaves BullMQ's lock extender and stalled checker re-arming and its fetch loop
    // reconnecting: stop them.
    if (first !== 'done') for (const w of workers()) await stopCutShortWorker(w);
  }

  private abort(graceful: Promise<unknown>): Promise<void> {
    this.forcing ??= (async () => {
      this.isForced = true;
      const workers = this.opts.workers();
      this.opts.log.warn({ active: this.opts.active() }, 'forcing shutdown: aborting active jobs');
      for (const w of workers) w.cancelAllJobs('shutdown');
      // Give the aborted processors a moment to hand their jobs back before the connections go.
      await settledWithin(graceful, 3000);
      await settledWithin(Promise.allSettled(workers.map((w) => w.close(true))), 2000);
    })();
    return this.forcing;
  }

  /**
   * Resolves 'idle' once no job has been running for `ms` in a row — or as soon as no job runs while Redis
   * is unreachable: BullMQ's close then waits for a reconnect, and with no job there is nothing to save.
   */
  private idleFor(ms: number): { promise: Promise<'idle'>; cancel: () => void } {
    let timer: NodeJS.Timeout | undefined;
    let since = this.opts.active() === 0 ? Date.now() : 0;
    const redisReady = this.opts.redisReady ?? (() => true);
    const promise = new Promise<'idle'>((resolve) => {
      const check = () => {
        if (this.opts.active() > 0) since = 0;
        else if (!redisReady()) resolve('idle');
        else if (since === 0) since = Date.now();
        else if (Date.now() - since >= ms) resolve('idle');
      };
      if (this.opts.active() === 0 && !redisReady()) resolve('idle');
      timer = setInterval(check, 100);
    });
    return { promise, cancel: () => clearInterval(timer) };
  }
}
