/**
 * Vectors are stored int8-quantised: one byte per dimension (512 B for the default embedder, a quarter of
 * Float32), or sparse when that is shorter (storedForm). Each vector is scaled so its largest |component|
 * maps to 127. Cosine is scale-invariant, so no scale needs storing; the rounding error (≤ 0.5/127 of the largest component per dimension) moves the
 * cosine of unit vectors by about 0.001–0.003, far below the gaps between confidence levels.
 */
export function quantize(v: Float32Array): Buffer {
  let max = 0;
  for (let i = 0; i < v.length; i++) max = Math.max(max, Math.abs(v[i]!));
  const out = Buffer.alloc(v.length);
  if (max === 0) return out;
  const scale = 127 / max;
  for (let i = 0; i < v.length; i++) out.writeInt8(Math.round(v[i]! * scale), i);
  return out;
}

/** First byte of a sparse stored vector: -128, a value quantize() never writes (it maps to ±127 at most). */
export const SPARSE = 0x80;

/**
 * The quantised vector as the candidate records store it. Dense (the dims bytes as they are) unless the
 * sparse form is shorter: 0x80, the count of non-zero components (2 bytes, big-endian), then per non-zero
 * component its index (2 bytes, big-endian, ascending) and its int8 value. The lexical embedder's vectors
 * have ~15–30 non-zero components of 512, so a record shrinks from ~600 to ~130 bytes: a lookup reads its
 * 24 candidate records with a quarter of the bytes, and the cosine re-rank visits only those components.
 * The first byte tells the forms apart: 0x80 (-128) never starts a dense vector (quantize() writes -127..127).
 */
export function storedForm(q: Buffer): Buffer {
  const dims = q.length;
  if (dims > 0xffff) return q;
  let nnz = 0;
  for (let i = 0; i < dims; i++) if (q[i] !== 0) nnz++;
  if (3 + 3 * nnz >= dims) return q;
  const out = Buffer.allocUnsafe(3 + 3 * nnz);
  out[0] = SPARSE;
  out.writeUInt16BE(nnz, 1);
  let o = 3;
  for (let i = 0; i < dims; i++) {
    if (q[i] === 0) continue;
    out.writeUInt16BE(i, o);
    out[o + 2] = q[i]!;
    o += 3;
  }
  return out;
}

/**
 * storedForm(quantize(v)), the same bytes, made straight from the float vector when the sparse form is the
 * shorter one (the lexical embedder's ~25 non-zero components of 512): no dense int8 copy and no writeInt8
 * per dimension. One pass over the dims finds the largest |component| and where the non-zero ones are; the
 * rest visits only those (~4 → ~1 µs a store). Anything else (a dense result, a zero or non-finite vector,
 * more than 65,535 dims) takes the two calls.
 */
export function storedQuantized(v: Float32Array, nonZero?: readonly number[]): Buffer {
  const dims = v.length;
  if (dims > 0xffff) return storedForm(quantize(v));
  const at = nonZeroScratch(dims);
  let max = 0;
  let n = 0;
  if (nonZero)
    // the indices of the non-zero components, ascending, given (FeatureVector.normalized): the same pass
    for (let k = 0; k < nonZero.length; k++) {
      const i = nonZero[k]!;
      max = Math.max(max, Math.abs(v[i]!));
      at[n++] = i;
    }
  else
    for (let i = 0; i < dims; i++) {
      const x = v[i]!;
      if (x === 0) continue; // |±0| leaves the max as it is
      max = Math.max(max, Math.abs(x));
      at[n++] = i;
    }
  if (!(max > 0 && max < Infinity)) return storedForm(quantize(v));
  const scale = 127 / max;
  let nnz = 0;
  for (let k = 0; k < n; k++) if (Math.round(v[at[k]!]! * scale) !== 0) nnz++;
  if (3 + 3 * nnz >= dims) return storedForm(quantize(v));
  const out = Buffer.allocUnsafe(3 + 3 * nnz);
  out[0] = SPARSE;
  out.writeUInt16BE(nnz, 1);
  let o = 3;
  for (let k = 0; k < n; k++) {
    const i = at[k]!;
    const q = Math.round(v[i]! * scale);
    if (q === 0) continue;
    out[o] = i >> 8;
    out[o + 1] = i & 0xff;
    out[o + 2] = q & 0xff; // int8 two's complement, as writeInt8 writes it
    o += 3;
  }
  return out;
}

/** storedQuantized()'s indices of non-zero components, kept for it (grown to the largest dims met). */
let nonZeroAt = new Int32Array(0);

function nonZeroScratch(dims: number): Int32Array {
  if (nonZeroAt.length < dims) nonZeroAt = new Int32Array(dims);
  return nonZeroAt;
}

/**
 * The length in bytes of the stored vector (see storedForm) that starts at `offset` of `bytes`, for `dims`
 * dimensions; -1 when the bytes there do not hold one (truncated, or a sparse index out of range).
 */
export function storedLength(bytes: Uint8Array, offset: number, dims: number): number {
  if (offset >= bytes.length) return dims === 0 ? 0 : -1;
  if (bytes[offset] !== SPARSE) return bytes.length >= offset + dims ? dims : -1;
  if (bytes.length < offset + 3) return -1;
  const nnz = (bytes[offset + 1]! << 8) | bytes[offset + 2]!;
  const len = 3 + 3 * nnz;
  if (bytes.length < offset + len) return -1;
  let prev = -1;
  for (let o = offset + 3; o < offset + len; o += 3) {
    const i = (bytes[o]! << 8) | bytes[o + 1]!;
    if (i >= dims || i <= prev) return -1;
    prev = i;
  }
  return len;
}

