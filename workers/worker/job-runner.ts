import { type EventEmitter } from 'node:events';
import { UnrecoverableError, WaitingError, type Job, type Worker } from 'bullmq';
import { ProviderUnavailableError } from '../../shared/errors.js';
import { sampleHotPathLine, type Logger } from '../../shared/logger.js';
import { encodeFailure } from '../../shared/queues/failure.js';
import { QueueName } from '../../shared/queues/names.js';
import { type InferenceResult, type SearchResult } from '../../shared/queues/results.js';
import {
  inferenceRequestSchema,
  isInferenceJobData,
  isSearchJobData,
  searchRequestSchema,
} from '../../shared/queues/schemas.js';
import {
  embeddingJobSchema,
  isEmbeddingJobData,
  type EmbeddingResult,
} from '../../shared/queues/embeddings.js';
import { withSpan } from '../../shared/tracing/tracing.js';
import { type EmbeddingBatcher } from '../embedding/index.js';
import { type Admission } from './admission.js';
import { isBackendAway, type BackendWait } from './backend-wait.js';
import { type ProviderDeadlines } from './deadlines.js';
import { failureOf, parseJobData, storeInference, storeSearch, timedOut } from './job-outcome.js';
import { type Cell0WorkerEvents, type ResolvedWorkerOptions } from './options.js';
import { type Shutdown } from './shutdown.js';
import { streamCallbacks, type TokenStreams } from './token-streams.js';

/** A BullMQ processor. */
export type Processor = (job: Job, token?: string, signal?: AbortSignal) => Promise<unknown>;

/** What running jobs needs of the worker. */
export interface JobRunnerOptions {
  /** The worker's id (`servedBy` of each result). */
  workerId: string;
  opts: ResolvedWorkerOptions;
  log: Logger;
  admission: Admission;
  deadlines: ProviderDeadlines;
  backendWait: BackendWait;
  shutdown: Shutdown;
  tokenStreams: TokenStreams | undefined;
  embeddings: EmbeddingBatcher | undefined;
  /** True once the worker's close() started. */
  stopping: () => boolean;
  /** The BullMQ worker of a job's shard, by the job's queue key ("{cell0:inference:2}:inference"). */
  workerOf: (queueKey: string) => Worker;
  /** Where `job:completed` goes (only built when someone listens). */
  events: EventEmitter<Cell0WorkerEvents>;
}

/**
 * Runs a worker's jobs: each queue's processor (inference, search, embeddings) calls its backend inside
 * {@link JobRunner.run}, which admits the job, applies the provider deadline and cancellation, counts the
 * job as active, logs and reports its completion, and sorts its errors (hand back on close or forced
 * shutdown, typed timeout, deferral while the backend is away, permanent or retryable failure).
 */
export class JobRunner {
  private activeCount = 0;

  constructor(private readonly o: JobRunnerOptions) {}

  /** Jobs running now. */
  get active(): number {
    return this.activeCount;
  }

  /** The processor of `queue`'s BullMQ workers. */
  processorFor(queue: QueueName): Processor {
    if (queue === QueueName.INFERENCE)
      return (job, token, signal) => this.processInference(job, token, signal);
    if (queue === QueueName.EMBEDDING)
      return (job, token, signal) => this.processEmbedding(job, token, signal);
    return (job, token, signal) => this.processSearch(job, token, signal);
  }

