/** A vector's exact content as text: its non-zero dimensions and their float32 bits, `dim:bits` each. */
export function sparseBits(v: Float32Array): string {
  const bits = new Uint32Array(v.buffer, v.byteOffset, v.length);
  const out: string[] = [];
  for (let d = 0; d < v.length; d++) if (bits[d] !== 0) out.push(`${d}:${bits[d]!.toString(16)}`);
  return out.join(' ');
}

/** FNV-1a (32-bit) of {@link sparseBits}: one short string per vector for the large sets. */
export function digest(v: Float32Array): string {
  const s = sparseBits(v);
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}
