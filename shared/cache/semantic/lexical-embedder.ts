import { canonicalize } from './canonical.js';
import { DEFAULT_THRESHOLDS } from './confidence.js';
import { fnv1a, type Embedder } from './embedder.js';
import { isKnownWord, LEXICON_VERSION } from './lexicon.js';

/** Options of {@link LexicalEmbedder}. */
export interface LexicalEmbedderOptions {
  /** Vector size, a power of two. Default 512. */
  dims?: number;
}

// Feature weights. A content word's synonym group carries the topic; the question's ask class says what
// kind of answer is wanted; adjacent content pairs keep a little of the phrasing; character n-grams only
// for words the lexicon does not know (names, jargon, typos it could not fix), so they still match loosely.
const W_KEY = 1.0;
const W_ASK = 0.7;
const W_PAIR = 0.35;
const W_NUMBER = 1.0;
const W_NEGATION = 0.5;
const W_ARROW = 0.3;
const W_MARKER = 0.3;
const W_CHARS = 0.6;

/**
 * The default embedder: hashed features of a prompt's canonical words (canonical.ts): contractions
 * expanded, politeness dropped, typos fixed, lemmas, synonym groups from data/lexicon (WordNet's most
 * frequent senses and a hand-written list), and the question's ask class with its frame words absorbed. So
 * "What is the way to repair a wobbly table leg?" and "How do I fix a wobbly table leg?" map to the same
 * features. No model, no download; the lexicon (about 70k words) is read on the first embedding.
 *
 * Each feature is hashed (FNV-1a) to a dimension with a hash-derived sign; the vector is L2-normalised.
 * Lexical closeness after canonicalisation is what it measures: it does not know that "queen bee larger
 * than drone" and "drone larger than queen bee" differ, which is the guard's job (guard.ts).
 */
export class LexicalEmbedder implements Embedder {
  readonly name: string;
  readonly dims: number;
  readonly thresholds = DEFAULT_THRESHOLDS;
  readonly inProcess = true;
  private readonly mask: number;

  constructor(opts: LexicalEmbedderOptions = {}) {
    const dims = opts.dims ?? 512;
    if (!Number.isInteger(dims) || dims < 16 || (dims & (dims - 1)) !== 0)
      throw new TypeError(`LexicalEmbedder: option "dims" must be a power of two >= 16, got ${dims}`);
    this.dims = dims;
    this.mask = dims - 1;
    this.name = `lexical-v1-${LEXICON_VERSION}`;
  }

  embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return Promise.resolve(texts.map((t) => this.embedOne(t)));
  }

  /** The vector of one text, synchronously. */
  embedOne(text: string): Float32Array {
    const v = new Float32Array(this.dims);
    const { words, asks } = canonicalize(text);
    for (const a of asks) this.add(v, 'q\u0001' + a, W_ASK);
    let prev: string | undefined;
    for (const w of words) {
      switch (w.role) {
        case 'head':
        case 'content': {
          this.add(v, 'k\u0001' + w.key, W_KEY);
          if (prev !== undefined && prev !== w.key)
            this.add(v, 'p\u0001' + (prev < w.key ? prev + ' ' + w.key : w.key + ' ' + prev), W_PAIR);
          prev = w.key;
          if (!isKnownWord(w.lower)) this.addCharGrams(v, w.lower);
          break;
        }
        case 'number':
          this.add(v, 'n\u0001' + w.lower, W_NUMBER);
          break;
        case 'negation':
          this.add(v, 'x\u0001not', W_NEGATION);
          break;
        case 'marker':
          this.add(v, 'm\u0001' + w.lower, W_MARKER);
          break;
        case 'arrow':
          this.add(v, 'a\u0001->', W_ARROW);
          break;
        default:
          break;
      }
    }
    let norm = 0;
    for (let i = 0; i < v.length; i++) norm += v[i]! * v[i]!;
    if (norm > 0) {
      const inv = 1 / Math.sqrt(norm);
      for (let i = 0; i < v.length; i++) v[i]! *= inv;
    }
    return v;
  }

  private addCharGrams(v: Float32Array, w: string): void {
    const s = '^' + w + '$';
    const grams: string[] = [];
    for (const n of [3, 4]) for (let i = 0; i + n <= s.length; i++) grams.push(s.slice(i, i + n));
    if (grams.length === 0) return;
    const each = W_CHARS / Math.sqrt(grams.length);
    for (const g of grams) this.add(v, 'g\u0001' + g, each);
  }

  private add(v: Float32Array, feature: string, weight: number): void {
    const h = fnv1a(feature);
    v[h & this.mask]! += h & 0x80000000 ? -weight : weight;
  }
}
