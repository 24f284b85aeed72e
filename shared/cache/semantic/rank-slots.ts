import { denseAt, storedLength } from './vector-codec.js';

/**
 * Ranking of LSH candidates in Node: band collision counts per slot (rankSlots) and the candidate records
 * the lookup script returns (parseRecord).
 */

/**
 * Counts, for every slot in the query's band buckets (strings of packed 3-byte big-endian slot numbers, or
 * lists of slot numbers from the process's mirror of the buckets, semantic-mirror.ts),
 * how many buckets hold it, and returns up to `limit` slots, most shared bands first (first seen first
 * among equals). Counting happens here, not in Lua: V8 does it several times faster than Redis's Lua 5.1,
 * and Redis stays free for other clients. An open-addressing table reused across calls keeps it
 * allocation-free (a lookup at 100k entries meets ~2,000 slots; a Map per call fed the GC ~100 KB).
 */
export function rankSlots(
  buckets: readonly (Buffer | Int32Array | readonly number[] | null)[],
  bands: number,
  limit: number,
): { ranked: number[]; visited: number; distinct: number } {
  let visited = 0;
  for (const b of buckets) if (b) visited += b instanceof Buffer ? Math.floor(b.length / 3) : b.length;
  const t = scratch(visited * 2);
  const { keys, counts, order, mask } = t;
  let distinct = 0;
  for (const b of buckets) {
    if (!b) continue;
    // a bucket of the mirror (slot numbers) or of Redis (packed 3-byte codes); 0 marks an empty cell, so a
    // slot's key is slot + 1. The two loops are the same but for reading the slot.
    const packed = b instanceof Buffer;
    const n = packed ? b.length - 2 : b.length;
    for (let o = 0; o < n; o += packed ? 3 : 1) {
      const key = (packed ? (b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]! : b[o]!) + 1;
      let h = Math.imul(key, 0x9e3779b1) >>> t.shift;
      for (;;) {
        const k = keys[h]!;
        if (k === key) {
          counts[h]!++;
          break;
        }
        if (k === 0) {
          keys[h] = key;
          counts[h] = 1;
          order[distinct++] = h;
          break;
        }
        h = (h + 1) & mask;
      }
    }
  }
  // A stable counting sort on the number of shared bands, cut at `limit`: count the slots per level, find
  // the lowest level that still gets a place, then one pass over the slots in first-seen order puts each
  // at its level's next place (one pass, not one per level).
  const seen = t.levels.length > bands ? t.levels : (t.levels = new Uint32Array(bands + 1));
  seen.fill(0, 0, bands + 1);
  for (let i = 0; i < distinct; i++) seen[Math.min(counts[order[i]!]!, bands)]!++;
  let lowest = bands;
  let above = 0; // slots at levels above `lowest`
  while (lowest > 1 && above + seen[lowest]! < limit) above += seen[lowest--]!;
  const n = Math.min(limit, above + seen[lowest]!);
  const ranked = new Array<number>(n);
  // next place of each level from `lowest` up: the levels above it come first
  let at = 0;
  for (let c = bands; c >= lowest; c--) {
    const k = seen[c]!;
    seen[c] = at;
    at += k;
  }
  for (let i = 0; i < distinct; i++) {
    const h = order[i]!;
    const c = Math.min(counts[h]!, bands);
    if (c < lowest) continue;
    const place = seen[c]!;
    if (place < n) {
      ranked[place] = keys[h]! - 1;
      seen[c] = place + 1;
    }
  }
  for (let i = 0; i < distinct; i++) keys[order[i]!] = 0;
  return { ranked, visited, distinct };
}

interface Scratch {
  keys: Int32Array;
  counts: Uint16Array;
  order: Int32Array;
  mask: number;
  shift: number;
  /** Slots per number of shared bands, then each level's next place in the ranking. */
  levels: Uint32Array;
}
let table: Scratch | undefined;

/** The shared counting table, with room for at least `cells` cells (a power of two >= 4096). */
function scratch(cells: number): Scratch {
  if (table && table.keys.length >= cells) return table;
  let bits = 12;
  while (1 << bits < cells) bits++;
  const size = 1 << bits;
  table = {
    keys: new Int32Array(size),
    counts: new Uint16Array(size),
    order: new Int32Array(size),
    mask: size - 1,
    shift: 32 - bits,
    levels: table?.levels ?? new Uint32Array(0),
  };
  return table;
}

/**
 * Where a candidate record's vector starts, or -1 for a record that holds no readable one of `dims`
 * dimensions (decodes nothing). The vector is dense or sparse (vector-codec.ts storedForm).
 */
export function vectorOffset(rec: Buffer, dims: number): number {
  const nl = rec.indexOf(10, 15);
  return nl < 0 || storedLength(rec, nl + 1, dims) < 0 ? -1 : nl + 1;
}

/**
 * A candidate record's id and prompt, without decoding its vector: `at` is where the vector starts (after
 * the id's LF); undefined when no readable vector of `dims` dimensions is there. The lookup scores the
 * vector in place (cosineStoredAt) and needs only these two of the records at or above its threshold.
 */
export function recordText(
  rec: Buffer,
  at: number,
  dims: number,
): { id: string; prompt: string } | undefined {
  const len = at > 15 && rec[at - 1] === 10 ? storedLength(rec, at, dims) : -1;
  if (len < 0) return undefined;
  return { id: rec.toString('latin1', 15, at - 1), prompt: rec.toString('utf8', at + len) };
}

/**
 * A candidate record: 15 digits of expiry, the id, LF, the stored int8 vector (dense: dims bytes; or
 * sparse, see storedForm), the prompt. `vector` is the dense form (dims bytes), built here: a reader that
 * needs only the id and prompt uses recordText.
 */
export function parseRecord(
  rec: Buffer,
  dims: number,
): { id: string; vector: Buffer; prompt: string } | undefined {
  const at = vectorOffset(rec, dims);
  if (at < 0) return undefined;
  const vector = denseAt(rec, at, dims)!;
  return {
    id: rec.toString('latin1', 15, at - 1),
    vector,
    prompt: rec.toString('utf8', at + storedLength(rec, at, dims)),
  };
}
