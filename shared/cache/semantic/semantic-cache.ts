import { performance } from 'node:perf_hooks';
import { LatencyWindow } from '../../latency.js';
import { silentLogger, type Logger } from '../../logger.js';
import { type RedisConnection } from '../../redis/cluster.js';
import { type RedisClient } from '../../redis/redis-client.js';
import { hasControlChar } from '../../unicode.js';
import { CacheMatchConfidence, confidenceOf, thresholdOf, type SemanticThresholds } from './confidence.js';
import { type Embedder } from './embedder.js';
import { analyzePrompt, compareAnalyses, type PromptAnalysis } from './guard.js';
import { LastScope } from './last-scope.js';
import { LookupBatcher, MIRRORED, RecordReader, type LookupReply } from './lookup-batch.js';
import { EXPIRY_MARGIN_MS, expiryOf, NOT_KEPT, type LookupRecords } from './lookup-records.js';
import { HashedFeatureEmbedder } from './hashed-features.js';
import { LexicalEmbedder } from './lexical-embedder.js';
import { preloadLexicon } from './lexicon.js';
import { LSH_BANDS, LSH_ROWS, LshHasher } from './lsh.js';
import { rankSlots, recordText } from './rank-slots.js';
import {
  bandFields,
  keyBase,
  promptId,
  ScopeKeys,
  scopeHash,
  scopeKeysOf,
  type SemanticScope,
} from './scope.js';
import {
  resolveOptions,
  type Resolved,
  type SemanticCacheOptions,
  type SemanticCacheStats,
  type SemanticHit,
} from './semantic-cache-options.js';
import {
  countLiveEntries,
  invalidateScopes,
  modelIndexKey,
  sweepExpiredScopes,
  tenantIndexKey,
  type MaintenanceContext,
} from './semantic-maintenance.js';
import {
  CANDIDATES,
  commands,
  GUARD_TRIES,
  RANKED,
  SLOT_HOLD_MS,
  STALE_CLEANUP,
} from './semantic-scripts.js';
import { SemanticCounters } from './semantic-counters.js';
import { SemanticWriter } from './semantic-writer.js';
import { type BandMirror } from './semantic-mirror.js';
import { SemanticLocalState } from './local-state.js';
import { hitFrom, layoutOnlyDifference } from './semantic-hit.js';
import { PromptMemo, type PreparedPrompt } from './prompt-memo.js';
import { normalizePrompt } from './text.js';
import { cosineStoredAt, cosineStoredKnown, squaredNorm, storedQuantized } from './vector-codec.js';

export type { SemanticCacheOptions, SemanticCacheStats, SemanticHit } from './semantic-cache-options.js';
export { parseRecord, rankSlots } from './rank-slots.js';

/**
 * The lookup's small pieces below build their arrays in loops: arrays that an inlined map()/filter() made
 * had another hidden class than the one the code after them had seen, so V8 threw the optimised lookup
 * away ("wrong map") and compiled it again, ~40 ms of compile threads, during steady-state lookups.
 */

/** An exact hit's entry (value, prompt, metadata) from the lookup script's reply, as strings. */
function entryRow(reply: readonly (number | Buffer | null)[]): [string, string, string] {
  return [utf8Of(reply[1]), utf8Of(reply[2]), utf8Of(reply[3])];
}

function utf8Of(b: number | Buffer | null | undefined): string {
  return b instanceof Buffer ? b.toString('utf8') : '';
}

/** The band keys' prefixes of the generations a lookup script read ("g1,g2": comma-separated). */
function generationKeys(bandPrefix: string, gens: number | Buffer | null | undefined): string[] {
  const out: string[] = [];
  const text = gens == null ? '' : String(gens);
  let from = 0;
  while (from <= text.length) {
    let to = text.indexOf(',', from);
    if (to < 0) to = text.length;
    if (to > from) out.push(bandPrefix + text.slice(from, to));
    from = to + 1;
  }
  return out;
}