/** The stored vector at `offset` (see storedForm) as dims int8 bytes; undefined when it is not readable. */
export function denseAt(bytes: Uint8Array, offset: number, dims: number): Buffer | undefined {
  const len = storedLength(bytes, offset, dims);
  if (len < 0) return undefined;
  if (bytes[offset] !== SPARSE) return Buffer.from(bytes.buffer, bytes.byteOffset + offset, dims);
  const out = Buffer.alloc(dims);
  for (let o = offset + 3; o < offset + len; o += 3) out[(bytes[o]! << 8) | bytes[o + 1]!] = bytes[o + 2]!;
  return out;
}

/** Σ q² of a query vector, for cosineStoredAt (computed once per query, not once per candidate). */
export function squaredNorm(query: Float32Array, nonZero?: readonly number[]): number {
  let nq = 0;
  // the same sum over the non-zero components only (ascending), when they are known: zeros add +0
  if (nonZero) for (let k = 0; k < nonZero.length; k++) nq += query[nonZero[k]!]! * query[nonZero[k]!]!;
  else for (let i = 0; i < query.length; i++) nq += query[i]! * query[i]!;
  return nq;
}

/**
 * Cosine between a float query (`nq` its squaredNorm) and the stored vector at `offset` of `bytes`, dense
 * or sparse (storedForm), read in place; -1 when the bytes there hold no vector of query.length dimensions.
 * Equal to cosineQuantizedAt on the dense form: the sparse form leaves out only zero terms.
 */
export function cosineStoredAt(query: Float32Array, nq: number, bytes: Uint8Array, offset: number): number {
  const dims = query.length;
  const len = storedLength(bytes, offset, dims);
  if (len < 0) return -1;
  if (bytes[offset] !== SPARSE) return cosineQuantizedAt(query, bytes, offset);
  let dot = 0;
  let ns = 0;
  for (let o = offset + 3; o < offset + len; o += 3) {
    const x = (bytes[o + 2]! << 24) >> 24;
    dot += query[(bytes[o]! << 8) | bytes[o + 1]!]! * x;
    ns += x * x;
  }
  if (nq === 0 || ns === 0) return 0;
  return dot / Math.sqrt(nq * ns);
}

/**
 * Σ x² of the stored vector at `offset` of `bytes`, `len` bytes long (its storedLength, checked by the
 * caller), dense or sparse: the `ns` of cosineStoredAt, for cosineStoredKnown.
 */
export function storedSquaredNorm(bytes: Uint8Array, offset: number, len: number): number {
  let ns = 0;
  if (bytes[offset] !== SPARSE)
    for (let i = 0; i < len; i++) {
      const x = (bytes[offset + i]! << 24) >> 24;
      ns += x * x;
    }
  else
    for (let o = offset + 3; o < offset + len; o += 3) {
      const x = (bytes[o + 2]! << 24) >> 24;
      ns += x * x;
    }
  return ns;
}

/**
 * cosineStoredAt for a stored vector already checked (`len`, its storedLength for query.length dimensions)
 * whose Σ x² is known (`ns`, storedSquaredNorm): the same value (the same sums in the same order), without
 * checking the bytes again and summing x² again for each query that scores it.
 */
export function cosineStoredKnown(
  query: Float32Array,
  nq: number,
  bytes: Uint8Array,
  offset: number,
  len: number,
  ns: number,
): number {
  if (nq === 0 || ns === 0) return 0;
  let dot = 0;
  if (bytes[offset] !== SPARSE)
    for (let i = 0; i < len; i++) dot += query[i]! * ((bytes[offset + i]! << 24) >> 24);
  else
    for (let o = offset + 3; o < offset + len; o += 3)
      dot += query[(bytes[o]! << 8) | bytes[o + 1]!]! * ((bytes[o + 2]! << 24) >> 24);
  return dot / Math.sqrt(nq * ns);
}

/** Cosine between a float query and a quantised stored vector (0 when either is zero or sizes differ). */
export function cosineQuantized(query: Float32Array, stored: Uint8Array): number {
  if (stored.length !== query.length) return 0;
  return cosineQuantizedAt(query, stored, 0);
}

/**
 * Cosine between a float query and the quantised vector stored in `bytes` from `offset` (query.length
 * bytes; the caller checks they are there). Reads the bytes in place: no view object per candidate.
 */
export function cosineQuantizedAt(query: Float32Array, bytes: Uint8Array, offset: number): number {
  let dot = 0;
  let nq = 0;
  let ns = 0;
  for (let i = 0; i < query.length; i++) {
    const q = query[i]!;
    const x = (bytes[offset + i]! << 24) >> 24; // the byte as int8
    dot += q * x;
    nq += q * q;
    ns += x * x;
  }
  if (nq === 0 || ns === 0) return 0;
  return dot / Math.sqrt(nq * ns);
}

/** Cosine of two float vectors. */
export function cosine(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  if (na === 0 || nb === 0) return 0;
  return dot / Math.sqrt(na * nb);
}
