import { createHash } from 'node:crypto';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import { type Config } from '../../shared/config/config.js';
import {
  rateLimitFor,
  type InferenceKind,
  type ModelRoute,
  type ProviderKind,
} from '../../shared/config/provider-routes.js';
import { type Logger } from '../../shared/logger.js';
import { HttpPoolRegistry, type HttpPoolMetrics } from '../../shared/http/pool.js';
import {
  RedisTokenBucketRateLimiter,
  TokenBucketRateLimiter,
  type RateLimiter,
} from '../../shared/rate-limit/token-bucket.js';
import { SearchProvider } from '../../shared/queues/enums.js';
import { ConcurrencyLimiter, FixedLimit, GradientLimit } from './adaptive-limit.js';
import { BackendGuard, type BackendGuardMetrics } from './backend-guard.js';
import { BraveSearch } from './brave/index.js';
import { LocalSearch } from './local-search/local-search.js';
import { OllamaBackend } from './ollama-backend.js';
import { OllamaClient } from './ollama/ollama-client.js';
import { OpenAIBackend } from './openai-backend.js';
import { OpenAIClient } from './openai/openai-client.js';
import { type InferenceBackend, type SearchBackend } from './provider.js';
import { GuardedSearch, InferenceRouter, type InferenceRoute } from './routing.js';
import { SearxngSearch } from './searxng/index.js';
import { type BackendHealthReport } from '../../shared/fleet/backend-health.js';

/** Ollama's own default address, used when CELL0_OLLAMA_URL is unset. */
export const DEFAULT_OLLAMA_URL = 'http://127.0.0.1:11434';

/** Everything a worker process needs to reach its backends, built from the configuration. */
export interface ProviderSet {
  /** Undefined when the worker does not serve inference. */
  inference: InferenceRouter | undefined;
  search: Partial<Record<SearchProvider, SearchBackend>>;
  pools: HttpPoolRegistry;
  guards: BackendGuard[];
  /** Lines for the start banner. */
  describe(): string[];
  metrics(): { pools: HttpPoolMetrics[]; backends: BackendGuardMetrics[] };
  /** Each backend's breaker (state, since, last error) and which backend serves which model and provider. */
  health(): BackendHealthReport;
  close(): Promise<void>;
}

/** What buildProviders needs besides the configuration. */
export interface BuildProvidersOptions {
  /** Serve inference / search. */
  inference: boolean;
  search: boolean;
  /** Overrides CELL0_OLLAMA_URL (e.g. `cell0 start`'s own simulator). */
  ollamaUrl?: string;
  /** Non-blocking connection for fleet-wide rate limits; required when CELL0_RATE_LIMIT_SCOPE=fleet. */
  redis?: RedisConnection;
  logger: Logger;
}

/** The routes as configured, or the default one (every model to Ollama; to OpenAI when only it is set). */
export function effectiveRoutes(config: Config): ModelRoute[] {
  const p = config.providers;
  if (p.modelRoutes && p.modelRoutes.length > 0) return p.modelRoutes;
  if (p.openaiUrl !== undefined && p.ollamaUrl === undefined) return [{ pattern: '*', kind: 'openai' }];
  return [{ pattern: '*', kind: 'ollama' }];
}

/**
 * Builds the worker's backends: one HTTP pool registry for all of them, a guard (rate limit, breaker,
 * retries) per backend origin, the model router and the search backends (local always; SearXNG and Brave
 * when configured).
 */
