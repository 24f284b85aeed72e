import { WaitingError, type Job, type Worker } from 'bullmq';
import { type Logger } from '../../shared/logger.js';
import { type QueueName } from '../../shared/queues/names.js';
import { type ResourceViolation } from '../../shared/resources/types.js';
import { pausingViolations, type AdmissionLimiter } from './options.js';

/** What admission needs of the worker it admits jobs for. */
export interface AdmissionHost {
  limiter: AdmissionLimiter | undefined;
  /** The queues' BullMQ workers (paused and resumed together). */
  workers: () => Iterable<Worker>;
  /** True once the worker is closing: it neither pauses nor resumes any more. */
  stopping: () => boolean;
  /** Publishes the worker's status now (producers see a pause at once, not at the next heartbeat). */
  publishStatus: () => Promise<void>;
  log: Logger;
  onPaused: (violations: ResourceViolation[]) => void;
  onResumed: (pausedMs: number) => void;
  onHandedBack: (queue: QueueName, jobId: string) => void;
}

/**
 * Admission by resources: while the limiter reports pressure on anything but CPU, the queues' BullMQ
 * workers are paused (active jobs finish) and a job that reaches the worker anyway goes back to wait
 * without spending an attempt. Transitions are chained, so a quick pressure-on/pressure-off never leaves a
 * worker paused by mistake.
 */
export class Admission {
  private paused = false;
  private since = 0;
  private chain: Promise<void> = Promise.resolve();
  private listening = false;
  private readonly onPressure = () => this.sync();

  constructor(private readonly host: AdmissionHost) {}

  /** Follows the limiter's pressure events. Idempotent. */
  start(): void {
    const l = this.host.limiter;
    if (!l || this.listening) return;
    this.listening = true;
    l.on('pressure:start', this.onPressure);
    l.on('pressure:change', this.onPressure);
    l.on('pressure:end', this.onPressure);
    this.sync();
  }

  /** Stops following the limiter. Idempotent. */
  close(): void {
    const l = this.host.limiter;
    if (!l || !this.listening) return;
    this.listening = false;
    l.off('pressure:start', this.onPressure);
    l.off('pressure:change', this.onPressure);
    l.off('pressure:end', this.onPressure);
  }

  /** True while resource pressure keeps the worker from taking jobs. */
  get pausedByPressure(): boolean {
    return this.paused;
  }

  /**
   * Puts a job fetched just before (or while) the pressure began back to wait for another worker, and
   * rejects with WaitingError; returns undefined (no promise: the usual case costs none) when the job may
   * run.
   */
  admit(job: Job, token: string | undefined, queue: QueueName): Promise<never> | undefined {
    if (this.host.stopping() || this.pausing().length === 0) return undefined;
    return this.handBack(job, token, queue);
  }

  private async handBack(job: Job, token: string | undefined, queue: QueueName): Promise<never> {
    await job.moveToWait(token);
    this.sync();
    this.host.log.info({ queue, jobId: job.id }, 'under resource pressure: job handed back to wait');
    this.host.onHandedBack(queue, job.id ?? '');
    throw new WaitingError();
  }

  /** The status section of the pressure (undefined without a limiter). */
  status():
    | {
        underPressure: boolean;
        violations: ResourceViolation[];
        pausedSince: string | null;
        saturated: boolean;
        episodes: number;
      }
    | undefined {
    const l = this.host.limiter;
    if (!l) return undefined;
    return {
      underPressure: l.underPressure,
      violations: l.violations,
      pausedSince: this.paused ? new Date(this.since).toISOString() : null,
      // CPU over its limit: the worker keeps taking jobs, but counts as saturated for shedding.
      saturated: l.underPressure && l.violations.some((v) => v.resource === 'cpu'),
      episodes: l.episodes,
    };
  }

  /** Brings the queues' BullMQ workers in line with the limiter: paused under pressure, running otherwise. */
  sync(): void {
    this.chain = this.chain
      .then(() => this.apply())
      .catch((err: unknown) =>
        this.host.log.warn({ err }, 'could not pause or resume for resource pressure'),
      );
  }

  /** The limiter's violations that pause this worker (none while it is not under pressure). */
  private pausing(): ResourceViolation[] {
    const l = this.host.limiter;
    return l?.underPressure ? pausingViolations(l.violations) : [];
  }

  private async apply(): Promise<void> {
    const violations = this.pausing();
    const stopping = this.host.stopping();
    const want = !stopping && violations.length > 0;
    // No change of state, but perhaps of saturation (CPU alone): producers see it now, not at the heartbeat.
    if (want === this.paused) return this.host.publishStatus();
    if (want) {
      this.paused = true;
      this.since = Date.now();
      this.host.log.warn({ violations }, 'resource pressure: taking no new jobs (active ones finish)');
      // doNotWaitActive: the jobs running now finish on their own; pausing only stops the fetching.
      await Promise.all([...this.host.workers()].map((w) => w.pause(true)));
      this.host.onPaused(violations);
    } else {
      this.paused = false;
      const pausedMs = Date.now() - this.since;
      if (!stopping) await Promise.all([...this.host.workers()].map((w) => w.resume()));
      this.host.log.info({ pausedMs }, 'resource pressure over: taking jobs again');
      this.host.onResumed(pausedMs);
    }
    await this.host.publishStatus();
  }
}
