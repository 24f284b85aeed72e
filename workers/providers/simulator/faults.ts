import { type FieldIssue } from '../../../shared/errors.js';

/**
 * Faults the simulator injects into the model-serving endpoints ({@link FAULT_ENDPOINTS}), to exercise
 * retries, backoff and rate limiting. Every fraction is 0..1; drop + 429 + 500 + slow must sum to <= 1.
 */
export interface SimFaults {
  /** Fraction of requests answered 429 with a Retry-After header and body {"error":"..."}. Default 0. */
  rate429?: number;
  /** Retry-After of the injected 429s, whole seconds >= 0. Default 1. */
  retryAfterSec?: number;
  /** Fraction of requests answered 500 {"error":"..."}. Default 0. */
  rate500?: number;
  /** Fraction of requests delayed by slowMs before being handled normally. Default 0. */
  slowRate?: number;
  /** Delay of the slowed requests, ms. Default 2000. */
  slowMs?: number;
  /** Fraction of requests whose connection is destroyed without any response (a reset). Default 0. */
  dropRate?: number;
  /** Seed of the PRNG that draws the faults, so runs are reproducible. Default: a random one. */
  seed?: number;
  /**
   * Server-side token bucket, checked before the draw: an arrival finding no token is answered 429 with
   * Retry-After = whole seconds until the next token. `rate` = tokens per second, `capacity` = bucket size
   * (the bucket starts full). Default: no limit.
   */
  rateLimit?: { rate: number; capacity: number };
}

/** The paths faults and arrival counting apply to; health, listing and /_sim/* routes are never faulted. */
export const FAULT_ENDPOINTS: ReadonlySet<string> = new Set([
  '/api/generate',
  '/api/chat',
  '/api/embed',
  '/api/embeddings',
]);

/** What the injector decided for one request. */
export type FaultDecision =
  | { kind: 'none' }
  | { kind: 'rateLimited'; retryAfterSec: number }
  | { kind: 'drop' }
  | { kind: '429'; retryAfterSec: number }
  | { kind: '500' }
  | { kind: 'slow'; ms: number };

const FAULT_DEFAULTS = { retryAfterSec: 1, slowMs: 2000 };

type ResolvedFaults = Required<Omit<SimFaults, 'rateLimit'>> & Pick<SimFaults, 'rateLimit'>;
const RATE_FIELDS = ['dropRate', 'rate429', 'rate500', 'slowRate'] as const;
const KNOWN_FIELDS: ReadonlySet<string> = new Set([
  ...RATE_FIELDS,
  'retryAfterSec',
  'slowMs',
  'seed',
  'rateLimit',
]);
/** Slack for fractions such as 0.1 + 0.2 + 0.7 that sum to 1 but not exactly in floating point. */
const SUM_EPSILON = 1e-9;

/**
 * The problems of a fault setting (from options or a JSON body), each named `${field}.<key>`. Undefined
 * and null values mean "the default". Empty when `value` is a valid {@link SimFaults}.
 */
