import { EventEmitter } from 'node:events';
import { Breaker, type BreakerMetrics } from '../../shared/circuit-breaker.js';
import { ProviderError } from '../../shared/errors.js';
import { type RateLimiter, type RateLimiterMetrics } from '../../shared/rate-limit/token-bucket.js';
import { sleep } from '../../shared/sleep.js';
import { errorCode } from '../../shared/http/errors.js';
import { type BackendError, type BackendHealth } from '../../shared/fleet/backend-health.js';
import { type ConcurrencyLimiter, type ConcurrencyLimiterMetrics, type Permit } from './adaptive-limit.js';

/** Retries of one call, inside one job attempt. */
export interface RetryPolicy {
  /** Retries after the first try (so maxRetries + 1 tries in all). Default 2. */
  maxRetries?: number;
  /** First backoff, ms; it doubles each retry, with full jitter. Default 250. */
  baseDelayMs?: number;
  /** Longest backoff, ms. Default 4000. */
  maxDelayMs?: number;
  /**
   * Longest Retry-After (429/503) honoured in-line, ms; a longer one ends the call so the job waits in the
   * queue instead of holding a worker slot. Default 10000.
   */
  maxRetryAfterMs?: number;
}

/** Options of {@link BackendGuard}. */
export interface BackendGuardOptions {
  /** Names the backend in metrics and logs, e.g. "ollama@http://127.0.0.1:11434". */
  name: string;
  /** Rate limit every HTTP call to the backend goes through (including retries). Default none. */
  limiter?: RateLimiter;
  /** Longest wait for a rate-limit token before the job is put back to wait, ms. Default 5000. */
  maxLimiterWaitMs?: number;
  /** Consecutive failures (5xx, unreachable, timeouts) that open the breaker. Default 5. */
  failureThreshold?: number;
  /** How long the breaker stays open before one trial call, ms. Default 10000. */
  resetTimeoutMs?: number;
  retry?: RetryPolicy;
  /**
   * Calls in flight to the backend from this process (adaptive or fixed, see adaptive-limit.ts). Default
   * none: no limit besides the HTTP pool's.
   */
  concurrency?: ConcurrencyLimiter;
  /**
   * Longest wait for a concurrency permit, ms; past it the call fails with RateLimitedError and the job waits
   * in the queue instead. Default 120000.
   */
  maxPermitWaitMs?: number;
  /** Source of randomness for jitter (tests pin it). Default Math.random. */
  random?: () => number;
  /**
   * How the guard waits between tries (tests record the waits). Default {@link sleep}: a timer that the
   * signal's abort clears, rejecting with its reason.
   */
  sleep?: (ms: number, options: { signal: AbortSignal }) => Promise<void>;
}

/** Counters of one guarded backend. */
export interface BackendGuardMetrics {
  name: string;
  breaker: BreakerMetrics;
  limiter?: RateLimiterMetrics;
  concurrency?: ConcurrencyLimiterMetrics;
  retries: number;
  /** Retries by reason: "429", "5xx", "connection", "timeout", "protocol". */
  retriesBy: Record<string, number>;
}

/** Events of {@link BackendGuard}. */
export interface BackendGuardEvents {
  retry: [{ attempt: number; delayMs: number; error: ProviderError }];
  'breaker:open': [];
  'breaker:half-open': [];
  'breaker:close': [];
}

/**
 * What stands between a worker and one backend origin: a fleet-wide (or process) rate limit, an opossum
 * breaker, and retries with exponential backoff and full jitter for retryable failures only (5xx,
 * unreachable, timeouts, 429 after its Retry-After); never for 4xx. Errors it gives up with are left for the
 * worker to sort: BreakerOpenError, RateLimitedError and ProviderError.backendUnavailable mean "the backend
 * is away or busy": the job goes back to wait without spending an attempt.
 */
export class BackendGuard extends EventEmitter<BackendGuardEvents> {
  readonly name: string;
  readonly breaker: Breaker;
  readonly limiter: RateLimiter | undefined;
  readonly concurrency: ConcurrencyLimiter | undefined;
  private readonly maxPermitWaitMs: number;
  private readonly retry: Required<RetryPolicy>;
  private readonly maxLimiterWaitMs: number;
  private readonly random: () => number;
  private readonly sleep: (ms: number, options: { signal: AbortSignal }) => Promise<void>;
  private retries = 0;
  private readonly retriesBy: Record<string, number> = {};
  /** When the breaker entered its current state (epoch ms). */
  private since = Date.now();
  private lastError: BackendError | undefined;

