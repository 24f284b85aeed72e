import { CacheMatchConfidence } from './confidence.js';
import { type SemanticScope } from './scope.js';
import { type SemanticCache } from './semantic-cache.js';

/** Options of {@link withModelCache}. */
export interface WithModelCacheOptions<T> {
  cache: SemanticCache<T>;
  /** Lifetime of stored answers, seconds. Default: the cache's ttlSeconds. */
  ttlSeconds?: number;
  /** Weakest level served from the cache. Default: the cache's defaultMinConfidence. */
  minConfidence?: CacheMatchConfidence;
}

/** What a wrapped call answers: the value, and whether (and how) it came from the cache. */
export interface ModelCacheResult<T> {
  value: T;
  cached: false | 'exact' | 'semantic';
  /** Cosine to the stored prompt, on a hit. */
  similarity?: number;
}

/**
 * Wraps a model call: answers from the cache when it can, else calls `fn` and stores its value. Failures
 * of `fn` are not cached (they propagate); the cache itself never makes the call fail (a cache outage is a
 * miss). The store is awaited, so the next call with the same prompt is served from the cache.
 */
export function withModelCache<A extends unknown[], T>(
  fn: (prompt: string, scope: SemanticScope, ...rest: A) => Promise<T>,
  opts: WithModelCacheOptions<T>,
): (prompt: string, scope: SemanticScope, ...rest: A) => Promise<ModelCacheResult<T>> {
  const { cache, ttlSeconds, minConfidence } = opts;
  return async (prompt, scope, ...rest) => {
    const hit = await cache.get(prompt, scope, minConfidence === undefined ? {} : { minConfidence });
    if (hit) {
      return {
        value: hit.value,
        cached: hit.confidence === CacheMatchConfidence.EXACT ? 'exact' : 'semantic',
        similarity: hit.similarity,
      };
    }
    const value = await fn(prompt, scope, ...rest);
    await cache.set(prompt, value, scope, ttlSeconds === undefined ? {} : { ttlSeconds });
    return { value, cached: false };
  };
}
