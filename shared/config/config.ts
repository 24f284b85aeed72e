import { existsSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, type FieldIssue } from '../errors.js';
import { parseModelRoutes, parseRateLimits, type ModelRoute, type RateLimitSpec } from './provider-routes.js';
import { parseSearchTtls, parseThresholds } from './search-ttls.js';
import {
  parseCleanupPaths,
  parseModelBudget,
  parseModelPriorities,
  type CleanupPathSetting,
  type ModelBudgetSetting,
  type ModelPriorityRule,
} from './resource-settings.js';
import { EvictionPolicy } from '../resources/types.js';
import { type EnvSection } from './env-sections.js';

/*
 * The one module that reads the environment. Every variable is declared here once, with its default and
 * what it expects; `loadConfig()` validates them all at start and reports every bad one in one error.
 * Keep .env.example in step with ENV, and regenerate docs/configuration.md from it with
 * `npm run docs:config` (tests check both).
 */

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, `expected an integer between ${min} and ${max}`)
    .transform(Number)
    .pipe(
      z.number().int().min(min, `expected an integer >= ${min}`).max(max, `expected an integer <= ${max}`),
    );

const bool = z
  .string()
  .trim()
  .toLowerCase()
  .refine(
    (v) => ['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'].includes(v),
    'expected 1/0, true/false, yes/no or on/off',
  )
  .transform((v) => ['1', 'true', 'yes', 'on'].includes(v));

const httpUrl = z
  .string()
  .trim()
  .refine((v) => {
    try {
      const u = new URL(v);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'expected an http:// or https:// URL')
  .transform((v) => v.replace(/\/+$/, ''));

const redisUrl = z
  .string()
  .trim()
  .refine((v) => {
    try {
      const u = new URL(v);
      return u.protocol === 'redis:' || u.protocol === 'rediss:';
    } catch {
      return false;
    }
  }, 'expected a redis:// or rediss:// URL, for example redis://:password@host:6379/0');

const list = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0),
);

/** A one-line list parsed by `parse`; its Error message becomes the variable's reason. */
const parsedList = <T>(parse: (v: string) => T) =>
  z.string().transform((v, ctx) => {
    try {
      return parse(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
      return z.NEVER;
    }
  });

const rate = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?$/, `expected a number between ${min} and ${max}`)
    .transform(Number)
    .pipe(z.number().min(min, `expected a number >= ${min}`).max(max, `expected a number <= ${max}`));

/** Declaration of one environment variable. */
export interface EnvVar {
  /** Where docs/configuration.md lists it (see env-sections.ts). */
  section: EnvSection;
  /** Default as it would be written in the environment; undefined = unset by default. */
  default?: string;
  schema: z.ZodType;
  /** One line for .env.example and docs/configuration.md. */
  doc: string;
  /** Never logged or echoed back. */
  secret?: boolean;
}

