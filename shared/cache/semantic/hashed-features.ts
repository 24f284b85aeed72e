import { type SemanticThresholds } from './confidence.js';

const FNV_OFFSET = 0x811c9dc5;

/** FNV-1a over the UTF-16 code units, with a final avalanche so the low bits are well mixed. */
export function fnv1a(s: string): number {
  return avalanche(fnvFeed(FNV_OFFSET, s));
}

/** FNV-1a state `h` fed with the code units of `s`: hashing a, then b equals hashing a + b. */
function fnvFeed(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

function fnvUnit(h: number, unit: number): number {
  return Math.imul(h ^ unit, 0x01000193);
}

/** murmur3 fmix32 */
function avalanche(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Vectors are handed out as views of a shared zero-filled slab of this many floats (16 of 512 dims): a
 * `new Float32Array(512)` is a backing store of its own (allocated and zeroed outside V8's heap, tracked and
 * freed by the collector), about a quarter of a lexical embedding's time; a view of a slab is a small object
 * on the heap. A slab lives while any of its vectors does (the prompt memo keeps up to 1,024), so at worst
 * 16 times the vectors' own 2 KB each; a vector's `buffer` is the slab (use byteOffset and byteLength).
 */
const SLAB_FLOATS = 8192;
let slab = new Float32Array(0);
let slabAt = 0;

/** A new all-zero vector of `dims` floats: a view of the current slab, or its own for dims over a quarter slab. */
function zeroVector(dims: number): Float32Array {
  if (dims > SLAB_FLOATS >> 2) return new Float32Array(dims);
  if (slabAt + dims > slab.length) {
    slab = new Float32Array(SLAB_FLOATS);
    slabAt = 0;
  }
  const v = slab.subarray(slabAt, slabAt + dims);
  slabAt += dims;
  return v;
}

const CARET = 0x5e; // '^'
const DOLLAR = 0x24; // '$'
const SPACE = 0x20;
const GRAM_TAG = 'g\u0001';

/**
 * A vector being built from hashed features: each feature (a string) is hashed (FNV-1a) to a dimension and
 * added with a hash-derived sign (signed feature hashing keeps the expected dot product of unrelated texts
 * at 0).
 */
export class FeatureVector {
  private readonly v: Float32Array;
  private readonly mask: number;
  /**
   * The dimensions a feature was added to while they were 0, in the order met (a dimension that came back
   * to 0 and was added to again is listed twice): normalized() then visits only these, not every dimension
   * (~30 of 512 for a lexical prompt), and hands them on in dimension order (nonZero).
   */
  private readonly touched: number[] = [];

  constructor(dims: number) {
    this.v = zeroVector(dims);
    this.mask = dims - 1;
  }

  add(feature: string, weight: number): void {
    this.addHash(fnv1a(feature), weight);
  }

  /** The same as add(tag + value, weight), without building the string. */
  addTagged(tag: string, value: string, weight: number): void {
    this.addHash(avalanche(fnvFeed(fnvFeed(FNV_OFFSET, tag), value)), weight);
  }

  /** The same as add(tag + a + ' ' + b, weight), without building the string. */
  addPair(tag: string, a: string, b: string, weight: number): void {
    this.addHash(avalanche(fnvFeed(fnvUnit(fnvFeed(fnvFeed(FNV_OFFSET, tag), a), SPACE), b)), weight);
  }

  private addHash(h: number, weight: number): void {
    const v = this.v;
    const d = h & this.mask;
    if (v[d] === 0) this.touched.push(d);
    // The sign comes from the high bit, independent of the low bits that pick the dimension.
    v[d]! += h & 0x80000000 ? -weight : weight;
  }

  /**
   * The character 3- and 4-grams of `word` with boundary marks (`^pass`, `ord$`), together carrying `energy`
   * (sum of squares), whatever the word's length: a long word does not outweigh a short one. Each gram is
   * hashed in place (as add('g\u0001' + gram) would hash it): no string per gram.
   */
  addCharGrams(word: string, energy: number): void {
    const len = word.length + 2; // '^' + word + '$'
    const count = Math.max(0, len - 2) + Math.max(0, len - 3);
    if (count === 0) return;
    const each = energy / Math.sqrt(count);
    const tagged = fnvFeed(FNV_OFFSET, GRAM_TAG);
    for (let n = 3; n <= 4; n++)
      for (let i = 0; i + n <= len; i++) {
        let h = tagged;
        for (let j = i; j < i + n; j++)
          h = fnvUnit(h, j === 0 ? CARET : j === len - 1 ? DOLLAR : word.charCodeAt(j - 1));
        this.addHash(avalanche(h), each);
      }
  }

  /**
   * The vector, L2-normalised (all zeros stays all zeros). `nonZero`, when given, is set to the indices of
   * its non-zero components in ascending order: what the code after an embedding (squaredNorm, the LSH
   * projection, storedQuantized) would otherwise find by visiting all the dimensions, each.
   *
   * The same floats as summing and scaling every dimension in order: the zero ones add +0 to the norm (a
   * component is never -0: it starts at +0 and x + y is -0 only when both are) and stay 0 when scaled.
   */
  normalized(nonZero?: number[]): Float32Array {
    const v = this.v;
    // the touched dimensions in ascending order (insertion sort: a few dozen, mostly short runs)
    const t = this.touched;
    for (let i = 1; i < t.length; i++) {
      const d = t[i]!;
      let k = i;
      for (; k > 0 && t[k - 1]! > d; k--) t[k] = t[k - 1]!;
      t[k] = d;
    }
    let n = 0;
    let norm = 0;
    for (let i = 0; i < t.length; i++) {
      const d = t[i]!;
      const x = v[d]!;
      if (x === 0 || (n > 0 && t[n - 1] === d)) continue; // back to 0, or listed twice
      norm += x * x;
      t[n++] = d;
    }
    t.length = n;
    if (norm > 0) {
      const inv = 1 / Math.sqrt(norm);
      for (let i = 0; i < n; i++) v[t[i]!]! *= inv;
    }
    if (nonZero) {
      nonZero.length = 0;
      for (let i = 0; i < n; i++) nonZero.push(t[i]!);
    }
    return v;
  }
}

/**
 * The built-in embedders: hashed features of a text, computed in this process (no service, no download),
 * so the cache embeds up front. A subclass says which features a text has (and implements Embedder).
 */
export abstract class HashedFeatureEmbedder {
  abstract readonly name: string;
  abstract readonly thresholds: SemanticThresholds;
  readonly dims: number;
  readonly inProcess = true;

  /** `kind` names the embedder in the error for bad dims; dims must be a power of two >= 16. */
  constructor(kind: string, dims = 512) {
    if (!Number.isInteger(dims) || dims < 16 || (dims & (dims - 1)) !== 0)
      throw new TypeError(`${kind}: option "dims" must be a power of two >= 16, got ${dims}`);
    this.dims = dims;
  }

  embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return Promise.resolve(texts.map((t) => this.embedOne(t)));
  }

  /**
   * The vector of one text, synchronously. `nonZero`, when given, is set to the indices of its non-zero
   * components in ascending order (see FeatureVector.normalized).
   */
  embedOne(text: string, nonZero?: number[]): Float32Array {
    const v = new FeatureVector(this.dims);
    this.addFeatures(text, v);
    return v.normalized(nonZero);
  }

  /** Adds the features of `text` to `v`. */
  protected abstract addFeatures(text: string, v: FeatureVector): void;
}
