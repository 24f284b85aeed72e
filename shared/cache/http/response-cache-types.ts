import { type IncomingMessage, type ServerResponse } from 'node:http';
import { type Logger } from '../../logger.js';
import { type RedisClient } from '../../redis/redis-client.js';

/* The options and statistics of ResponseCache (response-cache.ts re-exports them), and its per-request state. */

export enum CacheStrategy {
  ALWAYS = 'always',
  NEVER = 'never',
  CACHE_CONTROL = 'cache-control',
}

export interface CacheConfig {
  /** TTL of an endpoint configured without one (and of CACHE_CONTROL answers without freshness). Default 60. */
  defaultTtlSeconds?: number;
  /** Larger bodies are streamed through and not stored. Default 1 MiB. */
  maxBodySizeBytes?: number;
  /** How long after its TTL an entry is still served (STALE) while one refresh runs. Default 30; 0 = none. */
  staleWhileRevalidateSeconds?: number;
  /** Redis key prefix (keep the hash tag for cluster slots). Default '{cell0}'. */
  prefix?: string;
  /** A background refresh is abandoned after this long; also the refresh lock's lifetime. Default 10000. */
  refreshTimeoutMs?: number;
}

export interface EndpointCacheOptions {
  strategy: CacheStrategy;
  ttlSeconds?: number;
  /** Opt-in: cache authenticated responses, keyed per user (hash of the Authorization and Cookie headers). */
  perUser?: boolean;
  /** Extra request headers in the key. */
  vary?: string[];
}

export interface ResponseCacheOptions {
  redis: RedisClient;
  config?: CacheConfig;
  logger?: Logger;
}

export interface ResponseCacheStats {
  hits: number;
  misses: number;
  stale: number;
  stored: number;
  bypassed: number;
  notModified: number;
  revalidations: number;
  errors: number;
  /** (hits + stale) / (hits + stale + misses); 0 before any lookup. */
  hitRate: number;
  /** Not filled by getStats() (it is synchronous); see countEntries(). */
  entries?: number;
}

export interface Endpoint {
  path: string;
  re: RegExp;
  strategy: CacheStrategy;
  ttlSeconds: number | undefined;
  perUser: boolean;
  vary: string[];
}

/** Per-request state of the cache. */
export interface RequestCtx {
  ep: Endpoint;
  /** Key suffix without the response's Vary part: path?query#… */
  base: string;
  req: IncomingMessage;
  res: ServerResponse;
  /** Headers set on the response before the cache middleware ran, with their values. */
  preexisting: Map<string, unknown>;
  /** The express app the request came through (for the refresh), if any. */
  app: unknown;
  url: string;
}

/** What to store for a response. */
export interface StorePlan {
  status: number;
  headers: Array<[string, string | string[]]>;
  vary: string[];
  freshMs: number;
  swrMs: number;
}
