import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { type RedisConnection } from '../redis/cluster.js';
import { ConfigError, RateLimitedError, type FieldIssue } from '../errors.js';
import { defineScripts } from '../redis/lua-scripts.js';
import { withDefaults } from '../with-defaults.js';
import { systemClock, type BucketClock } from './bucket-clock.js';

/** Options of a token bucket. */
export interface TokenBucketOptions {
  /** Names the limit in errors, metrics and (fleet-wide) its Redis key. */
  name: string;
  /** Tokens added per second. > 0. */
  rate: number;
  /** Most tokens the bucket holds: the largest burst. >= 1. The bucket starts full. */
  capacity: number;
  /** Most holders of a permit at once (a concurrency bound, e.g. a backend's queue depth); 0 = none. Default 0. */
  maxInFlight?: number;
  /** How long acquire() waits for tokens by default, ms. Default 5000. */
  maxWaitMs?: number;
  /**
   * Fleet-wide buckets only: a permit's lease on an in-flight slot expires after this long even if its
   * holder never releases it (the process died). Default 300000.
   */
  leaseTtlMs?: number;
  /**
   * The clock the bucket measures waits and sleeps on (and, in-process, refills on). Default: the process's
   * monotonic clock. Tests inject a manual one.
   */
  clock?: BucketClock;
}

