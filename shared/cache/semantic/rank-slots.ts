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
 * and Redis stays free for other clients. Scratch arrays reused across calls keep it allocation-free (a
 * lookup at 100k entries meets ~2,000 slots; a Map per call fed the GC ~100 KB).
 *
 * The mirror's lists (slot numbers below DIRECT_SLOTS: a scope's slots are about as many as its entries)
 * are counted in an array indexed by slot, without hashing or probing; packed buckets, and any list with a
 * larger slot, in an open-addressing table. Both give the same counts in the same first-seen order, so the
 * same ranking.
 */
export function rankSlots(
  buckets: readonly (Buffer | Int32Array | readonly number[] | null)[],
  bands: number,
  limit: number,
): { ranked: number[]; visited: number; distinct: number } {
  let visited = 0;
  let lists = true;
  for (let j = 0; j < buckets.length; j++) {
    const b = buckets[j];
    if (!b) continue;
    if (b instanceof Buffer) {
      visited += Math.floor(b.length / 3);
      lists = false;
    } else visited += b.length;
  }
  const t = scratch(visited);
  // below 2^16 slots in all, no count can pass the Uint16 counts' range
  let distinct = lists && visited < 0x10000 ? countBySlot(buckets, t) : 0;
  if (distinct > 0) return { ranked: rank(t, distinct, bands, limit, t.bySlot), visited, distinct };
  distinct = countHashed(buckets, t, visited);
  return { ranked: rank(t, distinct, bands, limit, undefined), visited, distinct };
}

/**
 * The slot numbers below which a list's slots are counted in an array by slot (its Uint16 counts grow to the
 * largest slot met: 2 MB at most).
 */
const DIRECT_SLOTS = 1 << 20;

/**
 * Counts the slots of lists of slot numbers (no packed bucket) by slot: `t.slots` gets the distinct slots in
 * first-seen order, `t.bySlot` their counts (cleared by rankBySlot). Returns how many, or 0 when a slot is
 * not below DIRECT_SLOTS (the counts so far are cleared: the caller counts them again in the table) or there
 * is none.
 */
function countBySlot(
  buckets: readonly (Buffer | Int32Array | readonly number[] | null)[],
  t: Scratch,
): number {
  let by = t.bySlot;
  const slots = t.slots;
  let distinct = 0;
  for (let j = 0; j < buckets.length; j++) {
    const b = buckets[j] as Int32Array | readonly number[] | null;
    if (!b) continue;
    for (let o = 0; o < b.length; o++) {
      const s = b[o]!;
      if (!(s >= 0 && s < by.length)) {
        if (s >= 0 && s < DIRECT_SLOTS && s === Math.floor(s)) {
          by = grown(t, s);
        } else {
          for (let i = 0; i < distinct; i++) by[slots[i]!] = 0;
          return 0;
        }
      }
      const c = by[s]!;
      if (c === 0) slots[distinct++] = s;
      by[s] = c + 1;
    }
  }
  return distinct;
}

/** t.bySlot grown to hold slot `s` (its counts kept). */
function grown(t: Scratch, s: number): Uint16Array {
  const by = new Uint16Array(Math.min(DIRECT_SLOTS, Math.max(t.bySlot.length * 2, s + 1)));
  by.set(t.bySlot);
  t.bySlot = by;
  return by;
}

/** countBySlot in the open-addressing table: for packed buckets (3-byte slots) and any slot number. */
function countHashed(
  buckets: readonly (Buffer | Int32Array | readonly number[] | null)[],
  t: Scratch,
  visited: number,
): number {
  const h0 = table(t, visited * 2);
  const { keys, cells, used, mask, shift } = h0;
  const slots = t.slots;
  const counts = t.counts;
  let distinct = 0;
  for (const b of buckets) {
    if (!b) continue;
    // a bucket of the mirror (slot numbers) or of Redis (packed 3-byte codes); 0 marks an empty cell, so a
    // slot's key is slot + 1. The two loops are the same but for reading the slot.
    const packed = b instanceof Buffer;
    const n = packed ? b.length - 2 : b.length;
    for (let o = 0; o < n; o += packed ? 3 : 1) {
      const key = (packed ? (b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]! : b[o]!) + 1;
      let h = Math.imul(key, 0x9e3779b1) >>> shift;
      for (;;) {
        const k = keys[h]!;
        if (k === key) {
          counts[cells[h]!]!++;
          break;
        }
        if (k === 0) {
          keys[h] = key;
          cells[h] = distinct;
          used[distinct] = h;
          slots[distinct] = key - 1;
          counts[distinct++] = 1;
          break;
        }
        h = (h + 1) & mask;
      }
    }
  }
  for (let i = 0; i < distinct; i++) keys[used[i]!] = 0; // cleared for the next call
  return distinct;
}