  private async processInference(
    job: Job,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<InferenceResult> {
    const { opts, tokenStreams } = this.o;
    const data = isInferenceJobData(job.data) ? job.data : parseJobData(inferenceRequestSchema, job.data);
    const backend = opts.inference!;
    const models = opts.models?.(data.model);
    const result = await this.run(job, token, signal, QueueName.INFERENCE, async (jobSignal, onStart) => {
      const stream = tokenStreams?.writerFor(job);
      await stream?.open(job.attemptsStarted);
      // A cancelled stream (its last reader left) stops the call like the job's own signal does; only a
      // stream being written can be (so no costly AbortSignal.any for the jobs nobody streams).
      const ctxSignal = stream?.streaming ? AbortSignal.any([jobSignal, stream.signal]) : jobSignal;
      // The model must be resident (others evicted by policy if it does not fit) and stays in use, so never
      // evicted, until the call is over.
      const lease = models ? await models.acquire(data.model, { signal: ctxSignal }) : undefined;
      try {
        const r = await withSpan('backend inference', 'client', { 'cell0.model': data.model }, () =>
          backend.run(data, {
            signal: ctxSignal,
            onStart,
            ...streamCallbacks(stream),
          }),
        );
        await stream?.end({ finishReason: r.doneReason, model: r.model, usage: r.usage });
        return { ...r, servedBy: this.o.workerId };
      } catch (err) {
        if (stream?.signal.aborted) throw stream.signal.reason;
        throw err;
      } finally {
        lease?.release();
      }
    });
    await storeInference(opts.caches, data, job.id ?? '', result);
    return result;
  }

  private async processSearch(
    job: Job,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<SearchResult> {
    const data = isSearchJobData(job.data) ? job.data : parseJobData(searchRequestSchema, job.data);
    const backend = this.o.opts.search?.[data.provider];
    if (!backend) throw new UnrecoverableError(encodeFailure(new ProviderUnavailableError(data.provider)));
    const result = await this.run(job, token, signal, QueueName.SEARCH, async (ctxSignal, onStart) => {
      const t0 = performance.now();
      const r = await withSpan('backend search', 'client', { 'cell0.search_provider': data.provider }, () =>
        backend.search(data, { signal: ctxSignal, onStart }),
      );
      return { ...r, tookMs: Math.round((performance.now() - t0) * 100) / 100, servedBy: this.o.workerId };
    });
    await storeSearch(this.o.opts.caches, data, result);
    return result;
  }

  /** An embedding job: its text joins the next backend call of its model (see EmbeddingBatcher). */
  private processEmbedding(
    job: Job,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<EmbeddingResult> {
    const data = isEmbeddingJobData(job.data) ? job.data : parseJobData(embeddingJobSchema, job.data);
    return this.run(job, token, signal, QueueName.EMBEDDING, (ctxSignal) =>
      this.o.embeddings!.embed(data.model, data.input, ctxSignal),
    );
  }

  /** Runs a provider call with the job's deadline and cancellation, and sorts its errors. */
  private async run<T>(
    job: Job,
    token: string | undefined,
    signal: AbortSignal | undefined,
    queue: QueueName,
    call: (signal: AbortSignal, onStart: () => void) => Promise<T>,
  ): Promise<T> {
    const { log, deadlines, events } = this.o;
    await this.o.admission.admit(job, token, queue);
    if (this.o.stopping()) {
      // BullMQ can still hand over a job it fetched just before close(); this worker no longer takes jobs.
      await job.moveToWait(token);
      log.info({ queue, jobId: job.id }, 'closing: job handed back to wait');
      throw new WaitingError();
    }
    const t0 = performance.now();
    this.activeCount++;
    const jobSignal = signal ?? new AbortController().signal;
    const deadline = deadlines.track(this.o.workerOf(job.queueQualifiedName), job.id ?? '');
    try {
      // The deadline counts from the backend permit, not the wait for it (the lock is renewed meanwhile).
      const result = await call(jobSignal, () => deadlines.restart(deadline));
      const durationMs = Math.round((performance.now() - t0) * 100) / 100;
      if (log.isLevelEnabled('info') && sampleHotPathLine())
        log.info({ queue, jobId: job.id, durationMs, attempt: job.attemptsMade + 1 }, 'job completed');
      if (events.listenerCount('job:completed') > 0)
        events.emit('job:completed', {
          queue,
          jobId: job.id ?? '',
          durationMs,
          waitMs: job.processedOn && job.timestamp ? job.processedOn - job.timestamp : -1,
          endToEndMs: job.timestamp ? Date.now() - job.timestamp : -1,
        });
      this.o.backendWait.completed(job, queue);
      return result;
    } catch (err) {
      if (this.o.shutdown.forced && signal?.aborted) {
        // Forced shutdown: hand the job back instead of failing it, so it does not lose an attempt.
        await job.moveToWait(token);
        log.warn({ queue, jobId: job.id }, 'shutdown deadline passed; job put back to wait');
        throw new WaitingError();
      }
      if (deadline.timedOut) throw timedOut(this.o.opts.providerTimeoutMs, err);
      if (isBackendAway(err)) await this.o.backendWait.defer(job, token, queue, err);
      throw failureOf(err);
    } finally {
      deadlines.untrack(deadline);
      this.activeCount--;
    }
  }
}
