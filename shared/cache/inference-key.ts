import { type InferenceJobData } from '../queues/schemas.js';
import { type RedisConnection } from '../redis/cluster.js';

/**
 * How an inference request maps onto the semantic cache: the prompt that is compared by meaning, and the
 * scope that must match exactly (the model, every parameter that changes the output, the system prompt,
 * the earlier turns of a chat, and the tenant namespace). Structurally the semantic cache's SemanticScope.
 */
export interface InferenceCacheKey {
  prompt: string;
  scope: {
    model: string;
    params: Record<string, unknown>;
    system?: string;
    context?: unknown;
    tenant?: string;
  };
}

/**
 * The cache key of a request, or undefined when it cannot be cached by meaning: a chat whose last message
 * is not the user's (there is no question to compare).
 */
export function inferenceCacheKey(job: InferenceJobData): InferenceCacheKey | undefined {
  const tenant = job.cache?.namespace;
  const base = { model: job.model, params: { ...job.params }, ...(tenant !== undefined ? { tenant } : {}) };
  if (job.prompt !== undefined) {
    return {
      prompt: job.prompt,
      scope: { ...base, ...(job.system !== undefined ? { system: job.system } : {}) },
    };
  }
  const messages = job.messages ?? [];
  const last = messages[messages.length - 1];
  if (last === undefined || last.role !== 'user') return undefined;
  const earlier = messages.slice(0, -1);
  return {
    prompt: last.content,
    scope: { ...base, ...(earlier.length > 0 ? { context: earlier } : {}) },
  };
}

/** What the inference cache stores: the answer and the job that produced it. */
export interface CachedInference<R> {
  jobId: string;
  result: R;
}

/** A hit of the inference cache: the stored answer, how it matched and how closely (1 for exact). */
export interface InferenceCacheHit<R> {
  value: CachedInference<R>;
  confidence: string;
  similarity: number;
  /** Names the entry, so a caller can report a wrong answer (reportFalseHit). */
  entryId?: string;
  /** The stored prompt the answer belongs to. */
  prompt?: string;
}

/** What producers and workers need of the semantic cache (SemanticCache satisfies it). */
export interface InferenceCache<R> {
  get(
    prompt: string,
    scope: InferenceCacheKey['scope'],
    opts?: { minConfidence?: string },
  ): Promise<InferenceCacheHit<R> | undefined>;
  set(
    prompt: string,
    value: CachedInference<R>,
    scope: InferenceCacheKey['scope'],
    /**
     * `onSent`: called once the write has gone to Redis, or the store ended without one; `connection`: one
     * of the same Redis whose writes the store joins while it is ready (see SemanticCache.set).
     */
    opts?: { ttlSeconds?: number; onSent?: () => void; connection?: RedisConnection },
  ): Promise<void>;
  /** Counts a hit the caller found wrong, and removes its entry. */
  reportFalseHit?(entryId: string): Promise<void>;
}
