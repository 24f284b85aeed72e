import { performance } from 'node:perf_hooks';
import { type Redis } from 'ioredis';
import { ConfigError, ValidationError, type FieldIssue } from '../../errors.js';
import { LatencyWindow, type LatencySummary } from '../../latency.js';
import { silentLogger, type Logger } from '../../logger.js';
import { defineScripts } from '../../redis/lua-scripts.js';
import { type RedisClient } from '../../redis/redis-client.js';
import {
  CacheMatchConfidence,
  confidenceOf,
  DEFAULT_THRESHOLDS,
  thresholdOf,
  type SemanticThresholds,
} from './confidence.js';
import { type Embedder } from './embedder.js';
import { LexicalEmbedder } from './lexical-embedder.js';
import { analyzePrompt, compareAnalyses, type PromptAnalysis } from './guard.js';
import { LSH_BANDS, LSH_ROWS, LshHasher } from './lsh.js';
import {
  bandSuffix,
  keyBase,
  promptId,
  ScopeKeys,
  scopeHash,
  shortHash,
  type SemanticScope,
} from './scope.js';
import { normalizePrompt } from './text.js';
import { hasControlChar } from '../../unicode.js';
import { cosineQuantized, quantize } from './vector-codec.js';
import { withDefaults } from '../../with-defaults.js';

/** Options of {@link SemanticCache}. */
export interface SemanticCacheOptions {
  /** All Redis access goes through `redis.run(...)` (its circuit breaker). */
  redis: RedisClient;
  /** Namespace of every key. Default "{cell0}"; its braces are dropped so each scope gets its own slot. */
  prefix?: string;
  /** Default: a new LexicalEmbedder (no model download). */
  embedder?: Embedder;
  /**
   * Cosine cut-offs of HIGH / MEDIUM / LOW. Default: the embedder's own `thresholds`, else
   * DEFAULT_THRESHOLDS { high: 0.85, medium: 0.8, low: 0.75 } (confidence.ts).
   */
  thresholds?: SemanticThresholds;
  /** Weakest level get() accepts when the call does not say. Default HIGH. */
  defaultMinConfidence?: CacheMatchConfidence;
  /** Lifetime of an entry, seconds. Default 300 (CELL0_CACHE_TTL). */
  ttlSeconds?: number;
  /**
   * Most entries per scope. Storing one more evicts the least recently used (by last store or hit).
   * Default 10000.
   */
  maxEntriesPerScope?: number;
  /** Refuse similarity hits that negate, reverse or change numbers/entities of the prompt. Default true. */
  guard?: boolean;
  /**
   * LSH shape: bands × rows (bits per band). Default 20 × 12 (lsh.ts has the arithmetic). Changing it
   * changes every band key: entries stored under another shape are still found by the exact key only.
   */
  lsh?: { bands: number; rows: number };
  logger?: Logger;
}

/** A cached answer. */
export interface SemanticHit<T> {
  value: T;
  confidence: CacheMatchConfidence;
  /** Cosine to the stored prompt (1 for EXACT). */
  similarity: number;
  /** Identifies the entry for {@link SemanticCache.reportFalseHit}. */
  entryId: string;
  /** The stored prompt the answer belongs to. */
  prompt: string;
  /** When it was stored, ms since the epoch (Redis clock). */
  storedAt: number;
}

/** Counters of one SemanticCache (this process). */
export interface SemanticCacheStats {
  /** get() calls that reached an answer (hit or miss). */
  lookups: number;
  exactHits: number;
  semanticHits: { high: number; medium: number; low: number };
  misses: number;
  /** Candidates above the threshold that the guard refused (one lookup can refuse several). */
  guardRejections: number;
  /** The same, by the guard rule that refused (negation, number, quoted, entity, question, order, contrast). */
  guardRejectionsByRule: Record<string, number>;
  falseHitReports: number;
  /** Entries stored. */
  sets: number;
  /** Entries removed by the size bound. */
  evictions: number;
  /** Expired entries whose index records were cleaned up (by set() and by lookups). */
  expiredRemoved: number;
  /** Redis (or embedder) failures answered as a miss / skipped store. */
  errors: number;
  /** (exact + semantic hits) / lookups; 0 before the first lookup. */
  hitRate: number;
  /** Similarity searches run (lookups that missed the exact key), and what they cost on average. */
  search: { count: number; meanBandMembersVisited: number; meanDistinctCandidates: number };
  /** Duration of get(), ms. */
  latency: LatencySummary;
}