  constructor(opts: BackendGuardOptions) {
    super();
    this.name = opts.name;
    this.limiter = opts.limiter;
    this.concurrency = opts.concurrency;
    this.maxPermitWaitMs = opts.maxPermitWaitMs ?? 120_000;
    this.maxLimiterWaitMs = opts.maxLimiterWaitMs ?? 5000;
    this.random = opts.random ?? Math.random;
    this.sleep = opts.sleep ?? sleep;
    this.retry = {
      maxRetries: opts.retry?.maxRetries ?? 2,
      baseDelayMs: opts.retry?.baseDelayMs ?? 250,
      maxDelayMs: opts.retry?.maxDelayMs ?? 4000,
      maxRetryAfterMs: opts.retry?.maxRetryAfterMs ?? 10_000,
    };
    if (!(Number.isInteger(this.retry.maxRetries) && this.retry.maxRetries >= 0))
      throw new TypeError(`BackendGuard: retry.maxRetries must be an integer >= 0`);
    this.breaker = new Breaker({
      name: opts.name,
      failureThreshold: opts.failureThreshold ?? 5,
      resetTimeoutMs: opts.resetTimeoutMs ?? 10_000,
      // Each call has its own deadline (the client's timeout); the breaker only counts outcomes.
      timeoutMs: false,
      // Only signs that the backend is down count: a 4xx (including 429: it answered, it is busy) does not.
      isIgnorable: (err) => !countsAgainstBackend(err),
    });
    this.breaker.on('breaker:open', () => {
      this.since = Date.now();
      this.emit('breaker:open');
    });
    this.breaker.on('breaker:half-open', () => {
      this.since = Date.now();
      this.emit('breaker:half-open');
    });
    this.breaker.on('breaker:close', () => {
      this.since = Date.now();
      this.emit('breaker:close');
    });
  }

  /**
   * Runs one backend call under the concurrency limit, the rate limit, the breaker and the retry policy.
   * `opts.units` tells the concurrency limit how much work an answer was (e.g. tokens produced), so its
   * latency compares with other calls'; `opts.backendMs` the time the backend reports having spent on the
   * successful try, when it reports one (see Permit.success: the limit's sample is then the backend's own
   * time, not this process's); `opts.onStart` is called once, when the first try gets its permit (the
   * provider deadline counts from there, not from the wait in line).
   */
  async run<T>(
    call: (signal: AbortSignal, firstOutput: () => void) => Promise<T>,
    signal: AbortSignal,
    opts: {
      units?: (result: T) => number;
      backendMs?: (result: T) => number | undefined;
      onStart?: () => void;
    } = {},
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      // An open breaker refuses before a token is spent on a call that would not be made.
      if (this.breaker.state === 'open') await this.breaker.fire(() => Promise.resolve());
      const slot = this.concurrency
        ? await this.concurrency.acquire({ signal, timeoutMs: this.maxPermitWaitMs })
        : undefined;
      if (attempt === 0) opts.onStart?.();
      let permit: { release(): void } | undefined;
      try {
        permit = this.limiter
          ? await this.limiter.acquire(1, { timeoutMs: this.maxLimiterWaitMs, signal })
          : undefined;
      } catch (err) {
        slot?.ignore();
        throw err;
      }
      try {
        // The failure is noted before the breaker sees it: a breaker that opens on it publishes it at once.
        const result = await this.breaker.fire(() =>
          call(signal, firstOutputOf(slot)).catch((err: unknown) => {
            if (countsAgainstBackend(err)) this.lastError = describeError(err as ProviderError);
            throw err;
          }),
        );
        slot?.success(opts.units ? safeUnits(opts.units, result) : 1, opts.backendMs?.(result));
        return result;
      } catch (err) {
        endPermit(slot, err, signal);
        const delay = this.retryDelay(err, attempt);
        if (delay === undefined || signal.aborted) throw err;
        const reason = reasonOf(err as ProviderError);
        this.retries++;
        this.retriesBy[reason] = (this.retriesBy[reason] ?? 0) + 1;
        this.emit('retry', { attempt: attempt + 1, delayMs: delay, error: err as ProviderError });
        permit?.release();
        await this.sleep(delay, { signal });
      } finally {
        permit?.release();
      }
    }
  }

  /** The backoff before retry number attempt+1, or undefined when the error must not be retried here. */
  retryDelay(err: unknown, attempt: number): number | undefined {
    if (!(err instanceof ProviderError) || !err.retryable) return undefined;
    if (attempt >= this.retry.maxRetries) return undefined;
    const backoff = this.random() * Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** attempt);
    if (err.retryAfterMs !== undefined) {
      if (err.retryAfterMs > this.retry.maxRetryAfterMs) return undefined;
      // Never earlier than the backend asked; a little jitter so callers told the same moment do not stampede.
      return err.retryAfterMs + this.random() * this.retry.baseDelayMs;
    }
    return backoff;
  }

  metrics(): BackendGuardMetrics {
    return {
      name: this.name,
      breaker: this.breaker.getMetrics(),
      ...(this.limiter ? { limiter: this.limiter.metrics() } : {}),
      ...(this.concurrency ? { concurrency: this.concurrency.metrics() } : {}),
      retries: this.retries,
      retriesBy: { ...this.retriesBy },
    };
  }

  /** The breaker's state, since when, the wait until its trial call, and the last failure that counted. */
  health(): BackendHealth {
    return {
      name: this.name,
      state: this.breaker.state,
      since: new Date(this.since).toISOString(),
      retryAfterMs: this.breaker.retryAfterMs(),
      ...(this.lastError ? { lastError: { ...this.lastError } } : {}),
      ...(this.concurrency ? { concurrency: pickConcurrency(this.concurrency.metrics()) } : {}),
    };
  }

  close(): void {
    this.breaker.close();
  }
}