/**
 * A stable counting sort of the `distinct` slots (t.slots, first seen first) on the number of shared bands
 * (their counts, capped at `bands`: in `by` by slot when given, which is then cleared, else in t.counts by
 * place), cut at `limit`: count the slots per level, find the lowest level that still gets a place, then one
 * pass over the slots in first-seen order puts each at its level's next place (one pass, not one per level).
 * The two ways of reading a count have loops of their own: no test of `by` per slot.
 */
function rank(
  t: Scratch,
  distinct: number,
  bands: number,
  limit: number,
  by: Uint16Array | undefined,
): number[] {
  const { slots, counts } = t;
  const seen = t.levels.length > bands ? t.levels : (t.levels = new Uint32Array(bands + 1));
  for (let c = 0; c <= bands; c++) seen[c] = 0;
  if (by)
    for (let i = 0; i < distinct; i++) {
      const c = by[slots[i]!]!;
      seen[c < bands ? c : bands]!++;
    }
  else
    for (let i = 0; i < distinct; i++) {
      const c = counts[i]!;
      seen[c < bands ? c : bands]!++;
    }
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
  if (by)
    for (let i = 0; i < distinct; i++) {
      const s = slots[i]!;
      const cc = by[s]!;
      by[s] = 0; // cleared for the next call
      const c = cc < bands ? cc : bands;
      if (c < lowest) continue;
      const place = seen[c]!;
      if (place < n) {
        ranked[place] = s;
        seen[c] = place + 1;
      }
    }
  else
    for (let i = 0; i < distinct; i++) {
      const cc = counts[i]!;
      const c = cc < bands ? cc : bands;
      if (c < lowest) continue;
      const place = seen[c]!;
      if (place < n) {
        ranked[place] = slots[i]!;
        seen[c] = place + 1;
      }
    }
  return ranked;
}

interface HashTable {
  /** slot + 1 in each used cell, 0 in the free ones. */
  keys: Int32Array;
  /** The index (in Scratch.slots) of each used cell's slot. */
  cells: Int32Array;
  /** The used cells, in the order they were taken. */
  used: Int32Array;
  mask: number;
  shift: number;
}

interface Scratch {
  /** The distinct slots of a call in first-seen order, and (countHashed) their counts. */
  slots: Int32Array;
  counts: Uint16Array;
  /** Counts by slot number (countBySlot), all 0 between calls (rank clears them). */
  bySlot: Uint16Array;
  /** The open-addressing table (countHashed), made when first needed. */
  hashed: HashTable | undefined;
  /** Slots per number of shared bands, then each level's next place in the ranking. */
  levels: Uint32Array;
}
let shared: Scratch | undefined;

/** The shared scratch arrays, with room for at least `n` distinct slots. */
function scratch(n: number): Scratch {
  if (shared && shared.slots.length >= n) return shared;
  let size = 4096;
  while (size < n) size *= 2;
  shared = {
    slots: new Int32Array(size),
    counts: new Uint16Array(size),
    bySlot: shared?.bySlot ?? new Uint16Array(16_384),
    hashed: shared?.hashed,
    levels: shared?.levels ?? new Uint32Array(0),
  };
  return shared;
}

/** The shared open-addressing table, with room for at least `cells` cells (a power of two >= 4096). */
function table(t: Scratch, cells: number): HashTable {
  if (t.hashed && t.hashed.keys.length >= cells) return t.hashed;
  let bits = 12;
  while (1 << bits < cells) bits++;
  const size = 1 << bits;
  t.hashed = {
    keys: new Int32Array(size),
    cells: new Int32Array(size),
    used: new Int32Array(size),
    mask: size - 1,
    shift: 32 - bits,
  };
  return t.hashed;
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