/** Every environment variable cell0 reads. */
export const ENV = {
  CELL0_MAX_MEMORY_PERCENT: {
    section: 'resources',
    default: '85',
    schema: int(0, 100),
    doc: "Memory use (% of host RAM, or of the container's memory limit) above which a worker stops taking jobs (0 = no limit)",
  },
  CELL0_MAX_CPU_PERCENT: {
    section: 'resources',
    default: '90',
    schema: int(0, 100),
    doc: "cell0's own CPU (% of its cgroup quota, else % of one core for the worker process) above which a worker counts as saturated; the API sheds only while every worker is and the queue is behind (0 = no limit)",
  },
  CELL0_CPU_WINDOW_MS: {
    section: 'resources',
    default: '10000',
    schema: int(0, 600_000),
    doc: "Sliding window of a worker's CPU figure, ms (0 = each sample interval alone)",
  },
  CELL0_MAX_DISK_PERCENT: {
    section: 'resources',
    default: '95',
    schema: int(0, 100),
    doc: 'Disk use (% of the filesystem holding CELL0_DATA_DIR) above which a worker stops taking jobs (0 = no limit)',
  },
  CELL0_MAX_HEAP_PERCENT: {
    section: 'resources',
    default: '0',
    schema: int(0, 100),
    doc: "A worker's V8 heap use (% of its limit) above which it stops taking jobs (0 = no limit)",
  },
  CELL0_MAX_EVENT_LOOP_DELAY_MS: {
    section: 'resources',
    default: '0',
    schema: int(0, 600_000),
    doc: "A worker's event-loop delay (p99 over a sample interval, ms) above which it stops taking jobs (0 = no limit)",
  },
  CELL0_RESOURCE_SAMPLE_MS: {
    section: 'resources',
    default: '2000',
    schema: int(100, 600_000),
    doc: 'How often each worker samples memory, CPU, disk and its own heap and event loop, ms',
  },
  CELL0_RESOURCE_HYSTERESIS: {
    section: 'resources',
    default: '5',
    schema: int(0, 50),
    doc: 'Points a value must fall below its limit before a worker under pressure takes jobs again',
  },
  CELL0_MAX_QUEUE_DEPTH: {
    section: 'resources',
    default: '10000',
    schema: int(0, 100_000_000),
    doc: 'Jobs waiting in a queue above which POST /v1/* answers 503 with Retry-After (0 = no bound)',
  },
  CELL0_BEHIND_WINDOW_MS: {
    section: 'resources',
    default: '10000',
    schema: int(1000, 3_600_000),
    doc: 'How far back the API looks to tell whether a queue is growing (behind), ms',
  },
  CELL0_BEHIND_WAIT_AGE_MS: {
    section: 'resources',
    default: '30000',
    schema: int(0, 86_400_000),
    doc: 'A queue whose oldest waiting job has waited longer than this counts as behind, ms (0 = only growth counts)',
  },
  CELL0_OVERLOAD_RETRY_AFTER_SEC: {
    section: 'resources',
    default: '5',
    schema: int(1, 3600),
    doc: 'Retry-After of the 503 answered while the fleet is overloaded, seconds',
  },
  CELL0_MODEL_MEMORY_BUDGET: {
    section: 'models',
    default: 'auto',
    schema: parsedList(parseModelBudget),
    doc: "Memory for models resident in a worker's Ollama backend: a size (16GB, 12GiB), auto (half of the host's memory) or off (no model management)",
  },
  CELL0_EVICTION_POLICY: {
    section: 'models',
    default: 'LRU',
    schema: z
      .string()
      .trim()
      .toUpperCase()
      .pipe(z.enum(EvictionPolicy, 'expected LRU, LFU, FIFO, TTL or COST_BASED')),
    doc: 'Which resident model goes first when another must be loaded: LRU, LFU (decaying), FIFO, TTL or COST_BASED (GreedyDual-Size)',
  },
  CELL0_MODEL_PRIORITIES: {
    section: 'models',
    schema: parsedList(parseModelPriorities),
    doc: 'Model priorities and pins: pattern=priority or pattern=pin, e.g. nomic-embed-text*=pin,qwen2.5:7b=10 (lower priorities are evicted first; default 0)',
  },
  CELL0_MODEL_KEEP_ALIVE_MS: {
    section: 'models',
    default: '300000',
    schema: int(1000, 604_800_000),
    doc: 'Idle time after which a resident model may be unloaded (the TTL policy, and the periodic sweep), ms',
  },
  CELL0_MONITOR_EVERY_MS: {
    section: 'maintenance',
    default: '5000',
    schema: int(1000, 3_600_000),
    doc: "Period of the fleet's scheduled monitor job (fleet summary, dead workers), ms",
  },
  CELL0_CLEANUP_EVERY_MS: {
    section: 'maintenance',
    default: '300000',
    schema: int(10_000, 86_400_000),
    doc: "Period of the fleet's scheduled cleanup job (disk, expired cache records, old jobs), ms",
  },
  CELL0_CLEANUP_PATHS: {
    section: 'maintenance',
    schema: parsedList(parseCleanupPaths),
    doc: 'Folders the cleanup job keeps tidy: folder=days (files older than that are removed), e.g. /var/tmp/cell0=2,logs=7',
  },
  CELL0_DISK_CLEANUP_THRESHOLD: {
    section: 'maintenance',
    default: '90',
    schema: int(1, 100),
    doc: 'Disk use (%) above which cleanup also removes the oldest files of CELL0_CLEANUP_PATHS until under it',
  },
  REDIS_URL: {
    section: 'redis',
    schema: redisUrl,
    doc: 'Redis URL; wins over CELL0_REDIS_HOST/PORT. redis://[:password@]host:port[/db], rediss:// for TLS',
    secret: true,
  },
  CELL0_REDIS_HOST: {
    section: 'redis',
    default: 'localhost',
    schema: z.string().trim().min(1, 'expected a host name'),
    doc: 'Redis host (when REDIS_URL is unset)',
  },
  CELL0_REDIS_PORT: {
    section: 'redis',
    default: '6379',
    schema: int(1, 65535),
    doc: 'Redis port (when REDIS_URL is unset)',
  },
  CELL0_QUEUE_PREFIX: {
    section: 'redis',
    default: '{cell0}',
    schema: z.string().regex(/^\{[A-Za-z0-9_.-]+\}$/, 'expected a Redis Cluster hash tag such as {cell0}'),
    doc: 'Key prefix of every queue; a {hash tag} keeps each queue in one cluster slot',
  },
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
    doc: 'Lowest match level of the semantic cache that answers a request (exact = only the same prompt after normalisation)',
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
  CELL0_REDIS_COMMAND_TIMEOUT_MS: {
    section: 'redis',
    default: '2000',
    schema: int(50, 60_000),
    doc: "A Redis command that takes longer fails, in producers (503 CELL0_REDIS_TIMEOUT: slow, not down; it does not open the breaker) and in workers' cache writes",
  },
  CELL0_REDIS_MEMORY_WATERMARK: {
    section: 'redis',
    default: '90',
    schema: int(0, 100),
    doc: 'Redis used memory (% of maxmemory) at which new work is refused with 503 CELL0_REDIS_FULL, before Redis refuses writes (0 = off; no effect without maxmemory)',
  },
  CELL0_REDIS_BREAKER_THRESHOLD: {
    section: 'redis',
    default: '5',
    schema: int(1, 1000),
    doc: 'Consecutive Redis failures that open the breaker',
  },
  CELL0_REDIS_BREAKER_RESET_MS: {
    section: 'redis',
    default: '5000',
    schema: int(100, 600_000),
    doc: 'How long the Redis breaker stays open before a trial call (half-open)',
  },
  CELL0_HOST: {
    section: 'api',
    default: '127.0.0.1',
    schema: z.string().trim().min(1, 'expected an address to listen on'),
    doc: 'Address the API and dashboard listen on (0.0.0.0 in containers)',
  },
  CELL0_PORT: {
    section: 'api',
    default: '3000',
    schema: int(0, 65535),
    doc: 'Port of the HTTP API (and of Bull Board in `cell0 start`)',
  },
  CELL0_DASHBOARD_PORT: {
    section: 'api',
    default: '3001',
    schema: int(0, 65535),
    doc: 'Port of `cell0 dashboard` when run on its own',
  },
  CELL0_API_KEYS: {
    section: 'api',
    schema: list,
    doc: 'Comma-separated tenant API keys; when set, the /v1 work routes require `Authorization: Bearer <key>` and each key sees only its own jobs and cache entries',
    secret: true,
  },
  CELL0_ADMIN_KEYS: {
    section: 'api',
    schema: list,
    doc: 'Comma-separated admin keys, the only keys that open Bull Board, /v1/fleet and /v1/queues (with tenant keys and none of these, those routes are off)',
    secret: true,
  },
  CELL0_TENANT_SECRET: {
    section: 'api',
    schema: z.string().min(16, 'expected at least 16 characters, e.g. the output of `openssl rand -hex 32`'),
    doc: 'Secret the tenant ids are derived with (HMAC-SHA256 of each API key). Unset: one is generated on first start and kept in Redis under the queue prefix',
    secret: true,
  },
  CELL0_DASHBOARD_WRITE: {
    section: 'api',
    default: '0',
    schema: bool,
    doc: 'Let Bull Board retry, promote and remove jobs (read-only when 0)',
  },
  CELL0_INFERENCE_CONCURRENCY: {
    section: 'workers',
    default: '64',
    schema: int(1, 1000),
    doc: "Inference jobs one worker process holds at once: a high cap; how many of them call a backend at once is the backend limit's (CELL0_BACKEND_LIMIT)",
  },
  CELL0_SEARCH_CONCURRENCY: {
    section: 'workers',
    default: '8',
    schema: int(1, 1000),
    doc: 'Search jobs one worker process runs at once',
  },
  CELL0_EMBED_CONCURRENCY: {
    section: 'workers',
    default: '256',
    schema: int(1, 10_000),
    doc: 'Embedding jobs one worker process holds at once (they wait together for their shared backend calls)',
  },
  CELL0_EMBED_BATCH_MAX: {
    section: 'workers',
    default: '64',
    schema: int(1, 2048),
    doc: 'Most embedding inputs in one backend call (1 = one call per input, no batching)',
  },
  CELL0_EMBED_BATCH_WAIT_MS: {
    section: 'workers',
    default: '10',
    schema: int(0, 10_000),
    doc: 'Longest a ready embedding job waits for others of its model to share a backend call',
  },
  CELL0_EMBED_BATCHES_IN_FLIGHT: {
    section: 'workers',
    default: '4',
    schema: int(1, 1000),
    doc: 'Embedding backend calls one worker process has in flight at once',
  },
  CELL0_RESULT_WAIT_MS: {
    section: 'api',
    default: '30000',
    schema: int(0, 600_000),
    doc: 'How long POST /v1/* waits for the result before answering 202 (request field `wait` overrides)',
  },
  CELL0_MAX_WAIT_MS: {
    section: 'api',
    default: '120000',
    schema: int(0, 600_000),
    doc: 'Largest `wait` a request may ask for',
  },
  CELL0_BATCH_MAX_ITEMS: {
    section: 'batches',
    default: '50000',
    schema: int(1, 1_000_000),
    doc: 'Most requests in one batch (POST /v1/batches); more get 413',
  },
  CELL0_BATCH_MAX_BODY_BYTES: {
    section: 'batches',
    default: '67108864',
    schema: int(1024, 1_073_741_824),
    doc: 'Largest body of POST /v1/batches (this route only; the others keep CELL0_MAX_BODY_BYTES); larger bodies get 413',
  },
  CELL0_BATCH_CONCURRENCY: {
    section: 'batches',
    default: '256',
    schema: int(1, 10_000),
    doc: 'Batch items each API process runs at once (each waits for its job); also the most jobs one process puts on the work queues for batches',
  },
  CELL0_BATCH_TTL: {
    section: 'batches',
    default: '86400',
    schema: int(1, 31_536_000),
    doc: 'Seconds a finished batch (status and results) is kept',
  },
  CELL0_MAX_PROMPT_BYTES: {
    section: 'limits',
    default: '32768',
    schema: int(1, 16_777_216),
    doc: 'Largest prompt (prompt + system + all message contents, UTF-8 bytes)',
  },
  CELL0_MAX_QUERY_BYTES: {
    section: 'limits',
    default: '2048',
    schema: int(1, 1_048_576),
    doc: 'Largest search query, UTF-8 bytes',
  },
  CELL0_EMBED_MAX_INPUTS: {
    section: 'limits',
    default: '2048',
    schema: int(1, 100_000),
    doc: 'Most inputs one POST /v1/embeddings request may carry (each input is also held to CELL0_MAX_PROMPT_BYTES)',
  },
  CELL0_EMBED_MAX_BODY_BYTES: {
    section: 'limits',
    default: '4194304',
    schema: int(1024, 67_108_864),
    doc: 'Largest body of POST /v1/embeddings (a list of texts is larger than one request of the other kinds)',
  },
  CELL0_MAX_BODY_BYTES: {
    section: 'limits',
    default: '65536',
    schema: int(1024, 67_108_864),
    doc: 'Largest HTTP request body; larger bodies get 413',
  },
  CELL0_RESULT_TTL: {
    section: 'jobs',
    default: '3600',
    schema: int(1, 31_536_000),
    doc: 'Seconds a completed job (and its result) is kept; identical requests in that window get it without a new run',
  },
  CELL0_RESULT_MAX_JOBS: {
    section: 'jobs',
    default: '100000',
    schema: int(1, 100_000_000),
    doc: 'Most completed jobs kept per queue; beyond it the oldest go first (a later identical request re-runs)',
  },
  CELL0_FAILED_TTL: {
    section: 'jobs',
    default: '86400',
    schema: int(1, 31_536_000),
    doc: 'Seconds a failed job is kept for inspection; an identical request re-runs it',
  },
  CELL0_JOB_ATTEMPTS: {
    section: 'jobs',
    default: '3',
    schema: int(1, 100),
    doc: 'Attempts per job for retryable failures',
  },
  CELL0_JOB_BACKOFF_MS: {
    section: 'jobs',
    default: '1000',
    schema: int(0, 3_600_000),
    doc: 'First retry delay (exponential backoff)',
  },
  CELL0_PROVIDER_TIMEOUT_MS: {
    section: 'workers',
    default: '120000',
    schema: int(100, 3_600_000),
    doc: 'Longest a single provider call may take',
  },
  CELL0_SHUTDOWN_TIMEOUT_MS: {
    section: 'workers',
    default: '30000',
    schema: int(0, 3_600_000),
    doc: 'On SIGTERM, how long active jobs may run before the worker is forced down',
  },
  CELL0_OLLAMA_URL: {
    section: 'backends',
    schema: httpUrl,
    doc: 'Ollama (or Ollama-compatible) base URL. Unset: `cell0 start` runs the bundled simulator in its place when a model is routed to Ollama; `cell0 worker` uses http://127.0.0.1:11434',
  },
  CELL0_OPENAI_URL: {
    section: 'backends',
    schema: httpUrl,
    doc: 'OpenAI-compatible base URL including /v1 (vLLM, llama.cpp server, hosted APIs), e.g. http://127.0.0.1:8000/v1',
  },
  CELL0_OPENAI_API_KEY: {
    section: 'backends',
    schema: z.string().trim().min(1, 'expected a key'),
    doc: 'API key sent as a Bearer token to CELL0_OPENAI_URL (and to openai@URL routes)',
    secret: true,
  },
  CELL0_MODEL_ROUTES: {
    section: 'backends',
    schema: parsedList(parseModelRoutes),
    doc: 'Which backend serves which model: pattern=ollama|openai[@url], comma-separated, first match wins, * is a wildcard (e.g. qwen2.5:*=ollama,gpt-*=openai). Default: *=ollama, or *=openai when only CELL0_OPENAI_URL is set',
  },
  CELL0_SEARXNG_URL: {
    section: 'backends',
    schema: httpUrl,
    doc: 'SearXNG base URL (its JSON format must be enabled); enables provider "searxng"',
  },
  CELL0_BRAVE_API_KEY: {
    section: 'backends',
    schema: z.string().trim().min(1, 'expected a key'),
    doc: 'Brave Search API subscription token; enables provider "brave"',
    secret: true,
  },
  CELL0_BRAVE_URL: {
    section: 'backends',
    default: 'https://api.search.brave.com',
    schema: httpUrl,
    doc: 'Base URL of the Brave Search API',
  },
  CELL0_RATE_LIMITS: {
    section: 'guards',
    default: 'brave=1/1',
    schema: parsedList(parseRateLimits),
    doc: 'Token-bucket limits per backend: target=rate[/burst[/maxInFlight]], comma-separated; target is ollama|openai|brave|searxng (each origin of that kind) or a URL origin. Default brave=1/1 (the free tier)',
  },
  CELL0_RATE_LIMIT_SCOPE: {
    section: 'guards',
    default: 'fleet',
    schema: z.enum(['fleet', 'process'], 'expected fleet or process'),
    doc: 'fleet: one bucket in Redis shared by every worker process; process: each process has its own',
  },
  CELL0_RATE_LIMIT_MAX_WAIT_MS: {
    section: 'guards',
    default: '5000',
    schema: int(0, 600_000),
    doc: 'Longest a job waits in a worker for a rate-limit token; beyond it the job goes back to the queue (no attempt spent)',
  },
  CELL0_PROVIDER_RETRIES: {
    section: 'guards',
    default: '2',
    schema: int(0, 20),
    doc: 'In-call retries of a retryable provider failure (5xx, unreachable, 429 after Retry-After), exponential backoff with jitter; 4xx are never retried',
  },
  CELL0_PROVIDER_BREAKER_THRESHOLD: {
    section: 'guards',
    default: '5',
    schema: int(1, 1000),
    doc: 'Consecutive failures of one backend origin that open its circuit breaker',
  },
  CELL0_PROVIDER_BREAKER_RESET_MS: {
    section: 'guards',
    default: '10000',
    schema: int(100, 3_600_000),
    doc: 'How long a backend breaker stays open before one trial call',
  },
  CELL0_BACKEND_LIMIT: {
    section: 'guards',
    default: 'adaptive',
    schema: z.union([z.literal('adaptive'), int(1, 10_000)], {
      error: 'expected adaptive or an integer between 1 and 10000',
    }),
    doc: "Calls in flight from one worker process to one backend origin: `adaptive` finds it from the backend's latency and its 429/503 answers (grows while calls stay fast, backs off when they slow down), a number pins it (see docs/backends.md#adaptive-concurrency)",
  },
  CELL0_BACKEND_LIMIT_MAX: {
    section: 'guards',
    default: '64',
    schema: int(1, 10_000),
    doc: 'Cap of the adaptive backend limit per worker process and backend origin (the HTTP pool keeps at least as many connections to it)',
  },
  CELL0_BACKEND_LIMIT_TOLERANCE: {
    section: 'guards',
    default: '5',
    schema: rate(1, 100),
    doc: 'Adaptive backend limit: how many times its no-load latency per token a call may take before the limit stops growing (batching servers slow each call down as they fill up)',
  },
  CELL0_BACKEND_WAIT_MAX_MS: {
    section: 'guards',
    default: '3600000',
    schema: int(0, 604_800_000),
    doc: 'How long a job may keep waiting for an unreachable, open-circuited or rate-limited backend before it fails (0 = no limit)',
  },
  CELL0_HTTP_MAX_CONNECTIONS: {
    section: 'pool',
    default: '256',
    schema: int(1, 100_000),
    doc: 'Most backend HTTP requests in flight at once per worker process, over all backends',
  },
  CELL0_HTTP_CONNECTIONS_PER_HOST: {
    section: 'pool',
    default: '16',
    schema: int(1, 10_000),
    doc: 'Keep-alive connections per backend origin; more concurrent calls queue',
  },
  CELL0_HTTP_CONNECT_TIMEOUT_MS: {
    section: 'pool',
    default: '10000',
    schema: int(1, 600_000),
    doc: 'Longest wait for a TCP/TLS connection to a backend',
  },
  CELL0_HTTP_BODY_TIMEOUT_MS: {
    section: 'pool',
    default: '60000',
    schema: int(0, 3_600_000),
    doc: 'Longest silence between two chunks of a backend answer (0 = none)',
  },
  CELL0_HTTP_KEEPALIVE_MS: {
    section: 'pool',
    default: '4000',
    schema: int(1, 3_600_000),
    doc: 'How long an idle backend connection is kept when the server gives no keep-alive hint',
  },
  CELL0_SEARCH_CORPUS_DIR: {
    section: 'backends',
    schema: z.string().trim().min(1, 'expected a folder path'),
    doc: 'Folder of documents for the local search provider (default: the bundled data/corpus)',
  },
  CELL0_SIM_HOST: {
    section: 'simulator',
    default: '127.0.0.1',
    schema: z.string().trim().min(1, 'expected an address'),
    doc: 'Address the simulator listens on',
  },
  CELL0_SIM_PORT: {
    section: 'simulator',
    default: '11435',
    schema: int(0, 65535),
    doc: 'Port of the Ollama-compatible simulator',
  },
  CELL0_SIM_TTFT_MS: {
    section: 'simulator',
    default: '40',
    schema: int(0, 600_000),
    doc: 'Simulator: time to first token once the model is loaded',
  },
  CELL0_SIM_TOKENS_PER_SEC: {
    section: 'simulator',
    default: '200',
    schema: int(1, 1_000_000),
    doc: 'Simulator: generation speed',
  },
  CELL0_SIM_LOAD_MS_PER_GB: {
    section: 'simulator',
    default: '100',
    schema: int(0, 600_000),
    doc: 'Simulator: model load time per GB of model size',
  },
  CELL0_SIM_EMBED_CALL_MS: {
    section: 'simulator',
    default: '15',
    schema: rate(0, 600_000),
    doc: 'Simulator: fixed cost of one /api/embed call, ms (per call, whatever the number of inputs)',
  },
  CELL0_SIM_EMBED_ITEM_MS: {
    section: 'simulator',
    default: '0.5',
    schema: rate(0, 600_000),
    doc: 'Simulator: cost of each input of an /api/embed call, ms',
  },
  CELL0_SIM_EMBED_PARALLEL: {
    section: 'simulator',
    default: '4',
    schema: int(1, 1000),
    doc: 'Simulator: /api/embed calls one model computes at once; more wait their turn (like OLLAMA_NUM_PARALLEL)',
  },
  CELL0_SIM_MAX_LOADED: {
    section: 'simulator',
    default: '3',
    schema: int(1, 1000),
    doc: 'Simulator: models resident at once (least recently used is unloaded)',
  },
  CELL0_SIM_ALLOW_ANY_MODEL: {
    section: 'simulator',
    default: '0',
    schema: bool,
    doc: 'Simulator: serve model names outside its catalog instead of answering 404',
  },
  CELL0_SIM_FAULT_RATE_429: {
    section: 'simulator',
    default: '0',
    schema: rate(0, 1),
    doc: 'Simulator fault injection: fraction of model calls answered 429 with Retry-After',
  },
  CELL0_SIM_FAULT_RETRY_AFTER_SEC: {
    section: 'simulator',
    default: '1',
    schema: int(0, 3600),
    doc: 'Simulator: Retry-After of injected 429s, seconds',
  },
  CELL0_SIM_FAULT_RATE_500: {
    section: 'simulator',
    default: '0',
    schema: rate(0, 1),
    doc: 'Simulator: fraction of model calls answered 500',
  },
  CELL0_SIM_FAULT_SLOW_RATE: {
    section: 'simulator',
    default: '0',
    schema: rate(0, 1),
    doc: 'Simulator: fraction of model calls delayed by CELL0_SIM_FAULT_SLOW_MS',
  },
  CELL0_SIM_FAULT_SLOW_MS: {
    section: 'simulator',
    default: '2000',
    schema: int(0, 3_600_000),
    doc: 'Simulator: delay of slowed calls',
  },
  CELL0_SIM_FAULT_DROP_RATE: {
    section: 'simulator',
    default: '0',
    schema: rate(0, 1),
    doc: 'Simulator: fraction of model calls whose connection is dropped without an answer',
  },
  CELL0_SIM_FAULT_SEED: {
    section: 'simulator',
    schema: int(0, 2 ** 31 - 1),
    doc: 'Simulator: seed of the fault draws (default random)',
  },
  CELL0_SIM_RATE_LIMIT_RPS: {
    section: 'simulator',
    schema: rate(0.001, 1_000_000),
    doc: 'Simulator: its own token-bucket limit on model calls (answers 429 beyond it), requests per second',
  },
  CELL0_SIM_RATE_LIMIT_BURST: {
    section: 'simulator',
    schema: int(1, 1_000_000),
    doc: 'Simulator: burst of its own limit (default: the rate, at least 1)',
  },
  CELL0_SIM_GPU: {
    section: 'simulator',
    default: '0',
    schema: bool,
    doc: 'Simulator: serve like one GPU (parallel slots per model, shared throughput, a bounded queue answering 503); off: every request runs at CELL0_SIM_TOKENS_PER_SEC however many run at once',
  },
  CELL0_SIM_NUM_PARALLEL: {
    section: 'simulator',
    default: '4',
    schema: int(1, 4096),
    doc: 'Simulator with CELL0_SIM_GPU: requests one model runs at once (like OLLAMA_NUM_PARALLEL)',
  },
  CELL0_SIM_MAX_QUEUE: {
    section: 'simulator',
    default: '512',
    schema: int(0, 1_000_000),
    doc: 'Simulator with CELL0_SIM_GPU: requests waiting for a slot per model before 503 (like OLLAMA_MAX_QUEUE)',
  },
  CELL0_SIM_GPU_TOKENS_PER_SEC: {
    section: 'simulator',
    default: '100',
    schema: int(1, 1_000_000),
    doc: 'Simulator with CELL0_SIM_GPU: decode speed of one request alone',
  },
  CELL0_SIM_GPU_MAX_TOKENS_PER_SEC: {
    section: 'simulator',
    default: '1500',
    schema: int(1, 10_000_000),
    doc: 'Simulator with CELL0_SIM_GPU: aggregate decode speed approached with many requests at once (batching ceiling)',
  },
  CELL0_SIM_PREFILL_TOKENS_PER_SEC: {
    section: 'simulator',
    default: '3000',
    schema: int(1, 10_000_000),
    doc: 'Simulator with CELL0_SIM_GPU: prompt evaluation speed (adds to the time to first token)',
  },
  CELL0_EMBEDDED_REDIS: {
    section: 'redis',
    default: 'auto',
    schema: z.enum(['auto', 'never'], 'expected auto or never'),
    doc: '`cell0 start`: launch a private redis-server when none answers (auto) or never',
  },
  CELL0_DATA_DIR: {
    section: 'redis',
    default: '.cell0',
    schema: z.string().trim().min(1, 'expected a folder path'),
    doc: 'Where `cell0 start` keeps the embedded Redis data; workers measure disk use on the filesystem holding it (the working folder until it exists)',
  },
  CELL0_LOG_LEVEL: {
    section: 'logging',
    default: 'info',
    schema: z.enum(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      'expected one of fatal, error, warn, info, debug, trace, silent',
    ),
    doc: 'pino log level',
  },
  CELL0_METRICS: {
    section: 'observability',
    default: '1',
    schema: bool,
    doc: 'Count and serve Prometheus metrics: `GET /metrics` on the API port, and on CELL0_METRICS_PORT for `cell0 worker` (0 turns both off)',
  },
  CELL0_METRICS_PORT: {
    section: 'observability',
    default: '9464',
    schema: int(0, 65535),
    doc: "Port of a `cell0 worker`'s metrics listener (`GET /metrics`), bound to CELL0_HOST like the API; `cell0 start` serves everything on its API port. 0 = any free port. When the port is taken (another worker on the host), the worker serves on a free port and logs a warning with its URL, rather than failing to start",
  },
  CELL0_METRICS_TOKEN: {
    section: 'observability',
    schema: z.string().min(16, 'expected at least 16 characters'),
    doc: 'When set, `GET /metrics` (API and workers) needs `Authorization: Bearer <token>`',
    secret: true,
  },
  CELL0_METRICS_TENANT_LABEL: {
    section: 'observability',
    default: '0',
    schema: bool,
    doc: 'Add a `tenant` label (the tenant id, a hash of the API key, never the key) to `cell0_http_requests_total`',
  },
  CELL0_LOG_OUTAGE_SUMMARY_MS: {
    section: 'logging',
    default: '60000',
    schema: int(100, 86_400_000),
    doc: 'While Redis is unreachable, one summary log line per this period (how long, errors suppressed); the down and up transitions are logged once each, ms',
  },
  CELL0_LOG_SAMPLE: {
    section: 'logging',
    default: '1',
    schema: rate(0, 1),
    doc: 'Fraction of the per-request and per-job success lines (request, job completed) that are written, e.g. 0.01 for one in a hundred; warnings and errors are always written. Lines go to stdout asynchronously',
  },
} satisfies Record<string, EnvVar>;