/** How a caller waits in acquire(). */
export interface AcquireOptions {
  /** Longest wait for the tokens (and an in-flight slot), ms. Default: the bucket's maxWaitMs. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Tokens taken from a bucket (and an in-flight slot when the bucket has a bound). release() gives the slot
 * back (tokens are spent for good: that is what a rate limit means); `await using` releases it on scope exit.
 */
export interface Permit extends AsyncDisposable, Disposable {
  /** How long the caller waited for the tokens, ms. */
  readonly waitedMs: number;
  /** When the tokens were granted for, on the bucket's clock (ms since epoch; Redis time for fleet buckets). */
  readonly grantedAt: number;
  release(): void;
}

/** Counters of one bucket (this process's view). */
export interface RateLimiterMetrics {
  name: string;
  scope: 'process' | 'fleet';
  rate: number;
  capacity: number;
  maxInFlight: number;
  /** Permits granted, and how many of them had to wait. */
  granted: number;
  waited: number;
  /** Requests refused because the wait would have been longer than the caller accepts. */
  refused: number;
  /** Permits held now by this process. */
  held: number;
  /** Total and longest wait of granted permits, ms. */
  totalWaitMs: number;
  maxWaitMs: number;
}

/** One permit handed out: the observable record of what a bucket granted. */
export interface PermitGrant {
  limiter: string;
  tokens: number;
  /** When the tokens were granted for, on the bucket's clock (Redis time for fleet buckets), epoch ms. */
  grantedAt: number;
  /**
   * When the bucket reserved them, same clock: grantedAt − reservedAt is the wait the bucket imposed (0 when
   * it had the tokens). A wait ends exactly when the bucket holds the tokens.
   */
  reservedAt: number;
  /** How long the caller waited, ms (on the injected clock). */
  waitedMs: number;
}

/** Events of a bucket. */
export interface RateLimiterEvents {
  /** A permit was handed to its caller (after any wait for its grant time). */
  'permit:granted': [PermitGrant];
  /** A caller was refused (the wait was longer than it accepts); retryAfterMs as in the error. */
  'permit:refused': [{ limiter: string; tokens: number; retryAfterMs: number }];
}

/** The interface both buckets share (the seed's `TokenBucketRateLimiter`). */
export interface RateLimiter extends Pick<EventEmitter<RateLimiterEvents>, 'on' | 'once' | 'off'> {
  readonly name: string;
  readonly rate: number;
  readonly capacity: number;
  /**
   * Takes `tokens` tokens, waiting for them up to the timeout. Rejects at once with RateLimitedError when
   * they cannot be had within it — its retryAfterMs is when a call with the same timeout would be granted
   * (if nobody else takes the tokens first) — or with the signal's reason when aborted.
   */
  acquire(tokens?: number, opts?: AcquireOptions): Promise<Permit>;
  /** Like acquire(), but answers false instead of throwing RateLimitedError (and releases at once). */
  tryAcquire(tokens?: number, timeoutMs?: number): Promise<boolean>;
  /** Runs `fn` holding a permit, released when `fn` settles. */
  scoped<T>(tokens: number, fn: () => Promise<T>, opts?: AcquireOptions): Promise<T>;
  metrics(): RateLimiterMetrics;
}

const DEFAULTS = { maxInFlight: 0, maxWaitMs: 5000, leaseTtlMs: 300_000, clock: systemClock };
type Resolved = Required<TokenBucketOptions>;

function resolve(opts: TokenBucketOptions, what: string): Resolved {
  const o = withDefaults<Resolved>(DEFAULTS, opts);
  const issues: FieldIssue[] = [];
  if (typeof o.name !== 'string' || o.name.length === 0) issues.push({ field: 'name', reason: 'required' });
  if (!(typeof o.rate === 'number' && Number.isFinite(o.rate) && o.rate > 0))
    issues.push({ field: 'rate', reason: `expected tokens per second > 0, got ${String(o.rate)}` });
  if (!(typeof o.capacity === 'number' && Number.isFinite(o.capacity) && o.capacity >= 1))
    issues.push({ field: 'capacity', reason: `expected a number >= 1, got ${String(o.capacity)}` });
  if (!(Number.isInteger(o.maxInFlight) && o.maxInFlight >= 0))
    issues.push({ field: 'maxInFlight', reason: `expected an integer >= 0, got ${String(o.maxInFlight)}` });
  for (const k of ['maxWaitMs', 'leaseTtlMs'] as const)
    if (!(typeof o[k] === 'number' && o[k] >= 0))
      issues.push({ field: k, reason: `expected ms >= 0, got ${String(o[k])}` });
  if (!(typeof o.clock?.now === 'function' && typeof o.clock.sleep === 'function'))
    issues.push({ field: 'clock', reason: 'expected an object with now() and sleep(ms, signal)' });
  if (issues.length > 0) throw new ConfigError(issues.map((i) => ({ ...i, field: `${what}.${i.field}` })));
  return o;
}

function checkTokens(tokens: number, capacity: number, name: string): void {
  if (!(Number.isFinite(tokens) && tokens > 0 && tokens <= capacity))
    throw new RangeError(
      `rate limit "${name}": tokens must be > 0 and <= capacity ${capacity}, got ${tokens}`,
    );
}

/** `p`, or the signal's reason if it aborts first. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err as Error);
      },
    );
  });
}

/** Bookkeeping both buckets share. */
abstract class BucketBase extends EventEmitter<RateLimiterEvents> implements RateLimiter {
  readonly name: string;
  readonly rate: number;
  readonly capacity: number;
  protected readonly opts: Resolved;
  protected readonly clock: BucketClock;
  protected readonly counters = { granted: 0, waited: 0, refused: 0, held: 0, totalWaitMs: 0, maxWaitMs: 0 };
  protected abstract readonly scope: 'process' | 'fleet';

  constructor(opts: TokenBucketOptions, what: string) {
    super();
    this.opts = resolve(opts, what);
    this.clock = this.opts.clock;
    this.name = this.opts.name;
    this.rate = this.opts.rate;
    this.capacity = this.opts.capacity;
  }

  /** One attempt: a grant (with the wait before use) or a refusal (with the wait until it could be granted). */
  protected abstract reserve(
    tokens: number,
    maxWaitMs: number,
    leaseId: string,
  ): Promise<{ granted: boolean; waitMs: number; now: number; reason: string }>;
  protected abstract releaseLease(leaseId: string): void;

