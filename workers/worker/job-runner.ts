import { type EventEmitter } from 'node:events';
import { UnrecoverableError, WaitingError, type Job, type Worker } from 'bullmq';
import { ProviderUnavailableError } from '../../shared/errors.js';
import { linkedSignal } from '../../shared/linked-signal.js';
import { sampleHotPathLine, type Logger } from '../../shared/logger.js';
import { encodeFailure } from '../../shared/queues/failure.js';
import { QueueName } from '../../shared/queues/names.js';
import { type InferenceResult, type SearchResult } from '../../shared/queues/results.js';
import {
  inferenceRequestSchema,
  isInferenceJobData,
  isSearchJobData,
  searchRequestSchema,
  type InferenceJobData,
  type SearchJobData,
} from '../../shared/queues/schemas.js';
import {
  embeddingJobSchema,
  isEmbeddingJobData,
  type EmbeddingJobData,
  type EmbeddingResult,
} from '../../shared/queues/embeddings.js';
import { tracingOn, withSpan } from '../../shared/tracing/tracing.js';
import { type ModelLease } from '../../shared/resources/model-memory-types.js';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import { type EmbeddingBatcher } from '../embedding/index.js';
import { type Admission } from './admission.js';
import { isBackendAway, type BackendWait } from './backend-wait.js';
import { type Deadline, type ProviderDeadlines } from './deadlines.js';
import { failureOf, parseJobData, storeInference, storeSearch, timedOut } from './job-outcome.js';
import { type Cell0WorkerEvents, type ResolvedWorkerOptions } from './options.js';
import { type Shutdown } from './shutdown.js';
import { streamCallbacks, type TokenStreams } from './token-streams.js';

