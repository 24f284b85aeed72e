import { type Cell0Metrics } from '../shared/metrics/metrics.js';
import { type JobOutcome } from '../shared/queues/job-outcome.js';
import { type JobPolicy } from '../shared/queues/job-policy.js';
import { type QueueName } from '../shared/queues/names.js';
import { type SubmitLane } from './submit-lane.js';
import { finishedResult, type SubmitResult } from './submit-result.js';

/*
 * The retention rule (see JobSubmitter): what a caller gets from a job it found already there — its stored
 * result while young enough, or a re-run.
 */

/** The oldest stored result a caller accepts, ms: its own `maxAgeMs` within the policy's result TTL. */
export function resultMaxAge(policy: JobPolicy, maxAgeMs: number | undefined): number {
  return Math.min(maxAgeMs ?? Infinity, policy.resultTtlSeconds * 1000);
}

/** A job's outcome as one caller found it, with what the rule needs to judge it. */
export interface FoundOutcome {
  lane: SubmitLane;
  queue: QueueName;
  jobId: string;
  outcome: JobOutcome;
  /** When the caller's request started, ms. */
  started: number;
  /** {@link resultMaxAge}. */
  maxAge: number;
  /** Re-add the job when it is gone (the final check of a wait), with this name and data. */
  readd?: { name: string; data: unknown };
}

/**
 * The retention rule for the job's outcome as a caller found it. Returns the caller's answer when there is
 * one now (a result within its TTL, or a failure that happened while the caller waited); otherwise re-runs
 * (or, with `readd`, re-adds a vanished job) as the rule says and returns undefined: keep waiting.
 */
export async function applyRetention<T>(f: FoundOutcome): Promise<SubmitResult<T> | undefined> {
  const { lane, queue, jobId, outcome, started } = f;
  switch (outcome.status) {
    case 'completed':
      // A result that landed while this caller waited is always its answer.
      if (outcome.finishedOn >= started || started - outcome.finishedOn <= f.maxAge) {
        lane.dispatch(jobId, {
          kind: 'completed',
          returnvalue: outcome.returnvalue,
          finishedOn: outcome.finishedOn,
        });
        return finishedResult<T>(queue, jobId, outcome);
      }
      await lane.rerun(jobId, 'completed');
      return undefined;
    case 'failed':
      // A failure from before this request is never served to it; one that happened while it waited is.
      if (outcome.finishedOn >= started) {
        lane.dispatch(jobId, { kind: 'failed', failedReason: outcome.failedReason });
        return finishedResult<T>(queue, jobId, outcome);
      }
      await lane.rerun(jobId, 'failed');
      return undefined;
    case 'missing':
      // Gone since it was added (removed, trimmed): add it again, registered as before.
      if (f.readd) await lane.add({ ...f.readd, jobId, add: true });
      return undefined;
    default:
      return undefined;
  }
}

/** What an add met, for the metrics: nothing (added), a job under way (joined), or a finished one. */
export function countAdd(
  m: Pick<Cell0Metrics, 'jobAdded' | 'jobCoalesced'>,
  queue: QueueName,
  before: JobOutcome,
  started: number,
  maxAge: number,
): void {
  if (before.status === 'missing') return m.jobAdded(queue);
  if (before.status === 'pending') return m.jobCoalesced(queue, 'joined');
  // The same rule as applyRetention(): a result within its age is served; anything else finished is re-run.
  const served =
    before.finishedOn >= started || (before.status === 'completed' && started - before.finishedOn <= maxAge);
  m.jobCoalesced(queue, served ? 'stored_result' : 'rerun');
}
