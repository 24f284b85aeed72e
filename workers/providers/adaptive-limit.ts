import { RateLimitedError } from '../../shared/errors.js';

/**
 * How many calls a worker process keeps in flight to one backend origin, found from the backend's answers
 * (in the spirit of Netflix's concurrency-limits, gradient variant):
 *
 * - each finished call gives a latency sample (the guard divides it by the tokens produced, so long and
 *   short answers compare); `minRtt` is the lowest sample seen (the backend's no-load speed), `rtt` a
 *   moving average of the recent ones;
 * - while `rtt` stays within `tolerance` × `minRtt` the limit grows by √limit per sample (smoothed);
 * - when it rises beyond, the limit shrinks in proportion (× tolerance·minRtt / rtt, at most halved);
 * - a 429, a 503 or a timeout (a "drop") cuts it by `backoff`, once per round trip;
 * - a sample taken while fewer than half the permits were in use does not move it (an idle worker says
 *   nothing about the backend's capacity);
 * - it never exceeds `max` (the fixed setting, kept as a cap) nor falls below `min` (1);
 * - **slow start** (as TCP's, per first output rather than per acknowledgement): until the backend first
 *   shows strain, a call let through with n calls in flight (itself included) whose first output (a streamed
 *   call's first token) comes within `tolerance` × the quickest first output seen raises the limit to 2n:
 *   the backend took n at once and answered promptly, so try twice that. A limit whose calls all answer
 *   promptly thus doubles every first-output time instead of growing by √limit per finished call: a cold
 *   burst of 100 streams reaches the backend within a few first-token times, not a few whole generations.
 *   A first output slower than that, a call slower than `tolerance` × the no-load minimum, or a drop ends
 *   slow start for good (the gradient rules above then hold alone). Only calls that report their first
 *   output (streamed ones) feed it; app-limited ones (let through with fewer than half the permits in use)
 *   neither raise the limit nor end slow start: one stream at a time whose first token came late (a busy
 *   host) says nothing about how many calls the backend takes at once.
 *
 * Every worker process runs its own limiter per backend. They all see the same signal, the backend's
 * latency, so they grow and shrink together and the fleet's total settles where the latency is
 * `tolerance` × the no-load minimum, whatever the number of workers; each worker's share is about the
 * total divided by the workers (no Redis round trip per call).
 *
 * `tolerance` is the latency a call may reach, as a multiple of its unloaded latency, before the limit
 * stops growing. A batching server (vLLM, Ollama with parallel slots) gets several times slower per call
 * as it fills up while its throughput still rises, so the default is 5, not the 1.5–2 of request/response
 * services.
 */
export interface GradientLimitOptions {
  /** Starting limit. Default min(4, max). */
  initial?: number;
  /** Lowest limit. Default 1. */
  min?: number;
  /** Highest limit (the cap). Required. */
  max: number;
  /** Latency allowed, as a multiple of the no-load minimum, before the limit stops growing. Default 5. */
  tolerance?: number;
  /** Weight of each new estimate (0–1]. Default 0.2. */
  smoothing?: number;
  /** Factor the limit is multiplied by on a drop (429, 503, timeout). Default 0.9. */
  backoff?: number;
  /** Samples averaged into the recent latency (exponential moving average). Default 10. */
  rttWindow?: number;
}

/** One finished call as the limit sees it. */
export interface LimitSample {
  /** Latency of the call (ms, or ms per unit of work). */
  rtt: number;
  /** Calls in flight when it finished (itself included). */
  inFlight: number;
  /** The backend refused or timed out (429, 503, timeout): back off. */
  dropped: boolean;
  /** When it finished (ms, any monotonic clock). */
  at: number;
}

/** The adaptive limit's arithmetic, without permits or clocks: deterministic, fed one sample at a time. */
export class GradientLimit {
  readonly min: number;
  readonly max: number;
  readonly tolerance: number;
  private readonly smoothing: number;
  private readonly backoff: number;
  private readonly alpha: number;
  private estimate: number;
  private minRtt = Infinity;
  private rttAvg = 0;
  private lastDropAt = -Infinity;
  private drops = 0;
  /** Still in slow start (no strain seen yet). */
  private starting = true;
  /** The quickest first output seen (slow start's yardstick). */
  private minFirst = Infinity;

