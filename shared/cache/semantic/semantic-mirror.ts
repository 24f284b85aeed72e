import { type RedisClient } from '../../redis/redis-client.js';
import { type ScopeKeys } from './scope.js';
import { commands, MAX_GENERATIONS } from './semantic-scripts.js';

/**
 * Scopes a process mirrors at most (the least recently looked up in goes first), and the memory their
 * mirrors may take together (checked each time a mirror is built). A mirror holds one slot number per band
 * of each live entry (GenBuckets): a small generation in a map of its non-empty buckets (~100 bytes per
 * bucket), a larger one in typed arrays (960 KB per generation for 20 bands × 2^12, plus 4–8 bytes per
 * slot): measured ~4 MB for 10,000 entries (the default bound of a scope) in two generations, ~36 MB for
 * 100,000. Many small scopes (a scope per tenant, per system prompt, per conversation's history) therefore
 * all fit, and about 16 full scopes of the default size.
 */
export const MIRRORED_SCOPES = 4096;
export const MIRROR_BUDGET_BYTES = 64 * 1024 * 1024;

/** One scope's mirror: its buckets by generation, and the last band stream entry applied. */
interface ScopeMirror {
  /** The id of the last band stream entry applied ("ms-seq"), and its two numbers. */
  last: string;
  lastMs: number;
  lastSeq: number;
  /** generation -> its buckets (bucket number: band value × bands + band index). */
  gens: Map<string, GenBuckets>;
  /** The generations list a lookup gave last, and its names. */
  gensText: string;
  gensList: string[];
  /**
   * This process's own store calls' stream entries that came back before the mirror reached the entry each
   * follows, by the id of that entry: applied when the mirror gets there (BandMirror.applyStored).
   */
  pending: Map<string, OwnEntry> | undefined;
}

/** A store call's own band stream entry, from its reply (BandMirror.applyStored). */
interface OwnEntry {
  id: string;
  ms: number;
  seq: number;
  events: string;
  valuesOf: (entryId: string) => readonly number[] | undefined;
}

/** Own entries a scope's mirror holds at most while waiting for the entries they follow. */
const MAX_PENDING = 64;

/**
 * The band buckets of the scopes this process looks up in. Redis keeps no buckets (semantic-set.lua): every
 * store, eviction and cleanup appends its bucket changes to the scope's band stream
 * (includes/slot-codes.lua publishBands), and a lookup's script call (which reads the exact key anyway)
 * returns the stream's entries after the mirror's last one; the mirror applies them before any lookup of
 * that call ranks, from the mirror's buckets of the generations the script listed. A store that completed
 * before a lookup started is in the entries that lookup's call returns, so another process finds it
 * (read-your-writes). No bucket bytes cross the wire, and Redis reads and writes no bucket.
 *
 * A scope is mirrored from its first lookup on: one script call (semantic-mirror.lua) reads the stream's
 * last id, the live generations and every entry's meta record (its slot, band fields and generation)
 * together, and the lookup waits for it. When the mirror's last entry has been trimmed from the stream
 * (the process fell more than ~512 stream entries behind, or the scope was deleted), the lookup call says
 * so, the mirror is dropped and rebuilt the same way, and the lookup asks again. At most MIRRORED_SCOPES
 * scopes are kept.
 *
 * Why a stale mirror never answers wrongly: a slot in the mirror only makes a candidate; its record (read
 * from Redis, or kept by LookupRecords under the slot hold rules) is re-ranked by exact cosine on the stored
 * vector and checked by the guard, exactly as before. A mirror that lags holds at most slots whose entries
 * have since gone (their records missing: the candidates script then reads the spares and cleans up, or the
 * slot's new entry's record: scored as that entry); it never lacks an entry stored before its lookup call.
 */
