import { RECORD_TRUST_MS } from './semantic-scripts.js';
import { cosineStoredKnown, SPARSE, storedLength, storedSquaredNorm } from './vector-codec.js';

/**
 * A candidate record a lookup read, and until when (this process's clock, ms) it may be used again: the
 * trust time after its read, and never closer to its expiry than EXPIRY_MARGIN_MS. With bench:http's unique
 * prompts a kept record is scored by ~20 lookups (each ranks 24 candidates, ~96% of them kept), so what
 * scoring needs besides the query is worked out once, on the record's first use (vectorOf), not per lookup:
 * where its vector starts (a scan for the id's LF), its checked stored length, and its Σ x².
 */
export class KeptRecord {
  /** Where the stored vector starts, or -1 when the record holds none of `dims` dimensions; -2 until known. */
  at = -2;
  /** The stored vector's length in bytes (vector-codec.ts storedLength). */
  len = 0;
  /** Σ x² of the stored vector's int8 components. */
  ns = 0;
  /** The dims `at`, `len` and `ns` were worked out for. */
  dims = 0;

  constructor(
    readonly rec: Buffer,
    readonly until: number,
  ) {}

  /** Where the vector of `dims` dimensions starts (len and ns then describe it), or -1 when it has none. */
  vectorOf(dims: number): number {
    if (this.at !== -2 && this.dims === dims) return this.at;
    const rec = this.rec;
    let at = -1;
    // the first LF from byte 15 on (after the expiry) ends the id
    for (let k = 15; k < rec.length; k++)
      if (rec[k] === 10) {
        at = k + 1;
        break;
      }
    const len = at < 0 ? -1 : storedLength(rec, at, dims);
    this.dims = dims;
    this.len = len < 0 ? 0 : len;
    this.ns = len < 0 ? 0 : storedSquaredNorm(rec, at, len);
    this.at = len < 0 ? -1 : at;
    return this.at;
  }
}

/**
 * A record whose expiry is this close (ms, by this process's clock) counts as expiring: the candidates
 * script, on Redis's clock, decides about it. Clock skew between this host and Redis's below this margin
 * never makes a lookup use a record the script would have dropped (or one whose slot went back to the free
 * list when it expired).
 */
export const EXPIRY_MARGIN_MS = 1000;

/** A candidate record's expiry (its first 15 digits, ms), or -1 when it has none. */
export function expiryOf(rec: Buffer): number {
  if (rec.length < 15) return -1;
  let expiresAt = 0;
  for (let i = 0; i < 15; i++) {
    const d = rec[i]! - 48;
    if (d < 0 || d > 9) return -1;
    expiresAt = expiresAt * 10 + d;
  }
  return expiresAt;
}

/** Records kept per generation (two generations: up to twice this many, ~4 MB, whatever the scopes). */
export const RECORDS_PER_GENERATION = 8192;

/**
 * The candidate records the lookups of this process read lately, by scope and slot, so that a lookup
 * reads from Redis only the records of its candidates it has not read within the last `trustMs`: with
 * unique prompts most candidates of a lookup were candidates of earlier ones (bench:http's prompts: ~96%
 * of the records read), and each record is ~130 bytes for Redis to send and the client to parse.
 *
 * Why a kept record is still its slot's record: a slot's record is written when an entry takes the slot,
 * and stays until the entry goes. An entry that expired gives its slot back at once, but a kept record is
 * never used within EXPIRY_MARGIN_MS of its expiry. An entry that goes while it may still be live (evicted,
 * invalidated, reported, stored again: it then moves to a new slot) leaves its slot held for SLOT_HOLD_MS
 * (the trust time and 10 s for clock skew) before a store gives it to another entry, and the slot counter
 * outlives the scope's deletion by as long, so a slot number is not given out again while a process may
 * use a record of it (shared/lua/semantic-set.lua, semantic-drop.lua). A record is trusted from the time its
 * read was sent, so it was read no earlier than that.
 */