  constructor(opts: GradientLimitOptions) {
    this.max = opts.max;
    this.min = opts.min ?? 1;
    this.tolerance = opts.tolerance ?? 5;
    this.smoothing = opts.smoothing ?? 0.2;
    this.backoff = opts.backoff ?? 0.9;
    this.alpha = 2 / ((opts.rttWindow ?? 10) + 1);
    const problems: string[] = [];
    if (!(Number.isInteger(this.min) && this.min >= 1)) problems.push('min must be an integer >= 1');
    if (!(Number.isInteger(this.max) && this.max >= this.min)) problems.push('max must be an integer >= min');
    if (!(this.tolerance >= 1)) problems.push('tolerance must be >= 1');
    if (!(this.smoothing > 0 && this.smoothing <= 1)) problems.push('smoothing must be in (0, 1]');
    if (!(this.backoff > 0 && this.backoff < 1)) problems.push('backoff must be in (0, 1)');
    if (problems.length > 0) throw new TypeError(`GradientLimit: ${problems.join('; ')}`);
    this.estimate = clamp(opts.initial ?? Math.min(4, this.max), this.min, this.max);
  }

  /** The current limit: whole permits. */
  get limit(): number {
    return Math.max(this.min, Math.floor(this.estimate));
  }

  /**
   * In slow start: calls have reported first outputs (streamed calls) and the backend has shown no strain
   * yet (see slow start above). Unstreamed traffic never enters it.
   */
  get slowStart(): boolean {
    return this.starting && this.minFirst < Infinity;
  }

  /** What the limit is working from: the lowest latency seen, the recent average, drops so far. */
  state(): {
    limit: number;
    estimate: number;
    minRtt: number;
    rtt: number;
    drops: number;
    slowStart: boolean;
  } {
    return {
      limit: this.limit,
      estimate: this.estimate,
      minRtt: this.minRtt,
      rtt: this.rttAvg,
      drops: this.drops,
      slowStart: this.slowStart,
    };
  }

  /**
   * Feeds a call's first output (slow start): `latency` from its permit to its first output, `inFlight` the
   * calls in flight when it was let through (itself included). Returns the new limit.
   */
  firstOutput(s: { latency: number; inFlight: number }): number {
    if (!this.starting || !(Number.isFinite(s.latency) && s.latency >= 0)) return this.limit;
    this.minFirst = Math.min(this.minFirst, Math.max(s.latency, 1e-6));
    // App-limited: too few calls in flight to say the backend takes more, or that it is strained (as for a
    // finished call's sample). A slow first output of a call let through almost alone is the host's or the
    // backend's own slowness (a busy event loop, a pause, a long prompt), not a sign of our concurrency:
    // it neither raises the limit nor ends slow start.
    if (s.inFlight * 2 < this.estimate) return this.limit;
    if (s.latency > this.tolerance * this.minFirst) {
      this.starting = false;
      return this.limit;
    }
    this.estimate = clamp(Math.max(this.estimate, 2 * s.inFlight), this.min, this.max);
    return this.limit;
  }

  /** Feeds one finished call; returns the new limit. */
  update(s: LimitSample): number {
    if (s.dropped) {
      // Several calls in flight fail on the same overload: one cut per round trip, not one per call.
      const roundTrip = this.rttAvg > 0 ? this.rttAvg : 0;
      this.starting = false;
      if (s.at - this.lastDropAt >= roundTrip) {
        this.lastDropAt = s.at;
        this.drops++;
        this.estimate = clamp(this.estimate * this.backoff, this.min, this.max);
      }
      return this.limit;
    }
    if (!(Number.isFinite(s.rtt) && s.rtt >= 0)) return this.limit;
    this.minRtt = Math.min(this.minRtt, Math.max(s.rtt, 1e-6));
    this.rttAvg = this.rttAvg === 0 ? s.rtt : this.rttAvg + this.alpha * (s.rtt - this.rttAvg);
    // App-limited: too few calls in flight to learn anything about the backend's capacity.
    if (s.inFlight * 2 < this.estimate) return this.limit;
    const ratio = this.rttAvg / this.minRtt;
    if (ratio > this.tolerance) this.starting = false;
    const target =
      ratio <= this.tolerance
        ? this.estimate + Math.sqrt(this.estimate)
        : this.estimate * Math.max(0.5, this.tolerance / ratio);
    this.estimate = clamp(this.estimate * (1 - this.smoothing) + target * this.smoothing, this.min, this.max);
    return this.limit;
  }
}