  async acquire(tokens = 1, opts: AcquireOptions = {}): Promise<Permit> {
    checkTokens(tokens, this.capacity, this.name);
    const timeoutMs = opts.timeoutMs ?? this.opts.maxWaitMs;
    const { signal } = opts;
    signal?.throwIfAborted();
    const clock = this.clock;
    const started = clock.now();
    const leaseId = this.opts.maxInFlight > 0 ? randomUUID() : '';
    let poll = 5;
    let polled = false;
    for (;;) {
      const left = Math.max(0, timeoutMs - (clock.now() - started));
      // A fleet bucket's store can be slow or away (Redis reconnecting): the caller's signal still ends the
      // wait. A reservation that lands after the caller left is a token spent for nothing, never an excess.
      const pending = this.reserve(tokens, Math.floor(left), leaseId);
      const r = await untilAborted(pending, signal).catch((err: unknown) => {
        // Give back an in-flight slot the late reservation may still take.
        pending.then((late) => late.granted && leaseId && this.releaseLease(leaseId)).catch(() => undefined);
        throw err;
      });
      if (r.granted) {
        this.counters.held++;
        let released = false;
        const release = (): void => {
          if (released) return;
          released = true;
          this.counters.held--;
          if (leaseId) this.releaseLease(leaseId);
        };
        try {
          await clock.sleep(r.waitMs, signal);
        } catch (err) {
          release();
          throw err;
        }
        const waitedMs = clock.now() - started;
        this.counters.granted++;
        // Had to wait: for tokens, or for an in-flight slot (a Redis round trip is no wait).
        if (r.waitMs > 0 || polled) this.counters.waited++;
        this.counters.totalWaitMs += waitedMs;
        this.counters.maxWaitMs = Math.max(this.counters.maxWaitMs, waitedMs);
        const grantedAt = r.now + r.waitMs;
        this.emit('permit:granted', { limiter: this.name, tokens, grantedAt, reservedAt: r.now, waitedMs });
        return {
          waitedMs,
          grantedAt,
          release,
          [Symbol.dispose]: release,
          [Symbol.asyncDispose]: async () => release(),
        };
      }
      // Refused for rate: the wait is known exactly and is longer than the caller accepts.
      // Refused for in-flight: a slot frees when a holder releases (unknown) or a lease expires; poll.
      const remaining = timeoutMs - (clock.now() - started);
      if (r.reason === 'rate' || remaining <= 0) {
        this.counters.refused++;
        // Come back when a reservation would fit the same wait budget (tokens due within timeoutMs): callers
        // that return then compete on equal terms with those already holding reservations.
        const hint = r.reason === 'rate' ? r.waitMs - timeoutMs : r.waitMs;
        const retryAfterMs = Math.max(1, Math.ceil(hint));
        this.emit('permit:refused', { limiter: this.name, tokens, retryAfterMs });
        throw new RateLimitedError(this.name, retryAfterMs);
      }
      const pause = Math.min(remaining, r.waitMs, poll * (0.5 + Math.random()));
      poll = Math.min(200, poll * 2);
      polled = true;
      await clock.sleep(Math.max(1, pause), signal);
    }
  }

  async tryAcquire(tokens = 1, timeoutMs = 0): Promise<boolean> {
    try {
      const permit = await this.acquire(tokens, { timeoutMs });
      permit.release();
      return true;
    } catch (err) {
      if (err instanceof RateLimitedError) return false;
      throw err;
    }
  }

  async scoped<T>(tokens: number, fn: () => Promise<T>, opts?: AcquireOptions): Promise<T> {
    const permit = await this.acquire(tokens, opts);
    try {
      return await fn();
    } finally {
      permit.release();
    }
  }

