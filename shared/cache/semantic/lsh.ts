import { createHash } from 'node:crypto';
import { SimdProjector } from './lsh-simd.js';

/**
 * Random-hyperplane LSH (SimHash, Charikar 2002) for cosine similarity.
 *
 * Each of B·R hyperplanes (Gaussian normals drawn from a PRNG seeded by the embedder's name and dims, so
 * every process draws the same ones) gives one bit: the side of the plane the vector falls on. For two
 * vectors at angle θ a bit agrees with probability
 *
 *     p = 1 − θ/π,   θ = arccos(cosine).
 *
 * The bits are cut into B bands of R rows; two vectors share a band when all R bits agree (probability
 * p^R), and are candidates when they share at least one band:
 *
 *     P(candidate) = 1 − (1 − p^R)^B.
 *
 * Chosen: **B = 20 bands × R = 12 rows** (240 bits; a band value is a 12-bit integer, 4096 buckets per band):
 *
 *     cosine   θ/π     p       p^12      P(candidate) = recall
 *     0.95    0.101   0.899   0.278     0.9985
 *     0.90    0.144   0.856   0.156     0.966     ← target ≥ 0.95 at cosine 0.9 (HIGH threshold)
 *     0.82    0.194   0.806   0.075     0.79      (MEDIUM threshold)
 *     0.75    0.230   0.770   0.043     0.59      (LOW threshold: LOW hits are best-effort)
 *     0.50    0.333   0.667   0.0077    0.143
 *     0.30    0.403   0.597   0.00206   0.040     false-candidate rate at cosine 0.3
 *     0.00    0.500   0.500   0.000244  0.0049    false-candidate rate at cosine 0
 *
 * At 100k entries in one scope a query therefore meets ~490 unrelated (cosine ≈ 0) entries, or ~4,000 if
 * the whole scope sat at cosine 0.3 from it (prompts built from one template do: bench:semantic measures
 * ~2,000 slots per lookup at 100k). They are counted in Node (rankSlots, ~50 µs for 2,000) and only the
 * top 24 by shared bands are fetched and re-ranked by exact cosine. Alternatives weighed:
 * R = 10 (B = 20) lifts recall at 0.82 to 0.92 but admits 2% of all entries at cosine 0 (2,000 at 100k);
 * R = 16 needs B = 35 for 0.95 at 0.9 and 35 × 65,536 potential band keys per scope (millions of Redis keys
 * at 100k entries) where R = 12 keeps it at 20 × 4,096 = 82k. Sixteen bands give recall 0.93 at 0.9 (too
 * low); twenty is the smallest B that clears 0.95 with R = 12.
 */
export const LSH_BANDS = 20;
export const LSH_ROWS = 12;

/** Bumped when the hashing changes, so old band keys are never read with new hyperplanes. */
const LSH_VERSION = 'cell0/semantic/lsh/v1';

/** The hyperplanes of one vector space, and the band values of vectors in it. */
export class LshHasher {
  readonly bands: number;
  readonly rows: number;
  readonly dims: number;
  /** planes × dims, stored dimension-major (all planes' weights of dimension 0 first) for sparse inputs. */
  private readonly planes: Float32Array;
  private readonly nPlanes: number;
  /** bandValues()'s projections (see projectInto). */
  private readonly scratch: Float64Array;
  /** projectInto()'s non-zero dimensions of the vector: their offsets in `planes`, and their values. */
  private readonly offs: Int32Array;
  private readonly xs: Float64Array;
  /**
   * The projections in WebAssembly SIMD (lsh-simd.ts: the same sums, bit for bit, with ~4x fewer
   * instructions), shared by the hashers of one vector space and layout; undefined without WebAssembly.
   */
  private readonly simd: SimdProjector | undefined;

  constructor(embedderName: string, dims: number, bands = LSH_BANDS, rows = LSH_ROWS) {
    if (!Number.isInteger(rows) || rows < 1 || rows > 24)
      throw new TypeError(`LshHasher: rows must be an integer in 1..24, got ${rows}`);
    if (!Number.isInteger(bands) || bands < 1)
      throw new TypeError(`LshHasher: bands must be an integer >= 1, got ${bands}`);
    this.bands = bands;
    this.rows = rows;
    this.dims = dims;
    this.nPlanes = bands * rows;
    this.scratch = new Float64Array(this.nPlanes);
    this.offs = new Int32Array(dims);
    this.xs = new Float64Array(dims);
    const seed = `${LSH_VERSION}|${embedderName}|${dims}|${bands}x${rows}`;
    this.planes = drawPlanes(seed, dims, this.nPlanes);
    this.simd = simdProjector(seed, this.planes, dims, this.nPlanes);
  }

  /** The projections of `v` on every plane (exposed for tests and diagnostics). */
  project(v: Float32Array): Float64Array {
    return Float64Array.from(this.projections(v));
  }

  /**
   * The projections of `v` on every plane, in an array kept for them (rewritten by the next call): the
   * SIMD kernel's when there is one, else projectInto()'s.
   */
  private projections(v: Float32Array, nonZero?: readonly number[]): Float64Array {
    if (v.length !== this.dims) throw new TypeError(`LshHasher: expected ${this.dims} dims, got ${v.length}`);
    return this.simd ? this.simd.project(v, nonZero) : this.projectInto(v, this.scratch);
  }