interface Resolved {
  prefix: string;
  thresholds: SemanticThresholds;
  defaultMinConfidence: CacheMatchConfidence;
  ttlSeconds: number;
  maxEntriesPerScope: number;
  guard: boolean;
}

const DEFAULTS: Resolved = {
  prefix: '{cell0}',
  thresholds: DEFAULT_THRESHOLDS,
  defaultMinConfidence: CacheMatchConfidence.HIGH,
  ttlSeconds: 300,
  maxEntriesPerScope: 10_000,
  guard: true,
};

/** Candidates re-ranked by exact cosine per lookup (the top by shared bands). */
const CANDIDATES = 24;
/** Slots sent to the candidate script: spares for candidates that turn out expired. */
const RANKED = 40;
/** Most guard refusals per lookup before giving up (each costs a tokenisation). */
const GUARD_TRIES = 8;
/** Expired entries a lookup removes at most when it meets them among its candidates. */
const STALE_CLEANUP = 16;
/** Expired entries a set() cleans up at most. */
const EXPIRED_CLEANUP = 64;
/** Generations of band buckets a lookup reads at most (those expiring last; see semantic-set.lua). */
const MAX_GENERATIONS = 8;
/** Entries invalidate() removes per script call (keeps each call short: Redis runs scripts alone). */
const CLEAR_CHUNK = 500;

const SCRIPTS = [
  'semantic-set',
  'semantic-candidates',
  'semantic-fetch',
  'semantic-lookup',
  'semantic-drop',
  'semantic-index',
] as const;
type Arg = string | number | Buffer;

/** The commands of shared/lua/semantic-*.lua; the variadic ones take their number of keys first. */
interface SemCommands {
  cell0SemanticSet(...args: Arg[]): Promise<[number, number]>;
  cell0SemanticCandidatesBuffer(numKeys: number, ...args: Arg[]): Promise<Buffer[]>;
  cell0SemanticFetch(entryKey: string, lruKey: string, id: string): Promise<[string, string, string] | null>;
  cell0SemanticLookupBuffer(...args: Arg[]): Promise<[number, ...(Buffer | null)[]]>;
  cell0SemanticDrop(...args: Arg[]): Promise<[number, number]>;
  cell0SemanticIndex(indexKey: string, scopeHash: string, ttlMs: number): Promise<number>;
}

function commands(redis: Redis): Redis & SemCommands {
  return defineScripts<SemCommands>(redis, ...SCRIPTS);
}

interface Candidate {
  id: string;
  prompt: string;
  similarity: number;
}

/**
 * Counts, for every slot in the query's band buckets (strings of packed 3-byte big-endian slot numbers),
 * how many buckets hold it, and returns up to `limit` slots, most shared bands first (first seen first
 * among equals). Counting happens here, not in Lua: V8 does it several times faster than Redis's Lua 5.1,
 * and Redis stays free for other clients. An open-addressing table reused across calls keeps it
 * allocation-free (a lookup at 100k entries meets ~2,000 slots; a Map per call fed the GC ~100 KB).
 */