/** A failure as backend health shows it: code, kind, status, and the system error under a connection failure. */
function describeError(err: ProviderError): BackendError {
  const cause = err.cause as { cause?: unknown } | undefined;
  const sys = errorCode(cause) ?? errorCode(cause?.cause);
  return {
    code: err.code,
    kind: err.kind,
    ...(err.status !== undefined ? { status: err.status } : {}),
    ...(typeof sys === 'string' ? { cause: sys } : {}),
    at: new Date().toISOString(),
  };
}

/** What a call reports its first output to: the permit's (its limit's slow start), or nothing. */
function firstOutputOf(slot: Permit | undefined): () => void {
  return slot ? () => slot.firstOutput() : () => undefined;
}

/**
 * Tells the concurrency limit how a failed call ended: 429, 503 and timeouts are the backend saying "too
 * many" (back off); a cancelled call or any other failure says nothing about its capacity.
 */
function endPermit(slot: Permit | undefined, err: unknown, signal: AbortSignal): void {
  if (!slot) return;
  if (!signal.aborted && err instanceof ProviderError && isOverload(err)) slot.dropped();
  else slot.ignore();
}

function isOverload(err: ProviderError): boolean {
  return err.kind === 'timeout' || (err.kind === 'http' && (err.status === 429 || err.status === 503));
}

function pickConcurrency(m: ConcurrencyLimiterMetrics): NonNullable<BackendHealth['concurrency']> {
  return { mode: m.mode, limit: m.limit, max: m.max, inFlight: m.inFlight, waiting: m.waiting };
}

function safeUnits<T>(units: (r: T) => number, result: T): number {
  const u = units(result);
  return Number.isFinite(u) && u >= 1 ? u : 1;
}

/** 5xx, unreachable, timeouts and broken answers count against a backend; its 4xx answers do not. */
export function countsAgainstBackend(err: unknown): boolean {
  if (!(err instanceof ProviderError)) return false;
  if (err.kind === 'http') return err.status !== undefined && err.status >= 500;
  return true;
}

function reasonOf(err: ProviderError): string {
  if (err.kind === 'http')
    return err.status === 429
      ? '429'
      : err.status !== undefined && err.status >= 500
        ? '5xx'
        : String(err.status);
  return err.kind;
}
