import { HASHED_NGRAM_THRESHOLDS, type SemanticThresholds } from './confidence.js';
import { type FeatureVector, HashedFeatureEmbedder } from './hashed-features.js';
import { isContent, stem, tokenize } from './text.js';

export { fnv1a } from './hashed-features.js';

/**
 * Turns texts into vectors whose cosine says how alike they are. `name` and `dims` identify the vector
 * space: they are part of every scope hash and seed the LSH hyperplanes, so two embedders never share
 * entries, and two processes with the same embedder always draw the same hyperplanes.
 */
export interface Embedder {
  readonly name: string;
  readonly dims: number;
  /** Cut-offs that fit this embedder's scores, used when the cache is given none. */
  readonly thresholds?: SemanticThresholds;
  /**
   * True when embed() runs in this process in microseconds (no service call): the cache then embeds up
   * front and reads the exact key and the similar ones in one round trip.
   */
  readonly inProcess?: boolean;
  embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]>;
}

/** Options of {@link HashedNgramEmbedder}. */
export interface HashedNgramEmbedderOptions {
  /** Vector size, a power of two. Default 512: collision noise ~1/sqrt(512) ≈ 0.044 on cosine. */
  dims?: number;
}

// Feature weights. Content words carry the topic; function words ("how", "do", "the") only a little, so
// swapping one for another barely moves the vector while swapping a content word moves it a lot. Character
// n-grams of each content word (as a block with the word's own weight) make inflections and typos close.
const W_CONTENT = 1.0;
const W_STOP = 0.3;
const W_BIGRAM = 0.6;
const W_BIGRAM_STOP = 0.25;
const W_CHARS = 0.8;
/** Light in the vector although the guard watches them: their swaps are the guard's job, not the score's. */
const LIGHT: ReadonlySet<string> = new Set(['to', 'from', 'than']);

/**
 * The former default embedder (CELL0_SEMANTIC_EMBEDDER=hashed): no model, no lexicon, deterministic, ~20 µs
 * per prompt. Features, each hashed
 * (FNV-1a, 32 bit) to a dimension with a hash-derived sign (signed feature hashing keeps the expected dot
 * product of unrelated texts at 0):
 * - word unigrams (content words weight 1, function words 0.3);
 * - word bigrams over all tokens (order and negation scope: "not good" ≠ "good, not") and over content
 *   words only, skipping function words (the content-word order: "paris … rome" vs "rome … paris");
 * - character 3- and 4-grams of each content word with boundary marks (`^pass`, `ord$`), sharing the word's
 *   weight so a long word does not outweigh a short one.
 * The result is L2-normalised. It measures lexical closeness: rephrasings that keep the content words
 * (reordered, function words changed, inflected, typos) score high; the guard handles what lexical
 * closeness cannot see (negation, numbers, swapped roles).
 */
export class HashedNgramEmbedder extends HashedFeatureEmbedder implements Embedder {
  readonly name = 'hashed-ngram-v1';
  readonly thresholds = HASHED_NGRAM_THRESHOLDS;

  constructor(opts: HashedNgramEmbedderOptions = {}) {
    super('HashedNgramEmbedder', opts.dims);
  }

  protected addFeatures(text: string, v: FeatureVector): void {
    const words: string[] = [];
    for (const t of tokenize(text)) {
      if (t.kind === 'arrow') words.push('->');
      else words.push(stem(t.lower.replace(/'/g, '')));
    }
    let prevContent: string | undefined;
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      const content = isContent(w) && !LIGHT.has(w);
      v.add('w\u0001' + w, content ? W_CONTENT : W_STOP);
      const next = words[i + 1];
      if (next !== undefined)
        v.add('b\u0001' + w + ' ' + next, content || isContent(next) ? W_BIGRAM : W_BIGRAM_STOP);
      if (!content) continue;
      if (prevContent !== undefined) v.add('c\u0001' + prevContent + ' ' + w, W_BIGRAM);
      prevContent = w;
      v.addCharGrams(w, W_CHARS);
    }
  }
}

/** Options of {@link FunctionEmbedder}. */
export interface FunctionEmbedderOptions {
  /** Identifies the vector space (e.g. "ollama/nomic-embed-text"): part of the scope hash and LSH seed. */
  name: string;
  /** Length of every vector `fn` returns. */
  dims: number;
  /** Calls the provider (Ollama /api/embed, OpenAI /v1/embeddings) and returns one vector per text. */
  fn: (texts: string[], signal?: AbortSignal) => Promise<number[][]>;
}

/**
 * An embedder backed by a function, typically a provider's embeddings endpoint. Vectors are checked
 * (count, length, finite) and L2-normalised. Note: thresholds tuned for the hashed embedder do not carry
 * over to a neural model (those score unrelated texts of one topic at 0.6–0.8); tune them for the model.
 */
export class FunctionEmbedder implements Embedder {
  readonly name: string;
  readonly dims: number;
  private readonly fn: FunctionEmbedderOptions['fn'];

  constructor(opts: FunctionEmbedderOptions) {
    if (typeof opts.name !== 'string' || opts.name.length === 0)
      throw new TypeError('FunctionEmbedder: option "name" is required');
    if (!Number.isInteger(opts.dims) || opts.dims < 1)
      throw new TypeError(`FunctionEmbedder: option "dims" must be an integer >= 1, got ${opts.dims}`);
    if (typeof opts.fn !== 'function') throw new TypeError('FunctionEmbedder: option "fn" is required');
    this.name = opts.name;
    this.dims = opts.dims;
    this.fn = opts.fn;
  }

  async embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]> {
    const raw = await this.fn(texts, signal);
    if (!Array.isArray(raw) || raw.length !== texts.length)
      throw new TypeError(
        `FunctionEmbedder "${this.name}": expected ${texts.length} vectors, got ${Array.isArray(raw) ? raw.length : typeof raw}`,
      );
    return raw.map((vec) => {
      if (!Array.isArray(vec) || vec.length !== this.dims)
        throw new TypeError(
          `FunctionEmbedder "${this.name}": expected vectors of ${this.dims} numbers, got ${Array.isArray(vec) ? vec.length : typeof vec}`,
        );
      const out = Float32Array.from(vec);
      let norm = 0;
      for (let i = 0; i < out.length; i++) {
        const x = out[i]!;
        if (!Number.isFinite(x)) throw new TypeError(`FunctionEmbedder "${this.name}": non-finite value`);
        norm += x * x;
      }
      if (norm > 0) {
        const inv = 1 / Math.sqrt(norm);
        for (let i = 0; i < out.length; i++) out[i]! *= inv;
      }
      return out;
    });
  }
}
