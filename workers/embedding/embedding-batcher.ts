import { AsyncBatchProcessor, type BatchOutcome, type BatchStats } from '../../shared/batch/index.js';
import { ProviderError } from '../../shared/errors.js';
import { silentLogger, type Logger } from '../../shared/logger.js';
import { type EmbeddingResult } from '../../shared/queues/embeddings.js';
import { type ModelLeaser } from '../../shared/resources/resource-management.js';
import { type InferenceBackend } from '../providers/provider.js';

/** How a worker gathers embedding jobs into backend calls. */
export interface EmbeddingBatchOptions {
  /** Most inputs in one backend call. Default 64 (CELL0_EMBED_BATCH_MAX). */
  maxBatchSize?: number;
  /**
   * Longest a ready job waits for others to share its call, ms. Default 10 (CELL0_EMBED_BATCH_WAIT_MS). A
   * worker fetches the jobs that are ready one after another before it starts any, so the jobs of one
   * request reach the batcher together and leave in one call well within this.
   */
  maxWaitMs?: number;
  /** Backend calls in flight at once per worker process. Default 4 (CELL0_EMBED_BATCHES_IN_FLIGHT). */
  maxConcurrentBatches?: number;
  /** Inputs accepted and unfinished above which new ones are refused (BatchQueueFullError). Default 10000. */
  maxQueuedItems?: number;
  /**
   * Longest a batch is held open past `maxWaitMs` while jobs are still being fetched (see `readyJobs`), ms.
   * Default 2000.
   */
  maxHoldMs?: number;
}

/** Options of {@link EmbeddingBatcher}. */
export interface EmbeddingBatcherOptions extends EmbeddingBatchOptions {
  /** Embeds a list of texts with a model (the worker's inference router). */
  backend: Pick<InferenceBackend, 'embed' | 'name'> & {
    routeFor?(model: string): { backend: { name: string } } | undefined;
  };
  /** The model memory manager of the backend serving a model, when its models are managed. */
  models?: (model: string) => ModelLeaser | undefined;
  /** Who serves the results (the worker's id). */
  servedBy: string;
  /**
   * Jobs ready in the queue and not yet taken by any worker. A batch whose wait ends while they are being
   * taken (and this worker has room for more) is held open another wait, up to `maxHoldMs`: an idle worker
   * woken by the first job of a request fetches the others one round trip at a time, and they belong in
   * the same call. Default: none (a batch leaves when its wait ends).
   */
  readyJobs?: () => Promise<number>;
  /** Inputs this worker holds at most (its concurrency): with that many, nothing more can join a batch. */
  capacity?: number;
  logger?: Logger;
}

/** Figures of an {@link EmbeddingBatcher}: the batches, and the backend calls they took. */
export interface EmbeddingBatchStats extends BatchStats {
  /** Backend calls made (a batch with a bad input is split to find it: more calls than batches). */
  backendCalls: number;
  /** Batches split in two because the backend refused the whole call for a bad input. */
  splits: number;
}

/** Looks in a row without the ready count falling after which a held batch leaves (see holdOpen). */
const STALL_LOOKS = 3;

interface Item {
  model: string;
  input: string;
  signal: AbortSignal | undefined;
}

/**
 * Embeds texts in batches: concurrent `embed(model, text)` calls (one per embedding job the worker runs)
 * are gathered per model and sent as one backend call (Ollama `/api/embed` and OpenAI `/v1/embeddings`
 * take a list), and each caller gets its own vector.
 *
 * Errors: a call that fails as a whole (backend away, rate limited, model unknown) fails every job of the
 * batch with that error, and the worker handles each as it would a single call (wait for the backend,
 * retry, fail). A call the backend refuses as a bad request (a 4xx other than 429) is split in halves
 * and each tried again, so only the input at fault fails and its neighbours get their vectors. A vector
 * that is missing or not finite fails its own input only.
 */
