import { ConfigError, type FieldIssue } from '../../errors.js';
import { type LatencySummary } from '../../latency.js';
import { type Logger } from '../../logger.js';
import { type RedisClient } from '../../redis/redis-client.js';
import { withDefaults } from '../../with-defaults.js';
import { CacheMatchConfidence, DEFAULT_THRESHOLDS, type SemanticThresholds } from './confidence.js';
import { type Embedder } from './embedder.js';
import { type SemanticLocalState } from './local-state.js';
import { LexicalEmbedder } from './lexical-embedder.js';
import { type SemanticWriteBatching } from './semantic-writer.js';

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
   * Index stored entries for similarity lookups (embedding, LSH bands, candidate record). Default true.
   * false: set() stores each entry for its exact key only, as a prompt with a control character is stored:
   * no embedding, no band upkeep, no candidate record; similarity lookups (of any process) never find those
   * entries. For a process that answers exact matches only (CELL0_SEMANTIC_MIN_CONFIDENCE=exact, see
   * from-config.ts), whose index no lookup would read.
   */
  index?: boolean;
  /**
   * LSH shape: bands × rows (bits per band). Default 20 × 12 (lsh.ts has the arithmetic). Changing it
   * changes every band key: entries stored under another shape are still found by the exact key only.
   */
  lsh?: { bands: number; rows: number };
  /**
   * Stores of one scope that arrive within `maxWaitMs` (default 1 ms) share one script call, up to
   * `maxBatchSize` (default 32; 1 = a call per store). set() still resolves only once its entry is stored.
   */
  writeBatching?: SemanticWriteBatching;
  /**
   * The process's mirrors of the band buckets and kept candidate records, shared with the other caches given
   * the same one: caches of one process on the same Redis and prefix, with the same embedder and LSH layout
   * (an API that looks up and a worker that stores: see local-state.ts). Default: the cache's own.
   */
  localState?: SemanticLocalState;
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

/** The options in force (defaults filled in). */
export interface Resolved {
  prefix: string;
  thresholds: SemanticThresholds;
  defaultMinConfidence: CacheMatchConfidence;
  ttlSeconds: number;
  maxEntriesPerScope: number;
  guard: boolean;
  index: boolean;
}

export const DEFAULTS: Resolved = {
  prefix: '{cell0}',
  thresholds: DEFAULT_THRESHOLDS,
  defaultMinConfidence: CacheMatchConfidence.HIGH,
  ttlSeconds: 300,
  maxEntriesPerScope: 10_000,
  guard: true,
  index: true,
};

/**
 * The options in force for `given` (defaults merged once, the embedder's thresholds before the defaults),
 * and the embedder. Throws a ConfigError naming every bad option.
 */
export function resolveOptions(options: SemanticCacheOptions): { opts: Resolved; embedder: Embedder } {
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
  if (typeof opts.index !== 'boolean')
    issues.push({ field: 'index', reason: `expected true or false, got ${String(opts.index)}` });
  if (typeof embedder.embed !== 'function' || !(Number.isInteger(embedder.dims) && embedder.dims > 0))
    issues.push({ field: 'embedder', reason: 'expected an Embedder with name, dims and embed()' });
  if (issues.length > 0)
    throw new ConfigError(issues.map((i) => ({ ...i, field: `SemanticCache.${i.field}` })));
  return { opts, embedder };
}