/**
 * The candidate record semantic-set.lua writes for an entry (its vec hash's value): expiry (15 digits, ms),
 * id, LF, stored vector, prompt.
 */
function ownRecord(expiresAt: number, id: string, vector: Buffer, prompt: string): Buffer {
  const head = `${String(expiresAt).padStart(15, '0')}${id}\n`;
  const headLen = head.length;
  const rec = Buffer.allocUnsafe(headLen + vector.length + Buffer.byteLength(prompt, 'utf8'));
  rec.write(head, 0, 'latin1');
  vector.copy(rec, headLen);
  rec.write(prompt, headLen + vector.length, 'utf8');
  return rec;
}

/**
 * Where a candidate record's first line (expiry, id) ends: the first LF from byte 15 on, or -1. A loop, not
 * Buffer.indexOf: the native call's checks cost more than the ~15 bytes it scans (24 records per lookup).
 */
function lineEnd(rec: Buffer): number {
  for (let k = 15; k < rec.length; k++) if (rec[k] === 10) return k;
  return -1;
}

/** Similarity searches the hit share (SemanticCache.hitShare) averages over, roughly. */
const HIT_SHARE_WINDOW = 32;
/** The hit share from which the candidates script reads the likeliest answer's entry along (1 in 16). */
const LIKELIEST_SHARE = 1 / 16;
const EMPTY = Buffer.alloc(0);

/** An entry as the scripts return it: value JSON, prompt, stored at. */
type EntryRow = [string, string, string];

interface Candidate {
  id: string;
  prompt: string;
  similarity: number;
}

/** A candidate record at or above the lookup's threshold: its place among the candidates, where its vector starts. */
interface Passed {
  i: number;
  rec: Buffer;
  from: number;
  similarity: number;
}

/** The candidates script's reply layout without records (four empty fields): the lookup scored kept or read ones. */
const EMPTY_RECORDS: Buffer[] = [EMPTY, EMPTY, EMPTY, EMPTY];