export class EmbeddingBatcher {
  private readonly batcher: AsyncBatchProcessor<Item, EmbeddingResult>;
  private readonly backend: EmbeddingBatcherOptions['backend'];
  private readonly opts: EmbeddingBatcherOptions;
  private readonly log: Logger;
  private calls = 0;
  private splits = 0;

  constructor(opts: EmbeddingBatcherOptions) {
    if (typeof opts.backend?.embed !== 'function')
      throw new TypeError('EmbeddingBatcher: option "backend" must have an embed method');
    this.opts = opts;
    this.backend = opts.backend;
    this.log = opts.logger ?? silentLogger();
    this.batcher = new AsyncBatchProcessor<Item, EmbeddingResult>({
      handler: (items, model) => this.runBatch(model, items),
      keyOf: (item) => item.model,
      maxBatchSize: opts.maxBatchSize ?? 64,
      maxWaitMs: opts.maxWaitMs ?? 10,
      maxConcurrentBatches: opts.maxConcurrentBatches ?? 4,
      maxQueuedItems: opts.maxQueuedItems ?? 10_000,
      ...(opts.readyJobs ? { holdOpen: (_model, size, waitedMs) => this.holdOpen(size, waitedMs) } : {}),
    });
  }

  /** Ready jobs at the last look (undefined: no batch is being held), and looks since it last fell. */
  private lastReady: number | undefined;
  private lastSize = 0;
  private stalls = 0;

  /**
   * Keep a batch open while jobs are on their way to it: the ready jobs are being taken (their count falls
   * from one look to the next) or the batch grew since the last look, while this worker has room for more
   * and the batch has not been held `maxHoldMs`. With no job ready, one more wait (the last ones fetched
   * may still be on their way), then as long as the batch grows. Ready jobs whose count does not fall for
   * STALL_LOOKS looks in a row mean nobody is fetching (every worker full or paused): the batch leaves.
   */
  private async holdOpen(size: number, waitedMs: number): Promise<boolean> {
    const s = this.batcher.stats();
    const room = this.opts.capacity === undefined || s.waiting + s.inFlight < this.opts.capacity;
    if (!room || waitedMs >= (this.opts.maxHoldMs ?? 2000)) {
      this.lastReady = undefined;
      return false;
    }
    const ready = await this.opts.readyJobs!();
    const prev = this.lastReady;
    const progress = prev === undefined || ready < prev || size > this.lastSize;
    this.stalls = progress ? 0 : this.stalls + 1;
    const keep = ready === 0 ? progress : this.stalls < STALL_LOOKS;
    this.lastReady = keep ? ready : undefined;
    this.lastSize = keep ? size : 0;
    if (!keep) this.stalls = 0;
    return keep;
  }

  /** The vector of `input` under `model`, embedded with the other inputs of its model that are ready. */
  embed(model: string, input: string, signal?: AbortSignal): Promise<EmbeddingResult> {
    return this.batcher.add({ model, input, signal }, signal ? { signal } : {});
  }

  stats(): EmbeddingBatchStats {
    return { ...this.batcher.stats(), backendCalls: this.calls, splits: this.splits };
  }

  /** Batches so far by size (see AsyncBatchProcessor.sizeCounts). */
  sizeCounts(): number[] {
    return this.batcher.sizeCounts();
  }

  /** Finishes the batches accepted so far and refuses new inputs. Idempotent. */
  close(): Promise<void> {
    return this.batcher.close();
  }

  private async runBatch(model: string, items: Item[]): Promise<BatchOutcome<EmbeddingResult>[]> {
    // The call is cancelled only when every job in it is (timed out, or handed back at shutdown).
    const ac = new AbortController();
    const signals = items.map((i) => i.signal).filter((s): s is AbortSignal => s !== undefined);
    if (signals.length === items.length && signals.length > 0) {
      const check = () => {
        if (signals.every((s) => s.aborted)) ac.abort(signals[0]!.reason);
      };
      for (const s of signals) s.addEventListener('abort', check, { once: true });
      check();
    }
    const lease = await this.opts.models?.(model)?.acquire(model, { signal: ac.signal });
    try {
      return await this.call(
        model,
        items.map((i) => i.input),
        ac.signal,
      );
    } finally {
      lease?.release();
    }
  }