export class LookupRecords {
  /** The records kept lately by scope (vec hash key) and slot, and how many; the older generation. */
  private cur = new Map<string, SlotTable>();
  private count = 0;
  private old = new Map<string, SlotTable>();
  /**
   * The scope find() was asked about last, and its records in each generation: a lookup asks for its ~24
   * candidates of one scope in a row, so the two scope tables are found once, not once per candidate.
   * Forgotten whenever either generation's table of a scope may change (a new generation, a scope's first keep).
   */
  private lastKey: string | undefined = undefined;
  private lastCur: SlotTable | undefined = undefined;
  private lastOld: SlotTable | undefined = undefined;

  constructor(
    private readonly trustMs = RECORD_TRUST_MS,
    private readonly perGeneration = RECORDS_PER_GENERATION,
  ) {}

  /**
   * The record of `slot` in the vec hash `vecKey` read within the trust time before `now` and live (its
   * expiry more than EXPIRY_MARGIN_MS after `now`), if any.
   */
  get(vecKey: string, slot: number, now: number): Buffer | undefined {
    return this.find(vecKey, slot, now)?.rec;
  }

  /** get(), as the kept record (with what scoring it needs, once worked out). */
  find(vecKey: string, slot: number, now: number): KeptRecord | undefined {
    if (vecKey !== this.lastKey) {
      this.lastKey = vecKey;
      this.lastCur = this.cur.get(vecKey);
      this.lastOld = this.old.get(vecKey);
    }
    const k = this.lastCur?.get(slot) ?? this.lastOld?.get(slot);
    return k !== undefined && k.until > now ? k : undefined;
  }

  /**
   * The similarity of the record find() would give to the query (`nq` its squaredNorm): the cosine with its
   * stored vector, at most 1 (Math.min(1, cosineStoredKnown(…)): the same value), or -1 when the record holds
   * no readable vector of `dims` dimensions; NOT_KEPT when find() would give none. A record's sparse vector
   * is scored from its scope table's arena (SlotTable): no record object or buffer is touched, so a lookup's
   * ~24 candidates are scored from a few typed arrays; find() its record when the score passes.
   */
  score(vecKey: string, slot: number, now: number, query: Float32Array, nq: number, dims: number): number {
    if (vecKey !== this.lastKey) {
      this.lastKey = vecKey;
      this.lastCur = this.cur.get(vecKey);
      this.lastOld = this.old.get(vecKey);
    }
    // as find(): the newer generation's record of the slot when it has one (live or not), else the older's
    const cur = this.lastCur;
    const s = cur === undefined ? ABSENT : cur.score(slot, now, query, nq, dims);
    if (s !== ABSENT) return s === NOT_LIVE ? NOT_KEPT : s;
    const old = this.lastOld;
    const o = old === undefined ? ABSENT : old.score(slot, now, query, nq, dims);
    return o === ABSENT || o === NOT_LIVE ? NOT_KEPT : o;
  }

  /**
   * Keeps `rec`, the record of `slot` read by a command sent at `sentAt` (this process's clock, taken
   * before the send): a copy, so the kept bytes do not pin the reply's buffer (unless `copy` is false: a
   * buffer of its own). When the newer generation is full it becomes the older one, and the older one is
   * dropped whole. The record a store of this process wrote counts as read by that store's script call.
   */
  keep(vecKey: string, slot: number, rec: Buffer, sentAt: number, copy = true): KeptRecord | undefined {
    const until = Math.min(sentAt + this.trustMs, expiryOf(rec) - EXPIRY_MARGIN_MS);
    if (!(until > sentAt)) return undefined;
    if (this.count >= this.perGeneration) {
      this.old = this.cur;
      this.cur = new Map();
      this.count = 0;
      this.lastKey = undefined;
    }
    let scope = this.cur.get(vecKey);
    if (!scope) {
      this.cur.set(vecKey, (scope = new SlotTable()));
      this.lastKey = undefined;
    }
    const kept = new KeptRecord(copy ? Buffer.from(rec) : rec, until);
    if (scope.set(slot, kept)) this.count++;
    return kept;
  }
}

