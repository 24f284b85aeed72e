import { AsyncBatchProcessor, type BatchStats } from '../../batch/index.js';

/** A provider's embeddings call: one vector per text, in order. */
export type EmbedFn = (texts: string[], signal?: AbortSignal) => Promise<number[][]>;

/** Options of {@link batchedEmbed}. */
export interface BatchedEmbedOptions {
  /** Most texts in one provider call. Default 64. */
  maxBatchSize?: number;
  /** Longest a text waits for others to share its call, ms. Default 2. */
  maxWaitMs?: number;
  /** Provider calls in flight at once. Default 4. */
  maxConcurrentBatches?: number;
  /** Texts accepted and unfinished above which new ones are refused (BatchQueueFullError). Default 10000. */
  maxQueuedItems?: number;
}

interface Item {
  text: string;
  signal: AbortSignal | undefined;
}

/**
 * Wraps a provider's embeddings call so that concurrent calls (one per request the semantic cache looks
 * up or stores) share provider calls: the texts that arrive within `maxWaitMs` of each other, up to
 * `maxBatchSize`, go in one call, and each caller gets its own vectors. A provider call that fails fails
 * every text in it; a full queue refuses at once with BatchQueueFullError (the cache then treats the
 * request as a miss). The returned function has `stats()` (batches, sizes, waits).
 */
export function batchedEmbed(fn: EmbedFn, opts: BatchedEmbedOptions = {}): EmbedFn & { stats(): BatchStats } {
  const batcher = new AsyncBatchProcessor<Item, number[]>({
    handler: async (items) => {
      const ac = new AbortController();
      const signals = items.map((i) => i.signal);
      // Cancelled only when every caller in it gave up.
      if (signals.every((s) => s !== undefined)) {
        const check = () => {
          if (signals.every((s) => s!.aborted)) ac.abort(signals[0]!.reason);
        };
        for (const s of signals) s!.addEventListener('abort', check, { once: true });
        check();
      }
      const vectors = await fn(
        items.map((i) => i.text),
        ac.signal,
      );
      if (!Array.isArray(vectors) || vectors.length !== items.length)
        throw new TypeError(
          `embeddings: expected ${items.length} vectors, got ${Array.isArray(vectors) ? vectors.length : typeof vectors}`,
        );
      return vectors;
    },
    maxBatchSize: opts.maxBatchSize ?? 64,
    maxWaitMs: opts.maxWaitMs ?? 2,
    maxConcurrentBatches: opts.maxConcurrentBatches ?? 4,
    maxQueuedItems: opts.maxQueuedItems ?? 10_000,
  });
  const embed = (texts: string[], signal?: AbortSignal): Promise<number[][]> =>
    Promise.all(texts.map((text) => batcher.add({ text, signal }, signal ? { signal } : {})));
  return Object.assign(embed, { stats: () => batcher.stats() });
}
