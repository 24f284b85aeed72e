import { type Worker } from 'bullmq';

/** A running job's provider deadline. */
export interface Deadline {
  worker: Worker;
  jobId: string;
  at: number;
  timedOut: boolean;
}

/**
 * The provider deadline of every running job, enforced by one sweep timer for all of them: a job past its
 * deadline is cancelled through BullMQ's own per-job signal. No timer, controller or listener per job.
 */
export class ProviderDeadlines {
  private readonly deadlines = new Set<Deadline>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly timeoutMs: number) {}

  /** Starts the sweep (at a tenth of the timeout, between 10 ms and 1 s). Idempotent. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), Math.min(1000, Math.max(10, this.timeoutMs / 10)));
    this.timer.unref();
  }

  /** Starts the clock of a job's provider call. */
  track(worker: Worker, jobId: string): Deadline {
    const d: Deadline = { worker, jobId, at: Date.now() + this.timeoutMs, timedOut: false };
    this.deadlines.add(d);
    return d;
  }

  /** The call really starts now (after a wait for a backend permit): its time counts from here. */
  restart(d: Deadline): void {
    if (!d.timedOut) d.at = Date.now() + this.timeoutMs;
  }

  /** The call is over. */
  untrack(d: Deadline): void {
    this.deadlines.delete(d);
  }

  /** Stops the sweep. Idempotent. */
  close(): void {
    clearInterval(this.timer);
  }

  /** Cancels every job whose provider call has run past the timeout. */
  private sweep(): void {
    const now = Date.now();
    for (const d of this.deadlines) {
      if (d.at <= now && !d.timedOut) {
        d.timedOut = true;
        d.worker.cancelJob(d.jobId, 'provider timeout');
      }
    }
  }
}
