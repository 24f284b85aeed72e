import { type Job, type Worker } from 'bullmq';
import { type Logger } from '../../shared/logger.js';
import { freeSlots, runTakenJobs } from '../../shared/queues/bullmq-internals.js';
import {
  takenJobs,
  type LocalTaker,
  type PendingTake,
  type TakeKeys,
  type TakeRequest,
} from '../../shared/queues/take-jobs.js';

/** What {@link LocalTake} needs of its worker. */
export interface LocalTakeOptions {
  /** The BullMQ worker of the queue `queueKey` when it may take jobs behind adds (else undefined). */
  workerOf: (queueKey: string) => Worker | undefined;
  /** The lock duration of the worker's jobs, ms. */
  lockDurationMs: number;
  /** The queue's token stream marks gate, when its taken jobs' marks are to be read with the take. */
  marksGateOf: (queueKey: string) => string | undefined;
  /** The marks read for a taken job (its id, its activation's `processedOn`, `[wanted, cancel]`). */
  onMarks: (jobId: string, processedOn: number, marks: readonly (string | null)[]) => void;
  /** True once the worker is closing: it takes nothing more. */
  stopping: () => boolean;
  log: Logger;
}

/**
 * The worker's side of a take behind the adds of the producer of its process (shared/queues/take-jobs.ts):
 * as many jobs as were added and its BullMQ worker has free slots, moved to active for that worker in the
 * call behind the adds, and run by it as if its own fetch loop had fetched them.
 */
export class LocalTake implements LocalTaker {
  private seq = 0;
  private readonly counts = { calls: 0, asked: 0, taken: 0 };

  constructor(private readonly opts: LocalTakeOptions) {}

  reserve(queueKey: string, count: number): PendingTake | undefined {
    try {
      if (count <= 0 || this.opts.stopping()) return undefined;
      const worker = this.opts.workerOf(queueKey);
      if (!worker) return undefined;
      const slots = Math.min(count, freeSlots(worker));
      if (slots <= 0) return undefined;
      const tokens: string[] = [];
      for (let i = 0; i < slots; i++) tokens.push(`${worker.id}:t${(this.seq++).toString(36)}`);
      const request: TakeRequest = {
        keys: worker.keys as unknown as TakeKeys,
        marksGate: this.opts.marksGateOf(queueKey),
        tokens,
        lockDuration: this.opts.lockDurationMs,
        name: worker.opts.name,
      };
      this.counts.calls++;
      this.counts.asked += slots;
      let answered: (res: Promise<unknown[]>) => void = () => undefined;
      const taken = new Promise<unknown[]>((resolve, reject) => {
        answered = (res) => res.then(resolve, reject);
      }).then((res) => {
        const jobs = takenJobs(request, res);
        this.counts.taken += jobs.length;
        return jobs;
      });
      runTakenJobs(worker, slots, taken, (t, job: Job) => {
        if (t.marks && job.id !== undefined && job.processedOn !== undefined)
          this.opts.onMarks(job.id, job.processedOn, t.marks);
      });
      return { request, answered: (res) => answered(res) };
    } catch (err) {
      // Nothing was taken (the worker's fetch loop takes the jobs).
      this.opts.log.debug({ err, queueKey }, 'could not take jobs behind the adds');
      return undefined;
    }
  }

  /** Takes so far: script calls, jobs asked for, jobs taken. */
  stats(): { calls: number; asked: number; taken: number } {
    return { ...this.counts };
  }
}