export class BandMirror {
  private readonly scopes = new Map<string, ScopeMirror>();
  /** The array buckets() lists a lookup's slots in (grown as needed, reused). */
  private slots = new Int32Array(1024);
  private readonly building = new Map<string, Promise<void>>();
  /** Mirrors built (for tests and stats). */
  rebuilds = 0;
  /**
   * Counts (for tests and benches): event lines the lookups' replies carried (read back from Redis), and of
   * those the ones applied (the others the mirror had applied already); store calls' own entries applied
   * from their replies, at once or later (when the mirror reached the entry they follow).
   */
  readonly stats = { linesRead: 0, linesApplied: 0, ownApplied: 0, ownLater: 0 };

  /**
   * @param bands the LSH bands per prompt: a bucket's number in the mirror is its band value × bands + its
   *   band index (a small integer: a Map keyed by it hashes no string).
   */
  /** Bucket numbers per generation: bands × 2^rows. */
  private readonly space: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly bands: number,
    rows: number,
    private readonly maxScopes = MIRRORED_SCOPES,
    private readonly budgetBytes = MIRROR_BUDGET_BYTES,
  ) {
    this.space = bands * 2 ** rows;
  }

  /**
   * The id of the last stream entry applied to the scope's mirror, to send with a lookup; undefined when
   * the scope is not mirrored (then `build` it first).
   */
  since(keys: ScopeKeys): string | undefined {
    const m = this.scopes.get(keys.hash);
    if (m === undefined) return undefined;
    // most recently used last (the Map's order): the first is the one to drop
    if (this.scopes.size > 1) {
      this.scopes.delete(keys.hash);
      this.scopes.set(keys.hash, m);
    }
    return m.last;
  }

  /**
   * Builds the scope's mirror from Redis, through `redis` (default: the client given to the constructor; a
   * cache sharing the mirror gives its own), one build at a time per scope; rejects when Redis fails.
   */
  build(keys: ScopeKeys, redis: RedisClient = this.redis): Promise<void> {
    let p = this.building.get(keys.hash);
    if (p) return p;
    p = redis
      .run((r) => commands(r).cell0SemanticMirror(keys.gens, keys.stream, keys.meta, MAX_GENERATIONS))
      .then(
        (reply) => {
          this.building.delete(keys.hash);
          const m = mirrorOf(reply, this.bands, this.space);
          if (!m) throw new Error('semantic-mirror: not a mirror reply');
          this.scopes.delete(keys.hash);
          this.scopes.set(keys.hash, m);
          this.bound();
          this.rebuilds++;
        },
        (err: unknown) => {
          this.building.delete(keys.hash);
          throw err;
        },
      );
    this.building.set(keys.hash, p);
    return p;
  }

  /** Drops the least recently looked-up-in mirrors while there are too many or they take too much memory. */
  private bound(): void {
    while (this.scopes.size > this.maxScopes) this.scopes.delete(this.scopes.keys().next().value!);
    let bytes = 0;
    for (const m of this.scopes.values()) for (const g of m.gens.values()) bytes += g.bytes();
    for (const [hash, m] of this.scopes) {
      if (bytes <= this.budgetBytes || this.scopes.size <= 1) break;
      for (const g of m.gens.values()) bytes -= g.bytes();
      this.scopes.delete(hash);
    }
  }

  /** The memory the mirrors take, roughly (for tests and stats). */
  bytes(): number {
    let bytes = 0;
    for (const m of this.scopes.values()) for (const g of m.gens.values()) bytes += g.bytes();
    return bytes;
  }

  /**
   * The mirror at `since` fell behind (that entry is no longer in the stream): dropped, unless it moved on
   * meanwhile (rebuilt, or caught up by another reply).
   */
  fellBehind(keys: ScopeKeys, since: string): void {
    const m = this.scopes.get(keys.hash);
    if (m && m.last === since) this.scopes.delete(keys.hash);
  }

  /**
   * Applies band stream entries (the lookup script's lines: "#id", then the entry's event lines) to the
   * scope's mirror; entries it applied already (an earlier reply carried them) are skipped.
   */
  apply(keys: ScopeKeys, text: string): void {
    const m = this.scopes.get(keys.hash);
    if (!m || text.length === 0) return;
    let on = false;
    let from = 0;
    while (from < text.length) {
      let to = text.indexOf('\n', from);
      if (to < 0) to = text.length;
      const c = text.charCodeAt(from);
      if (c === HASH) {
        const dash = text.indexOf('-', from);
        const ms = dash > from && dash < to ? Number(text.slice(from + 1, dash)) : NaN;
        const seq = Number(text.slice(dash + 1, to));
        on = ms > m.lastMs || (ms === m.lastMs && seq > m.lastSeq);
        if (on) {
          m.last = text.slice(from + 1, to);
          m.lastMs = ms;
          m.lastSeq = seq;
        }
      } else if (c === PLUS || c === MINUS) {
        this.stats.linesRead++;
        if (on) {
          this.stats.linesApplied++;
          applyEvent(m, text, from, to, this.bands, this.space);
        }
      }
      from = to + 1;
    }
    if (m.pending) this.applyPending(m);
  }

  /**
   * The id of the last stream entry applied to the scope's mirror ('' when the scope is not mirrored), for a
   * store call to send (semantic-set.lua ARGV[6]); unlike `since`, not a use of the mirror.
   */
  position(keys: ScopeKeys): string {
    return this.scopes.get(keys.hash)?.last ?? '';
  }

  /**
   * Applies a store call's own band stream entry from its reply (semantic-set.lua): `id`, which follows the
   * stream's entry `prev`, and its events, the call's own entries' joins as "*entry id slot generation"
   * (their band values, in band order: `valuesOf(entry id)`, what the process sent) and other events as
   * text lines. Applied when the mirror is at `prev`, then any own entries held that follow it; held when
   * the mirror is behind `prev` (an entry of another process, or another call of this one whose reply has
   * not come yet, lies between), and applied once a lookup's catch-up or another store's reply brings the
   * mirror to it; dropped when the mirror has it already (a lookup's catch-up read it back), or when the
   * mirror is dropped or rebuilt. Entries are thus applied in stream order, each once: the mirror stays what
   * one built from Redis holds. Returns whether it applied the entry now.
   */
  applyStored(
    keys: ScopeKeys,
    prev: string,
    id: string,
    events: string,
    valuesOf: (entryId: string) => readonly number[] | undefined,
  ): boolean {
    const m = this.scopes.get(keys.hash);
    const dash = id.indexOf('-');
    if (!m || dash <= 0) return false;
    const ms = Number(id.slice(0, dash));
    const seq = Number(id.slice(dash + 1));
    if (!(ms > m.lastMs || (ms === m.lastMs && seq > m.lastSeq))) return false; // applied already
    const own: OwnEntry = { id, ms, seq, events, valuesOf };
    if (m.last !== prev) {
      if (m.pending && m.pending.size >= MAX_PENDING) this.prunePending(m);
      const pending = (m.pending ??= new Map());
      if (pending.size < MAX_PENDING) pending.set(prev, own);
      return false;
    }
    this.applyOwn(m, own);
    this.stats.ownApplied++;
    if (m.pending) this.applyPending(m);
    return true;
  }

  /** Applies the held own entries that follow the mirror's position, in turn; drops those it has passed. */
  private applyPending(m: ScopeMirror): void {
    const pending = m.pending!;
    for (let next = pending.get(m.last); next !== undefined; next = pending.get(m.last)) {
      pending.delete(m.last);
      this.applyOwn(m, next);
      this.stats.ownLater++;
    }
    this.prunePending(m);
  }

  /** Drops the held own entries the mirror has passed (a lookup's catch-up read them back). */
  private prunePending(m: ScopeMirror): void {
    const pending = m.pending!;
    for (const [prev, e] of pending)
      if (!(e.ms > m.lastMs || (e.ms === m.lastMs && e.seq > m.lastSeq))) pending.delete(prev);
    if (pending.size === 0) m.pending = undefined;
  }

  /** Applies an own entry's events (see applyStored) and moves the mirror's position to it. */
  private applyOwn(m: ScopeMirror, own: OwnEntry): void {
    const { events } = own;
    let from = 0;
    while (from < events.length) {
      let to = events.indexOf('\n', from);
      if (to < 0) to = events.length;
      if (events.charCodeAt(from) === STAR) {
        // "*entry id slot generation": the join of the entry's slot to the buckets of its band values
        const a = events.indexOf(' ', from);
        const b = a < from || a >= to ? -1 : events.indexOf(' ', a + 1);
        const values = b > a && b < to ? own.valuesOf(events.slice(from + 1, a)) : undefined;
        if (values) joinValues(m, events, a + 1, b, events.slice(b + 1, to), values, this.bands, this.space);
      } else applyEvent(m, events, from, to, this.bands, this.space);
      from = to + 1;
    }
    m.last = own.id;
    m.lastMs = own.ms;
    m.lastSeq = own.seq;
  }

  /**
   * The slots in the scope's buckets of the query's band values (in band order) in the generations `gens`
   * (the lookup script's list, comma-separated), as one list: generation by generation, band by band, each
   * bucket in the order its slots joined (what rankSlots counts; bucket boundaries tell it nothing).
   * Generations of the mirror that are not in the list have expired (or are older than the generations a
   * lookup reads): dropped. The list is a view of an array the mirror reuses: valid until the next call
   * (the lookup ranks it at once), so a lookup does not grow a new array of its ~100–2,000 slots.
   */
  buckets(keys: ScopeKeys, values: readonly number[], gens: string): Int32Array {
    const m = this.scopes.get(keys.hash);
    if (!m) return this.slots.subarray(0, 0);
    if (gens !== m.gensText) {
      m.gensText = gens;
      m.gensList = gens.length > 0 ? gens.split(',') : [];
    }
    const names = m.gensList;
    if (m.gens.size > names.length) for (const g of m.gens.keys()) if (!names.includes(g)) m.gens.delete(g);
    const bands = this.bands;
    let out = this.slots;
    let n = 0;
    for (let g = 0; g < names.length; g++) {
      const gen = m.gens.get(names[g]!);
      if (gen)
        for (let i = 0; i < values.length; i++) {
          const bucket = values[i]! * bands + i;
          const count = gen.count(bucket);
          if (count === 0) continue;
          if (n + count > out.length) {
            const grown = new Int32Array(Math.max(out.length * 2, n + count));
            grown.set(out.subarray(0, n));
            out = this.slots = grown;
          }
          n = gen.copyTo(bucket, out, n);
        }
    }
    return out.subarray(0, n);
  }

  /** Whether the scope is mirrored (for tests). */
  has(keys: ScopeKeys): boolean {
    return this.scopes.has(keys.hash);
  }

  /** The scope's mirror as sorted "generation bucket slot" lines, one per slot in a bucket (for tests). */
  contents(keys: ScopeKeys): string[] {
    const out: string[] = [];
    for (const [gen, buckets] of this.scopes.get(keys.hash)?.gens ?? [])
      buckets.each((bucket, slot) => out.push(`${gen} ${bucket} ${slot}`));
    return out.sort();
  }
}