/** A fixed limit, with the same interface: CELL0_BACKEND_LIMIT pinned to a number. */
export class FixedLimit {
  readonly min: number;
  readonly max: number;
  constructor(readonly limit: number) {
    if (!(Number.isInteger(limit) && limit >= 1))
      throw new TypeError('FixedLimit: limit must be an integer >= 1');
    this.min = limit;
    this.max = limit;
  }
  update(): number {
    return this.limit;
  }
}

/** What a {@link ConcurrencyLimiter} decides with. */
export interface LimitAlgorithm {
  readonly limit: number;
  readonly max: number;
  update(s: LimitSample): number;
  /** True while the limit may still double per first-output time ({@link GradientLimit}'s slow start). */
  readonly slowStart?: boolean;
  /**
   * A call's first output, `latency` after its permit, `inFlight` the calls in flight when it was let through
   * (see {@link GradientLimit.firstOutput}); returns the new limit.
   */
  firstOutput?(s: { latency: number; inFlight: number }): number;
}

/** A permit to make one backend call; exactly one of its methods should be called when the call ends. */
export interface Permit {
  /**
   * The call's first output came (a streamed call's first token): feeds the limit's slow start and lets
   * waiting calls through if it grew. Optional to call; at most once counts.
   */
  firstOutput(): void;
  /**
   * The call succeeded; `units` of work done (e.g. tokens produced), to compare calls of any length.
   * `backendMs`: the time the backend itself reports having spent on the call (Ollama's `total_duration`, its
   * own queueing included), when it reports one. The sample is then that time instead of the time since the
   * permit (never more than it): what the call spent in this process after the backend answered (its reply
   * waiting behind a busy event loop, its parsing) says nothing about the backend's load, and counted as
   * backend latency it made the limit shrink whenever the worker itself was the bottleneck.
   */
  success(units?: number, backendMs?: number): void;
  /** The backend refused (429/503) or timed out: the limit backs off. */
  dropped(): void;
  /** The call ended for a reason that says nothing about the backend (cancelled, a 4xx): no sample. */
  ignore(): void;
}

/** Counters of one limiter. */
export interface ConcurrencyLimiterMetrics {
  name: string;
  mode: 'adaptive' | 'fixed';
  limit: number;
  max: number;
  inFlight: number;
  waiting: number;
  /** Calls that had to wait for a permit, and calls refused after waiting too long. */
  waited: number;
  timedOut: number;
  drops: number;
}

/** Options of {@link ConcurrencyLimiter}. */
export interface ConcurrencyLimiterOptions {
  name: string;
  algorithm: LimitAlgorithm;
  /** Clock for latencies (ms). Default performance.now. Tests inject their own. */
  now?: () => number;
}

interface Waiter {
  grant: (p: Permit) => void;
  fail: (err: unknown) => void;
}

/**
 * Permits to call one backend: at most `algorithm.limit` calls in flight; the rest wait in FIFO order.
 * Each finished call's latency (per unit of work) is fed back to the algorithm.
 */
export class ConcurrencyLimiter {
  readonly name: string;
  private readonly algorithm: LimitAlgorithm;
  private readonly now: () => number;
  private inFlight = 0;
  private readonly waiters: Waiter[] = [];
  private waited = 0;
  private timedOut = 0;
  private drops = 0;
  private readonly raisedListeners = new Set<() => void>();

  constructor(opts: ConcurrencyLimiterOptions) {
    this.name = opts.name;
    this.algorithm = opts.algorithm;
    this.now = opts.now ?? (() => performance.now());
  }

  get limit(): number {
    return this.algorithm.limit;
  }

