import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import { BreakerOpenError } from './errors.js';
import { LatencyWindow } from './latency.js';
import { withDefaults } from './with-defaults.js';

/** Options of {@link Breaker}. */
export interface BreakerOptions {
  /** Name in errors, metrics and logs. */
  name: string;
  /** Consecutive failures that open the breaker. Default 5. */
  failureThreshold?: number;
  /** How long the breaker stays open before it lets one trial call through (half-open). Default 5000 ms. */
  resetTimeoutMs?: number;
  /** A call that takes longer counts as a failure and is rejected. `false` = no timeout. Default 1000 ms. */
  timeoutMs?: number | false;
  /**
   * Returns true for errors that must not count against the backend (a bad request is the caller's fault,
   * not a sign the backend is down). Default: every error counts.
   */
  isIgnorable?: (err: unknown) => boolean;
}

const DEFAULTS = { failureThreshold: 5, resetTimeoutMs: 5000, timeoutMs: 1000 as number | false };

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Events of {@link Breaker}. */
export interface BreakerEvents {
  'breaker:open': [];
  'breaker:half-open': [];
  'breaker:close': [];
}

/** Counters of one breaker. */
export interface BreakerMetrics {
  name: string;
  state: BreakerState;
  calls: number;
  successes: number;
  failures: number;
  timeouts: number;
  /** Calls refused without being attempted because the breaker was open. */
  rejections: number;
  consecutiveFailures: number;
  /** Mean latency (ms) of attempted calls. */
  meanLatencyMs: number;
  /** Approximate latency percentiles (ms) over the last 1024 attempted calls. */
  p50LatencyMs: number;
  p95LatencyMs: number;
  p99LatencyMs: number;
}

/**
 * A circuit breaker on opossum that opens after N consecutive failures (opossum's own rule is an error
 * percentage over a rolling window; a count is easier to reason about for a single backend connection).
 * While open, calls are refused at once with a BreakerOpenError carrying how long until the trial call.
 */
export class Breaker extends EventEmitter<BreakerEvents> {
  readonly name: string;
  private readonly opts: Required<Omit<BreakerOptions, 'isIgnorable'>> & Pick<BreakerOptions, 'isIgnorable'>;
  private readonly cb: CircuitBreaker<[() => Promise<unknown>], unknown>;
  private consecutive = 0;
  private openedAt = 0;
  private readonly counters = {
    calls: 0,
    successes: 0,
    failures: 0,
    timeouts: 0,
    rejections: 0,
  };
  private readonly latency = new LatencyWindow(1024);

  constructor(options: BreakerOptions) {
    super();
    const opts = withDefaults<BreakerOptions & typeof DEFAULTS>(DEFAULTS, options);
    if (!opts.name) throw new TypeError('Breaker: option "name" is required');
    if (!Number.isInteger(opts.failureThreshold) || opts.failureThreshold < 1)
      throw new TypeError(
        `Breaker: option "failureThreshold" must be an integer >= 1, got ${opts.failureThreshold}`,
      );
    if (!(opts.resetTimeoutMs > 0))
      throw new TypeError(`Breaker: option "resetTimeoutMs" must be > 0, got ${opts.resetTimeoutMs}`);
    if (opts.timeoutMs !== false && !(opts.timeoutMs > 0))
      throw new TypeError(`Breaker: option "timeoutMs" must be > 0 or false, got ${opts.timeoutMs}`);
    this.opts = opts;
    this.name = opts.name;
    this.cb = new CircuitBreaker((fn: () => Promise<unknown>) => fn(), {
      name: opts.name,
      timeout: opts.timeoutMs,
      resetTimeout: opts.resetTimeoutMs,
      // Opening is decided here by the consecutive-failure count; opossum's percentage rule is disabled.
      errorThresholdPercentage: 100,
      volumeThreshold: Number.MAX_SAFE_INTEGER,
      rollingPercentilesEnabled: false,
      errorFilter: opts.isIgnorable ? (err: unknown) => opts.isIgnorable!(err) : undefined,
    });
    this.cb.on('open', () => {
      this.openedAt = Date.now();
      this.emit('breaker:open');
    });
    this.cb.on('halfOpen', () => this.emit('breaker:half-open'));
    this.cb.on('close', () => {
      this.consecutive = 0;
      this.emit('breaker:close');
    });
    this.cb.on('success', (_r: unknown, latency: number) => this.succeeded(latency));
    this.cb.on('failure', (_e: unknown, latency: number) => this.failedCall(latency));
    this.cb.on('timeout', () => {
      this.counters.timeouts++;
    });
    this.cb.on('reject', () => {
      this.counters.rejections++;
    });
  }