/**
 * A cache of model outputs that also answers prompts that mean the same as a stored one, on plain Redis
 * (no modules; Redis Cluster and Valkey work: every multi-key script touches one scope's slot).
 *
 * get(): the exact key first (scope hash + normalised prompt → EXACT). On a miss, the prompt is embedded and
 * hashed into LSH bands (lsh.ts); the query's band buckets are taken from this process's mirror of the
 * scope's buckets (semantic-mirror.ts: Redis keeps none; the lookup script call returns the band stream
 * entries the mirror has not applied yet), Node counts the band collisions per slot (rankSlots), a Lua script returns the records (int8 vector, prompt) of the top
 * slots whose entries are alive (and the entry of the first, the best by shared bands), Node re-ranks them
 * by exact cosine, and the most similar one above the threshold that the guard (guard.ts) accepts is
 * answered: with the entry that came along when it is that first one (then marked used without waiting),
 * else fetched. With an in-process embedder (the default) the embedding is computed up front and one script
 * reads the exact key and, only if it misses, the band stream's new entries: two round trips on a miss, two on a similarity
 * hit (three when its answer was not the best by shared bands: 5% at 100k entries in bench:semantic), one
 * on an exact hit (a remote embedder is called only after an exact miss: one more; at minConfidence EXACT one
 * round trip, the lookups of one turn in one call that reads their exact entries only). While similarity hits
 * are rare (under 1 in 16 of the recent searches: unique prompts), the candidate records are read with a
 * plain HMGET instead of the script, ~2 µs of Redis time instead of ~28 (the script moves every record
 * through Lua), and a hit then costs one more call; the answers are the same (the script still reads them
 * whenever one of those records is missing or expiring). The lookups started within one turn of the event
 * loop share one lookup script call, and their candidate records' HMGETs of a scope one HMGET (lookup-batch.ts).
 * Redis and embedder failures become misses (counted in `errors`);
 * with Redis down the breaker answers in microseconds.
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
  /** The last prompts' normal form, id, embedding and bands: a store after a lookup reuses them. */
  private readonly memo: PromptMemo;
  /** The keys of the scopes met lately, by canonical form (scope.ts scopeKeysOf). */
  private readonly scopes = new Map<string, ScopeKeys>();
  /** The keys of the scope met last (most lookups and stores of a process are in one scope). */
  private readonly lastScope = new LastScope();
  /** Sends stores to Redis, those of one scope that arrive together in one script call. */
  private readonly writer: SemanticWriter;
  /** Sends the lookups of one event-loop turn in one script call. */
  private readonly lookups: LookupBatcher;
  /** The band buckets of the scopes looked up in, kept in step through their band streams. */
  private readonly mirror: BandMirror;
  /** Reads the candidate records of one event-loop turn's lookups of a scope with one HMGET. */
  private readonly records: RecordReader;
  /** The candidate records read lately: a lookup reads only those it has not (lookup-records.ts). */
  private readonly kept: LookupRecords;
  private degraded = false;
  private readonly counters = new SemanticCounters();
  /**
   * The share of the recent similarity searches (a moving average over ~HIT_SHARE_WINDOW) that answered a
   * hit: at LIKELIEST_SHARE or more, the candidates script brings the likeliest answer's entry along.
   */
  private hitShare = 1;

  constructor(options: SemanticCacheOptions) {
    const { opts, embedder } = resolveOptions(options);
    const given = options;
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
    this.memo = PromptMemo.of(embedder, `${this.lsh.bands}x${this.lsh.rows}`);
    this.base = keyBase(opts.prefix);
    this.log = given.logger ?? silentLogger();
    // the mirrors and kept records: this cache's own, or those it shares with other caches of the process
    const local = given.localState ?? new SemanticLocalState();
    this.mirror = local.mirrorFor(
      this.redis,
      this.lsh.bands,
      this.lsh.rows,
      `${this.base} ${this.space} ${this.lsh.bands}x${this.lsh.rows}`,
    );
    this.kept = local.records;
    this.writer = new SemanticWriter(this.redis, opts.maxEntriesPerScope, given.writeBatching, this.mirror);
    this.lookups = new LookupBatcher(this.redis, this.mirror);
    this.records = new RecordReader(this.redis);
    // The guard and the default embedder read the lexicon (~70k words): read it now, off the first lookup.
    if (opts.guard || embedder instanceof LexicalEmbedder) preloadLexicon();
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
   * `onSent` is called once the entry's write has been handed to the Redis connection, or the store ended
   * without one (it may be called more than once): a command sent after that, on any connection to the same
   * Redis, runs after the write, so a caller can answer (complete a job) then without waiting for the reply.
   * On a Redis Cluster `onSent` waits for the reply: the entry's master is not the one the job completes on,
   * and nothing orders commands to two masters.
   * `connection`: another connection to the same Redis (a worker's queue connection, which completes the
   * job the answer came from) that the store's script call goes on while it is ready, instead of the cache's
   * own: the call then leaves in the same socket write as the commands issued on it behind it in this turn
   * of the event loop (the job's completion), one system call and one Redis read instead of one on each
   * connection. The call still goes through the cache's breaker; when that connection is not ready, the
   * cache's own (fail-fast) connection is used.
   */
  async set(
    prompt: string,
    value: T,
    scope: SemanticScope,
    opts: { ttlSeconds?: number; onSent?: () => void; connection?: RedisConnection } = {},
  ): Promise<void> {
    try {
      await this.store(prompt, value, scope, opts.ttlSeconds, opts.onSent, opts.connection);
    } finally {
      opts.onSent?.();
    }
  }

  private async store(
    prompt: string,
    value: T,
    scope: SemanticScope,
    ttl: number | undefined,
    onSent: (() => void) | undefined,
    connection: RedisConnection | undefined,
  ): Promise<void> {
    const ttlSeconds = ttl ?? this.opts.ttlSeconds;
    if (!(typeof ttlSeconds === 'number' && ttlSeconds > 0))
      throw new TypeError(`SemanticCache.set: ttlSeconds must be > 0, got ${String(ttlSeconds)}`);
    const ttlMs = Math.max(1, Math.round(ttlSeconds * 1000));
    const keys = this.keysFor(scope);
    const json = JSON.stringify(value);
    if (json === undefined) throw new TypeError('SemanticCache.set: value is not JSON-serialisable');
    const prepared = this.memo.get(prompt);
    const id = prepared.id;

    // Not indexed (options.index false, or a prompt with a control character: the embedder cannot see those
    // characters, so by meaning it would equal the same prompt without them), an entry is matched exactly
    // only: it is never a candidate. Without the index its store needs no embedding either.
    let bands: number[] | undefined;
    let vector: Buffer = EMPTY;
    if (this.opts.index) {
      let vec: Float32Array;
      try {
        vec = this.embedNow(prepared, prompt) ?? (await this.embedPrepared(prepared, prompt));
      } catch (err) {
        this.failed('set', err);
        return;
      }
      bands = hasControlChar(prompt) ? undefined : this.bandsOf(prepared, vec);
      vector = prepared.quantized ??= storedQuantized(vec, prepared.nonZero);
    }
    try {
      const { evicted, expired, slot, expiresAt, sentAt } = await this.writer.store({
        keys,
        id,
        json,
        prompt,
        vector,
        ttlMs,
        // the lookup's band fields when it built them (the memo): the same string, not made again
        fields: bands ? (prepared.fields ??= bandFields(bands)) : '',
        bands,
        indexKeys: () =>
          scope.tenant
            ? [this.modelIndexKey(scope.model), this.tenantIndexKey(scope.tenant)]
            : [this.modelIndexKey(scope.model)],
        ...(onSent ? { sent: onSent } : {}),
        ...(connection ? { connection } : {}),
      });
      // The candidate record the store wrote, as a read of it would return it: kept as read by the store's
      // call, so a lookup of this process that ranks the new entry among its candidates does not read it.
      if (slot >= 0 && bands)
        this.kept.keep(keys.vec, slot, ownRecord(expiresAt, id, vector, prompt), sentAt, false);
      this.counters.sets++;
      this.counters.evictions += evicted;
      this.counters.expiredRemoved += expired;
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
  invalidate(match: Partial<Pick<SemanticScope, 'model' | 'tenant'>> | SemanticScope): Promise<number> {
    return invalidateScopes(this.maintenance(), match);
  }

  /**
   * Removes the index records of expired entries in every scope (set() does it lazily, 64 at a time, but
   * only in scopes that are still written to). Run by the fleet's scheduled cleanup job. Walks the model
   * index sets with SCAN, so it costs nothing when there is nothing to clean; at most `maxScopes` scopes
   * per call. Returns the records removed and the scopes visited. Rejects with the RedisClient's typed
   * errors when Redis fails.
   */
  /** Live entries over every scope (see countLiveEntries); rejects when Redis fails. */
  size(): Promise<number> {
    return countLiveEntries(this.maintenance());
  }

  async sweepExpired(opts: { maxScopes?: number } = {}): Promise<{ removed: number; scopes: number }> {
    const out = await sweepExpiredScopes(this.maintenance(), opts);
    this.counters.expiredRemoved += out.removed;
    return out;
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
        commands(r).cell0SemanticDrop(
          ...keys.containers(),
          keys.entryPrefix,
          keys.bandPrefix,
          'ids',
          SLOT_HOLD_MS,
          m[2]!,
        ),
      );
      this.log.info({ entryId }, 'semantic cache: false hit reported, entry removed');
    } catch (err) {
      this.failed('reportFalseHit', err);
    }
  }

  getStats(): SemanticCacheStats {
    return this.counters.stats(this.latency.summary());
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
    const prepared = this.memo.prepare(prompt);
    const { normalized, id } = prepared;

    // 1. Exact, then (on a miss) the query's band buckets. With the in-process embedder the embedding
    // costs ~20 µs, so it is computed up front and one script does both steps in one round trip (it reads
    // the band stream only when the exact key misses). A remote embedder is called only after an exact miss.
    const oneTrip = this.embedder.inProcess === true && minConfidence !== CacheMatchConfidence.EXACT;
    let vec: Float32Array | undefined;
    let bands: number[] | undefined;
    /** The query's band fields ("index:value", comma-separated): one script argument, not one per band. */
    let fields: string | undefined;
    let buckets: (Buffer | Int32Array | readonly number[] | null)[] | undefined;
    /** The generations the lookup script read (its reply's second field): their keys only if the script needs them. */
    let gens: number | Buffer | null | undefined;
    const readBuckets = (exactFirst: boolean, bandFields: string) =>
      this.readLookup(keys, keys.entry(id), id, exactFirst, bandFields);
    /**
     * A reply without an exact hit: the generations it listed, and the mirror's buckets (caught up by the
     * reply) of the query's bands in those generations.
     */
    const takeBuckets = (reply: LookupReply): (Buffer | Int32Array | readonly number[] | null)[] => {
      gens = reply[1];
      // not MIRRORED: the mirror fell behind twice in a row (nothing to rank: a miss)
      return reply[3] === MIRRORED
        ? [this.mirror.buckets(keys, bands ?? [], gens ? gens.toString('latin1') : '')]
        : [];
    };
    if (oneTrip) {
      vec = this.embedNow(prepared, prompt) ?? (await this.embedPrepared(prepared, prompt, signal));
      bands = this.bandsOf(prepared, vec);
      fields = bands && (prepared.fields ??= bandFields(bands));
    }
    // Exact matches only (no band fields to send): the lookups of one event-loop turn share one script call,
    // which reads their exact entries and nothing else (no mirror position).
    const exactOnly = !fields && minConfidence === CacheMatchConfidence.EXACT;
    if (fields || exactOnly) {
      let reply: LookupReply;
      try {
        reply = fields
          ? await readBuckets(true, fields)
          : await this.lookups.read({
              keys,
              entryKey: keys.entry(id),
              id,
              exactFirst: true,
              fields: '',
              since: '',
            });
      } catch (err) {
        return this.failed('get', err);
      }
      this.recovered();
      if (Number(reply[0]) === 1) {
        const row = entryRow(reply);
        if (normalizePrompt(row[1]) === normalized) {
          const hit = this.hit(row, keys.hash, id, CacheMatchConfidence.EXACT, 1);
          if (hit) return hit;
        }
        // a prompt-id collision: read the buckets below (an exact-only lookup misses)
      } else if (fields) buckets = takeBuckets(reply);
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
    if (minConfidence === CacheMatchConfidence.EXACT) return this.miss(prompt, prepared);
    const threshold = thresholdOf(minConfidence, this.opts.thresholds);

    // 2. Similar: candidates by shared LSH bands, re-ranked by cosine.
    if (!vec) {
      try {
        vec = await this.embedPrepared(prepared, prompt, signal);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        return this.failed('get', err);
      }
      signal?.throwIfAborted();
      bands = this.bandsOf(prepared, vec);
    }
    if (!bands) return this.miss(prompt, prepared);
    if (!buckets) {
      fields ??= prepared.fields ??= bandFields(bands);
      try {
        buckets = takeBuckets(await readBuckets(false, fields));
      } catch (err) {
        return this.failed('get', err);
      }
    }
    const { ranked, visited, distinct } = rankSlots(buckets, bands.length, RANKED);
    this.counters.searches++;
    this.counters.visited += visited;
    this.counters.distinct += distinct;
    if (ranked.length === 0) return this.miss(prompt, prepared);
    // While similarity hits are rare, the candidate records are read with a plain HMGET (~2 µs of Redis
    // time against ~28 µs for the script, which moves each record through Lua): the same records whenever
    // the first CANDIDATES slots all hold live ones, else the script reads them (spares, cleanup). The
    // script's ride-along entry of the likeliest answer is then missing: a hit costs one more call (fetch).
    // The reads of one turn's lookups of the scope go as one HMGET (RecordReader).
    const likely = this.hitShare >= LIKELIEST_SHARE;
    const nq = squaredNorm(vec, prepared.nonZero);
    const dims = this.embedder.dims;
    let records: Buffer[] | undefined;
    /**
     * The candidates (by their place in `ranked`) at or above the threshold, in that order: the kept
     * records' scored first, each from its scope's arena (LookupRecords.score), the ones read after.
     */
    let passed: Passed[] | undefined;
    if (!likely) {
      // The records read lately are used as they are (live: LookupRecords keeps them only while they are);
      // only the others are read (one HMGET for the turn), and when one of those is missing or (nearly)
      // expired, the script reads them all (it takes spares and cleans up).
      const n = Math.min(ranked.length, CANDIDATES);
      // made only when a record is not kept (~4% of bench:http's candidates)
      let missing: string[] | undefined;
      let at: number[] | undefined;
      const now = Date.now();
      for (let i = 0; i < n; i++) {
        const similarity = this.kept.score(keys.vec, ranked[i]!, now, vec, nq, dims);
        if (similarity === NOT_KEPT) {
          (missing ??= []).push(String(ranked[i]));
          (at ??= []).push(i);
        } else if (!(similarity < threshold)) {
          const k = this.kept.find(keys.vec, ranked[i]!, now)!;
          (passed ??= []).push({ i, rec: k.rec, from: k.vectorOf(dims), similarity });
        }
      }
      records = EMPTY_RECORDS;
      if (missing !== undefined && at !== undefined) {
        let read: (Buffer | null)[];
        const sentAt = Date.now();
        try {
          read = await this.records.read(keys.vec, missing);
        } catch (err) {
          return this.failed('get', err);
        }
        const live = Date.now() + EXPIRY_MARGIN_MS;
        for (let j = 0; j < at.length; j++) {
          const rec = read[j];
          if (!rec || !(expiryOf(rec) > live)) {
            records = undefined;
            passed = undefined;
            break;
          }
          const known = this.kept.keep(keys.vec, ranked[at[j]!]!, rec, sentAt);
          let from: number;
          let similarity: number;
          if (known !== undefined) {
            from = known.vectorOf(dims);
            similarity =
              from < 0 ? -1 : Math.min(1, cosineStoredKnown(vec, nq, known.rec, from, known.len, known.ns));
          } else {
            const nl = lineEnd(rec);
            if (nl < 0) continue;
            from = nl + 1;
            similarity = Math.min(1, cosineStoredAt(vec, nq, rec, from));
          }
          if (!(similarity < threshold))
            (passed ??= []).push({ i: at[j]!, rec: known?.rec ?? rec, from, similarity });
        }
        // in candidate order, as one pass over them all would have met them
        if (passed !== undefined && passed.length > 1) passed.sort((a, b) => a.i - b.i);
      }
    }
    if (!records) {
      try {
        const queryKeys = generationKeys(keys.bandPrefix, gens);
        records = await this.redis.run((r) =>
          commands(r).cell0SemanticCandidatesBuffer(
            6 + queryKeys.length,
            keys.vec,
            keys.lru,
            keys.exp,
            keys.meta,
            keys.free,
            keys.stream,
            ...queryKeys,
            keys.entryPrefix,
            keys.bandPrefix,
            ranked.length,
            CANDIDATES,
            STALE_CLEANUP,
            fields ?? bandFields(bands),
            ranked.join(','),
            // the best by shared bands is the answer of most similarity hits: its entry comes along
            likely ? '1' : '0',
          ),
        );
      } catch (err) {
        return this.failed('get', err);
      }
      // the script's records (from records[4] on), scored in turn
      for (let i = 4; i < records.length; i++) {
        const rec = records[i]!;
        const nl = lineEnd(rec);
        if (nl < 0) continue;
        // -1 for a record without a readable vector: below every threshold
        const similarity = Math.min(1, cosineStoredAt(vec, nq, rec, nl + 1));
        if (!(similarity < threshold)) (passed ??= []).push({ i, rec, from: nl + 1, similarity });
      }
    }
    // Only candidates at or above the threshold are decoded (id, prompt): the others are never used, and
    // at 100k entries most of the 24 fall below it.
    const candidates: Candidate[] = [];
    const likeliest = records[0] && records[0].length > 0 ? records[0].toString('latin1') : undefined;
    if (passed !== undefined)
      for (let p = 0; p < passed.length; p++) {
        const { rec, from, similarity } = passed[p]!;
        const c = recordText(rec, from, dims);
        if (!c || c.id === id) continue; // a prompt-id collision with a different prompt: not this one
        if (hasControlChar(c.prompt)) continue; // stored before such prompts were left out of the bands
        // Kept most similar first as they come, equal ones in arrival order, as a stable sort would put them
        // (without the copy Array.prototype.sort makes).
        const next: Candidate = { id: c.id, prompt: c.prompt, similarity };
        let k = candidates.length;
        candidates.push(next);
        for (; k > 0 && candidates[k - 1]!.similarity < similarity; k--) candidates[k] = candidates[k - 1]!;
        candidates[k] = next;
      }

    let analysis: PromptAnalysis | undefined;
    let refusals = 0;
    for (const c of candidates) {
      // The exact key keeps layout apart (indentation, line breaks: code); words alone must not join it.
      if (layoutOnlyDifference(normalized, normalizePrompt(c.prompt))) continue;
      if (this.opts.guard) {
        analysis ??= analyzePrompt(prompt);
        const reason = compareAnalyses(analysis, analyzePrompt(c.prompt));
        if (reason !== undefined) {
          this.counters.guardRejected(reason);
          this.log.debug({ reason, similarity: c.similarity }, 'semantic cache: guard refused a candidate');
          if (++refusals >= GUARD_TRIES) break;
          continue;
        }
      }
      // The same call for both answers (see entryOf); only a fetched one is awaited.
      const got = this.entryOf(keys, c.id, c.id === likeliest ? records : undefined);
      let found: EntryRow | null;
      if (Array.isArray(got)) found = got;
      else
        try {
          found = await got;
        } catch (err) {
          return this.failed('get', err);
        }
      if (!found) continue; // expired between the two calls
      const level = confidenceOf(c.similarity, this.opts.thresholds)!;
      const hit = this.hit(found, keys.hash, c.id, level, c.similarity);
      if (hit) {
        this.hitShare += (1 - this.hitShare) / HIT_SHARE_WINDOW;
        return hit;
      }
    }
    this.hitShare -= this.hitShare / HIT_SHARE_WINDOW;
    return this.miss(prompt, prepared);
  }

  /**
   * One lookup script call (batched with the turn's others, lookup-batch.ts) with the scope's mirror of the
   * band buckets caught up by it: built first when the scope has none (the first lookup in a scope waits for
   * it), and when the call says the mirror fell behind (its last stream entry was trimmed), rebuilt and the
   * call made once more. Rejects when Redis fails.
   */
  private async readLookup(
    keys: ScopeKeys,
    entryKey: string,
    id: string,
    exactFirst: boolean,
    fields: string,
  ): Promise<LookupReply> {
    for (let attempt = 0; ; attempt++) {
      let since = this.mirror.since(keys);
      if (since === undefined) {
        await this.mirror.build(keys, this.redis);
        since = this.mirror.since(keys) ?? '';
      }
      const reply = await this.lookups.read({ keys, entryKey, id, exactFirst, fields, since });
      if (attempt > 0 || Number(reply[0]) === 1 || reply[3] === MIRRORED) return reply;
    }
  }

  /**
   * The entry of the candidate that answers a similarity hit: the one the candidates script read along when
   * `records` is given (then marked used now, without waiting: the next command on the connection runs after
   * it), else a promise of it fetched. One method for both, called from one place in lookup(): the fetch
   * (5% of the similarity hits at 100k entries in bench:semantic) sat in lookup() as code of its own, and the
   * first one after lookup() was optimised threw that code away ("insufficient type feedback"), so lookup()
   * started over towards its TurboFan compile (~30-75 ms of a compile thread), which then fell among the
   * bench's measured lookups.
   */
  private entryOf(
    keys: ScopeKeys,
    id: string,
    records: readonly Buffer[] | undefined,
  ): EntryRow | Promise<EntryRow | null> {
    if (records === undefined)
      return this.redis.run((r) => commands(r).cell0SemanticFetch(keys.entry(id), keys.lru, id));
    this.redis
      .run((r) => commands(r).cell0SemanticTouch(keys.lru, id))
      .catch((err: unknown) => this.failed('touch', err));
    return [records[1]!.toString('utf8'), records[2]!.toString('utf8'), records[3]!.toString('latin1')];
  }

  private hit(
    row: [string, string, string],
    hash: string,
    id: string,
    confidence: CacheMatchConfidence,
    similarity: number,
  ): SemanticHit<T> | undefined {
    return hitFrom<T>(row, `${hash}:${id}`, confidence, similarity, this.counters, this.log);
  }

  /**
   * A miss: counted, and the prompt's prepared form (embedding, bands) kept for the store that usually
   * follows one; a hit's is not kept (PromptMemo.prepare).
   */
  private miss(prompt: string, prepared: PreparedPrompt): undefined {
    this.counters.misses++;
    this.memo.keep(prompt, prepared);
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

  /**
   * The prompt's embedding without waiting: the one kept with the prepared prompt, else a built-in
   * embedder's, computed now (the same vector its embed() gives, without its promises, arrays and the turns
   * of the microtask queue they cost each lookup and store); undefined for another embedder (embedPrepared).
   */
  private embedNow(p: PreparedPrompt, text: string): Float32Array | undefined {
    if (p.vec) return p.vec;
    if (!(this.embedder instanceof HashedFeatureEmbedder)) return undefined;
    // -1: not filled in (a subclass whose embedOne does not take the list); a zero vector's list is empty
    const nonZero: number[] = [-1];
    const v = this.embedder.embedOne(text, nonZero);
    if (!(v instanceof Float32Array) || v.length !== this.embedder.dims)
      throw new TypeError(`embedder "${this.embedder.name}" returned no ${this.embedder.dims}-dim vector`);
    p.vec = v;
    p.nonZero = nonZero[0] === -1 ? undefined : nonZero;
    return v;
  }

  /** The prompt's embedding: computed once, then kept with the prepared prompt (see PromptMemo). */
  private async embedPrepared(p: PreparedPrompt, text: string, signal?: AbortSignal): Promise<Float32Array> {
    p.vec ??= await this.embedOne(text, signal);
    return p.vec;
  }

  private bandsOf(p: PreparedPrompt, vec: Float32Array): number[] | undefined {
    if (!p.hasBands) {
      p.bands = this.lsh.bandValues(vec, p.vec === vec ? p.nonZero : undefined);
      p.hasBands = true;
    }
    return p.bands;
  }

  private async embedOne(text: string, signal?: AbortSignal): Promise<Float32Array> {
    const [v] = await this.embedder.embed([text], signal);
    if (!(v instanceof Float32Array) || v.length !== this.embedder.dims)
      throw new TypeError(`embedder "${this.embedder.name}" returned no ${this.embedder.dims}-dim vector`);
    return v;
  }

  private maintenance(): MaintenanceContext {
    return { redis: this.redis, base: this.base, space: this.space, log: this.log };
  }

  private keysFor(scope: SemanticScope): ScopeKeys {
    const kept = this.lastScope.get(scope);
    if (kept) return kept;
    const keys = scopeKeysOf(this.scopes, this.base, scope, this.space);
    this.lastScope.set(scope, keys);
    return keys;
  }

  private modelIndexKey(model: string): string {
    return modelIndexKey(this.base, model);
  }

  private tenantIndexKey(tenant: string): string {
    return tenantIndexKey(this.base, tenant);
  }
}
