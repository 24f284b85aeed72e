import { type Config } from '../shared/config/config.js';
import {
  JobFailedError,
  JobNotFoundError,
  RedisFullError,
  ValidationError,
  WaitTimeoutError,
} from '../shared/errors.js';
import { RedisMemoryWatch } from '../shared/redis/redis-memory.js';
import { type Logger } from '../shared/logger.js';
import { type RedisHealth } from '../shared/redis/redis-client.js';
import { readWorkerStatuses, type WorkerStatus } from '../shared/fleet/worker-status.js';
import { JobName, QueueName } from '../shared/queues/names.js';
import { type InferenceResult, type SearchResult } from '../shared/queues/results.js';
import {
  parseInferenceRequest,
  parseSearchRequest,
  type InferenceJobData,
  type InferenceRequest,
  type InputLimits,
  type SearchJobData,
  type SearchRequest,
} from '../shared/queues/schemas.js';
import { JobSubmitter, type JobView, type SubmitOptions, type SubmitResult } from './job-submitter.js';
import { jobIdFor } from '../shared/queues/job-id.js';
import { type LoadShedder } from './load-shedder.js';
import { type BackendUnavailable } from '../shared/fleet/backend-health.js';
import { withDefaults } from '../shared/with-defaults.js';
import { TokenStreamHub } from './token-stream-hub.js';
import {
  DEFAULT_MAX_EMBEDDING_INPUTS,
  parseEmbeddingsRequest,
  type EmbeddingsRequest,
  type EmbeddingsRequestData,
} from '../shared/queues/embeddings.js';
import { submitEmbeddings, type EmbeddingsOutcome, type EmbeddingsResponse } from './embeddings.js';
import { Batches } from './batches/batches.js';
import { parseBatch, type BatchRequest } from './batches/batch-input.js';
import { type BatchResultLine } from './batches/batch-model.js';
import { type BatchProgress } from './batches/batch-client.js';
import { runBatch } from './batches/run-batch.js';
import {
  type CallOptions,
  type Cell0ClientOptions,
  type ClientMetrics,
  type JobHandle,
  type JobResult,
} from './cell0-client-types.js';
import { inferenceFromCache, searchFromCache } from './cache-answers.js';
import { LookupFlights } from './lookup-flights.js';
import { asSubmitResult, unwrap } from './submit-outcome.js';

export type {
  CallOptions,
  Cell0ClientOptions,
  ClientMetrics,
  JobHandle,
  JobResult,
} from './cell0-client-types.js';

const DEFAULT_LIMITS: InputLimits = { maxPromptBytes: 32 * 1024, maxQueryBytes: 2048 };

/**
 * The typed way for a service to put work on the fleet. Requests are validated and size-checked here,
 * before they reach Redis; identical requests share one job (see JobSubmitter for the retention rule).
 *
 * ```ts
 * const cell0 = new Cell0Client({ redisUrl: 'redis://localhost:6379' });
 * await cell0.start();
 * const { result } = await cell0.infer({ model: 'qwen2.5:7b', prompt: 'Hello' });
 * ```
 */
export class Cell0Client {
  readonly submitter: JobSubmitter;
  readonly caches: NonNullable<Cell0ClientOptions['caches']>;
  /**
   * Producers' admission: when set, a request that misses the caches is refused with OverloadedError while
   * its queue is too deep or every worker serving it is paused by pressure (cache hits are still answered);
   * and while its backend is down on every worker (their breakers, as the shedder last read them), its job
   * is added without waiting for the result: the answer is pending with `backendUnavailable`.
   */
  shedder: LoadShedder | undefined;
  /** Redis memory use and policy, read in the background once started (for the shedder and /readyz). */
  readonly redisMemory: RedisMemoryWatch;
  private metricsSink: ClientMetrics | undefined;
  /** The fleet's Redis URL (batches open connections of their own to it). */
  readonly redisUrl: string;
  /**
   * Batch jobs of this client: set one up (as the API does) to choose its options; batch() otherwise makes
   * one with the defaults, running its items in this process.
   */
  batches: Batches | undefined;
  private readonly waitMs: number;
  private readonly limits: InputLimits;
  private readonly log: Logger | undefined;
  private hub: TokenStreamHub | undefined;
  /** Inference cache lookups shared by identical requests in flight. */
  private readonly lookups = new LookupFlights<SubmitResult<InferenceResult>>();
  private readonly maxEmbedInputs: number;