export function buildProviders(config: Config, opts: BuildProvidersOptions): ProviderSet {
  const p = config.providers;
  const log = opts.logger;
  const bl = p.backendLimit;
  const pools = new HttpPoolRegistry({
    maxConnections: p.http.maxConnections,
    defaults: {
      // The pool never caps a backend below its concurrency limit (calls beyond it would queue unseen).
      maxConnectionsPerHost: Math.max(p.http.connectionsPerHost, bl.mode === 'fixed' ? bl.fixed : bl.max),
      connectTimeoutMs: p.http.connectTimeoutMs,
      bodyTimeoutMs: p.http.bodyTimeoutMs,
      keepAliveTimeoutMs: p.http.keepAliveMs,
    },
  });
  const guards = new Map<string, BackendGuard>();
  const banner: string[] = [];

  const limiterFor = (kind: ProviderKind, origin: string, name: string): RateLimiter | undefined => {
    const spec = rateLimitFor(p.rateLimits, kind, origin);
    if (!spec) return undefined;
    const common = {
      name,
      rate: spec.rate,
      capacity: spec.capacity,
      maxInFlight: spec.maxInFlight,
      maxWaitMs: p.rateLimitMaxWaitMs,
      leaseTtlMs: config.workers.providerTimeoutMs + 10_000,
    };
    if (p.rateLimitScope === 'process') return new TokenBucketRateLimiter(common);
    if (!opts.redis) throw new TypeError('buildProviders: fleet-wide rate limits need option "redis"');
    return new RedisTokenBucketRateLimiter({ ...common, redis: opts.redis, prefix: config.redis.prefix });
  };

  /** One guard per backend kind, origin and API key: that is what a provider's limit applies to. */
  const guardFor = (kind: ProviderKind, origin: string, apiKey?: string): BackendGuard => {
    const name = `${kind}@${origin}` + (apiKey ? `#${fingerprint(apiKey)}` : '');
    let guard = guards.get(name);
    if (!guard) {
      guard = new BackendGuard({
        name,
        limiter: limiterFor(kind, origin, name),
        maxLimiterWaitMs: p.rateLimitMaxWaitMs,
        concurrency: new ConcurrencyLimiter({
          name,
          algorithm:
            bl.mode === 'fixed'
              ? new FixedLimit(bl.fixed)
              : new GradientLimit({ max: bl.max, initial: bl.initial, tolerance: bl.tolerance }),
        }),
        maxPermitWaitMs: config.workers.providerTimeoutMs,
        failureThreshold: p.breakerThreshold,
        resetTimeoutMs: p.breakerResetMs,
        retry: { maxRetries: p.retries },
      });
      guard.on('breaker:open', () => log.warn({ backend: name }, 'backend circuit opened: jobs wait for it'));
      guard.on('breaker:half-open', () =>
        log.info({ backend: name }, 'backend circuit half-open: trial call'),
      );
      guard.on('breaker:close', () => log.info({ backend: name }, 'backend circuit closed'));
      guard.on('retry', (r) =>
        log.debug(
          { backend: name, attempt: r.attempt, delayMs: Math.round(r.delayMs), err: r.error.message },
          'retrying backend call',
        ),
      );
      guards.set(name, guard);
    }
    return guard;
  };

  let inference: InferenceRouter | undefined;
  if (opts.inference) {
    const backends = new Map<string, InferenceBackend>();
    const backendFor = (kind: InferenceKind, url: string | undefined): InferenceBackend => {
      const base =
        kind === 'ollama'
          ? (url ?? opts.ollamaUrl ?? p.ollamaUrl ?? DEFAULT_OLLAMA_URL)
          : (url ?? p.openaiUrl);
      if (base === undefined) throw new TypeError('an openai route needs CELL0_OPENAI_URL or openai@URL');
      const key = `${kind} ${base}`;
      let b = backends.get(key);
      if (!b) {
        b =
          kind === 'ollama'
            ? new OllamaBackend(
                new OllamaClient({ baseUrl: base, timeoutMs: config.workers.providerTimeoutMs, pools }),
              )
            : new OpenAIBackend(
                new OpenAIClient({
                  baseUrl: base,
                  ...(p.openaiApiKey !== undefined ? { apiKey: p.openaiApiKey } : {}),
                  timeoutMs: config.workers.providerTimeoutMs,
                  pools,
                }),
              );
        backends.set(key, b);
      }
      return b;
    };
    const routes: InferenceRoute[] = effectiveRoutes(config).map((r) => {
      const backend = backendFor(r.kind, r.url);
      const guard = guardFor(r.kind, backend.origin!, r.kind === 'openai' ? p.openaiApiKey : undefined);
      banner.push(`inference  ${r.pattern} → ${r.kind} ${backend.origin}${describeLimit(guard)}`);
      return { pattern: r.pattern, backend, guard };
    });
    inference = new InferenceRouter(routes);
  }

  const search: Partial<Record<SearchProvider, SearchBackend>> = {};
  if (opts.search) {
    const local = new LocalSearch(p.searchCorpusDir ? { dir: p.searchCorpusDir } : {});
    for (const problem of local.problems) log.warn(problem, 'search corpus: skipped a document');
    search[SearchProvider.LOCAL] = local;
    banner.push(`search     local: ${local.size} documents`);
    if (p.searxngUrl !== undefined) {
      const sx = new SearxngSearch({
        baseUrl: p.searxngUrl,
        timeoutMs: config.workers.providerTimeoutMs,
        pools,
      });
      const guard = guardFor('searxng', sx.origin, undefined);
      search[SearchProvider.SEARXNG] = new GuardedSearch(sx, guard);
      banner.push(`search     searxng: ${sx.origin}${describeLimit(guard)}`);
    }
    if (p.braveApiKey !== undefined) {
      const brave = new BraveSearch({
        apiKey: p.braveApiKey,
        baseUrl: p.braveUrl,
        timeoutMs: config.workers.providerTimeoutMs,
        pools,
      });
      const guard = guardFor('brave', brave.origin, p.braveApiKey);
      search[SearchProvider.BRAVE] = new GuardedSearch(brave, guard);
      banner.push(`search     brave: ${brave.origin}${describeLimit(guard)}`);
    }
  }

  let closing: Promise<void> | undefined;
  return {
    inference,
    search,
    pools,
    guards: [...guards.values()],
    describe: () => banner,
    metrics: () => ({ pools: pools.metrics(), backends: [...guards.values()].map((g) => g.metrics()) }),
    health: () => ({
      backends: [...guards.values()].map((g) => g.health()),
      ...(inference
        ? { inference: inference.routes.map((r) => ({ pattern: r.pattern, backend: r.guard?.name ?? null })) }
        : {}),
      ...(opts.search
        ? {
            search: Object.fromEntries(
              Object.entries(search).map(([provider, b]) => [
                provider,
                b instanceof GuardedSearch ? b.guard.name : null,
              ]),
            ),
          }
        : {}),
    }),
    close: () => {
      closing ??= (async () => {
        await Promise.allSettled([inference?.close(), ...Object.values(search).map((b) => b?.close())]);
        for (const g of guards.values()) g.close();
        await pools.close();
      })();
      return closing;
    },
  };
}

function describeLimit(guard: BackendGuard): string {
  const c = guard.concurrency?.metrics();
  const calls = c ? ` (calls in flight: ${c.mode === 'fixed' ? c.limit : `adaptive, at most ${c.max}`})` : '';
  const l = guard.limiter;
  if (!l) return calls;
  const m = l.metrics();
  return `${calls} (limit ${m.rate}/s, burst ${m.capacity}${m.maxInFlight > 0 ? `, ${m.maxInFlight} in flight` : ''}, ${m.scope})`;
}

/** A short, non-reversible tag of an API key: buckets per key without the key in Redis or logs. */
function fingerprint(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 12);
}