/** A job's data, checked. */
type JobData = InferenceJobData | SearchJobData | EmbeddingJobData;
/** A job's result. */
type JobResult = InferenceResult | SearchResult | EmbeddingResult;

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
  /**
   * The connection of a job's shard (its BullMQ worker's, which completes the job), by the job's queue
   * key: an inference answer's cache write joins its writes (see store()).
   */
  connectionOf?: (queueKey: string) => RedisConnection | undefined;
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
    return (job, token, signal) => this.run(job, token, signal, queue);
  }

  /**
   * A job's data, checked: the fast shape check, else the full schema (which fills in defaults or fails
   * the job without retries); a search job whose provider this worker lacks fails without retries too.
   */
  private dataOf(queue: QueueName, job: Job): JobData {
    if (queue === QueueName.INFERENCE)
      return isInferenceJobData(job.data) ? job.data : parseJobData(inferenceRequestSchema, job.data);
    if (queue === QueueName.EMBEDDING)
      return isEmbeddingJobData(job.data) ? job.data : parseJobData(embeddingJobSchema, job.data);
    const data = isSearchJobData(job.data) ? job.data : parseJobData(searchRequestSchema, job.data);
    if (!this.o.opts.search?.[data.provider])
      throw new UnrecoverableError(encodeFailure(new ProviderUnavailableError(data.provider)));
    return data;
  }

  /** Inference answers' cache writes sent and not yet acknowledged by Redis. */
  private readonly storing = new Set<Promise<void>>();

  /** Settles when every cache write started so far has (the worker's close() waits for it). */
  async drainStores(): Promise<void> {
    while (this.storing.size > 0) await Promise.allSettled([...this.storing]);
  }

  /**
   * Writes a job's result through to its cache (inference and search; none for embeddings here). An
   * inference answer's write is awaited only until it has gone to Redis, not for Redis's reply: the job
   * completes meanwhile, and since its completion is sent after the write, anything that learns of the
   * answer (a producer's reply, the job's state) reaches Redis after the entry, so the next identical
   * request still finds it (on a Redis Cluster, where the entry and the job sit on different masters, the
   * write is awaited until Redis answers it). Waiting for the write's batch (up to 1 ms) also keeps the jobs
   * of one batch finishing together, in one finish call. The write goes on the connection that completes the job (its
   * shard's) while that one is ready: the entry's script call and the completions behind it leave in one
   * socket write (one system call, one read for Redis, one reply read) instead of one on each connection.
   * A failed write is counted and logged by the cache; the answered job stands.
   */
  private async store(queue: QueueName, job: Job, data: JobData, result: JobResult): Promise<void> {
    const caches = this.o.opts.caches;
    if (queue === QueueName.INFERENCE) {
      let onSent!: () => void;
      const sent = new Promise<void>((resolve) => (onSent = resolve));
      const write = storeInference(
        caches,
        data as InferenceJobData,
        job.id ?? '',
        result as InferenceResult,
        onSent,
        this.o.connectionOf?.(job.queueQualifiedName),
      )
        .catch((err: unknown) =>
          this.o.log.warn({ queue, jobId: job.id, error: (err as Error).message }, 'cache write failed'),
        )
        .finally(() => this.storing.delete(write));
      this.storing.add(write);
      await sent;
    } else if (queue === QueueName.SEARCH)
      await storeSearch(caches, data as SearchJobData, result as SearchResult);
  }

  /**
   * The backend call of an inference job. Its token stream writer exists only when someone asked for the
   * stream (or to cancel the job): the marks read behind the job's fetch tell, without a round trip.
   */
  private async callInference(
    job: Job,
    data: InferenceJobData,
    jobSignal: AbortSignal,
    deadline: Deadline,
  ): Promise<InferenceResult> {
    const { opts, tokenStreams, deadlines } = this.o;
    const backend = opts.inference!;
    const opened = tokenStreams?.openFor(job);
    const stream = opened instanceof Promise ? await opened : opened;
    const models = opts.models?.(data.model);
    const onStart = () => deadlines.restart(deadline);
    if (!stream && !tracingOn()) {
      // The usual job: nobody streams it, no span, and its model (when models are managed) resident already,
      // leased without a promise; one that is not is acquired (loaded, or waited for) as below.
      let lease: ModelLease | undefined;
      if (models) {
        jobSignal.throwIfAborted();
        lease = models.tryAcquire?.(data.model) ?? (await models.acquire(data.model, { signal: jobSignal }));
      }
      if (!lease) {
        const r = await backend.run(data, { signal: jobSignal, onStart });
        return { ...r, servedBy: this.o.workerId };
      }
      try {
        const r = await backend.run(data, { signal: jobSignal, onStart });
        return { ...r, servedBy: this.o.workerId };
      } finally {
        lease.release();
      }
    }
    // A cancelled stream (its last reader left) stops the call like the job's own signal does; only a
    // stream being written can be (so no linked signal for the jobs nobody streams). Not AbortSignal.any:
    // its composite signal costs more to make and to read, and this one's end is known (linkedSignal).
    const linked = stream?.streaming ? linkedSignal(jobSignal, stream.signal) : undefined;
    const ctxSignal = linked?.signal ?? jobSignal;
    // The model must be resident (others evicted by policy if it does not fit) and stays in use, so never
    // evicted, until the call is over.
    const lease = models ? await models.acquire(data.model, { signal: ctxSignal }) : undefined;
    try {
      const r = await withSpan('backend inference', 'client', { 'cell0.model': data.model }, async () => {
        const r = await backend.run(data, {
          signal: ctxSignal,
          onStart,
          ...streamCallbacks(stream),
        });
        // The stream's end entry is written inside the span: the stream's writes go in order, so the first
        // token's write is acknowledged (its 'first token stored' event marked) before the span ends, even
        // when the generation ends before Redis has answered that write.
        await stream?.end({ finishReason: r.doneReason, model: r.model, usage: r.usage });
        return r;
      });
      return { ...r, servedBy: this.o.workerId };
    } catch (err) {
      if (stream?.signal.aborted) throw stream.signal.reason;
      throw err;
    } finally {
      linked?.unlink();
      lease?.release();
      // The attempt is over: readers this writer fed in this process read on from Redis (a retry elsewhere).
      stream?.release();
    }
  }

  private async callSearch(
    data: SearchJobData,
    signal: AbortSignal,
    deadline: Deadline,
  ): Promise<SearchResult> {
    const backend = this.o.opts.search![data.provider]!;
    const onStart = () => this.o.deadlines.restart(deadline);
    const t0 = performance.now();
    const r = await withSpan('backend search', 'client', { 'cell0.search_provider': data.provider }, () =>
      backend.search(data, { signal, onStart }),
    );
    return { ...r, tookMs: Math.round((performance.now() - t0) * 100) / 100, servedBy: this.o.workerId };
  }

  /** The provider call of a job of `queue` (its data checked already). */
  private call(
    queue: QueueName,
    job: Job,
    data: JobData,
    signal: AbortSignal,
    deadline: Deadline,
  ): Promise<JobResult> {
    if (queue === QueueName.INFERENCE)
      return this.callInference(job, data as InferenceJobData, signal, deadline);
    if (queue === QueueName.SEARCH) return this.callSearch(data as SearchJobData, signal, deadline);
    // An embedding job: its text joins the next backend call of its model (see EmbeddingBatcher).
    const e = data as EmbeddingJobData;
    return this.o.embeddings!.embed(e.model, e.input, signal);
  }

  /** Runs a provider call with the job's deadline and cancellation, and sorts its errors. */
  private async run(
    job: Job,
    token: string | undefined,
    signal: AbortSignal | undefined,
    queue: QueueName,
  ): Promise<JobResult> {
    const data = this.dataOf(queue, job);
    const { log, deadlines, events } = this.o;
    const admitted = this.o.admission.admit(job, token, queue);
    if (admitted) await admitted;
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
    let result: JobResult;
    try {
      // The deadline counts from the backend permit, not the wait for it (the lock is renewed meanwhile).
      result = await this.call(queue, job, data, jobSignal, deadline);
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
    // Written through to the cache once the job is no longer active (a failed search-cache write fails the
    // job as is; an inference answer's write is awaited only until it is sent, see store()).
    if (queue !== QueueName.EMBEDDING && this.o.opts.caches) await this.store(queue, job, data, result);
    return result;
  }
}
