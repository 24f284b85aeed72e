// The caching layer's public face (the package entry point `cell0/cache`): the HTTP response cache, the
// semantic cache of model outputs, the search cache, and what they are built on.
export * from './http/index.js';
export * from './semantic/index.js';
export {
  SearchCache,
  DEFAULT_SEARCH_TTLS,
  normalizeQuery,
  searchCacheKey,
  type SearchCacheKey,
  type SearchCacheOptions,
  type SearchCacheStats,
} from './search-cache.js';
export {
  inferenceCacheKey,
  type CachedInference,
  type InferenceCache,
  type InferenceCacheHit,
  type InferenceCacheKey,
} from './inference-key.js';
export { buildCaches, buildResponseCache, type Caches } from './from-config.js';
// Every cache runs on a RedisClient (one connection behind a circuit breaker).
export {
  RedisClient,
  type RedisClientOptions,
  type RedisHealth,
  type RedisMetrics,
} from '../redis/redis-client.js';
