import { type RedisClient } from '../../redis/redis-client.js';
import { type ScopeKeys } from './scope.js';
import { commands, MAX_GENERATIONS } from './semantic-scripts.js';

/**
 * Scopes a process mirrors at most (the least recently looked up in goes first). A mirror holds one slot
 * number per band of each live entry, in one small array per bucket: measured ~18 MB of heap for 10,000
 * entries (the default bound of a scope) in two generations, ~41 MB for 100,000, so up to ~150 MB for 8
 * full scopes of the default size.
 */
export const MIRRORED_SCOPES = 8;

/** One scope's mirror: its buckets by generation, and the last band stream entry applied. */
interface ScopeMirror {
  /** The id of the last band stream entry applied ("ms-seq"), and its two numbers. */
  last: string;
  lastMs: number;
  lastSeq: number;
  /** generation -> bucket (band value × bands + band index) -> slots. */
  gens: Map<string, Map<number, number[]>>;
  /** The generations list a lookup gave last, and its names. */
  gensText: string;
  gensList: string[];
}

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
  private readonly building = new Map<string, Promise<void>>();
  /** Mirrors built (for tests and stats). */
  rebuilds = 0;

  /**
   * @param bands the LSH bands per prompt: a bucket's number in the mirror is its band value × bands + its
   *   band index (a small integer: a Map keyed by it hashes no string).
   */
  constructor(
    private readonly redis: RedisClient,
    private readonly bands: number,
    private readonly maxScopes = MIRRORED_SCOPES,
  ) {}

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

  /** Builds the scope's mirror from Redis (one build at a time per scope); rejects when Redis fails. */
  build(keys: ScopeKeys): Promise<void> {
    let p = this.building.get(keys.hash);
    if (p) return p;
    p = this.redis
      .run((r) => commands(r).cell0SemanticMirror(keys.gens, keys.stream, keys.meta, MAX_GENERATIONS))
      .then(
        (reply) => {
          this.building.delete(keys.hash);
          const m = mirrorOf(reply, this.bands);
          if (!m) throw new Error('semantic-mirror: not a mirror reply');
          this.scopes.delete(keys.hash);
          this.scopes.set(keys.hash, m);
          while (this.scopes.size > this.maxScopes) this.scopes.delete(this.scopes.keys().next().value!);
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
      } else if (on && (c === PLUS || c === MINUS)) applyEvent(m, text, from, to, this.bands);
      from = to + 1;
    }
  }

  /**
   * The scope's buckets of the query's band values (in band order) in the generations `gens` (the lookup
   * script's list, comma-separated): one list of slots per bucket found, generation by generation, band by
   * band. Generations of the mirror that are not in the list have expired (or are older than the
   * generations a lookup reads): dropped.
   */
  buckets(keys: ScopeKeys, values: readonly number[], gens: string): number[][] {
    const out: number[][] = [];
    const m = this.scopes.get(keys.hash);
    if (!m) return out;
    if (gens !== m.gensText) {
      m.gensText = gens;
      m.gensList = gens.length > 0 ? gens.split(',') : [];
    }
    const names = m.gensList;
    if (m.gens.size > names.length) for (const g of m.gens.keys()) if (!names.includes(g)) m.gens.delete(g);
    const bands = this.bands;
    for (let g = 0; g < names.length; g++) {
      const buckets = m.gens.get(names[g]!);
      if (!buckets) continue;
      for (let i = 0; i < values.length; i++) {
        const slots = buckets.get(values[i]! * bands + i);
        if (slots !== undefined && slots.length > 0) out.push(slots);
      }
    }
    return out;
  }

  /** Whether the scope is mirrored (for tests). */
  has(keys: ScopeKeys): boolean {
    return this.scopes.has(keys.hash);
  }

  /** The scope's mirror as sorted "generation bucket slot" lines, one per slot in a bucket (for tests). */
  contents(keys: ScopeKeys): string[] {
    const out: string[] = [];
    for (const [gen, buckets] of this.scopes.get(keys.hash)?.gens ?? [])
      for (const [bucket, slots] of buckets) for (const slot of slots) out.push(`${gen} ${bucket} ${slot}`);
    return out.sort();
  }
}

const HASH = 0x23;
const PLUS = 0x2b;
const MINUS = 0x2d;
const COLON = 0x3a;
const bySlot = (x: number, y: number): number => x - y;

/** A mirror from semantic-mirror.lua's reply; undefined when it is not one. */
function mirrorOf(reply: (string | number)[], bands: number): ScopeMirror | undefined {
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
  };
  const n = Number(reply[1]);
  for (let i = 0; i < n; i++) m.gens.set(String(reply[2 + i]), new Map());
  // each meta record "slot|band fields|generation" as the event of its store: "+slot generation fields"
  for (let i = 2 + n; i < reply.length; i++) {
    const rec = String(reply[i]);
    const a = rec.indexOf('|');
    const b = a < 0 ? -1 : rec.indexOf('|', a + 1);
    if (b < 0 || b === a + 1 || rec.charCodeAt(0) === MINUS) continue;
    const gen = rec.slice(b + 1);
    if (!m.gens.has(gen)) continue; // expired, or a layout lookups do not read
    const line = `+${rec.slice(0, a)} ${gen} ${rec.slice(a + 1, b)}`;
    applyEvent(m, line, 0, line.length, bands);
  }
  // Each bucket in slot order: the meta records come in hash order, and slots are mostly given out in store
  // order, the order in which stream events fill a bucket (rankSlots keeps first-seen order among equals).
  for (const buckets of m.gens.values()) for (const slots of buckets.values()) slots.sort(bySlot);
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
function applyEvent(m: ScopeMirror, text: string, from: number, to: number, bands: number): void {
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
    m.gens.set(gen, (buckets = new Map()));
  }
  let at = b + 1;
  while (at < to) {
    let end = text.indexOf(',', at);
    if (end < 0 || end > to) end = to;
    const bucket = bucketOf(text, at, end, bands);
    at = end + 1;
    if (bucket < 0) continue;
    const slots = buckets.get(bucket);
    if (join) {
      // each event is applied once (by its stream id), and a slot joins a generation's buckets once
      if (slots === undefined) buckets.set(bucket, [slot]);
      else slots.push(slot);
    } else if (slots !== undefined) {
      const k = slots.indexOf(slot);
      if (k >= 0) {
        slots.splice(k, 1);
        if (slots.length === 0) buckets.delete(bucket);
      }
    }
  }
}