export function rankSlots(
  buckets: readonly (Buffer | null)[],
  bands: number,
  limit: number,
): { ranked: number[]; visited: number; distinct: number } {
  let visited = 0;
  for (const b of buckets) if (b) visited += Math.floor(b.length / 3);
  const t = scratch(visited * 2);
  const { keys, counts, order, mask } = t;
  let distinct = 0;
  for (const b of buckets) {
    if (!b) continue;
    for (let o = 0; o + 2 < b.length; o += 3) {
      const key = ((b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]!) + 1; // 0 marks an empty cell
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
  const seen = new Uint32Array(bands + 1);
  for (let i = 0; i < distinct; i++) seen[Math.min(counts[order[i]!]!, bands)]!++;
  const ranked: number[] = [];
  for (let c = bands; c >= 1 && ranked.length < limit; c--) {
    if (seen[c] === 0) continue;
    for (let i = 0; i < distinct && ranked.length < limit; i++) {
      const h = order[i]!;
      if (Math.min(counts[h]!, bands) === c) ranked.push(keys[h]! - 1);
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
  };
  return table;
}

/** A candidate record: 15 digits of expiry, the id, LF, the int8 vector (dims bytes), the prompt. */
export function parseRecord(
  rec: Buffer,
  dims: number,
): { id: string; vector: Buffer; prompt: string } | undefined {
  const nl = rec.indexOf(10, 15);
  if (nl < 0 || rec.length < nl + 1 + dims) return undefined;
  return {
    id: rec.toString('latin1', 15, nl),
    vector: rec.subarray(nl + 1, nl + 1 + dims),
    prompt: rec.toString('utf8', nl + 1 + dims),
  };
}

/**
 * A cache of model outputs that also answers prompts that mean the same as a stored one, on plain Redis
 * (no modules; Redis Cluster and Valkey work: every multi-key script touches one scope's slot).
 *
 * get(): the exact key first (scope hash + normalised prompt → EXACT). On a miss, the prompt is embedded and
 * hashed into LSH bands (lsh.ts); the query's band buckets (packed slot numbers) are read, Node counts the
 * band collisions per slot (rankSlots), a Lua script returns the records (int8 vector, prompt) of the top
 * slots whose entries are alive, Node re-ranks them by exact cosine, and the most similar one above the
 * threshold that the guard (guard.ts) accepts is fetched and answered. With an in-process embedder (the default)
 * the embedding is computed up front and one script reads the exact key and, only if it misses, the
 * buckets: two round trips on a miss, three on a similarity hit, one on an exact hit (a remote embedder
 * is called only after an exact miss: one more). Redis and embedder failures become misses (counted in
 * `errors`); with Redis down the breaker answers in microseconds.
 *
 * Entries expire after their TTL (all their keys; index records of expired entries are cleaned lazily,
 * never returned), and each scope holds at most `maxEntriesPerScope` (least recently used evicted).
 * Values are stored as JSON.
 */
export class SemanticCache<T = unknown> {
  readonly embedder: Embedder;
  private readonly redis: RedisClient;
  private readonly opts: Resolved;
  private readonly base: string;
  private readonly space: string;
  private readonly lsh: LshHasher;
  private readonly log: Logger;
  private readonly latency = new LatencyWindow(4096);
  private degraded = false;
  private readonly rejectedBy: Record<string, number> = {};
  private readonly counters = {
    exactHits: 0,
    high: 0,
    medium: 0,
    low: 0,
    misses: 0,
    guardRejections: 0,
    falseHitReports: 0,
    sets: 0,
    evictions: 0,
    expiredRemoved: 0,
    errors: 0,
    searches: 0,
    visited: 0,
    distinct: 0,
  };

  constructor(options: SemanticCacheOptions) {
    const given: Partial<SemanticCacheOptions> = options ?? {};
    const embedder = given.embedder ?? new LexicalEmbedder();
    const opts: Resolved = {
      ...withDefaults<Resolved>(DEFAULTS, given as Partial<Resolved>),
      thresholds: withDefaults(embedder.thresholds ?? DEFAULTS.thresholds, given.thresholds),
    };
    const issues: FieldIssue[] = [];
    if (!given.redis || typeof given.redis.run !== 'function')
      issues.push({ field: 'redis', reason: 'a RedisClient is required' });
    if (typeof opts.prefix !== 'string' || opts.prefix.replace(/[{}]/g, '').length === 0)
      issues.push({ field: 'prefix', reason: `expected a non-empty string, got ${String(opts.prefix)}` });
    const t = opts.thresholds;
    if (
      ![t.high, t.medium, t.low].every((x) => typeof x === 'number' && x > 0 && x <= 1) ||
      !(t.high >= t.medium && t.medium >= t.low)
    )
      issues.push({
        field: 'thresholds',
        reason: `expected 0 < low <= medium <= high <= 1, got ${JSON.stringify(t)}`,
      });
    if (!Object.values(CacheMatchConfidence).includes(opts.defaultMinConfidence))
      issues.push({
        field: 'defaultMinConfidence',
        reason: `unknown level ${String(opts.defaultMinConfidence)}`,
      });
    if (!(typeof opts.ttlSeconds === 'number' && opts.ttlSeconds > 0))
      issues.push({ field: 'ttlSeconds', reason: `expected seconds > 0, got ${String(opts.ttlSeconds)}` });
    if (!(Number.isInteger(opts.maxEntriesPerScope) && opts.maxEntriesPerScope >= 1))
      issues.push({
        field: 'maxEntriesPerScope',
        reason: `expected an integer >= 1, got ${String(opts.maxEntriesPerScope)}`,
      });
    if (typeof embedder.embed !== 'function' || !(Number.isInteger(embedder.dims) && embedder.dims > 0))
      issues.push({ field: 'embedder', reason: 'expected an Embedder with name, dims and embed()' });
    if (issues.length > 0)
      throw new ConfigError(issues.map((i) => ({ ...i, field: `SemanticCache.${i.field}` })));
    this.opts = opts;
    this.redis = given.redis!;
    this.embedder = embedder;
    this.space = `${embedder.name}/${embedder.dims}`;
    this.lsh = new LshHasher(
      embedder.name,
      embedder.dims,
      given.lsh?.bands ?? LSH_BANDS,
      given.lsh?.rows ?? LSH_ROWS,
    );
    this.base = keyBase(opts.prefix);
    this.log = given.logger ?? silentLogger();
  }

  /** The cosine cut-offs of the levels in force (given, else the embedder's, else the defaults). */
  get thresholds(): Readonly<SemanticThresholds> {
    return this.opts.thresholds;
  }

  /**
   * The stored answer for `prompt` in `scope`: EXACT when the normalised prompt was stored, else the most
   * similar stored prompt at or above `minConfidence` (default: the cache's defaultMinConfidence) that the
   * guard accepts; undefined on a miss. Never rejects because of Redis or the embedder (those are misses);
   * rejects only on a programming error (a scope without a model) or with the signal's reason when
   * `signal` aborts.
   */
  async get(
    prompt: string,
    scope: SemanticScope,
    opts: { minConfidence?: CacheMatchConfidence; signal?: AbortSignal } = {},
  ): Promise<SemanticHit<T> | undefined> {
    const t0 = performance.now();
    try {
      return await this.lookup(prompt, scope, opts);
    } finally {
      this.latency.record(performance.now() - t0);
    }
  }

  /**
   * Stores `value` (as JSON) for `prompt` in `scope` for `ttlSeconds` (default: the cache's). Replaces an
   * entry with the same normalised prompt. Never rejects because of Redis or the embedder (counted in
   * `errors`, logged); rejects on a programming error (no model, ttl <= 0, a value JSON cannot encode).
   */
  async set(
    prompt: string,
    value: T,
    scope: SemanticScope,
    opts: { ttlSeconds?: number } = {},
  ): Promise<void> {
    const ttlSeconds = opts.ttlSeconds ?? this.opts.ttlSeconds;
    if (!(typeof ttlSeconds === 'number' && ttlSeconds > 0))
      throw new TypeError(`SemanticCache.set: ttlSeconds must be > 0, got ${String(ttlSeconds)}`);
    const ttlMs = Math.max(1, Math.round(ttlSeconds * 1000));
    const keys = this.keysFor(scope);
    const json = JSON.stringify(value);
    if (json === undefined) throw new TypeError('SemanticCache.set: value is not JSON-serialisable');
    const id = promptId(normalizePrompt(prompt));

    let vec: Float32Array;
    try {
      vec = await this.embedOne(prompt);
    } catch (err) {
      this.failed('set', err);
      return;
    }
    // A prompt with a control character is matched exactly only: the embedder cannot see those characters,
    // so by meaning it would equal the same prompt without them. Not indexed, it is never a candidate.
    const bands = hasControlChar(prompt) ? [] : (this.lsh.bandValues(vec) ?? []);
    try {
      const [[evicted, expired]] = await Promise.all([
        this.redis.run((r) =>
          commands(r).cell0SemanticSet(
            keys.entry(id),
            keys.lru,
            keys.exp,
            keys.meta,
            keys.vec,
            keys.free,
            keys.next,
            keys.gens,
            id,
            json,
            prompt,
            quantize(vec),
            ttlMs,
            this.opts.maxEntriesPerScope,
            keys.entryPrefix,
            keys.bandPrefix,
            bands.map((b) => b.toString(36)).join(','),
            EXPIRED_CLEANUP,
          ),
        ),
        // Indexes of the scope for invalidate(); each in its own slot, so separate commands.
        this.redis.run((r) =>
          commands(r).cell0SemanticIndex(this.modelIndexKey(scope.model), keys.hash, ttlMs),
        ),
        scope.tenant
          ? this.redis.run((r) =>
              commands(r).cell0SemanticIndex(this.tenantIndexKey(scope.tenant!), keys.hash, ttlMs),
            )
          : undefined,
      ]);
      this.counters.sets++;
      this.counters.evictions += Number(evicted);
      this.counters.expiredRemoved += Number(expired);
      this.recovered();
    } catch (err) {
      this.failed('set', err);
    }
  }

  /**
   * Removes every entry whose scope matches all given fields: `{ model }` = every entry of the model (all
   * tenants, parameters, system prompts), `{ tenant }` = every entry of the tenant, `{ model, tenant }` =
   * both. A full scope (one that has `params`, `system` or `context`) removes exactly that scope. Returns
   * how many live entries were removed. Rejects with the RedisClient's typed errors (RedisUnavailableError,
   * BreakerOpenError) when Redis fails, and with a ValidationError for an empty match. Entries stored
   * while it runs may survive it.
   */
  async invalidate(match: Partial<Pick<SemanticScope, 'model' | 'tenant'>> | SemanticScope): Promise<number> {
    const m = match ?? {};
    const full =
      typeof m.model === 'string' &&
      ((m as SemanticScope).params !== undefined ||
        (m as SemanticScope).system !== undefined ||
        (m as SemanticScope).context !== undefined);
    const model = m.model || undefined;
    const tenant = m.tenant || undefined;
    if (model === undefined && tenant === undefined)
      throw new ValidationError([
        { field: 'match', reason: 'give a model and/or a tenant (or a full scope)' },
      ]);

    let scopes: string[];
    if (full) {
      scopes = [scopeHash(m as SemanticScope, this.space)];
    } else {
      const [byModel, byTenant] = await Promise.all([
        model === undefined ? undefined : this.redis.run((r) => r.smembers(this.modelIndexKey(model))),
        tenant === undefined ? undefined : this.redis.run((r) => r.smembers(this.tenantIndexKey(tenant))),
      ]);
      if (byModel && byTenant) {
        const t = new Set(byTenant);
        scopes = byModel.filter((s) => t.has(s));
      } else scopes = byModel ?? byTenant ?? [];
    }

    let removed = 0;
    for (const hash of scopes) {
      const keys = new ScopeKeys(this.base, hash);
      // One script call per chunk: Redis runs a script alone, so each call stays short.
      for (let round = 0; round < 1_000_000; round++) {
        const [n, left] = await this.redis.run((r) =>
          commands(r).cell0SemanticDrop(
            ...keys.containers(),
            keys.entryPrefix,
            keys.bandPrefix,
            'all',
            CLEAR_CHUNK,
          ),
        );
        removed += Number(n);
        if (Number(left) === 0) break;
      }
    }
    if (scopes.length > 0) {
      await Promise.all([
        model === undefined ? undefined : this.redis.run((r) => r.srem(this.modelIndexKey(model), ...scopes)),
        tenant === undefined
          ? undefined
          : this.redis.run((r) => r.srem(this.tenantIndexKey(tenant), ...scopes)),
      ]);
    }
    this.log.info({ model, tenant, scopes: scopes.length, removed }, 'semantic cache invalidated');
    return removed;
  }

  /**
   * Removes the index records of expired entries in every scope (set() does it lazily, 64 at a time, but
   * only in scopes that are still written to). Run by the fleet's scheduled cleanup job. Walks the model
   * index sets with SCAN, so it costs nothing when there is nothing to clean; at most `maxScopes` scopes
   * per call. Returns the records removed and the scopes visited. Rejects with the RedisClient's typed
   * errors when Redis fails.
   */
  async sweepExpired(opts: { maxScopes?: number } = {}): Promise<{ removed: number; scopes: number }> {
    const maxScopes = opts.maxScopes ?? 10_000;
    const seen = new Set<string>();
    let removed = 0;
    let cursor = '0';
    do {
      const [next, indexKeys] = await this.redis.run((r) =>
        r.scan(cursor, 'MATCH', `${this.base}:model:*`, 'COUNT', 200),
      );
      cursor = next;
      for (const indexKey of indexKeys) {
        const scopes = await this.redis.run((r) => r.smembers(indexKey));
        for (const hash of scopes) {
          if (seen.has(hash) || seen.size >= maxScopes) continue;
          seen.add(hash);
          const keys = new ScopeKeys(this.base, hash);
          for (let round = 0; round < 10_000; round++) {
            const [n, left] = await this.redis.run((r) =>
              commands(r).cell0SemanticDrop(
                ...keys.containers(),
                keys.entryPrefix,
                keys.bandPrefix,
                'expired',
                CLEAR_CHUNK,
              ),
            );
            removed += Number(n);
            if (Number(left) === 0) break;
          }
        }
      }
    } while (cursor !== '0' && seen.size < maxScopes);
    this.counters.expiredRemoved += removed;
    if (removed > 0) this.log.info({ removed, scopes: seen.size }, 'semantic cache: expired records removed');
    return { removed, scopes: seen.size };
  }

  /**
   * Tells the cache a hit was wrong: counts it and removes the entry, so the prompt is answered fresh next
   * time. Never rejects because of Redis (counted in `errors`); rejects with a TypeError for an entry id
   * this cache did not hand out.
   */
  async reportFalseHit(entryId: string): Promise<void> {
    const m = /^([0-9a-f]{32}):(\d{1,16})$/.exec(typeof entryId === 'string' ? entryId : '');
    if (!m) throw new TypeError(`SemanticCache.reportFalseHit: not an entry id: ${String(entryId)}`);
    this.counters.falseHitReports++;
    const keys = new ScopeKeys(this.base, m[1]!);
    try {
      await this.redis.run((r) =>
        commands(r).cell0SemanticDrop(...keys.containers(), keys.entryPrefix, keys.bandPrefix, 'ids', m[2]!),
      );
      this.log.info({ entryId }, 'semantic cache: false hit reported, entry removed');
    } catch (err) {
      this.failed('reportFalseHit', err);
    }
  }

  getStats(): SemanticCacheStats {
    const c = this.counters;
    const hits = c.exactHits + c.high + c.medium + c.low;
    const lookups = hits + c.misses;
    return {
      lookups,
      exactHits: c.exactHits,
      semanticHits: { high: c.high, medium: c.medium, low: c.low },
      misses: c.misses,
      guardRejections: c.guardRejections,
      guardRejectionsByRule: { ...this.rejectedBy },
      falseHitReports: c.falseHitReports,
      sets: c.sets,
      evictions: c.evictions,
      expiredRemoved: c.expiredRemoved,
      errors: c.errors,
      hitRate: lookups === 0 ? 0 : hits / lookups,
      search: {
        count: c.searches,
        meanBandMembersVisited: c.searches === 0 ? 0 : Math.round(c.visited / c.searches),
        meanDistinctCandidates: c.searches === 0 ? 0 : Math.round(c.distinct / c.searches),
      },
      latency: this.latency.summary(),
    };
  }

  /** The entry id of a stored prompt (for tests and tools): scope hash and prompt id. */
  entryIdOf(prompt: string, scope: SemanticScope): string {
    return `${scopeHash(scope, this.space)}:${promptId(normalizePrompt(prompt))}`;
  }

  private async lookup(
    prompt: string,
    scope: SemanticScope,
    opts: { minConfidence?: CacheMatchConfidence; signal?: AbortSignal },
  ): Promise<SemanticHit<T> | undefined> {
    const signal = opts.signal;
    signal?.throwIfAborted();
    // Control characters are invisible to the embedder: such a prompt is answered by its exact entry only.
    const minConfidence = hasControlChar(prompt)
      ? CacheMatchConfidence.EXACT
      : (opts.minConfidence ?? this.opts.defaultMinConfidence);
    const keys = this.keysFor(scope);
    const normalized = normalizePrompt(prompt);
    const id = promptId(normalized);

    // 1. Exact, then (on a miss) the query's band buckets. With the in-process embedder the embedding
    // costs ~20 µs, so it is computed up front and one script does both steps in one round trip (it reads
    // the buckets only when the exact key misses). A remote embedder is called only after an exact miss.
    const oneTrip = this.embedder.inProcess === true && minConfidence !== CacheMatchConfidence.EXACT;
    let vec: Float32Array | undefined;
    let bands: number[] | undefined;
    let suffixes: string[] | undefined;
    let buckets: (Buffer | null)[] | undefined;
    let queryKeys: string[] = [];
    const readBuckets = (exactFirst: boolean, bandSuffixes: string[]) =>
      this.redis.run((r) =>
        commands(r).cell0SemanticLookupBuffer(
          keys.entry(id),
          keys.lru,
          keys.gens,
          id,
          exactFirst ? '1' : '0',
          keys.bandPrefix,
          MAX_GENERATIONS,
          ...bandSuffixes,
        ),
      );
    /** A reply without an exact hit: the generations read, then their buckets (generation-major). */
    const takeBuckets = (reply: (number | Buffer | null)[], bandSuffixes: string[]) => {
      const gens = String(reply[1] ?? '')
        .split(',')
        .filter((g) => g.length > 0);
      queryKeys = gens.flatMap((g) => bandSuffixes.map((sfx) => `${keys.bandPrefix}${g}:${sfx}`));
      return reply.slice(2) as (Buffer | null)[];
    };
    if (oneTrip) {
      vec = await this.embedOne(prompt, signal);
      bands = this.lsh.bandValues(vec);
      suffixes = bands?.map((v, i) => bandSuffix(i, v));
    }
    if (suffixes) {
      const lookupSuffixes = suffixes;
      let reply: [number, ...(Buffer | null)[]];
      try {
        reply = await readBuckets(true, lookupSuffixes);
      } catch (err) {
        return this.failed('get', err);
      }
      this.recovered();
      if (Number(reply[0]) === 1) {
        const row = (reply.slice(1, 4) as (Buffer | null)[]).map((b) => (b ? b.toString('utf8') : '')) as [
          string,
          string,
          string,
        ];
        if (normalizePrompt(row[1]) === normalized) {
          const hit = this.hit(row, keys.hash, id, CacheMatchConfidence.EXACT, 1);
          if (hit) return hit;
        }
        // a prompt-id collision: read the buckets below
      } else buckets = takeBuckets(reply, lookupSuffixes);
    } else {
      let row: [string, string, string] | null;
      try {
        row = await this.redis.run((r) => commands(r).cell0SemanticFetch(keys.entry(id), keys.lru, id));
      } catch (err) {
        return this.failed('get', err);
      }
      this.recovered();
      if (row && normalizePrompt(row[1]) === normalized) {
        const hit = this.hit(row, keys.hash, id, CacheMatchConfidence.EXACT, 1);
        if (hit) return hit;
      }
    }
    if (minConfidence === CacheMatchConfidence.EXACT) return this.miss();
    const threshold = thresholdOf(minConfidence, this.opts.thresholds);

    // 2. Similar: candidates by shared LSH bands, re-ranked by cosine.
    if (!vec) {
      try {
        vec = await this.embedOne(prompt, signal);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        return this.failed('get', err);
      }
      signal?.throwIfAborted();
      bands = this.lsh.bandValues(vec);
    }
    if (!bands) return this.miss();
    if (!buckets) {
      const bandSuffixes = suffixes ?? bands.map((v, i) => bandSuffix(i, v));
      try {
        buckets = takeBuckets(await readBuckets(false, bandSuffixes), bandSuffixes);
      } catch (err) {
        return this.failed('get', err);
      }
    }
    const { ranked, visited, distinct } = rankSlots(buckets, bands.length, RANKED);
    this.counters.searches++;
    this.counters.visited += visited;
    this.counters.distinct += distinct;
    if (ranked.length === 0) return this.miss();
    let records: Buffer[];
    try {
      records = await this.redis.run((r) =>
        commands(r).cell0SemanticCandidatesBuffer(
          5 + queryKeys.length,
          keys.vec,
          keys.lru,
          keys.exp,
          keys.meta,
          keys.free,
          ...queryKeys,
          keys.entryPrefix,
          keys.bandPrefix,
          ranked.length,
          CANDIDATES,
          STALE_CLEANUP,
          ...ranked,
        ),
      );
    } catch (err) {
      return this.failed('get', err);
    }
    const candidates: Candidate[] = [];
    for (const rec of records) {
      const c = parseRecord(rec, this.embedder.dims);
      if (!c || c.id === id) continue; // a prompt-id collision with a different prompt: not this one
      if (hasControlChar(c.prompt)) continue; // stored before such prompts were left out of the bands
      candidates.push({
        id: c.id,
        prompt: c.prompt,
        similarity: Math.min(1, cosineQuantized(vec, c.vector)),
      });
    }
    candidates.sort((a, b) => b.similarity - a.similarity);

    let analysis: PromptAnalysis | undefined;
    let refusals = 0;
    for (const c of candidates) {
      if (c.similarity < threshold) break;
      // The exact key keeps layout apart (indentation, line breaks: code); words alone must not join it.
      if (layoutOnlyDifference(normalized, normalizePrompt(c.prompt))) continue;
      if (this.opts.guard) {
        analysis ??= analyzePrompt(prompt);
        const reason = compareAnalyses(analysis, analyzePrompt(c.prompt));
        if (reason !== undefined) {
          this.counters.guardRejections++;
          const rule = ruleOf(reason);
          this.rejectedBy[rule] = (this.rejectedBy[rule] ?? 0) + 1;
          this.log.debug({ reason, similarity: c.similarity }, 'semantic cache: guard refused a candidate');
          if (++refusals >= GUARD_TRIES) break;
          continue;
        }
      }
      let found: [string, string, string] | null;
      try {
        found = await this.redis.run((r) => commands(r).cell0SemanticFetch(keys.entry(c.id), keys.lru, c.id));
      } catch (err) {
        return this.failed('get', err);
      }
      if (!found) continue; // expired between the two calls
      const level = confidenceOf(c.similarity, this.opts.thresholds)!;
      const hit = this.hit(found, keys.hash, c.id, level, c.similarity);
      if (hit) return hit;
    }
    return this.miss();
  }

  private hit(
    row: [string, string, string],
    hash: string,
    id: string,
    confidence: CacheMatchConfidence,
    similarity: number,
  ): SemanticHit<T> | undefined {
    let value: T;
    try {
      value = JSON.parse(row[0]) as T;
    } catch (err) {
      this.counters.errors++;
      this.log.warn({ err, entryId: `${hash}:${id}` }, 'semantic cache: unreadable entry');
      return undefined;
    }
    switch (confidence) {
      case CacheMatchConfidence.EXACT:
        this.counters.exactHits++;
        break;
      case CacheMatchConfidence.HIGH:
        this.counters.high++;
        break;
      case CacheMatchConfidence.MEDIUM:
        this.counters.medium++;
        break;
      case CacheMatchConfidence.LOW:
        this.counters.low++;
        break;
    }
    return {
      value,
      confidence,
      similarity: Math.round(similarity * 1e4) / 1e4,
      entryId: `${hash}:${id}`,
      prompt: row[1],
      storedAt: Number(row[2]),
    };
  }

  private miss(): undefined {
    this.counters.misses++;
    return undefined;
  }

  /** A Redis or embedder failure: counted, logged once per outage, answered as a miss. */
  private failed(op: string, err: unknown): undefined {
    this.counters.errors++;
    if (op === 'get') this.counters.misses++;
    if (!this.degraded) {
      this.degraded = true;
      this.log.warn({ err, op }, 'semantic cache degraded: answering misses until Redis answers again');
    } else this.log.debug({ err, op }, 'semantic cache: failure');
    return undefined;
  }

  private recovered(): void {
    if (this.degraded) {
      this.degraded = false;
      this.log.info('semantic cache: Redis answers again');
    }
  }

  private async embedOne(text: string, signal?: AbortSignal): Promise<Float32Array> {
    const [v] = await this.embedder.embed([text], signal);
    if (!(v instanceof Float32Array) || v.length !== this.embedder.dims)
      throw new TypeError(`embedder "${this.embedder.name}" returned no ${this.embedder.dims}-dim vector`);
    return v;
  }

  private keysFor(scope: SemanticScope): ScopeKeys {
    return new ScopeKeys(this.base, scopeHash(scope, this.space));
  }

  private modelIndexKey(model: string): string {
    return `${this.base}:model:{m-${shortHash(model)}}`;
  }

  private tenantIndexKey(tenant: string): string {
    return `${this.base}:tenant:{t-${shortHash(tenant)}}`;
  }
}

/** True when two normalised prompts differ, but only in white space: a layout the exact key keeps. */
function layoutOnlyDifference(a: string, b: string): boolean {
  return a !== b && a.replace(/\s+/g, '') === b.replace(/\s+/g, '');
}

/** The rule of a guard refusal ("number: [2] vs [3]" → "number"): a bounded name, never the prompts' words. */
function ruleOf(reason: string): string {
  const i = reason.indexOf(':');
  return i > 0 && i <= 16 ? reason.slice(0, i) : 'other';
}
