import { searchCacheKey } from '../shared/cache/search-cache.js';
import { inferenceCacheKey } from '../shared/cache/inference-key.js';
import { jobIdFor } from '../shared/queues/job-id.js';
import { QueueName } from '../shared/queues/names.js';
import { type InferenceResult, type SearchResult } from '../shared/queues/results.js';
import { type InferenceJobData, type SearchJobData } from '../shared/queues/schemas.js';
import { type Cell0ClientOptions, type ClientMetrics } from './cell0-client-types.js';
import { type SubmitResult } from './job-submitter.js';
import { spanAttributes, tracingOn, withSpan } from '../shared/tracing/tracing.js';

/*
 * The caches Cell0Client asks before it adds a job: a hit is the request's answer at once, marked `cached`.
 * A request with `cache.noCache` is never answered from a cache.
 */

type Caches = NonNullable<Cell0ClientOptions['caches']>;

/** The semantic cache's answer to an already-parsed inference request, or undefined (miss, or no cache). */
export async function inferenceFromCache(
  caches: Caches,
  metrics: ClientMetrics | undefined,
  data: InferenceJobData,
): Promise<SubmitResult<InferenceResult> | undefined> {
  const cache = caches.inference;
  if (!cache || data.cache?.noCache === true) return undefined;
  const key = inferenceCacheKey(data);
  if (!key) return undefined;
  const lookup = () =>
    cache.get(key.prompt, key.scope, caches.minConfidence ? { minConfidence: caches.minConfidence } : {});
  // Tracing off (the usual case): a plain call, no span wrapper.
  const hit = !tracingOn()
    ? await lookup()
    : await withSpan('cache lookup semantic', 'internal', { 'cell0.cache': 'semantic' }, async () => {
        const h = await lookup();
        spanAttributes({ 'cell0.cache.result': h ? h.confidence : 'miss' });
        return h;
      });
  metrics?.cacheLookup('semantic', hit ? hit.confidence : 'miss');
  if (!hit) return undefined;
  return {
    state: 'completed',
    queue: QueueName.INFERENCE,
    jobId: hit.value.jobId,
    result: hit.value.result,
    finishedOn: Date.now(),
    cached: hit.confidence === 'exact' ? 'exact' : 'semantic',
    similarity: hit.similarity,
    ...(hit.entryId !== undefined ? { cacheEntry: hit.entryId } : {}),
    ...(hit.confidence !== 'exact' && hit.prompt !== undefined ? { cachedPrompt: hit.prompt } : {}),
  };
}

/** The search cache's answer to an already-parsed search, or undefined (miss, or no cache). */
export async function searchFromCache(
  caches: Caches,
  metrics: ClientMetrics | undefined,
  data: SearchJobData,
): Promise<SubmitResult<SearchResult> | undefined> {
  const cache = caches.search;
  if (!cache || data.cache?.noCache === true) return undefined;
  const result = await withSpan('cache lookup search', 'internal', { 'cell0.cache': 'search' }, async () => {
    const r = await cache.get(searchCacheKey(data));
    spanAttributes({ 'cell0.cache.result': r ? 'exact' : 'miss' });
    return r;
  });
  metrics?.cacheLookup('search', result ? 'exact' : 'miss');
  if (!result) return undefined;
  return {
    state: 'completed',
    queue: QueueName.SEARCH,
    jobId: jobIdFor(QueueName.SEARCH, data),
    result,
    finishedOn: Date.now(),
    cached: 'exact',
    similarity: 1,
  };
}