/** LookupRecords.score's answer for a slot find() gives no record of (below every similarity: -1 and up). */
export const NOT_KEPT = -2;
/** SlotTable.score: the table holds no record of the slot (the other generation may). */
const ABSENT = -4;
/** SlotTable.score: the table's record of the slot is past its `until`. */
const NOT_LIVE = -3;

/** A kept record's similarity from its KeptRecord (what the lookup computed before the arenas). */
function scoreKept(k: KeptRecord, query: Float32Array, nq: number, dims: number): number {
  const from = k.vectorOf(dims);
  return from < 0 ? -1 : Math.min(1, cosineStoredKnown(query, nq, k.rec, from, k.len, k.ns));
}

/** Slots a SlotTable indexes in its array at most (beyond, its map): 2 MB of references per table. */
const DIRECT_SLOTS = 1 << 18;

/**
 * The kept records of one scope in one generation, by slot. A scope's slots are small numbers given out
 * from 0 (freed ones first), so they are indexed in an array: a lookup's ~24 finds read it by index instead
 * of hashing each slot into a Map of up to 8,192 entries (bench/semantic-miss-cpu.mjs: ~10 µs less per
 * request). The array grows only while it stays dense (at most 4 references per record held, plus 256), so
 * a few records of high slots cost no large array: those, and slots from DIRECT_SLOTS on, go to a map.
 */
class SlotTable {
  private arr: (KeptRecord | undefined)[] = [];
  private map: Map<number, KeptRecord> | undefined = undefined;
  /** Records held (array and map). */
  private size = 0;
  /**
   * By slot, for the array's records (score()), side by side (one cache line for a lookup's visit of a
   * slot): at 2·slot its `until` (-Infinity: no record), at 2·slot + 1 where its sparse vector's block
   * starts in the arena + 1 (0: not yet copied there; -1: not sparse or not readable, scored from its
   * KeptRecord).
   */
  private meta = new Float64Array(0);
  /**
   * The array's records' sparse vectors, one block after another: the count n of components, Σ x², then
   * each component as (index << 8) | (int8 value & 0xff), in the stored (ascending index) order; made on a
   * record's first score, for `dims` dimensions.
   */
  private arena = new Int32Array(0);
  private arenaEnd = 0;
  /** Arena places that belong to a record still held (the rest are replaced records'). */
  private arenaLive = 0;
  private dims = -1;

  get(slot: number): KeptRecord | undefined {
    return slot < this.arr.length ? this.arr[slot] : this.map?.get(slot);
  }

  /**
   * The similarity of the slot's record to the query (see LookupRecords.score), ABSENT when the table holds
   * none, NOT_LIVE when it is past its `until` at `now`.
   */
  score(slot: number, now: number, query: Float32Array, nq: number, dims: number): number {
    if (slot < this.arr.length) {
      const meta = this.meta;
      const until = meta[2 * slot]!;
      if (!(until > now)) return until === -Infinity ? ABSENT : NOT_LIVE;
      let at = meta[2 * slot + 1]!;
      if (at === 0 || dims !== this.dims) at = this.toArena(slot, dims);
      if (at < 0) return scoreKept(this.arr[slot]!, query, nq, dims);
      const arena = this.arena;
      const ns = arena[at]!;
      if (nq === 0 || ns === 0) return 0;
      const end = at + 1 + arena[at - 1]!;
      let dot = 0;
      // the sum of cosineStoredKnown's sparse loop, term by term in the same order: the same value
      for (let p = at + 1; p < end; p++) {
        const e = arena[p]!;
        dot += query[e >> 8]! * ((e << 24) >> 24);
      }
      return Math.min(1, dot / Math.sqrt(nq * ns));
    }
    const k = this.map?.get(slot);
    if (k === undefined) return ABSENT;
    if (!(k.until > now)) return NOT_LIVE;
    return scoreKept(k, query, nq, dims);
  }

