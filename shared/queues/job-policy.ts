import { type JobsOptions } from 'bullmq';

/** How jobs are retried and how long finished jobs are kept. Set by the producer when it adds a job. */
export interface JobPolicy {
  /** Attempts for retryable failures. Default 3 (CELL0_JOB_ATTEMPTS). */
  attempts: number;
  /** First retry delay, ms; doubles each attempt. Default 1000 (CELL0_JOB_BACKOFF_MS). */
  backoffMs: number;
  /**
   * Seconds a completed job's result is reused by identical requests (CELL0_RESULT_TTL, default 3600).
   * Past that, an identical request re-runs the job even if BullMQ has not trimmed it yet.
   */
  resultTtlSeconds: number;
  /** Seconds a failed job stays for inspection (CELL0_FAILED_TTL, default 86400). */
  failedTtlSeconds: number;
  /** Most completed jobs kept per queue, whatever their age (CELL0_RESULT_MAX_JOBS, default 100000). */
  maxCompletedJobs: number;
}

export const DEFAULT_JOB_POLICY: JobPolicy = {
  attempts: 3,
  backoffMs: 1000,
  resultTtlSeconds: 3600,
  failedTtlSeconds: 86_400,
  maxCompletedJobs: 100_000,
};

/**
 * One add in this many carries the completed-set trimming of {@link jobOptionsFor}; the others keep their
 * job without trimming ({@link withoutTrimming}). BullMQ trims when a job that asks for it finishes, at a
 * cost of three commands in its finish script (the age scan, the count scan, the count trim) whether
 * anything goes or not; trimming on every 16th finish keeps the set within the count plus the jobs that
 * finish in between (up to 15 untrimmed adds per producer, plus the jobs other workers were still running
 * when a trimming finish ran), for a fraction of the commands.
 */
export const TRIM_EVERY = 16;

/** `opts` without the completed-set trimming: the job is kept until a later finish trims it away. */
export function withoutTrimming(opts: JobsOptions): JobsOptions {
  return { ...opts, removeOnComplete: false };
}

/** BullMQ job options for a policy. */
export function jobOptionsFor(policy: JobPolicy): JobsOptions {
  return {
    attempts: policy.attempts,
    backoff: { type: 'exponential', delay: policy.backoffMs },
    // BullMQ trims by age lazily (when another job finishes); the producer checks finishedOn itself, so
    // the TTL holds even on an idle queue. The count bound keeps Redis memory bounded under heavy load.
    removeOnComplete: { age: policy.resultTtlSeconds, count: policy.maxCompletedJobs },
    removeOnFail: { age: policy.failedTtlSeconds, count: 10_000 },
  };
}
