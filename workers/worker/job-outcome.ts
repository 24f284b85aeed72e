import { UnrecoverableError, WaitingError, type Job, type Worker } from 'bullmq';
import { type Logger } from '../../shared/logger.js';
import { type QueueName } from '../../shared/queues/names.js';
import { type z } from 'zod';
import { isPermanent, ProviderError, ValidationError } from '../../shared/errors.js';
import { inferenceCacheKey } from '../../shared/cache/inference-key.js';
import { searchCacheKey } from '../../shared/cache/search-cache.js';
import { encodeFailure } from '../../shared/queues/failure.js';
import { type InferenceResult, type SearchResult } from '../../shared/queues/results.js';
import { toFieldIssues, type InferenceJobData, type SearchJobData } from '../../shared/queues/schemas.js';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import { type Cell0WorkerOptions } from './options.js';

/*
 * What goes in and out of a job around its provider call: its data checked, its result written through to
 * the caches, its error as the failure BullMQ records.
 */

/**
 * Job data that failed the fast shape check (written by something other than cell0's producers, e.g.
 * without defaults): the full schema either fills it in or says which field is wrong, failing the job
 * without retries.
 */
export function parseJobData<S extends z.ZodType>(schema: S, data: unknown): z.output<S> {
  const r = schema.safeParse(data);
  if (!r.success) throw new UnrecoverableError(encodeFailure(new ValidationError(toFieldIssues(r.error))));
  return r.data;
}

type Caches = Cell0WorkerOptions['caches'];

/**
 * Writes an inference answer through to the semantic cache (unless the request said noStore). `onSent` is
 * called once the write has gone to Redis (or when there is none): see SemanticCache.set; `connection`, the
 * job's worker connection, is the one the write joins while it is ready (see SemanticCache.set).
 */
export async function storeInference(
  caches: Caches,
  data: InferenceJobData,
  jobId: string,
  result: InferenceResult,
  onSent?: () => void,
  connection?: RedisConnection,
): Promise<void> {
  try {
    const cache = caches?.inference;
    if (!cache || data.cache?.noStore === true) return;
    const key = inferenceCacheKey(data);
    if (key)
      await cache.set(key.prompt, { jobId, result }, key.scope, {
        ...(data.cache?.ttlSeconds !== undefined ? { ttlSeconds: data.cache.ttlSeconds } : {}),
        ...(onSent ? { onSent } : {}),
        ...(connection ? { connection } : {}),
      });
  } finally {
    onSent?.();
  }
}

/** Writes a search result through to the search cache (unless the request said noStore). */
export async function storeSearch(caches: Caches, data: SearchJobData, result: SearchResult): Promise<void> {
  const cache = caches?.search;
  if (cache && data.cache?.noStore !== true)
    await cache.set(searchCacheKey(data), result, data.cache?.ttlSeconds);
}

/** A provider call cut by the worker's deadline: retryable, as a slow backend may answer next time. */
export function timedOut(providerTimeoutMs: number, cause: unknown): Error {
  return new Error(
    encodeFailure(
      new ProviderError('worker', `provider call timed out after ${providerTimeoutMs} ms`, undefined, true),
    ),
    { cause },
  );
}

/** The job's failure: no retries for a permanent error, else retried by BullMQ; the reason carries its code. */
export function failureOf(err: unknown): Error {
  if (isPermanent(err)) return new UnrecoverableError(encodeFailure(err));
  return new Error(encodeFailure(err), { cause: err });
}

/** True when BullMQ will run the job again after `err` (an attempt is left and the error allows it). */
export function willRetry(job: Job, err: Error): boolean {
  return !(err instanceof UnrecoverableError) && job.attemptsMade < (job.opts.attempts ?? 1);
}

/**
 * Logs the failed and stalled jobs of one queue's worker; `onFailed` hears of every failure but the jobs
 * handed back to wait (WaitingError).
 */
export function watchFailures(
  worker: Worker,
  queue: QueueName,
  log: Logger,
  onFailed: (e: { queue: QueueName; jobId: string; error: string; willRetry: boolean }) => void,
): void {
  worker.on('failed', (job, err) => {
    if (!job || err instanceof WaitingError || err.name === 'WaitingError') return;
    const retry = willRetry(job, err);
    log.warn(
      { queue, jobId: job.id, attempt: job.attemptsMade, willRetry: retry, error: err.message },
      'job failed',
    );
    onFailed({ queue, jobId: job.id ?? '', error: err.message, willRetry: retry });
  });
  worker.on('stalled', (jobId) => log.warn({ queue, jobId }, 'job stalled; it goes back to wait'));
}
