export {
  CacheStrategy,
  ResponseCache,
  type CacheConfig,
  type EndpointCacheOptions,
  type ResponseCacheOptions,
  type ResponseCacheStats,
} from './response-cache.js';