const HASH = 0x23;
const STAR = 0x2a;
const PLUS = 0x2b;
const MINUS = 0x2d;
const COLON = 0x3a;

/** A mirror from semantic-mirror.lua's reply; undefined when it is not one. */
function mirrorOf(reply: (string | number)[], bands: number, space: number): ScopeMirror | undefined {
  if (!Array.isArray(reply) || typeof reply[0] !== 'string') return undefined;
  const last = reply[0];
  const dash = last.indexOf('-');
  const m: ScopeMirror = {
    last,
    lastMs: Number(last.slice(0, dash)),
    lastSeq: Number(last.slice(dash + 1)),
    gens: new Map(),
    gensText: '',
    gensList: [],
    pending: undefined,
  };
  const n = Number(reply[1]);
  for (let i = 0; i < n; i++) m.gens.set(String(reply[2 + i]), new GenBuckets(space));
  // Each meta record "slot|band fields|generation" as the event of its store ("+slot generation fields"), in
  // slot order: the records come in hash order, and slots are mostly given out in store order, the order in
  // which stream events fill a bucket (rankSlots keeps first-seen order among equals).
  const lines: { slot: number; line: string }[] = [];
  for (let i = 2 + n; i < reply.length; i++) {
    const rec = String(reply[i]);
    const a = rec.indexOf('|');
    const b = a < 0 ? -1 : rec.indexOf('|', a + 1);
    if (b < 0 || b === a + 1 || rec.charCodeAt(0) === MINUS) continue;
    const gen = rec.slice(b + 1);
    if (!m.gens.has(gen)) continue; // expired, or a layout lookups do not read
    lines.push({ slot: Number(rec.slice(0, a)), line: `+${rec.slice(0, a)} ${gen} ${rec.slice(a + 1, b)}` });
  }
  lines.sort((x, y) => x.slot - y.slot);
  for (const { line } of lines) applyEvent(m, line, 0, line.length, bands, space);
  return m;
}