  /**
   * Copies the slot's record's sparse vector of `dims` dimensions to an arena block; where the block starts
   * + 1 (-1 when the record has no sparse vector of `dims` dimensions).
   */
  private toArena(slot: number, dims: number): number {
    const meta = this.meta;
    if (dims !== this.dims) {
      // another embedder's dims (never in one process's scope, but answered right): every vector again
      for (let s = 1; s < meta.length; s += 2) meta[s] = 0;
      this.arenaEnd = 0;
      this.arenaLive = 0;
      this.dims = dims;
    }
    const k = this.arr[slot]!;
    const from = k.vectorOf(dims);
    const rec = k.rec;
    if (from < 0 || rec[from] !== SPARSE) return (meta[2 * slot + 1] = -1);
    const n = (k.len - 3) / 3;
    const start = this.reserve(n + 2);
    const arena = this.arena;
    arena[start] = n;
    arena[start + 1] = k.ns;
    for (let o = from + 3, p = start + 2; p < start + 2 + n; o += 3, p++)
      arena[p] = (((rec[o]! << 8) | rec[o + 1]!) << 8) | rec[o + 2]!;
    this.arenaLive += n + 2;
    return (meta[2 * slot + 1] = start + 1);
  }

  /** Room for `n` places at the arena's end (compacting or growing it first when needed); its start. */
  private reserve(n: number): number {
    if (this.arenaEnd + n > this.arena.length) {
      if (this.arenaLive * 2 + n <= this.arena.length) this.compact();
      if (this.arenaEnd + n > this.arena.length) {
        const arena = new Int32Array(Math.max(1024, this.arena.length * 2, this.arenaEnd + n));
        arena.set(this.arena.subarray(0, this.arenaEnd));
        this.arena = arena;
      }
    }
    const start = this.arenaEnd;
    this.arenaEnd += n;
    return start;
  }

  /** The held records' blocks moved to the front of the arena (replaced records' left out). */
  private compact(): void {
    const arena = new Int32Array(this.arena.length);
    const meta = this.meta;
    let end = 0;
    for (let s = 1; s < meta.length; s += 2) {
      const at = meta[s]!;
      if (at <= 0) continue;
      const size = this.arena[at - 1]! + 2;
      arena.set(this.arena.subarray(at - 1, at - 1 + size), end);
      meta[s] = end + 1;
      end += size;
    }
    this.arena = arena;
    this.arenaEnd = end;
    this.arenaLive = end;
  }

  /** Holds `kept` as the record of `slot`; true when the slot had none here before. */
  set(slot: number, kept: KeptRecord): boolean {
    const arr = this.arr;
    if (slot < arr.length) {
      const fresh = arr[slot] === undefined;
      arr[slot] = kept;
      const meta = this.meta;
      meta[2 * slot] = kept.until;
      const at = meta[2 * slot + 1]!;
      if (at > 0) this.arenaLive -= this.arena[at - 1]! + 2;
      meta[2 * slot + 1] = 0;
      if (fresh) this.size++;
      return fresh;
    }
    if (slot < DIRECT_SLOTS && Number.isInteger(slot) && slot >= 0) {
      let length = Math.max(64, arr.length);
      while (length <= slot) length *= 2;
      if (length <= 4 * this.size + 256) {
        this.grow(Math.min(length, DIRECT_SLOTS));
        return this.set(slot, kept);
      }
    }
    const map = (this.map ??= new Map());
    const before = map.size;
    map.set(slot, kept);
    if (map.size === before) return false;
    this.size++;
    return true;
  }

  /** The array grown to `length` (filled: no holes), with the map's records now below it moved in. */
  private grow(length: number): void {
    const arr = this.arr;
    const from = arr.length;
    arr.length = length;
    arr.fill(undefined, from);
    const meta = new Float64Array(2 * length);
    meta.set(this.meta);
    for (let s = 2 * from; s < meta.length; s += 2) meta[s] = -Infinity;
    this.meta = meta;
    const map = this.map;
    if (map === undefined) return;
    for (const [slot, kept] of map)
      if (slot < length) {
        arr[slot] = kept;
        meta[2 * slot] = kept.until;
        map.delete(slot);
      }
    if (map.size === 0) this.map = undefined;
  }
}