  metrics(): RateLimiterMetrics {
    return {
      name: this.name,
      scope: this.scope,
      rate: this.rate,
      capacity: this.capacity,
      maxInFlight: this.opts.maxInFlight,
      ...this.counters,
      totalWaitMs: Math.round(this.counters.totalWaitMs),
      maxWaitMs: Math.round(this.counters.maxWaitMs),
    };
  }
}

/** A token bucket for one process (the seed's `TokenBucketRateLimiter(rate, capacity)`). */
export class TokenBucketRateLimiter extends BucketBase {
  protected readonly scope = 'process' as const;
  private tokens: number;
  private ts: number;
  private inFlight = 0;

  constructor(opts: TokenBucketOptions) {
    super(opts, 'TokenBucketRateLimiter');
    this.tokens = this.capacity;
    this.ts = this.clock.now();
  }

  protected async reserve(tokens: number, maxWaitMs: number, leaseId: string) {
    const now = this.clock.now();
    if (this.opts.maxInFlight > 0 && this.inFlight >= this.opts.maxInFlight)
      return { granted: false, waitMs: 50, now, reason: 'in-flight' };
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.ts) * this.rate) / 1000);
    this.ts = now;
    let waitMs = 0;
    if (this.tokens < tokens) {
      // Not rounded up: the grant time (now + waitMs) must be when the bucket really holds the tokens, or
      // two grants can be reported closer than 1/rate (rounding the wait up, then the next wait down).
      waitMs = ((tokens - this.tokens) * 1000) / this.rate;
      if (waitMs > maxWaitMs) return { granted: false, waitMs: Math.ceil(waitMs), now, reason: 'rate' };
    }
    this.tokens -= tokens;
    if (leaseId) this.inFlight++;
    return { granted: true, waitMs, now, reason: '' };
  }

  protected releaseLease(): void {
    this.inFlight--;
  }
}

interface TokenBucketCommand {
  cell0TokenBucket(
    bucketKey: string,
    leasesKey: string,
    rate: number,
    capacity: number,
    tokens: number,
    maxWaitMs: number,
    maxInFlight: number,
    leaseId: string,
    leaseTtlMs: number,
  ): Promise<[number, string, string, string]>;
}

/** Options of the fleet-wide bucket. */
export interface RedisTokenBucketOptions extends TokenBucketOptions {
  /** A non-blocking connection (commands must not queue behind a blocking read). */
  redis: RedisConnection;
  /** Key prefix; a `{hash tag}` so the bucket's keys share a slot on Redis Cluster. Default "{cell0}". */
  prefix?: string;
}

/**
 * The same bucket kept in Redis by one Lua script (shared/lua/token-bucket.lua): every process, on any host, that
 * uses the same name and prefix shares one limit. Redis's clock decides, so host clock skew does not matter.
 * One round trip per acquire (reservations: see the script).
 */
export class RedisTokenBucketRateLimiter extends BucketBase {
  protected readonly scope = 'fleet' as const;
  private readonly redis: RedisConnection & TokenBucketCommand;
  readonly bucketKey: string;
  readonly leasesKey: string;

  constructor(opts: RedisTokenBucketOptions) {
    super(opts, 'RedisTokenBucketRateLimiter');
    this.redis = defineScripts<TokenBucketCommand>(opts.redis, 'token-bucket');
    const prefix = opts.prefix ?? '{cell0}';
    this.bucketKey = `${prefix}:ratelimit:${this.name}`;
    this.leasesKey = `${this.bucketKey}:leases`;
  }

  protected async reserve(tokens: number, maxWaitMs: number, leaseId: string) {
    const [granted, wait, now, reason] = await this.redis.cell0TokenBucket(
      this.bucketKey,
      this.leasesKey,
      this.rate,
      this.capacity,
      tokens,
      maxWaitMs,
      this.opts.maxInFlight,
      leaseId,
      this.opts.leaseTtlMs,
    );
    return { granted: granted === 1, waitMs: Number(wait), now: Number(now), reason };
  }

  protected releaseLease(leaseId: string): void {
    // Best effort: a lease that cannot be removed (Redis away) expires after leaseTtlMs.
    this.redis.zrem(this.leasesKey, leaseId).catch(() => undefined);
  }
}