/**
 * The bucket number of the band field text[from, to) ("band index:band value in base 36"): value × bands +
 * index, or -1 when it is not one.
 */
function bucketOf(text: string, from: number, to: number, bands: number): number {
  let index = 0;
  let k = from;
  for (; k < to; k++) {
    const c = text.charCodeAt(k);
    if (c === COLON) break;
    const d = c - 48;
    if (d < 0 || d > 9) return -1;
    index = index * 10 + d;
  }
  if (k === from || k >= to - 1 || index >= bands) return -1;
  let value = 0;
  for (k++; k < to; k++) {
    const c = text.charCodeAt(k);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 122 ? c - 87 : -1;
    if (d < 0) return -1;
    value = value * 36 + d;
  }
  return value * bands + index;
}

/** The event line text[from, to): "+slot generation fields" (joined) or "-slot generation fields" (left). */
function applyEvent(
  m: ScopeMirror,
  text: string,
  from: number,
  to: number,
  bands: number,
  space: number,
): void {
  const a = text.indexOf(' ', from);
  const b = a < 0 || a >= to ? -1 : text.indexOf(' ', a + 1);
  if (b < 0 || b >= to) return;
  let slot = 0;
  for (let k = from + 1; k < a; k++) {
    const d = text.charCodeAt(k) - 48;
    if (d < 0 || d > 9) return;
    slot = slot * 10 + d;
  }
  const gen = text.slice(a + 1, b);
  const join = text.charCodeAt(from) === PLUS;
  let buckets = m.gens.get(gen);
  if (!buckets) {
    if (!join) return;
    m.gens.set(gen, (buckets = new GenBuckets(space)));
  }
  let at = b + 1;
  while (at < to) {
    let end = text.indexOf(',', at);
    if (end < 0 || end > to) end = to;
    const bucket = bucketOf(text, at, end, bands);
    at = end + 1;
    if (bucket < 0 || bucket >= space) continue;
    // each event is applied once (by its stream id), and a slot joins a generation's buckets once
    if (join) buckets.add(bucket, slot);
    else buckets.remove(bucket, slot);
  }
}

