import { LRUCache } from 'lru-cache';

/** Options of {@link asyncLruCache}. */
export interface AsyncLruOptions<A extends unknown[]> {
  /** Most entries kept; the least recently used go first. */
  maxsize: number;
  /** Lifetime of an entry, seconds; 0 = until evicted. */
  ttl: number;
  /** The cache key of a call. Default: JSON of the arguments. */
  key?: (...args: A) => string;
}

/** Counters of one {@link asyncLruCache}. */
export interface AsyncLruStats {
  hits: number;
  misses: number;
  /** Calls that joined a call in flight for the same key instead of starting their own. */
  shared: number;
  /** Rejections (never cached). */
  errors: number;
  size: number;
  hitRate: number;
}

/** A cached async function: call it like the original; `stats()`, `delete(...)`, `clear()` manage it. */
export type AsyncLruFunction<A extends unknown[], T> = ((...args: A) => Promise<T>) & {
  stats(): AsyncLruStats;
  delete(...args: A): boolean;
  clear(): void;
};

/**
 * The in-process tier (the seed's `async_lru_cache(maxsize, ttl)`): an LRU with TTL in front of an async
 * function. Concurrent callers with the same key share one in-flight promise (one call to `fn`); a
 * rejection is handed to every waiter of that call and never cached, so the next call tries again.
 * Resolved `undefined` is cached like any other value.
 */
export function asyncLruCache<A extends unknown[], T>(
  fn: (...args: A) => Promise<T>,
  opts: AsyncLruOptions<A>,
): AsyncLruFunction<A, T> {
  if (!Number.isInteger(opts.maxsize) || opts.maxsize < 1)
    throw new TypeError(`asyncLruCache: maxsize must be an integer >= 1, got ${opts.maxsize}`);
  if (!(opts.ttl >= 0)) throw new TypeError(`asyncLruCache: ttl must be >= 0 seconds, got ${opts.ttl}`);
  const keyOf = opts.key ?? ((...args: A) => JSON.stringify(args));
  // Values are boxed: lru-cache does not store undefined, and a function may legitimately resolve to it.
  const lru = new LRUCache<string, { v: T }>({
    max: opts.maxsize,
    ...(opts.ttl > 0 ? { ttl: opts.ttl * 1000, ttlAutopurge: false } : {}),
  });
  const inFlight = new Map<string, Promise<T>>();
  const counters = { hits: 0, misses: 0, shared: 0, errors: 0 };

  const cached = ((...args: A): Promise<T> => {
    const key = keyOf(...args);
    const box = lru.get(key);
    if (box !== undefined) {
      counters.hits++;
      return Promise.resolve(box.v);
    }
    const pending = inFlight.get(key);
    if (pending !== undefined) {
      counters.shared++;
      return pending;
    }
    counters.misses++;
    const call = (async () => {
      try {
        const v = await fn(...args);
        lru.set(key, { v });
        return v;
      } catch (err) {
        counters.errors++;
        throw err;
      } finally {
        inFlight.delete(key);
      }
    })();
    inFlight.set(key, call);
    return call;
  }) as AsyncLruFunction<A, T>;

  cached.stats = () => {
    const lookups = counters.hits + counters.misses + counters.shared;
    return { ...counters, size: lru.size, hitRate: lookups === 0 ? 0 : counters.hits / lookups };
  };
  cached.delete = (...args: A) => lru.delete(keyOf(...args));
  cached.clear = () => lru.clear();
  return cached;
}
