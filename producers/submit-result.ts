import { Job, type Queue } from 'bullmq';
import { type RedisClient } from '../shared/redis/redis-client.js';
import { type BackendUnavailable } from '../shared/fleet/backend-health.js';
import { decodeFailure } from '../shared/queues/failure.js';
import { type JobOutcome } from '../shared/queues/job-outcome.js';
import { type QueueName } from '../shared/queues/names.js';
import { type JobEvent } from './job-waiter.js';

/** How a submission ended, from the caller's point of view. */
export type SubmitResult<T = unknown> =
  | {
      state: 'completed';
      queue: QueueName;
      jobId: string;
      result: T;
      finishedOn: number;
      /** Set when a cache answered (no job ran for this request): how it matched, and how closely. */
      cached?: 'exact' | 'semantic';
      similarity?: number;
      /** The semantic-cache entry that answered (for reporting a wrong answer). */
      cacheEntry?: string;
      /** On a semantic hit: the stored prompt whose answer this is (a wrong pair is a labelled negative). */
      cachedPrompt?: string;
      /**
       * True when this caller shared a job another request had added (queued, running, or finished within
       * the result TTL); false when its own add ran the job.
       */
      joined?: boolean;
    }
  | { state: 'failed'; queue: QueueName; jobId: string; code: string | undefined; message: string }
  /**
   * Not finished within the wait; `jobState` is BullMQ's state (waiting, active, delayed, …) or "unknown".
   * `backendUnavailable`: answered without waiting because the job's backend is down fleet-wide.
   */
  | {
      state: 'pending';
      queue: QueueName;
      jobId: string;
      jobState: string;
      backendUnavailable?: BackendUnavailable;
    };

/** How one submit() waits (see JobSubmitter.submit). */
export interface SubmitOptions {
  waitMs: number;
  signal?: AbortSignal;
  /**
   * Oldest completed result this caller accepts, ms (default: the result TTL). 0 = none from before this
   * request: an identical job that already finished is run again (one running is joined).
   */
  maxAgeMs?: number;
  /**
   * Called once it is known whether this caller joined an identical job (queued, running or finished
   * within the result TTL: true) or ran one (false), right after its add (or as it follows a local one).
   */
  onJoined?: (joined: boolean) => void;
}

/** A job as GET /v1/jobs shows it. */
export interface JobView {
  queue: QueueName;
  jobId: string;
  name: string;
  /** waiting | active | delayed | prioritized | completed | failed | … */
  state: string;
  result?: unknown;
  error?: { code: string | undefined; message: string };
  attemptsMade: number;
  createdAt: number;
  processedAt?: number;
  finishedAt?: number;
}

/** True when job data was submitted by tenant `owner`: its namespace is the tenant id, or starts with it. */
export function ownedBy(data: unknown, owner: string): boolean {
  const ns = (data as { cache?: { namespace?: unknown } } | null | undefined)?.cache?.namespace;
  return (
    typeof ns === 'string' &&
    owner.length > 0 &&
    (ns === owner || (ns.length > owner.length && ns.startsWith(owner) && ns[owner.length] === ':'))
  );
}

/** The caller's answer for a completed/failed event; undefined for other events. */
export function eventResult<T>(queue: QueueName, jobId: string, e: JobEvent): SubmitResult<T> | undefined {
  if (e.kind === 'completed')
    return {
      state: 'completed',
      queue,
      jobId,
      result: e.returnvalue as T,
      finishedOn: e.finishedOn || Date.now(),
    };
  if (e.kind === 'failed') return { state: 'failed', queue, jobId, ...decodeFailure(e.failedReason) };
  return undefined;
}

/** The caller's view of a finished job's outcome; undefined while it is not finished. */
export function finishedResult<T>(
  queue: QueueName,
  jobId: string,
  outcome: JobOutcome,
): SubmitResult<T> | undefined {
  if (outcome.status === 'completed')
    return {
      state: 'completed',
      queue,
      jobId,
      result: outcome.returnvalue as T,
      finishedOn: outcome.finishedOn,
    };
  if (outcome.status === 'failed')
    return { state: 'failed', queue, jobId, ...decodeFailure(outcome.failedReason) };
  return undefined;
}

/**
 * A job's state and result, or undefined when no such job exists (never did, or was trimmed), or when
 * `owner` is given and the job is not that tenant's (its request's `cache.namespace` is neither `owner` nor
 * `owner:…`). A job of another tenant costs the same one read as an unknown id: its state is read only
 * once it is known to be the caller's.
 */
export async function readJobView(
  redis: RedisClient,
  bull: Queue,
  queue: QueueName,
  jobId: string,
  owner: string | undefined,
): Promise<JobView | undefined> {
  const read = await redis.run(() => Job.fromId(bull, jobId));
  if (!read) return undefined;
  if (owner !== undefined && !ownedBy(read.data, owner)) return undefined;
  const state = await redis.run(() => read.getState());
  // It finished between the two reads: read it again, or a completed job would show no result.
  const job =
    (state === 'completed' || state === 'failed') && !read.finishedOn
      ? ((await redis.run(() => Job.fromId(bull, jobId))) ?? read)
      : read;
  const view: JobView = {
    queue,
    jobId,
    name: job.name,
    state,
    attemptsMade: job.attemptsMade,
    createdAt: job.timestamp,
  };
  if (job.processedOn) view.processedAt = job.processedOn;
  if (job.finishedOn) view.finishedAt = job.finishedOn;
  if (state === 'completed') view.result = job.returnvalue;
  if (state === 'failed' || (job.failedReason && state !== 'completed'))
    view.error = decodeFailure(job.failedReason);
  return view;
}