  /**
   * Calls this limiter may let through soon: its limit, or its cap while in slow start (the limit may double
   * every first-output time then). What a worker should hold jobs for: held jobs wait for a permit here, in
   * the process, and start the moment one is free, where jobs left in the queue would wait for a fetch (and
   * BullMQ's worker notices a raised concurrency only when one of its jobs ends).
   */
  get capacity(): number {
    return this.algorithm.slowStart ? this.algorithm.max : this.algorithm.limit;
  }

  /**
   * Calls `listener` each time {@link capacity} rises (a first output or a finished call raised the limit, or
   * slow start began), right as it happens: a worker raises the jobs it holds then, not at its next re-read
   * (a limit in slow start doubles every first-output time). Returns the unsubscribe. `listener` must not
   * throw (a throw is swallowed).
   */
  onCapacityRaised(listener: () => void): () => void {
    this.raisedListeners.add(listener);
    return () => this.raisedListeners.delete(listener);
  }

  private notifyIfRaised(before: number): void {
    if (this.raisedListeners.size === 0 || this.capacity <= before) return;
    for (const l of this.raisedListeners) {
      try {
        l();
      } catch {
        // A listener's failure is its own; the permit's bookkeeping goes on.
      }
    }
  }

  /**
   * A permit, at once when one is free, else after waiting in line. Rejects with RateLimitedError after
   * `timeoutMs` (the job then waits in the queue, not in this process) or with the signal's reason.
   */
  acquire(opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Permit> {
    const { signal, timeoutMs } = opts;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.inFlight < this.algorithm.limit && this.waiters.length === 0)
      return Promise.resolve(this.grant());
    this.waited++;
    return new Promise<Permit>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      const onAbort = () => {
        done();
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        grant: (p) => {
          done();
          resolve(p);
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      this.waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined && timeoutMs > 0) {
        timer = setTimeout(() => {
          this.timedOut++;
          waiter.fail(new RateLimitedError(this.name, Math.max(250, Math.round(timeoutMs / 4))));
        }, timeoutMs);
        timer.unref?.();
      }
    });
  }

  private grant(): Permit {
    this.inFlight++;
    const start = this.now();
    const inFlightAtGrant = this.inFlight;
    let open = true;
    let first = true;
    const end = (sample?: { rtt: number; dropped: boolean }) => {
      if (!open) return;
      open = false;
      const capacity = this.capacity;
      if (sample) {
        if (sample.dropped) this.drops++;
        this.algorithm.update({ ...sample, inFlight: this.inFlight, at: this.now() });
      }
      this.inFlight--;
      this.drain();
      this.notifyIfRaised(capacity);
    };
    return {
      firstOutput: () => {
        if (!open || !first) return;
        first = false;
        const before = this.algorithm.limit;
        const capacity = this.capacity;
        this.algorithm.firstOutput?.({ latency: this.now() - start, inFlight: inFlightAtGrant });
        if (this.algorithm.limit > before) this.drain();
        this.notifyIfRaised(capacity);
      },
      success: (units = 1, backendMs) => {
        const elapsed = this.now() - start;
        const rtt =
          backendMs !== undefined && Number.isFinite(backendMs) && backendMs > 0
            ? Math.min(backendMs, elapsed)
            : elapsed;
        end({ rtt: rtt / Math.max(1, units), dropped: false });
      },
      dropped: () => end({ rtt: this.now() - start, dropped: true }),
      ignore: () => end(),
    };
  }

  /** Hands free permits to the waiters, oldest first (the limit may have grown or a call ended). */
  private drain(): void {
    while (this.waiters.length > 0 && this.inFlight < this.algorithm.limit) {
      const w = this.waiters[0]!;
      w.grant(this.grant());
    }
  }

  metrics(): ConcurrencyLimiterMetrics {
    return {
      name: this.name,
      mode: this.algorithm instanceof FixedLimit ? 'fixed' : 'adaptive',
      limit: this.algorithm.limit,
      max: this.algorithm.max,
      inFlight: this.inFlight,
      waiting: this.waiters.length,
      waited: this.waited,
      timedOut: this.timedOut,
      drops: this.drops,
    };
  }
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