/**
 * The join of the slot text[from, to) (decimal) to the buckets of generation `gen` of its band values (in
 * band order): what applyEvent does with "+slot generation fields", from the numbers (no band field text
 * made and parsed).
 */
function joinValues(
  m: ScopeMirror,
  text: string,
  from: number,
  to: number,
  gen: string,
  values: readonly number[],
  bands: number,
  space: number,
): void {
  let slot = 0;
  for (let k = from; k < to; k++) {
    const d = text.charCodeAt(k) - 48;
    if (d < 0 || d > 9) return;
    slot = slot * 10 + d;
  }
  if (to === from) return;
  let buckets = m.gens.get(gen);
  if (!buckets) m.gens.set(gen, (buckets = new GenBuckets(space)));
  const count = Math.min(values.length, bands);
  for (let i = 0; i < count; i++) {
    const bucket = values[i]! * bands + i;
    if (bucket >= 0 && bucket < space) buckets.add(bucket, slot);
  }
}

/** Bucket numbers up to this many are indexed by typed arrays; beyond (many LSH rows), by a Map. */
const DENSE_SPACE = 1 << 20;

/** A map bucket's estimated cost in bytes (the map's entry and its [at, len, cap] array). */
const MAP_BUCKET_BYTES = 100;

/**
 * The buckets of one generation (no object per slot): each bucket's slots are one run in a shared pool
 * (where it starts, how many, room for how many), in the order they joined, so a lookup copies a bucket's
 * slots in one pass. A bucket that outgrows its run moves to the pool's end with twice the room; when the
 * pool's dead runs outweigh the live slots the pool is compacted. Where the runs are is kept in a map of the
 * non-empty buckets while they are few (a new or small scope: no 960 KB of arrays for a handful of entries),
 * and in one typed array indexed by bucket number (12 bytes per bucket number: 960 KB for 20 × 2^12) once they
 * are more than 1/16 of the bucket numbers. About 4–8 bytes per slot besides.
 */
