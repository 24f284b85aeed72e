import { BackendUnavailableError, JobFailedError, WaitTimeoutError } from '../shared/errors.js';
import { QueueName } from '../shared/queues/names.js';
import { type JobResult } from './cell0-client-types.js';
import { type EmbeddingsOutcome } from './embeddings.js';
import { type SubmitResult } from './job-submitter.js';

/* How a submission's outcome becomes what Cell0Client's callers get. */

/** An embeddings request's outcome as one submission's (for batch items). */
export function asSubmitResult(r: EmbeddingsOutcome): SubmitResult {
  const queue = QueueName.EMBEDDING;
  if (r.state === 'completed')
    return { state: 'completed', queue, jobId: r.jobIds[0]!, result: r.response, finishedOn: Date.now() };
  if (r.state === 'failed')
    return {
      state: 'failed',
      queue,
      jobId: r.jobId,
      code: r.code,
      message: `input ${r.index}: ${r.message}`,
    };
  return { state: 'pending', queue, jobId: r.pending[0]!.jobId, jobState: r.pending[0]!.jobState };
}

/** The result of a completed submission; the error a failed, unavailable or unfinished one throws. */
export function unwrap<T>(r: SubmitResult<T>, waitedMs: number): JobResult<T> {
  if (r.state === 'completed')
    return {
      jobId: r.jobId,
      result: r.result,
      cached: r.cached ?? false,
      ...(r.similarity !== undefined ? { similarity: r.similarity } : {}),
    };
  if (r.state === 'failed') throw new JobFailedError(r.queue, r.jobId, r.message, r.code);
  if (r.backendUnavailable)
    throw new BackendUnavailableError(
      r.queue,
      r.jobId,
      r.backendUnavailable.backends,
      r.backendUnavailable.retryAfterMs,
    );
  throw new WaitTimeoutError(r.queue, r.jobId, waitedMs);
}