export function validateSimFaults(value: unknown, field = 'faults'): FieldIssue[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return [{ field, reason: `expected an object, got ${JSON.stringify(value)}` }];
  }
  const issues: FieldIssue[] = [];
  const o = value as Record<string, unknown>;
  const given = (key: string): boolean => o[key] !== undefined && o[key] !== null;
  const check = (key: string, ok: (v: unknown) => boolean, reason: string): void => {
    if (given(key) && !ok(o[key]))
      issues.push({ field: `${field}.${key}`, reason: `${reason}, got ${JSON.stringify(o[key])}` });
  };
  const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

  for (const key of Object.keys(o)) {
    if (!KNOWN_FIELDS.has(key)) issues.push({ field: `${field}.${key}`, reason: 'unknown field' });
  }
  for (const key of RATE_FIELDS) check(key, (v) => isNumber(v) && v >= 0 && v <= 1, 'expected a number 0..1');
  check('retryAfterSec', (v) => Number.isSafeInteger(v) && (v as number) >= 0, 'expected an integer >= 0');
  check('slowMs', (v) => isNumber(v) && v >= 0, 'expected a number of ms >= 0');
  check('seed', (v) => Number.isSafeInteger(v), 'expected an integer');
  if (given('rateLimit')) {
    const rl = o.rateLimit as Record<string, unknown>;
    if (typeof rl !== 'object' || Array.isArray(rl)) {
      issues.push({
        field: `${field}.rateLimit`,
        reason: `expected { rate, capacity }, got ${JSON.stringify(rl)}`,
      });
    } else {
      for (const key of Object.keys(rl)) {
        if (key !== 'rate' && key !== 'capacity')
          issues.push({ field: `${field}.rateLimit.${key}`, reason: 'unknown field' });
      }
      if (!isNumber(rl.rate) || rl.rate <= 0)
        issues.push({
          field: `${field}.rateLimit.rate`,
          reason: `expected tokens per second > 0, got ${JSON.stringify(rl.rate)}`,
        });
      if (!Number.isSafeInteger(rl.capacity) || (rl.capacity as number) < 1)
        issues.push({
          field: `${field}.rateLimit.capacity`,
          reason: `expected an integer >= 1, got ${JSON.stringify(rl.capacity)}`,
        });
    }
  }
  if (!issues.some((i) => RATE_FIELDS.some((k) => i.field === `${field}.${k}`))) {
    const sum = RATE_FIELDS.reduce((s, k) => s + (given(k) ? (o[k] as number) : 0), 0);
    if (sum > 1 + SUM_EPSILON)
      issues.push({
        field,
        reason: `dropRate + rate429 + rate500 + slowRate must be <= 1, got ${sum}`,
      });
  }
  return issues;
}

/** mulberry32: a small, fast 32-bit PRNG. Returns a function drawing uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Decides, per request, which fault (if any) to inject: first the token bucket (a real provider's limit),
 * then one uniform draw from a seeded PRNG choosing drop / 429 / 500 / slow / none.
 */
export class FaultInjector {
  private readonly current: ResolvedFaults;
  private readonly random: () => number;
  private tokens = 0;
  private refilledAt: number | undefined;

  /** Validates nothing: check `faults` with {@link validateSimFaults} first. Null values mean the default. */
  constructor(faults: SimFaults = {}) {
    const seed = faults.seed ?? Math.floor(Math.random() * 2 ** 32);
    // A JSON body may say null where options say undefined.
    const rl = faults.rateLimit ?? undefined;
    this.current = {
      dropRate: faults.dropRate ?? 0,
      rate429: faults.rate429 ?? 0,
      rate500: faults.rate500 ?? 0,
      slowRate: faults.slowRate ?? 0,
      retryAfterSec: faults.retryAfterSec ?? FAULT_DEFAULTS.retryAfterSec,
      slowMs: faults.slowMs ?? FAULT_DEFAULTS.slowMs,
      seed,
      ...(rl === undefined ? {} : { rateLimit: { rate: rl.rate, capacity: rl.capacity } }),
    };
    this.random = mulberry32(seed);
    if (this.current.rateLimit !== undefined) this.tokens = this.current.rateLimit.capacity;
  }

  /** The settings in force, defaults filled in and with the seed in use (a copy). */
  get settings(): SimFaults {
    const rl = this.current.rateLimit;
    return { ...this.current, ...(rl === undefined ? {} : { rateLimit: { ...rl } }) };
  }

  /** The fault for a request arriving at `nowMs` (a monotonic clock such as performance.now()). */
  decide(nowMs: number): FaultDecision {
    const rl = this.current.rateLimit;
    if (rl !== undefined) {
      if (this.refilledAt !== undefined) {
        const elapsed = Math.max(0, nowMs - this.refilledAt);
        this.tokens = Math.min(rl.capacity, this.tokens + (elapsed / 1000) * rl.rate);
      }
      this.refilledAt = nowMs;
      if (this.tokens < 1) {
        return { kind: 'rateLimited', retryAfterSec: Math.max(1, Math.ceil((1 - this.tokens) / rl.rate)) };
      }
      this.tokens -= 1;
    }
    const u = this.random();
    let edge = this.current.dropRate;
    if (u < edge) return { kind: 'drop' };
    edge += this.current.rate429;
    if (u < edge) return { kind: '429', retryAfterSec: this.current.retryAfterSec };
    edge += this.current.rate500;
    if (u < edge) return { kind: '500' };
    edge += this.current.slowRate;
    if (u < edge) return { kind: 'slow', ms: this.current.slowMs };
    return { kind: 'none' };
  }
}
