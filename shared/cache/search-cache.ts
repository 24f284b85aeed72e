import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { type Logger, silentLogger } from '../logger.js';
import { type RedisClient } from '../redis/redis-client.js';
import { scanEveryMaster } from '../redis/cluster.js';
import { SearchType } from '../queues/enums.js';
import { type SearchJobData } from '../queues/schemas.js';
import { type SearchResult } from '../queues/results.js';

/**
 * Default lifetime of cached search results per type, seconds: news goes stale fastest, academic results
 * hardly change.
 */
export const DEFAULT_SEARCH_TTLS: Readonly<Record<SearchType, number>> = {
  [SearchType.NEWS]: 300,
  [SearchType.WEB]: 3600,
  [SearchType.VIDEOS]: 6 * 3600,
  [SearchType.IMAGES]: 24 * 3600,
  [SearchType.ACADEMIC]: 7 * 24 * 3600,
};

/** Options of {@link SearchCache}. */
export interface SearchCacheOptions {
  redis: RedisClient;
  /** Key prefix, a `{hash tag}`. Default "{cell0}". */
  prefix?: string;
  /** Lifetimes per type (seconds) overriding the defaults. */
  ttls?: Partial<Record<SearchType, number>>;
  /**
   * An in-process tier in front of Redis: up to `maxsize` hits kept for `ttlSeconds` (never longer than
   * the entry's own lifetime). Misses are never kept there, so another process's write is seen at once.
   * Default: none.
   */
  l1?: { maxsize: number; ttlSeconds: number };
  logger?: Logger;
}

/** Counters of one SearchCache (this process's view). */
export interface SearchCacheStats {
  hits: number;
  /** Hits answered by the in-process tier, without Redis. */
  l1Hits: number;
  misses: number;
  sets: number;
  /** Redis failures, each answered as a miss (get) or skipped (set). */
  errors: number;
  hitRate: number;
  /** Entries in the in-process tier now (0 without it). */
  l1Entries: number;
}

/** What identifies a cached search: the request without its cache controls other than the namespace. */
export type SearchCacheKey = Pick<SearchJobData, 'query' | 'provider' | 'type' | 'limit' | 'offset'> &
  Partial<Pick<SearchJobData, 'language'>> & { namespace?: string };

/** The cache key of a search job: its query, window, type, provider, language and namespace. */
export function searchCacheKey(data: SearchJobData): SearchCacheKey {
  return {
    query: data.query,
    provider: data.provider,
    type: data.type,
    limit: data.limit,
    offset: data.offset,
    ...(data.language !== undefined ? { language: data.language } : {}),
    ...(data.cache?.namespace !== undefined ? { namespace: data.cache.namespace } : {}),
  };
}

/**
 * A query folded for caching: Unicode-normalised (NFKC), lower-cased, punctuation other than what carries
 * meaning in queries (+ # & . inside words like c++ c# at&t node.js, and digits) turned into spaces,
 * whitespace collapsed. "What is  Redis?" and "what is redis" share an entry; "c++" and "c" do not.
 */
