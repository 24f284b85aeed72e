import { EventEmitter } from 'node:events';
import { Breaker, type BreakerMetrics } from '../../shared/circuit-breaker.js';
import { ProviderError } from '../../shared/errors.js';
import { type RateLimiter, type RateLimiterMetrics } from '../../shared/rate-limit/token-bucket.js';
import { sleep } from '../../shared/sleep.js';
import { errorCode } from '../../shared/http/errors.js';
import { type BackendError, type BackendHealth } from '../../shared/fleet/backend-health.js';

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
  /** Source of randomness for jitter (tests pin it). Default Math.random. */
  random?: () => number;
}

/** Counters of one guarded backend. */
export interface BackendGuardMetrics {
  name: string;
  breaker: BreakerMetrics;
  limiter?: RateLimiterMetrics;
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
  private readonly retry: Required<RetryPolicy>;
  private readonly maxLimiterWaitMs: number;
  private readonly random: () => number;
  private retries = 0;
  private readonly retriesBy: Record<string, number> = {};
  /** When the breaker entered its current state (epoch ms). */
  private since = Date.now();
  private lastError: BackendError | undefined;

  constructor(opts: BackendGuardOptions) {
    super();
    this.name = opts.name;
    this.limiter = opts.limiter;
    this.maxLimiterWaitMs = opts.maxLimiterWaitMs ?? 5000;
    this.random = opts.random ?? Math.random;
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

  /** Runs one backend call under the limit, the breaker and the retry policy. */
  async run<T>(call: (signal: AbortSignal) => Promise<T>, signal: AbortSignal): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      // An open breaker refuses before a token is spent on a call that would not be made.
      if (this.breaker.state === 'open') await this.breaker.fire(() => Promise.resolve());
      const permit = this.limiter
        ? await this.limiter.acquire(1, { timeoutMs: this.maxLimiterWaitMs, signal })
        : undefined;
      try {
        // The failure is noted before the breaker sees it: a breaker that opens on it publishes it at once.
        return await this.breaker.fire(() =>
          call(signal).catch((err: unknown) => {
            if (countsAgainstBackend(err)) this.lastError = describeError(err as ProviderError);
            throw err;
          }),
        );
      } catch (err) {
        const delay = this.retryDelay(err, attempt);
        if (delay === undefined || signal.aborted) throw err;
        const reason = reasonOf(err as ProviderError);
        this.retries++;
        this.retriesBy[reason] = (this.retriesBy[reason] ?? 0) + 1;
        this.emit('retry', { attempt: attempt + 1, delayMs: delay, error: err as ProviderError });
        permit?.release();
        await sleep(delay, { signal });
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