  /** One backend call for `texts`; on a bad-request refusal of several, each half on its own. */
  private async call(
    model: string,
    texts: string[],
    signal: AbortSignal,
  ): Promise<BatchOutcome<EmbeddingResult>[]> {
    this.calls++;
    let r: Awaited<ReturnType<NonNullable<InferenceBackend['embed']>>>;
    try {
      r = await this.backend.embed!(model, texts, { signal });
    } catch (err) {
      // A refusal of one input is that input's own failure (its neighbours in the split go on).
      if (texts.length === 1 && isBadRequest(err)) return [err as Error];
      if (texts.length > 1 && isBadRequest(err) && !signal.aborted) {
        this.splits++;
        this.log.debug({ model, inputs: texts.length }, 'embedding call refused: trying each half');
        const mid = Math.ceil(texts.length / 2);
        const [a, b] = await Promise.all([
          this.call(model, texts.slice(0, mid), signal),
          this.call(model, texts.slice(mid), signal),
        ]);
        return [...a, ...b];
      }
      throw err;
    }
    if (!Array.isArray(r.embeddings) || r.embeddings.length !== texts.length)
      throw new ProviderError(
        this.providerName(model),
        `embeddings: ${Array.isArray(r.embeddings) ? r.embeddings.length : 'no'} vectors for ${texts.length} inputs`,
        undefined,
        true,
        { kind: 'protocol' },
      );
    const tokens = shareTokens(texts, r.promptTokens);
    const provider = this.providerName(model);
    return r.embeddings.map((v, i) =>
      isVector(v)
        ? {
            model: r.model || model,
            embedding: v,
            promptTokens: tokens[i]!,
            batchSize: texts.length,
            provider,
            servedBy: this.opts.servedBy,
          }
        : new ProviderError(
            provider,
            `embeddings: no valid vector for input ${i} of the call`,
            undefined,
            false,
            {
              kind: 'protocol',
            },
          ),
    );
  }

  private providerName(model: string): string {
    return this.backend.routeFor?.(model)?.backend.name ?? this.backend.name;
  }
}

/** A refusal of the request itself (4xx other than 429): some input is at fault, not the backend. */
function isBadRequest(err: unknown): boolean {
  return (
    err instanceof ProviderError &&
    err.status !== undefined &&
    err.status >= 400 &&
    err.status < 500 &&
    err.status !== 404 &&
    err.status !== 408 &&
    err.status !== 429
  );
}

function isVector(v: unknown): v is number[] {
  if (!Array.isArray(v) || v.length === 0) return false;
  for (const x of v) if (typeof x !== 'number' || !Number.isFinite(x)) return false;
  return true;
}

/**
 * Each input's share of the call's token count, by length (the shares add up to the total); about four
 * characters a token when the backend gave no count.
 */
export function shareTokens(texts: readonly string[], total: number | undefined): number[] {
  if (total === undefined || !(total >= 0)) return texts.map((t) => Math.max(1, Math.ceil(t.length / 4)));
  const chars = texts.reduce((n, t) => n + t.length, 0);
  const out = new Array<number>(texts.length);
  let given = 0;
  let seen = 0;
  for (let i = 0; i < texts.length; i++) {
    seen += texts[i]!.length;
    // Cumulative rounding: no share is lost or counted twice.
    const upTo =
      chars === 0 ? Math.round((total * (i + 1)) / texts.length) : Math.round((total * seen) / chars);
    out[i] = upTo - given;
    given = upTo;
  }
  return out;
}