type EnvName = keyof typeof ENV;
type Parsed = {
  [K in EnvName]: (typeof ENV)[K] extends { default: string }
    ? z.output<(typeof ENV)[K]['schema']>
    : z.output<(typeof ENV)[K]['schema']> | undefined;
};

/** Validated configuration of one cell0 process. */
export interface Config {
  redis: {
    /** REDIS_URL when given, else built from host and port. */
    url: string;
    /** True when REDIS_URL was given explicitly. */
    explicitUrl: boolean;
    host: string;
    port: number;
    prefix: string;
    commandTimeoutMs: number;
    breakerThreshold: number;
    breakerResetMs: number;
    memoryWatermarkPercent: number;
  };
  limits: {
    maxMemoryPercent: number;
    maxCpuPercent: number;
    maxDiskPercent: number;
    maxHeapPercent: number;
    maxEventLoopDelayMs: number;
    maxPromptBytes: number;
    maxQueryBytes: number;
    maxBodyBytes: number;
    /** Most inputs of one embeddings request. */
    maxEmbedInputs: number;
    /** Largest body of POST /v1/embeddings. */
    maxEmbedBodyBytes: number;
  };
  cache: {
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
  };
  api: {
    host: string;
    port: number;
    dashboardPort: number;
    apiKeys: string[];
    adminKeys: string[];
    tenantSecret: string | undefined;
    dashboardWrite: boolean;
    resultWaitMs: number;
    maxWaitMs: number;
  };
  batches: {
    maxItems: number;
    maxBodyBytes: number;
    concurrency: number;
    ttlSeconds: number;
  };
  jobs: {
    resultTtlSeconds: number;
    failedTtlSeconds: number;
    maxCompletedJobs: number;
    attempts: number;
    backoffMs: number;
  };
  workers: {
    inferenceConcurrency: number;
    searchConcurrency: number;
    embeddingConcurrency: number;
    /** How a worker gathers embedding jobs into backend calls. */
    embedBatch: { maxBatchSize: number; maxWaitMs: number; maxConcurrentBatches: number };
    providerTimeoutMs: number;
    shutdownTimeoutMs: number;
  };
  providers: {
    /** Undefined when not configured (see CELL0_OLLAMA_URL). */
    ollamaUrl: string | undefined;
    openaiUrl: string | undefined;
    openaiApiKey: string | undefined;
    /** As configured; undefined = the default route (see CELL0_MODEL_ROUTES). */
    modelRoutes: ModelRoute[] | undefined;
    searxngUrl: string | undefined;
    braveApiKey: string | undefined;
    braveUrl: string;
    searchCorpusDir: string | undefined;
    rateLimits: RateLimitSpec[];
    rateLimitScope: 'fleet' | 'process';
    rateLimitMaxWaitMs: number;
    retries: number;
    breakerThreshold: number;
    breakerResetMs: number;
    backendWaitMaxMs: number;
    /** Calls in flight per worker process and backend origin: adaptive (with its cap) or pinned. */
    backendLimit: { mode: 'adaptive' | 'fixed'; fixed: number; max: number; tolerance: number };
    http: {
      maxConnections: number;
      connectionsPerHost: number;
      connectTimeoutMs: number;
      bodyTimeoutMs: number;
      keepAliveMs: number;
    };
  };
  simulator: {
    host: string;
    port: number;
    ttftMs: number;
    tokensPerSec: number;
    loadMsPerGb: number;
    maxLoaded: number;
    allowAnyModel: boolean;
    embedCallMs: number;
    embedItemMs: number;
    embedParallel: number;
    /** GPU-like serving (see the simulator's gpu-model.ts); false when CELL0_SIM_GPU is off. */
    gpu:
      | false
      | {
          numParallel: number;
          maxQueue: number;
          singleStreamTokensPerSec: number;
          maxAggregateTokensPerSec: number;
          prefillTokensPerSec: number;
        };
    faults: {
      rate429: number;
      retryAfterSec: number;
      rate500: number;
      slowRate: number;
      slowMs: number;
      dropRate: number;
      seed?: number;
      rateLimit?: { rate: number; capacity: number };
    };
  };
  resources: {
    sampleMs: number;
    hysteresis: number;
    cpuWindowMs: number;
    behindWindowMs: number;
    behindWaitAgeMs: number;
    maxQueueDepth: number;
    overloadRetryAfterSec: number;
    modelBudget: ModelBudgetSetting;
    evictionPolicy: EvictionPolicy;
    modelPriorities: ModelPriorityRule[];
    modelKeepAliveMs: number;
    monitorEveryMs: number;
    cleanupEveryMs: number;
    cleanupPaths: CleanupPathSetting[];
    diskCleanupThreshold: number;
  };
  metrics: {
    enabled: boolean;
    port: number;
    token: string | undefined;
    tenantLabel: boolean;
  };
  embeddedRedis: 'auto' | 'never';
  dataDir: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Period of the "Redis still unreachable" summary line, ms. */
  logOutageSummaryMs: number;
  /** Fraction of per-request / per-job success lines written (CELL0_LOG_SAMPLE). */
  logSample: number;
}