  constructor(opts: Cell0ClientOptions = {}) {
    this.waitMs = opts.waitMs ?? 30_000;
    if (!(this.waitMs >= 0))
      throw new TypeError(`Cell0Client: option "waitMs" must be >= 0, got ${opts.waitMs}`);
    this.limits = withDefaults(DEFAULT_LIMITS, opts.limits);
    for (const [k, v] of Object.entries(this.limits))
      if (!(Number.isInteger(v) && v > 0))
        throw new TypeError(`Cell0Client: option "limits.${k}" must be a positive integer, got ${v}`);
    this.maxEmbedInputs = opts.maxEmbedInputs ?? DEFAULT_MAX_EMBEDDING_INPUTS;
    if (!(Number.isInteger(this.maxEmbedInputs) && this.maxEmbedInputs > 0))
      throw new TypeError(
        `Cell0Client: option "maxEmbedInputs" must be a positive integer, got ${opts.maxEmbedInputs}`,
      );
    this.caches = opts.caches ?? {};
    this.shedder = undefined;
    this.batches = undefined;
    this.redisUrl = opts.redisUrl ?? 'redis://localhost:6379';
    this.log = opts.logger;
    this.submitter = new JobSubmitter({
      redisUrl: this.redisUrl,
      prefix: opts.prefix ?? '{cell0}',
      ...(opts.shards !== undefined ? { shards: opts.shards } : {}),
      ...(opts.policy ? { policy: opts.policy } : {}),
      ...(opts.commandTimeoutMs !== undefined ? { commandTimeoutMs: opts.commandTimeoutMs } : {}),
      ...(opts.queueEvents !== undefined ? { queueEvents: opts.queueEvents } : {}),
      ...(opts.breakerThreshold !== undefined ? { breakerThreshold: opts.breakerThreshold } : {}),
      ...(opts.breakerResetMs !== undefined ? { breakerResetMs: opts.breakerResetMs } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
    this.redisMemory = new RedisMemoryWatch({
      redis: this.submitter.redis.connection,
      ...(opts.memoryWatermarkPercent !== undefined ? { watermarkPercent: opts.memoryWatermarkPercent } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }

  /** Where cache lookups, adds and coalesced requests are counted (the process's metrics); none by default. */
  get metrics(): ClientMetrics | undefined {
    return this.metricsSink;
  }

  set metrics(m: ClientMetrics | undefined) {
    this.metricsSink = m;
    this.submitter.metrics = m;
  }

  /** A client configured from the environment's validated config. */
  static fromConfig(config: Config, logger?: Logger): Cell0Client {
    return new Cell0Client({
      redisUrl: config.redis.url,
      prefix: config.redis.prefix,
      shards: config.redis.queueShards,
      waitMs: config.api.resultWaitMs,
      limits: { maxPromptBytes: config.limits.maxPromptBytes, maxQueryBytes: config.limits.maxQueryBytes },
      maxEmbedInputs: config.limits.maxEmbedInputs,
      policy: config.jobs,
      commandTimeoutMs: config.redis.commandTimeoutMs,
      queueEvents: config.redis.queueEvents,
      breakerThreshold: config.redis.breakerThreshold,
      breakerResetMs: config.redis.breakerResetMs,
      memoryWatermarkPercent: config.redis.memoryWatermarkPercent,
      ...(logger ? { logger } : {}),
    });
  }

  /**
   * Connects; resolves when the queues are ready (keeps retrying while Redis is down). Rejects with
   * RedisEvictionPolicyError (code CELL0_REDIS_EVICTION_POLICY) when Redis's maxmemory-policy is not
   * `noeviction`: queued jobs could be evicted, so the client refuses to work with that Redis.
   */
  async start(): Promise<void> {
    await this.submitter.start();
    await this.redisMemory.start();
  }

  /** Validates an inference request and fills its defaults; throws ValidationError / InputTooLargeError. */
  parseInference(req: unknown): InferenceJobData {
    return parseInferenceRequest(req, this.limits);
  }

  /** Validates a search request and fills its defaults; throws ValidationError / InputTooLargeError. */
  parseSearch(req: unknown): SearchJobData {
    return parseSearchRequest(req, this.limits);
  }

  /** Validates an embeddings request (OpenAI's shape); throws ValidationError / InputTooLargeError. */
  parseEmbeddings(req: unknown): EmbeddingsRequestData {
    return parseEmbeddingsRequest(req, {
      maxInputs: this.maxEmbedInputs,
      maxInputBytes: this.limits.maxPromptBytes,
    });
  }

  /**
   * Embeds texts; resolves with OpenAI's answer shape (`data[i].embedding` for `input[i]`). One job per
   * distinct text, shared with identical texts of other requests; throws JobFailedError (an input's job
   * failed) or WaitTimeoutError (not all finished within the wait; the jobs go on, and a retry joins them).
   */
  async embed(req: EmbeddingsRequest, opts: CallOptions = {}): Promise<EmbeddingsResponse> {
    const waitMs = opts.waitMs ?? this.waitMs;
    const r = await this.submitEmbeddings(this.parseEmbeddings(req), opts);
    if (r.state === 'completed') return r.response;
    if (r.state === 'failed') throw new JobFailedError(QueueName.EMBEDDING, r.jobId, r.message, r.code);
    throw new WaitTimeoutError(QueueName.EMBEDDING, r.pending[0]!.jobId, waitMs);
  }

  /** Adds (or joins) the jobs of an already-parsed embeddings request and waits for them; never throws for job outcomes. */
  submitEmbeddings(data: EmbeddingsRequestData, opts: CallOptions = {}): Promise<EmbeddingsOutcome> {
    return this.noteOom(submitEmbeddings(this.submitter, this.shedder, data, this.callOpts(opts)));
  }

  /** Validates a request of `queue` and fills its defaults (the parser of POST /v1/<queue>). */
  parseFor(queue: QueueName, body: unknown): unknown {
    switch (queue) {
      case QueueName.INFERENCE:
        return this.parseInference(body);
      case QueueName.SEARCH:
        return this.parseSearch(body);
      case QueueName.EMBEDDING:
        return this.parseEmbeddings(body);
      default:
        throw new TypeError(`Cell0Client: no requests for queue "${String(queue)}"`);
    }
  }

  /**
   * Submits an already-parsed request of `queue` (submitInference, submitSearch or submitEmbeddings). An
   * embeddings request answers as one result, OpenAI's embeddings answer, under the job id of its first input.
   */
  submitTo(queue: QueueName, data: unknown, opts: CallOptions = {}): Promise<SubmitResult> {
    switch (queue) {
      case QueueName.INFERENCE:
        return this.submitInference(data as InferenceJobData, opts);
      case QueueName.SEARCH:
        return this.submitSearch(data as SearchJobData, opts);
      case QueueName.EMBEDDING:
        return this.submitEmbeddings(data as EmbeddingsRequestData, opts).then(asSubmitResult);
      default:
        throw new TypeError(`Cell0Client: no requests for queue "${String(queue)}"`);
    }
  }

  /**
   * Runs many requests as one batch job (see docs/batches.md) and resolves with one result line per
   * request, in the requests' order, once every one has finished. Each request goes through the caches
   * and coalescing exactly as infer()/search() would; a failed request is a `failed` line, not an error.
   * Invalid requests throw ValidationError (naming each bad one by its 1-based position) before anything
   * is enqueued. `onProgress` is called as results come in.
   */
  async batch(
    requests: readonly BatchRequest[],
    opts: { onProgress?: (p: BatchProgress) => void; signal?: AbortSignal; maxItems?: number } = {},
  ): Promise<BatchResultLine[]> {
    const items = parseBatch(
      requests.map((value, i) => ({ line: i + 1, value })),
      { parse: (q, b) => this.parseFor(q, b), maxItems: opts.maxItems ?? 50_000 },
    );
    this.batches ??= new Batches({ client: this });
    return runBatch(this.batches, items, opts);
  }

  /**
   * Runs inference and returns the result; throws WaitTimeoutError (the job goes on), BackendUnavailableError
   * (queued, not waited for: its backend is down fleet-wide) or JobFailedError.
   */
  async infer(req: InferenceRequest, opts: CallOptions = {}): Promise<JobResult<InferenceResult>> {
    return unwrap(await this.submitInference(this.parseInference(req), opts), opts.waitMs ?? this.waitMs);
  }

  /** Runs a search and returns the result; throws WaitTimeoutError (the job goes on) or JobFailedError. */
  async search(req: SearchRequest, opts: CallOptions = {}): Promise<JobResult<SearchResult>> {
    return unwrap(await this.submitSearch(this.parseSearch(req), opts), opts.waitMs ?? this.waitMs);
  }

  /**
   * Answers an already-parsed inference request from the semantic cache, or adds (or joins) its job; never
   * throws for job outcomes. `cache.noCache` skips the cache and any completed job from before the request.
   */
  async submitInference(
    data: InferenceJobData,
    opts: CallOptions = {},
  ): Promise<SubmitResult<InferenceResult>> {
    const add = async (known?: string): Promise<SubmitResult<InferenceResult>> => {
      this.shedder?.check(QueueName.INFERENCE);
      // Computed once per call (a SHA-256 of the canonical request), here or by the caller.
      const jobId = known ?? jobIdFor(QueueName.INFERENCE, data);
      if (opts.beforeAdd) await opts.beforeAdd(jobId);
      const name = data.messages ? JobName.CHAT : JobName.GENERATE;
      const away = this.shedder?.backendUnavailable({ queue: QueueName.INFERENCE, model: data.model });
      return this.noteOom(
        this.submitNow<InferenceResult>(
          QueueName.INFERENCE,
          name,
          data,
          this.callOpts(opts, data),
          away,
          jobId,
        ),
      );
    };
    // No cache, or a request that skips it: nothing to share.
    if (!this.caches.inference || data.cache?.noCache === true) return add(opts.jobId);
    // Identical requests in this process share one lookup (see LookupFlights).
    const jobId = opts.jobId ?? jobIdFor(QueueName.INFERENCE, data);
    const r = await this.lookups.run(
      jobId,
      () => inferenceFromCache(this.caches, this.metrics, data),
      () => add(jobId),
    );
    return r.state === 'completed' && r.cached !== undefined ? { ...r } : r;
  }

  /** Answers an already-parsed search from the search cache, or adds (or joins) its job. */
  async submitSearch(data: SearchJobData, opts: CallOptions = {}): Promise<SubmitResult<SearchResult>> {
    const cached = await searchFromCache(this.caches, this.metrics, data);
    if (cached) return cached;
    this.shedder?.check(QueueName.SEARCH);
    const away = this.shedder?.backendUnavailable({ queue: QueueName.SEARCH, provider: data.provider });
    return this.noteOom(
      this.submitNow<SearchResult>(QueueName.SEARCH, JobName.SEARCH, data, this.callOpts(opts, data), away),
    );
  }

  /**
   * Adds (or joins) the job and waits as asked, or, when its backend is down fleet-wide, without waiting:
   * nothing could finish it within the wait, so the caller gets its id at once (a result already there is
   * still returned).
   */
  private async submitNow<T>(
    queue: QueueName,
    name: string,
    data: unknown,
    opts: SubmitOptions,
    away: BackendUnavailable | undefined,
    /** The job id of `data`, when the caller computed it already. */
    jobId?: string,
  ): Promise<SubmitResult<T>> {
    if (!away) return this.submitter.submit<T>(queue, name, data, opts, jobId);
    const r = await this.submitter.submit<T>(queue, name, data, { ...opts, waitMs: 0 }, jobId);
    return r.state === 'pending' ? { ...r, backendUnavailable: away } : r;
  }

  /** Adds (or joins) an inference job and returns its handle without waiting. */
  async enqueueInference(req: InferenceRequest): Promise<JobHandle<InferenceResult>> {
    const r = await this.submitInference(this.parseInference(req), { waitMs: 0 });
    return this.handle<InferenceResult>(QueueName.INFERENCE, r.jobId);
  }

  /** Adds (or joins) a search job and returns its handle without waiting. */
  async enqueueSearch(req: SearchRequest): Promise<JobHandle<SearchResult>> {
    const r = await this.submitSearch(this.parseSearch(req), { waitMs: 0 });
    return this.handle<SearchResult>(QueueName.SEARCH, r.jobId);
  }

  /** A handle for a job id (from an earlier call or another process). */
  handle<T>(queue: QueueName, id: string): JobHandle<T> {
    return {
      queue,
      id,
      wait: async (timeoutMs = this.waitMs, signal?: AbortSignal) => {
        const r = await this.submitter.waitFor<T>(queue, id, {
          waitMs: timeoutMs,
          ...(signal ? { signal } : {}),
        });
        if (r.state === 'missing') throw new JobNotFoundError(queue, id);
        return unwrap(r, timeoutMs).result;
      },
      state: () => this.submitter.getJob(queue, id),
    };
  }

  /**
   * A job's state and result, or undefined when it does not exist or `id` is not a job id of `queue`
   * (then nothing is read from Redis). The client is trusted — it holds the fleet's Redis credentials,
   * which reach every job anyway — so it reads any job; pass `owner` (a tenant id) to read only that
   * tenant's jobs, as the HTTP API does for each API key (another tenant's job is then undefined too).
   */
  getJob(queue: QueueName, id: string, opts: { owner?: string } = {}): Promise<JobView | undefined> {
    return this.submitter.getJob(queue, id, opts);
  }

  /**
   * Reports that a cached answer was wrong for the request it answered (`cacheEntry` of that answer): the
   * entry is removed and counted in the semantic cache's falseHitReports. Throws ValidationError for an id
   * that is not one; a no-op without a semantic cache.
   */
  async reportFalseHit(cacheEntry: string): Promise<void> {
    const cache = this.caches.inference;
    if (!cache?.reportFalseHit) return;
    try {
      await cache.reportFalseHit(cacheEntry);
    } catch (err) {
      if (err instanceof TypeError)
        throw new ValidationError([{ field: 'cacheEntry', reason: 'not a cache entry id' }]);
      throw err;
    }
  }

  /** The live worker processes and what they report (queues, active jobs, backends). */
  fleet(): Promise<WorkerStatus[]> {
    return this.submitter.redis.run((r) => readWorkerStatuses(r, this.submitter.prefix));
  }

  /** Redis reachability and breaker state. */
  health(): Promise<RedisHealth> {
    return this.submitter.redis.healthCheck();
  }

  /**
   * The reader of inference jobs' token streams (one blocking Redis connection for all of them, opened on
   * first use): open a job's stream before adding or joining the job, and its tokens arrive as the worker
   * produces them (see TokenStreamHub).
   */
  tokenStreams(): TokenStreamHub {
    this.hub ??= new TokenStreamHub({
      redisUrl: this.redisUrl,
      prefix: this.submitter.prefix,
      redis: this.submitter.redis.connection,
      ...(this.log ? { logger: this.log } : {}),
    });
    return this.hub;
  }

  /** Closes connections; callers still waiting get their job id back as pending. Idempotent. */
  async close(): Promise<void> {
    this.redisMemory.close();
    await this.batches?.close();
    await this.hub?.close();
    return this.submitter.close();
  }

  /** A write refused for memory makes the memory watch say "full" at once, so later requests are shed. */
  private noteOom<T>(p: Promise<T>): Promise<T> {
    // One reaction on `p` (an async wrapper would make two promises and a turn more per request).
    return p.then(undefined, this.onRejected);
  }

  /** noteOom's rejection handler: notes Redis out of memory, and rejects with the same error. */
  private readonly onRejected = (err: unknown): never => {
    if (err instanceof RedisFullError) this.redisMemory.noteOom();
    throw err;
  };

  private callOpts(opts: CallOptions, data?: { cache?: { noCache?: boolean } }): SubmitOptions {
    const waitMs = opts.waitMs ?? this.waitMs;
    if (!(waitMs >= 0)) throw new TypeError(`waitMs must be >= 0, got ${waitMs}`);
    return {
      waitMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onJoined ? { onJoined: opts.onJoined } : {}),
      // A fresh answer: not even a completed job from before this request.
      ...(data?.cache?.noCache === true ? { maxAgeMs: 0 } : {}),
    };
  }
}
