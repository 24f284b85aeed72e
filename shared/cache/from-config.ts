import { type Config } from '../config/config.js';
import { type Logger } from '../logger.js';
import { type InferenceResult } from '../queues/results.js';
import { type RedisClient } from '../redis/redis-client.js';
import { type SearchType } from '../queues/enums.js';
import { CacheStrategy, ResponseCache } from './http/index.js';
import { type CachedInference } from './inference-key.js';
import { SearchCache } from './search-cache.js';
import { CacheMatchConfidence, type Embedder, SemanticCache, SemanticLocalState } from './semantic/index.js';

/** The caches of one process, as the configuration asks. */
export interface Caches {
  inference: SemanticCache<CachedInference<InferenceResult>>;
  search: SearchCache;
  minConfidence: CacheMatchConfidence;
}

/**
 * The semantic caches' in-process state (band mirrors, kept candidate records) of this process, by Redis
 * URL, key prefix and embedder: the caches built here for the API and for the worker of one process
 * (`cell0 start`) share it, so the worker's stores are applied to the mirror the API's lookups rank from,
 * and the records they wrote are kept for those lookups (see semantic/local-state.ts).
 */
const localStates = new Map<string, SemanticLocalState>();

function localStateFor(config: Config): SemanticLocalState {
  const key = `${config.redis.url}\0${config.redis.prefix}\0${config.cache.semanticEmbedder}`;
  let state = localStates.get(key);
  if (!state) localStates.set(key, (state = new SemanticLocalState()));
  return state;
}

/**
 * The semantic and search caches on `redis` (undefined when CELL0_CACHE_ENABLED=0). Producers and workers
 * must use the same embedder: `embedder` is the one CELL0_SEMANTIC_EMBEDDER names (built by the caller,
 * which knows the backends); the built-in hashed embedder when omitted.
 */
export function buildCaches(
  config: Config,
  redis: RedisClient,
  opts: {
    embedder?: Embedder;
    logger?: Logger;
    /** Put the in-process tier (CELL0_CACHE_L1_*) in front of the search cache: producers, which read. */
    l1?: boolean;
  } = {},
): Caches | undefined {
  if (!config.cache.enabled) return undefined;
  const minConfidence = config.cache.semanticMinConfidence as CacheMatchConfidence;
  const inference = new SemanticCache<CachedInference<InferenceResult>>({
    redis,
    prefix: config.redis.prefix,
    ttlSeconds: config.cache.ttlSeconds,
    maxEntriesPerScope: config.cache.semanticMaxEntries,
    defaultMinConfidence: minConfidence,
    // Answering exact matches only, the process's lookups never read the similarity index: its stores skip
    // the embedding and the index upkeep (a fleet's processes share one level: entries a process at exact
    // stores are never found by meaning, by any process).
    index: minConfidence !== CacheMatchConfidence.EXACT,
    localState: localStateFor(config),
    ...(config.cache.semanticThresholds ? { thresholds: config.cache.semanticThresholds } : {}),
    ...(opts.embedder ? { embedder: opts.embedder } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  const search = new SearchCache({
    redis,
    prefix: config.redis.prefix,
    ttls: config.cache.searchTtls as Partial<Record<SearchType, number>>,
    ...(opts.l1 && config.cache.l1Size > 0
      ? { l1: { maxsize: config.cache.l1Size, ttlSeconds: config.cache.l1TtlSeconds } }
      : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  return { inference, search, minConfidence };
}

/** The API's read-endpoint cache (undefined when CELL0_HTTP_CACHE=0). Endpoints are configured by the API. */
export function buildResponseCache(
  config: Config,
  redis: RedisClient,
  logger?: Logger,
): ResponseCache | undefined {
  if (!config.cache.http) return undefined;
  return new ResponseCache({
    redis,
    config: { prefix: config.redis.prefix, defaultTtlSeconds: 5, staleWhileRevalidateSeconds: 0 },
    ...(logger ? { logger } : {}),
  });
}

export { CacheStrategy };