class GenBuckets {
  /**
   * Each bucket's run as three numbers side by side (start, length, room: bucket b at 3b, 3b + 1, 3b + 2),
   * once the buckets are many: an event's or a lookup's visit of a bucket touches one place of the 960 KB,
   * not one in each of three arrays (a store's ~20 joins each met a cache miss per array).
   */
  private runsAt: Int32Array | undefined;
  /** bucket -> [at, len, cap] while the buckets are few, or the bucket numbers too many for arrays. */
  private runs: Map<number, [number, number, number]> | undefined = new Map();
  private pool = new Int32Array(256);
  private end = 0;
  private live = 0;

  constructor(private readonly space: number) {}

  /** Its memory, roughly. */
  bytes(): number {
    return (this.runsAt ? 12 * this.space : this.runs!.size * MAP_BUCKET_BYTES) + 4 * this.pool.length;
  }

  add(bucket: number, slot: number): void {
    const t = this.runsAt;
    if (t) {
      // typed arrays: the run read and written in place (no [at, len, cap] made per band of each event)
      const r = 3 * bucket;
      let at = t[r]!;
      const len = t[r + 1]!;
      let cap = t[r + 2]!;
      if (len === cap) {
        cap = cap === 0 ? 2 : cap * 2;
        const from = this.reserve(cap);
        // reserve may have compacted the pool (the array stays): the run's start is read again
        at = t[r]!;
        this.pool.copyWithin(from, at, at + len);
        at = from;
        t[r] = at;
        t[r + 2] = cap;
      }
      this.pool[at + len] = slot;
      t[r + 1] = len + 1;
      this.live++;
      return;
    }
    const run = this.run(bucket);
    let at = run[0];
    const len = run[1];
    let cap = run[2];
    if (len === cap) {
      const room = cap === 0 ? 2 : cap * 2;
      const from = this.reserve(room);
      // reserve may have compacted the pool: the run's start is read again
      at = this.run(bucket)[0];
      this.pool.copyWithin(from, at, at + len);
      at = from;
      cap = room;
    }
    this.pool[at + len] = slot;
    this.setRun(bucket, at, len + 1, cap);
    this.live++;
  }

  remove(bucket: number, slot: number): void {
    const t = this.runsAt;
    if (t) {
      const r = 3 * bucket;
      const at = t[r]!;
      const len = t[r + 1]!;
      const pool = this.pool;
      for (let k = 0; k < len; k++)
        if (pool[at + k] === slot) {
          pool.copyWithin(at + k, at + k + 1, at + len);
          t[r + 1] = len - 1;
          this.live--;
          return;
        }
      return;
    }
    const [at, len, cap] = this.run(bucket);
    for (let k = 0; k < len; k++)
      if (this.pool[at + k] === slot) {
        this.pool.copyWithin(at + k, at + k + 1, at + len);
        this.setRun(bucket, at, len - 1, cap);
        this.live--;
        return;
      }
  }

