/** Local callers waiting for a job: one JobWaiter per request, grouped by job id. */

export type JobEvent =
  | { kind: 'completed'; returnvalue: unknown; finishedOn: number }
  | { kind: 'failed'; failedReason: string }
  /** Sent to local followers when the caller they joined could not add the job. */
  | { kind: 'leader-gone' };

/**
 * One caller waiting for one job. `next(deadline, signal)` gives the job's next event, or undefined once
 * the deadline passes, the signal aborts or the submitter closes. A class, not closures: one is made per
 * request.
 */
export class JobWaiter {
  private readonly queued: (JobEvent | undefined)[] = [];
  private wake: (() => void) | undefined;
  released = false;
  isLeader = false;

  constructor(
    private readonly registry: Map<string, WaiterGroup>,
    private readonly jobId: string,
  ) {}

  push(e: JobEvent | undefined): void {
    if (this.released) return;
    this.queued.push(e);
    this.wake?.();
  }

  async next(deadline: number, signal: AbortSignal | undefined): Promise<JobEvent | undefined> {
    if (this.queued.length === 0) {
      const remaining = deadline - Date.now();
      if (remaining <= 0 || signal?.aborted) return undefined;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => this.wake?.();
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        timer = setTimeout(resolve, remaining);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      this.wake = undefined;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    return this.queued.shift();
  }

  release(): void {
    this.released = true;
    const group = this.registry.get(this.jobId);
    if (!group) return;
    group.all.delete(this);
    if (group.leader === this) group.leader = undefined;
    if (group.all.size === 0) this.registry.delete(this.jobId);
  }
}

/** The local waiters of one job id. */
export interface WaiterGroup {
  all: Set<JobWaiter>;
  /** The local caller that added (or is adding) the job; others in `all` follow it. */
  leader: JobWaiter | undefined;
  /** A completed/failed event reached the group: a newcomer must not join, but look for itself. */
  finished: boolean;
  /** When the group's job outcome is re-read if no reply came by then (see recheckAfterMs), and the step. */
  recheckAt: number;
  recheckStep: number;
}
