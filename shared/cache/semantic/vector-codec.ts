/**
 * Vectors are stored int8-quantised: one byte per dimension (512 B for the default embedder, a quarter of
 * Float32). Each vector is scaled so its largest |component| maps to 127. Cosine is scale-invariant, so no
 * scale needs storing; the rounding error (≤ 0.5/127 of the largest component per dimension) moves the
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