  /** How many slots the bucket holds. */
  count(bucket: number): number {
    if (this.runsAt) return this.runsAt[3 * bucket + 1]!;
    const run = this.runs!.get(bucket);
    return run === undefined ? 0 : run[1];
  }

  /**
   * Copies the bucket's slots, in the order they joined, to `out` from `n` on (room for count() of them),
   * and returns where they end. The run is read in place (no [at, len, cap] made: a lookup reads 20 buckets
   * per generation).
   */
  copyTo(bucket: number, out: Int32Array, n: number): number {
    let at: number;
    let len: number;
    const t = this.runsAt;
    if (t) {
      at = t[3 * bucket]!;
      len = t[3 * bucket + 1]!;
    } else {
      const run = this.runs!.get(bucket);
      if (run === undefined) return n;
      at = run[0];
      len = run[1];
    }
    const pool = this.pool;
    let o = n;
    for (let k = 0; k < len; k++) out[o++] = pool[at + k]!;
    return o;
  }

  /** Every (bucket, slot) (for tests). */
  each(fn: (bucket: number, slot: number) => void): void {
    const visit = (b: number, at: number, len: number): void => {
      for (let k = 0; k < len; k++) fn(b, this.pool[at + k]!);
    };
    const t = this.runsAt;
    if (t) for (let b = 0; b < this.space; b++) visit(b, t[3 * b]!, t[3 * b + 1]!);
    else for (const [b, [at, len]] of this.runs!) visit(b, at, len);
  }

  private run(bucket: number): [number, number, number] {
    const t = this.runsAt;
    if (t) return [t[3 * bucket]!, t[3 * bucket + 1]!, t[3 * bucket + 2]!];
    return this.runs!.get(bucket) ?? [0, 0, 0];
  }

  private setRun(bucket: number, at: number, len: number, cap: number): void {
    const t = this.runsAt;
    if (t) {
      t[3 * bucket] = at;
      t[3 * bucket + 1] = len;
      t[3 * bucket + 2] = cap;
    } else if (len === 0 && cap === 0) this.runs!.delete(bucket);
    else {
      this.runs!.set(bucket, [at, len, cap]);
      if (this.runs!.size > this.space >>> 4 && this.space <= DENSE_SPACE) this.toArrays();
    }
  }

  /** From the map to typed arrays (the buckets became many). */
  private toArrays(): void {
    const runs = this.runs!;
    const t = (this.runsAt = new Int32Array(3 * this.space));
    for (const [b, [at, len, cap]] of runs) {
      t[3 * b] = at;
      t[3 * b + 1] = len;
      t[3 * b + 2] = cap;
    }
    this.runs = undefined;
  }

  /** Room for `n` slots at the pool's end (compacting or growing the pool first when needed); its start. */
  private reserve(n: number): number {
    if (this.end + n > this.pool.length) {
      // compact when at most half the pool is live slots' room, else grow
      if (this.live * 2 + n <= this.pool.length / 2) this.compact();
      if (this.end + n > this.pool.length) {
        const pool = new Int32Array(Math.max(this.pool.length * 2, this.end + n));
        pool.set(this.pool.subarray(0, this.end));
        this.pool = pool;
      }
    }
    const from = this.end;
    this.end += n;
    return from;
  }

  /** Every bucket's run moved to the front of a new pool, with room for its slots only (twice, min 2). */
  private compact(): void {
    const pool = new Int32Array(this.pool.length);
    let end = 0;
    const move = (b: number, at: number, len: number): void => {
      const cap = len === 0 ? 0 : Math.max(2, len);
      pool.set(this.pool.subarray(at, at + len), end);
      this.setRun(b, end, len, cap);
      end += cap;
    };
    const t = this.runsAt;
    if (t) {
      for (let b = 0; b < this.space; b++) if (t[3 * b + 2]! > 0) move(b, t[3 * b]!, t[3 * b + 1]!);
    } else for (const [b, [at, len]] of [...this.runs!]) move(b, at, len);
    this.pool = pool;
    this.end = end;
  }
}
