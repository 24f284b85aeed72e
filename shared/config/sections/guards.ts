import { z } from 'zod';
import { parseRateLimits, type RateLimitSpec } from '../provider-routes.js';
import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { int, parsedList, rate } from '../schemas.js';

/*
 * The guard of every backend origin: rate limits, retries, circuit breakers and the concurrency limit.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const GUARDS_ENV = {
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
  CELL0_BACKEND_WAIT_MAX_MS: {
    section: 'guards',
    default: '3600000',
    schema: int(0, 604_800_000),
    doc: 'How long a job may keep waiting for an unreachable, open-circuited or rate-limited backend before it fails (0 = no limit)',
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
  CELL0_BACKEND_LIMIT_INITIAL: {
    section: 'guards',
    default: '4',
    schema: int(1, 10_000),
    doc: "Adaptive backend limit: where it starts (at most the cap); from there it doubles every first-token time while a backend's first tokens stay prompt. Keep it small when a backend may have one slot; a known batching server may start higher, so that a cold burst reaches it within about one first-token time",
  },
  CELL0_BACKEND_LIMIT_TOLERANCE: {
    section: 'guards',
    default: '5',
    schema: rate(1, 100),
    doc: 'Adaptive backend limit: how many times its no-load latency per token a call may take before the limit stops growing (batching servers slow each call down as they fill up)',
  },
} satisfies Record<string, EnvVar>;

/** The guards of Config.providers. */
export interface GuardsConfig {
  rateLimits: RateLimitSpec[];
  rateLimitScope: 'fleet' | 'process';
  rateLimitMaxWaitMs: number;
  retries: number;
  breakerThreshold: number;
  breakerResetMs: number;
  backendWaitMaxMs: number;
  /** Calls in flight per worker process and backend origin: adaptive (with its cap) or pinned. */
  backendLimit: {
    mode: 'adaptive' | 'fixed';
    fixed: number;
    max: number;
    initial: number;
    tolerance: number;
  };
}

export function loadGuards(p: ParsedEnv<typeof GUARDS_ENV>): GuardsConfig {
  return {
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
      initial: Math.min(p.CELL0_BACKEND_LIMIT_INITIAL, p.CELL0_BACKEND_LIMIT_MAX),
      tolerance: p.CELL0_BACKEND_LIMIT_TOLERANCE,
    },
  };
}