  /** The current state. */
  get state(): BreakerState {
    if (this.cb.opened) return 'open';
    if (this.cb.halfOpen) return 'half-open';
    return 'closed';
  }

  /** Milliseconds until an open breaker lets a trial call through (0 when not open). */
  retryAfterMs(): number {
    if (!this.cb.opened) return 0;
    return Math.max(0, this.openedAt + this.opts.resetTimeoutMs - Date.now());
  }

  /**
   * Runs `fn` through the breaker. Rejects with BreakerOpenError without calling `fn` while open, with a
   * timeout error after `timeoutMs`, or with `fn`'s own error.
   */
  fire<T>(fn: () => Promise<T>): Promise<T> {
    this.counters.calls++;
    // Closed, with no timeout of its own: `fn` runs directly and its outcome is counted as opossum would
    // count it (below). Opossum's call builds an argument array, a promise with two closures, a then/catch
    // chain and two events for every call (~1 KB of garbage and ~0.5 µs each: every Redis command of a
    // semantic-cache lookup pays it); it is only needed to refuse calls, time them out and run the half-open
    // trial, i.e. when the breaker is not closed or has a timeout.
    if (this.opts.timeoutMs === false && this.cb.closed && !this.cb.pendingClose && !this.cb.isShutdown)
      return this.fireClosed(fn);
    return this.fireCircuit(fn);
  }

  private async fireClosed<T>(fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      // as opossum: an error its errorFilter ignores is a success, any other a failure; rejected either way
      if (this.opts.isIgnorable?.(err)) this.succeeded(Date.now() - started);
      else this.failedCall(Date.now() - started);
      throw err;
    }
    this.succeeded(Date.now() - started);
    return result;
  }

  private async fireCircuit<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return (await this.cb.fire(fn)) as T;
    } catch (err) {
      if (isOpossumOpen(err)) throw new BreakerOpenError(this.name, this.retryAfterMs());
      throw err;
    }
  }

  private succeeded(latency: number): void {
    this.consecutive = 0;
    this.counters.successes++;
    this.record(latency);
  }

  private failedCall(latency: number): void {
    this.counters.failures++;
    this.record(latency);
    this.consecutive++;
    if (this.consecutive >= this.opts.failureThreshold && this.cb.closed) this.cb.open();
  }

  /**
   * Resets the breaker to closed, forgetting the failures counted so far (after an out-of-band health check
   * proved the backend is back). Named reset, not close: close() is the lifecycle end of every long-lived
   * object in cell0.
   */
  reset(): void {
    this.consecutive = 0;
    this.cb.close();
  }

  /** Stops the breaker's timers; later calls are refused. Idempotent. */
  close(): void {
    if (!this.cb.isShutdown) this.cb.shutdown();
  }

  getMetrics(): BreakerMetrics {
    const l = this.latency.summary();
    return {
      name: this.name,
      state: this.state,
      calls: this.counters.calls,
      successes: this.counters.successes,
      failures: this.counters.failures,
      timeouts: this.counters.timeouts,
      rejections: this.counters.rejections,
      consecutiveFailures: this.consecutive,
      meanLatencyMs: l.meanMs,
      p50LatencyMs: l.p50Ms,
      p95LatencyMs: l.p95Ms,
      p99LatencyMs: l.p99Ms,
    };
  }

  private record(latency: number): void {
    this.latency.record(latency);
  }
}

function isOpossumOpen(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'EOPENBREAKER';
}