  /**
   * project() into `acc` (zeroed here). bandValues() passes one array kept for it: a Float64Array of 240
   * planes is an ArrayBuffer outside the heap, which each scavenge must sweep, once per lookup otherwise.
   *
   * The non-zero dimensions are gathered first, then added four at a time: each plane's sum is still
   * ((acc + x1·w1) + x2·w2) + …, the same additions in the same order as one dimension at a time, so the
   * projections (and the band values that stored entries were indexed under) are bit-identical, with a
   * quarter of the loads and stores of `acc` (~2x faster on the lexical embedder's ~25 non-zero dimensions).
   */
  private projectInto(v: Float32Array, acc: Float64Array): Float64Array {
    if (v.length !== this.dims) throw new TypeError(`LshHasher: expected ${this.dims} dims, got ${v.length}`);
    const P = this.nPlanes;
    acc.fill(0);
    const planes = this.planes;
    const offs = this.offs;
    const xs = this.xs;
    let m = 0;
    for (let j = 0; j < v.length; j++) {
      const x = v[j]!;
      if (x === 0) continue; // hashed n-gram vectors are mostly zeros
      offs[m] = j * P;
      xs[m++] = x;
    }
    let k = 0;
    for (; k + 3 < m; k += 4) {
      const o1 = offs[k]!;
      const o2 = offs[k + 1]!;
      const o3 = offs[k + 2]!;
      const o4 = offs[k + 3]!;
      const x1 = xs[k]!;
      const x2 = xs[k + 1]!;
      const x3 = xs[k + 2]!;
      const x4 = xs[k + 3]!;
      for (let p = 0; p < P; p++)
        acc[p] =
          acc[p]! + x1 * planes[o1 + p]! + x2 * planes[o2 + p]! + x3 * planes[o3 + p]! + x4 * planes[o4 + p]!;
    }
    for (; k < m; k++) {
      const off = offs[k]!;
      const x = xs[k]!;
      for (let p = 0; p < P; p++) acc[p]! += x * planes[off + p]!;
    }
    return acc;
  }

  /**
   * One R-bit integer per band, or undefined for the zero vector (it has no direction to hash). `nonZero`:
   * the indices of v's non-zero components in ascending order, when known (HashedFeatureEmbedder.embedOne).
   */
  bandValues(v: Float32Array, nonZero?: readonly number[]): number[] | undefined {
    const acc = this.projections(v, nonZero);
    let any = false;
    for (let p = 0; p < acc.length; p++)
      if (acc[p] !== 0) {
        any = true;
        break;
      }
    if (!any) return undefined;
    const out = new Array<number>(this.bands);
    // the sign bits without a branch per bit (half of them go each way: a branch mispredicts half the time)
    for (let b = 0, i = 0; b < this.bands; b++) {
      let x = 0;
      for (let r = 0; r < this.rows; r++, i++) x |= (acc[i]! >= 0 ? 1 : 0) << r;
      out[b] = x;
    }
    return out;
  }
}

/** Theoretical probability that two vectors at `cosine` share at least one band. */
export function lshCandidateProbability(cosine: number, bands = LSH_BANDS, rows = LSH_ROWS): number {
  const p = 1 - Math.acos(Math.max(-1, Math.min(1, cosine))) / Math.PI;
  return 1 - (1 - p ** rows) ** bands;
}

const planeCache = new Map<string, Float32Array>();
const simdCache = new Map<string, SimdProjector | undefined>();

/**
 * The SIMD projector of the planes drawn from `seed` (one per vector space and layout: ~1 MB of memory for
 * 512 dims × 240 planes), or undefined without WebAssembly SIMD. Shared: a projection is used up (band
 * values read) before the next one starts, all in one synchronous call.
 */
function simdProjector(
  seed: string,
  planes: Float32Array,
  dims: number,
  nPlanes: number,
): SimdProjector | undefined {
  if (!simdCache.has(seed)) simdCache.set(seed, SimdProjector.of(planes, dims, nPlanes));
  return simdCache.get(seed);
}

/** Gaussian hyperplanes from a PRNG seeded by SHA-256 of `seed`: identical in every process. */
function drawPlanes(seed: string, dims: number, nPlanes: number): Float32Array {
  const hit = planeCache.get(seed);
  if (hit) return hit;
  const rand = seededRandom(seed);
  const out = new Float32Array(dims * nPlanes);
  for (let i = 0; i < out.length; i += 2) {
    // Box–Muller: two independent N(0,1) per pair of uniforms.
    const u1 = Math.max(rand(), 1e-12);
    const u2 = rand();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  planeCache.set(seed, out);
  return out;
}

/** sfc32, seeded from SHA-256: small, fast, and the same sequence on every platform. */
export function seededRandom(seed: string): () => number {
  const h = createHash('sha256').update(seed).digest();
  let a = h.readUInt32LE(0);
  let b = h.readUInt32LE(4);
  let c = h.readUInt32LE(8);
  let d = h.readUInt32LE(12);
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 16; i++) next();
  return next;
}
