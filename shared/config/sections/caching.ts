import { z } from 'zod';
import { type FieldIssue } from '../../errors.js';
import { parseSearchTtls, parseThresholds } from '../search-ttls.js';
import { issue, type EnvVar, type ParsedEnv } from '../env-var.js';
import { int, bool, parsedList } from '../schemas.js';

/*
 * Caching: the semantic cache of model answers, the search cache and the HTTP cache of the read endpoints.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const CACHING_ENV = {
  CELL0_CACHE_TTL: {
    section: 'caching',
    default: '300',
    schema: int(1, 31_536_000),
    doc: 'Lifetime of a semantic-cache entry (model output), seconds; a request can ask for another with cache.ttlSeconds',
  },
  CELL0_CACHE_ENABLED: {
    section: 'caching',
    default: '1',
    schema: bool,
    doc: 'Answer requests from the semantic and search caches, and write results through (0: requests skip the caches and go to the queue)',
  },
  CELL0_SEMANTIC_MIN_CONFIDENCE: {
    section: 'caching',
    default: 'high',
    schema: z.enum(['exact', 'high', 'medium', 'low'], 'expected exact, high, medium or low'),
    doc: 'Lowest match level of the semantic cache that answers a request (exact = only the same prompt after normalisation; stores then skip the embedding and the similarity index: give every process of a fleet the same level)',
  },
  CELL0_SEMANTIC_EMBEDDER: {
    section: 'caching',
    default: 'lexical',
    schema: z
      .string()
      .trim()
      .regex(
        /^(lexical|hashed|(ollama|openai):[A-Za-z0-9._:/@+-]+)$/,
        'expected lexical, hashed, ollama:<model> or openai:<model>',
      ),
    doc: 'Embeddings of the semantic cache: lexical (built in: lemmas, synonyms; no model), hashed (built in: n-grams) or ollama:<model> / openai:<model> via CELL0_OLLAMA_URL / CELL0_OPENAI_URL',
  },
  CELL0_SEMANTIC_EMBED_DIMS: {
    section: 'caching',
    schema: int(1, 65_536),
    doc: 'Length of the vectors of an ollama:/openai: embedder (required with one; e.g. 768 for nomic-embed-text)',
  },
  CELL0_SEMANTIC_THRESHOLDS: {
    section: 'caching',
    schema: parsedList(parseThresholds),
    doc: 'Cosine cut-offs of the high, medium and low match levels, e.g. 0.95,0.9,0.8 (default: those of the built-in embedder; cell0 calibrate-cache finds them for another)',
  },
  CELL0_SEMANTIC_MAX_ENTRIES: {
    section: 'caching',
    default: '10000',
    schema: int(1, 10_000_000),
    doc: 'Most semantic-cache entries per scope (model, parameters, tenant); beyond it the oldest go first',
  },
  CELL0_SEARCH_CACHE_TTLS: {
    section: 'caching',
    schema: parsedList(parseSearchTtls),
    doc: 'Search-cache lifetimes per type overriding the defaults (web=3600,news=300,academic=604800,images=86400,videos=21600), e.g. news=120,web=1800',
  },
  CELL0_CACHE_L1_SIZE: {
    section: 'caching',
    default: '1000',
    schema: int(0, 10_000_000),
    doc: 'Search-cache hits kept in each producer process in front of Redis (0 = none); measured 3.7x the reads/s of Redis alone',
  },
  CELL0_CACHE_L1_TTL: {
    section: 'caching',
    default: '10',
    schema: int(1, 3600),
    doc: 'Seconds an in-process search-cache hit is kept (never longer than its Redis entry)',
  },
  CELL0_HTTP_CACHE: {
    section: 'caching',
    default: '1',
    schema: bool,
    doc: 'Cache the API read endpoints (GET /v1/jobs for finished jobs, /v1/queues, /v1/fleet) in Redis, with ETag and X-Cache',
  },
} satisfies Record<string, EnvVar>;

export interface CacheConfig {
  ttlSeconds: number;
  enabled: boolean;
  semanticMinConfidence: 'exact' | 'high' | 'medium' | 'low';
  semanticEmbedder: string;
  semanticMaxEntries: number;
  semanticEmbedDims: number | undefined;
  semanticThresholds: { high: number; medium: number; low: number } | undefined;
  searchTtls: Record<string, number>;
  http: boolean;
  l1Size: number;
  l1TtlSeconds: number;
}

/** Checks across the section's variables (run once each is valid on its own). */
export function checkCaching(p: ParsedEnv<typeof CACHING_ENV>): FieldIssue[] {
  return /^(ollama|openai):/.test(p.CELL0_SEMANTIC_EMBEDDER) && p.CELL0_SEMANTIC_EMBED_DIMS === undefined
    ? issue(
        'CELL0_SEMANTIC_EMBED_DIMS',
        `required with CELL0_SEMANTIC_EMBEDDER=${p.CELL0_SEMANTIC_EMBEDDER} (the length of its vectors)`,
      )
    : [];
}

export function loadCaching(p: ParsedEnv<typeof CACHING_ENV>): CacheConfig {
  return {
    ttlSeconds: p.CELL0_CACHE_TTL,
    enabled: p.CELL0_CACHE_ENABLED,
    semanticMinConfidence: p.CELL0_SEMANTIC_MIN_CONFIDENCE,
    semanticEmbedder: p.CELL0_SEMANTIC_EMBEDDER,
    semanticMaxEntries: p.CELL0_SEMANTIC_MAX_ENTRIES,
    semanticEmbedDims: p.CELL0_SEMANTIC_EMBED_DIMS,
    semanticThresholds: p.CELL0_SEMANTIC_THRESHOLDS,
    searchTtls: p.CELL0_SEARCH_CACHE_TTLS ?? ({} as Record<string, number>),
    http: p.CELL0_HTTP_CACHE,
    l1Size: p.CELL0_CACHE_L1_SIZE,
    l1TtlSeconds: p.CELL0_CACHE_L1_TTL,
  };
}