export function normalizeQuery(query: string): string {
  return query
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}+#&.\s]+/gu, ' ')
    .replace(/(^|\s)[.&]+|[.&]+(?=\s|$)/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * The search result cache (the seed's `get_search_cache()`): results keyed by provider, type, language,
 * window (offset, limit), namespace and the normalised query, with a lifetime per search type. Redis
 * failures never reach the caller: a get answers a miss, a set is skipped (both counted in `errors`), and
 * the RedisClient's breaker makes that immediate while Redis is away.
 */
export class SearchCache {
  private readonly redis: RedisClient;
  private readonly prefix: string;
  private readonly ttls: Record<SearchType, number>;
  private readonly l1: LRUCache<string, { r: SearchResult }> | undefined;
  private readonly l1TtlMs: number;
  private readonly log: Logger;
  private readonly counters = { hits: 0, l1Hits: 0, misses: 0, sets: 0, errors: 0 };

  constructor(opts: SearchCacheOptions) {
    this.redis = opts.redis;
    this.prefix = opts.prefix ?? '{cell0}';
    this.ttls = { ...DEFAULT_SEARCH_TTLS };
    for (const [type, seconds] of Object.entries(opts.ttls ?? {})) this.setTtl(type as SearchType, seconds);
    this.log = opts.logger ?? silentLogger();
    this.l1TtlMs = (opts.l1?.ttlSeconds ?? 0) * 1000;
    this.l1 =
      opts.l1 && opts.l1.maxsize > 0 && opts.l1.ttlSeconds > 0
        ? new LRUCache({ max: opts.l1.maxsize, ttl: this.l1TtlMs })
        : undefined;
  }

  /** Sets the lifetime of one search type's entries (the seed's `set_ttl(SearchType, seconds)`). */
  setTtl(type: SearchType, seconds: number): void {
    if (!(type in DEFAULT_SEARCH_TTLS)) throw new TypeError(`SearchCache: unknown search type "${type}"`);
    if (!Number.isInteger(seconds) || seconds < 1)
      throw new TypeError(`SearchCache: ttl of ${type} must be an integer >= 1 second, got ${seconds}`);
    this.ttls[type] = seconds;
  }

  /** The lifetime of a type's entries, seconds. */
  ttlOf(type: SearchType): number {
    return this.ttls[type];
  }

  /** The Redis key of a search. */
  keyOf(k: SearchCacheKey): string {
    const id = createHash('sha256')
      .update(
        [
          k.namespace ?? '',
          k.provider,
          k.type,
          k.language ?? '',
          k.offset,
          k.limit,
          normalizeQuery(k.query),
        ].join('\u0000'),
      )
      .digest('hex')
      .slice(0, 32);
    return `${this.prefix}:search-cache:${k.provider}:${k.type}:${id}`;
  }

  /** The cached result of a search, or undefined (a miss, or Redis unavailable). */
  async get(k: SearchCacheKey): Promise<SearchResult | undefined> {
    const key = this.keyOf(k);
    const local = this.l1?.get(key);
    if (local !== undefined) {
      this.counters.hits++;
      this.counters.l1Hits++;
      return local.r;
    }
    let raw: string | null;
    let ttlMs = 0;
    try {
      if (this.l1) {
        const [[, value], [, pttl]] = (await this.redis.run((r) => r.multi().get(key).pttl(key).exec())) as [
          [unknown, string | null],
          [unknown, number],
        ];
        raw = value;
        ttlMs = pttl;
      } else {
        raw = await this.redis.run((r) => r.get(key));
      }
    } catch (err) {
      this.counters.errors++;
      this.counters.misses++;
      this.log.debug({ err }, 'search cache unavailable; answering a miss');
      return undefined;
    }
    if (raw === null) {
      this.counters.misses++;
      return undefined;
    }
    let result: SearchResult;
    try {
      result = JSON.parse(raw) as SearchResult;
    } catch {
      this.counters.misses++;
      return undefined;
    }
    this.counters.hits++;
    if (this.l1 && ttlMs > 0) this.l1.set(key, { r: result }, { ttl: Math.min(this.l1TtlMs, ttlMs) });
    return result;
  }

  /** Stores a search's result for its type's lifetime (or `ttlSeconds`). Never throws for Redis trouble. */
  async set(k: SearchCacheKey, result: SearchResult, ttlSeconds?: number): Promise<void> {
    const ttl = ttlSeconds ?? this.ttls[k.type];
    const key = this.keyOf(k);
    try {
      await this.redis.run((r) => r.set(key, JSON.stringify(result), 'EX', ttl));
      this.counters.sets++;
    } catch (err) {
      this.counters.errors++;
      this.log.debug({ err }, 'search cache unavailable; result not stored');
    }
  }

  /** Removes one search's entry (here and in the in-process tier). */
  async delete(k: SearchCacheKey): Promise<boolean> {
    const key = this.keyOf(k);
    this.l1?.delete(key);
    return (await this.redis.run((r) => r.del(key))) > 0;
  }

  /** Entries stored in Redis now (SCAN over the cache's keys: for operators, not for hot paths). */
  async size(): Promise<number> {
    return this.redis.run(async (r) => {
      let n = 0;
      // Every master of a cluster (the cache's keys carry the fleet's hash tag, but a sweep must not rely on it).
      await scanEveryMaster(r, `${this.prefix}:search-cache:*`, 1000, (keys) => (n += keys.length));
      return n;
    });
  }

  getStats(): SearchCacheStats {
    const lookups = this.counters.hits + this.counters.misses;
    return {
      ...this.counters,
      hitRate: lookups === 0 ? 0 : this.counters.hits / lookups,
      l1Entries: this.l1?.size ?? 0,
    };
  }
}