function describe(value: string): string {
  return value.length > 60 ? JSON.stringify(value.slice(0, 60) + '…') : JSON.stringify(value);
}

/**
 * Reads and validates the environment. Throws a ConfigError naming every bad variable and what it
 * expected (the CLI turns it into exit code 2). Empty strings count as unset.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const issues: FieldIssue[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(ENV) as [EnvName, EnvVar][]) {
    const raw = env[name];
    const value = raw === undefined || raw.trim() === '' ? spec.default : raw;
    if (value === undefined) {
      out[name] = undefined;
      continue;
    }
    const r = spec.schema.safeParse(value);
    if (r.success) out[name] = r.data;
    else {
      const reason = r.error.issues[0]?.message ?? 'invalid value';
      issues.push({ field: name, reason: spec.secret ? reason : `${reason}, got ${describe(value)}` });
    }
  }
  const p = out as Parsed;
  if (issues.length === 0 && p.CELL0_MAX_BODY_BYTES < Math.min(p.CELL0_MAX_PROMPT_BYTES, 16_777_216)) {
    issues.push({
      field: 'CELL0_MAX_BODY_BYTES',
      reason: `expected at least CELL0_MAX_PROMPT_BYTES (${p.CELL0_MAX_PROMPT_BYTES}), got ${p.CELL0_MAX_BODY_BYTES}`,
    });
  }
  if (issues.length === 0) {
    const bare = (p.CELL0_MODEL_ROUTES ?? []).find((r) => r.kind === 'openai' && r.url === undefined);
    if (bare && p.CELL0_OPENAI_URL === undefined)
      issues.push({
        field: 'CELL0_MODEL_ROUTES',
        reason: `route "${bare.pattern}=openai" needs CELL0_OPENAI_URL (or write openai@URL)`,
      });
    if (/^(ollama|openai):/.test(p.CELL0_SEMANTIC_EMBEDDER) && p.CELL0_SEMANTIC_EMBED_DIMS === undefined)
      issues.push({
        field: 'CELL0_SEMANTIC_EMBED_DIMS',
        reason: `required with CELL0_SEMANTIC_EMBEDDER=${p.CELL0_SEMANTIC_EMBEDDER} (the length of its vectors)`,
      });
    for (const name of [
      'CELL0_MAX_MEMORY_PERCENT',
      'CELL0_MAX_CPU_PERCENT',
      'CELL0_MAX_DISK_PERCENT',
      'CELL0_MAX_HEAP_PERCENT',
    ] as const) {
      const v = p[name];
      if (v !== 0 && v <= p.CELL0_RESOURCE_HYSTERESIS)
        issues.push({
          field: name,
          reason: `expected more than CELL0_RESOURCE_HYSTERESIS (${p.CELL0_RESOURCE_HYSTERESIS}) points, or 0 for no limit, got ${v}: pressure could never end`,
        });
    }
    // A key in both lists would let whoever holds a tenant key open the dashboard: refuse the ambiguity.
    const adminKeys = new Set(p.CELL0_ADMIN_KEYS ?? []);
    if ((p.CELL0_API_KEYS ?? []).some((k) => adminKeys.has(k)))
      issues.push({
        field: 'CELL0_ADMIN_KEYS',
        reason: 'a key is also in CELL0_API_KEYS: a key is either a tenant key or an admin key, not both',
      });
    const faultSum =
      p.CELL0_SIM_FAULT_RATE_429 +
      p.CELL0_SIM_FAULT_RATE_500 +
      p.CELL0_SIM_FAULT_SLOW_RATE +
      p.CELL0_SIM_FAULT_DROP_RATE;
    if (faultSum > 1 + 1e-9)
      issues.push({
        field: 'CELL0_SIM_FAULT_RATE_429',
        reason: `the simulator's fault fractions (429 + 500 + slow + drop) add up to ${faultSum}, more than 1`,
      });
  }
  if (issues.length > 0) throw new ConfigError(issues);

  const explicitUrl = p.REDIS_URL !== undefined;
  const url =
    p.REDIS_URL ??
    `redis://${p.CELL0_REDIS_HOST.includes(':') ? `[${p.CELL0_REDIS_HOST}]` : p.CELL0_REDIS_HOST}:${p.CELL0_REDIS_PORT}`;
  const parsedUrl = new URL(url);
  return {
    redis: {
      url,
      explicitUrl,
      host: parsedUrl.hostname.replace(/^\[|\]$/g, ''),
      port: Number(parsedUrl.port || 6379),
      prefix: p.CELL0_QUEUE_PREFIX,
      commandTimeoutMs: p.CELL0_REDIS_COMMAND_TIMEOUT_MS,
      breakerThreshold: p.CELL0_REDIS_BREAKER_THRESHOLD,
      breakerResetMs: p.CELL0_REDIS_BREAKER_RESET_MS,
      memoryWatermarkPercent: p.CELL0_REDIS_MEMORY_WATERMARK,
    },
    limits: {
      maxMemoryPercent: p.CELL0_MAX_MEMORY_PERCENT,
      maxCpuPercent: p.CELL0_MAX_CPU_PERCENT,
      maxDiskPercent: p.CELL0_MAX_DISK_PERCENT,
      maxHeapPercent: p.CELL0_MAX_HEAP_PERCENT,
      maxEventLoopDelayMs: p.CELL0_MAX_EVENT_LOOP_DELAY_MS,
      maxPromptBytes: p.CELL0_MAX_PROMPT_BYTES,
      maxQueryBytes: p.CELL0_MAX_QUERY_BYTES,
      maxBodyBytes: p.CELL0_MAX_BODY_BYTES,
      maxEmbedInputs: p.CELL0_EMBED_MAX_INPUTS,
      maxEmbedBodyBytes: p.CELL0_EMBED_MAX_BODY_BYTES,
    },
    cache: {
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
    },
    api: {
      host: p.CELL0_HOST,
      port: p.CELL0_PORT,
      dashboardPort: p.CELL0_DASHBOARD_PORT,
      apiKeys: p.CELL0_API_KEYS ?? [],
      adminKeys: p.CELL0_ADMIN_KEYS ?? [],
      tenantSecret: p.CELL0_TENANT_SECRET,
      dashboardWrite: p.CELL0_DASHBOARD_WRITE,
      resultWaitMs: p.CELL0_RESULT_WAIT_MS,
      maxWaitMs: p.CELL0_MAX_WAIT_MS,
    },
    batches: {
      maxItems: p.CELL0_BATCH_MAX_ITEMS,
      maxBodyBytes: p.CELL0_BATCH_MAX_BODY_BYTES,
      concurrency: p.CELL0_BATCH_CONCURRENCY,
      ttlSeconds: p.CELL0_BATCH_TTL,
    },
    jobs: {
      resultTtlSeconds: p.CELL0_RESULT_TTL,
      failedTtlSeconds: p.CELL0_FAILED_TTL,
      maxCompletedJobs: p.CELL0_RESULT_MAX_JOBS,
      attempts: p.CELL0_JOB_ATTEMPTS,
      backoffMs: p.CELL0_JOB_BACKOFF_MS,
    },
    workers: {
      inferenceConcurrency: p.CELL0_INFERENCE_CONCURRENCY,
      searchConcurrency: p.CELL0_SEARCH_CONCURRENCY,
      embeddingConcurrency: p.CELL0_EMBED_CONCURRENCY,
      embedBatch: {
        maxBatchSize: p.CELL0_EMBED_BATCH_MAX,
        maxWaitMs: p.CELL0_EMBED_BATCH_WAIT_MS,
        maxConcurrentBatches: p.CELL0_EMBED_BATCHES_IN_FLIGHT,
      },
      providerTimeoutMs: p.CELL0_PROVIDER_TIMEOUT_MS,
      shutdownTimeoutMs: p.CELL0_SHUTDOWN_TIMEOUT_MS,
    },
    providers: {
      ollamaUrl: p.CELL0_OLLAMA_URL,
      openaiUrl: p.CELL0_OPENAI_URL,
      openaiApiKey: p.CELL0_OPENAI_API_KEY,
      modelRoutes: p.CELL0_MODEL_ROUTES,
      searxngUrl: p.CELL0_SEARXNG_URL,
      braveApiKey: p.CELL0_BRAVE_API_KEY,
      braveUrl: p.CELL0_BRAVE_URL,
      searchCorpusDir: p.CELL0_SEARCH_CORPUS_DIR,
      rateLimits: p.CELL0_RATE_LIMITS,
      rateLimitScope: p.CELL0_RATE_LIMIT_SCOPE,
      rateLimitMaxWaitMs: p.CELL0_RATE_LIMIT_MAX_WAIT_MS,
      retries: p.CELL0_PROVIDER_RETRIES,
      breakerThreshold: p.CELL0_PROVIDER_BREAKER_THRESHOLD,
      breakerResetMs: p.CELL0_PROVIDER_BREAKER_RESET_MS,
      backendWaitMaxMs: p.CELL0_BACKEND_WAIT_MAX_MS,
      backendLimit: {
        mode: p.CELL0_BACKEND_LIMIT === 'adaptive' ? 'adaptive' : 'fixed',
        fixed: p.CELL0_BACKEND_LIMIT === 'adaptive' ? 0 : p.CELL0_BACKEND_LIMIT,
        max: p.CELL0_BACKEND_LIMIT_MAX,
        tolerance: p.CELL0_BACKEND_LIMIT_TOLERANCE,
      },
      http: {
        maxConnections: p.CELL0_HTTP_MAX_CONNECTIONS,
        connectionsPerHost: p.CELL0_HTTP_CONNECTIONS_PER_HOST,
        connectTimeoutMs: p.CELL0_HTTP_CONNECT_TIMEOUT_MS,
        bodyTimeoutMs: p.CELL0_HTTP_BODY_TIMEOUT_MS,
        keepAliveMs: p.CELL0_HTTP_KEEPALIVE_MS,
      },
    },
    simulator: {
      host: p.CELL0_SIM_HOST,
      port: p.CELL0_SIM_PORT,
      ttftMs: p.CELL0_SIM_TTFT_MS,
      tokensPerSec: p.CELL0_SIM_TOKENS_PER_SEC,
      loadMsPerGb: p.CELL0_SIM_LOAD_MS_PER_GB,
      maxLoaded: p.CELL0_SIM_MAX_LOADED,
      allowAnyModel: p.CELL0_SIM_ALLOW_ANY_MODEL,
      embedCallMs: p.CELL0_SIM_EMBED_CALL_MS,
      embedItemMs: p.CELL0_SIM_EMBED_ITEM_MS,
      embedParallel: p.CELL0_SIM_EMBED_PARALLEL,
      gpu: p.CELL0_SIM_GPU
        ? {
            numParallel: p.CELL0_SIM_NUM_PARALLEL,
            maxQueue: p.CELL0_SIM_MAX_QUEUE,
            singleStreamTokensPerSec: p.CELL0_SIM_GPU_TOKENS_PER_SEC,
            maxAggregateTokensPerSec: p.CELL0_SIM_GPU_MAX_TOKENS_PER_SEC,
            prefillTokensPerSec: p.CELL0_SIM_PREFILL_TOKENS_PER_SEC,
          }
        : false,
      faults: {
        rate429: p.CELL0_SIM_FAULT_RATE_429,
        retryAfterSec: p.CELL0_SIM_FAULT_RETRY_AFTER_SEC,
        rate500: p.CELL0_SIM_FAULT_RATE_500,
        slowRate: p.CELL0_SIM_FAULT_SLOW_RATE,
        slowMs: p.CELL0_SIM_FAULT_SLOW_MS,
        dropRate: p.CELL0_SIM_FAULT_DROP_RATE,
        ...(p.CELL0_SIM_FAULT_SEED !== undefined ? { seed: p.CELL0_SIM_FAULT_SEED } : {}),
        ...(p.CELL0_SIM_RATE_LIMIT_RPS !== undefined
          ? {
              rateLimit: {
                rate: p.CELL0_SIM_RATE_LIMIT_RPS,
                capacity: p.CELL0_SIM_RATE_LIMIT_BURST ?? Math.max(1, Math.floor(p.CELL0_SIM_RATE_LIMIT_RPS)),
              },
            }
          : {}),
      },
    },
    resources: {
      sampleMs: p.CELL0_RESOURCE_SAMPLE_MS,
      hysteresis: p.CELL0_RESOURCE_HYSTERESIS,
      cpuWindowMs: p.CELL0_CPU_WINDOW_MS,
      behindWindowMs: p.CELL0_BEHIND_WINDOW_MS,
      behindWaitAgeMs: p.CELL0_BEHIND_WAIT_AGE_MS,
      maxQueueDepth: p.CELL0_MAX_QUEUE_DEPTH,
      overloadRetryAfterSec: p.CELL0_OVERLOAD_RETRY_AFTER_SEC,
      modelBudget: p.CELL0_MODEL_MEMORY_BUDGET,
      evictionPolicy: p.CELL0_EVICTION_POLICY,
      modelPriorities: p.CELL0_MODEL_PRIORITIES ?? [],
      modelKeepAliveMs: p.CELL0_MODEL_KEEP_ALIVE_MS,
      monitorEveryMs: p.CELL0_MONITOR_EVERY_MS,
      cleanupEveryMs: p.CELL0_CLEANUP_EVERY_MS,
      cleanupPaths: p.CELL0_CLEANUP_PATHS ?? [],
      diskCleanupThreshold: p.CELL0_DISK_CLEANUP_THRESHOLD,
    },
    metrics: {
      enabled: p.CELL0_METRICS,
      port: p.CELL0_METRICS_PORT,
      token: p.CELL0_METRICS_TOKEN,
      tenantLabel: p.CELL0_METRICS_TENANT_LABEL,
    },
    embeddedRedis: p.CELL0_EMBEDDED_REDIS,
    dataDir: p.CELL0_DATA_DIR,
    logLevel: p.CELL0_LOG_LEVEL,
    logOutageSummaryMs: p.CELL0_LOG_OUTAGE_SUMMARY_MS,
    logSample: p.CELL0_LOG_SAMPLE,
  };
}

/**
 * Loads `path` (default ./.env) into the environment when it exists. Variables already set in the
 * environment win over the file. Returns true when a file was read.
 */
export function loadEnvFile(path = '.env'): boolean {
  if (!existsSync(path)) return false;
  process.loadEnvFile(path);
  return true;
}

/** The URL with its password replaced, for logs and messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}
