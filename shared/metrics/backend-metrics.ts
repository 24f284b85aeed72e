import { Counter, Gauge, type Histogram, type Registry } from 'prom-client';
import { BreakerOpenError } from '../errors/breaker-open-error.js';
import { JobCancelledError } from '../errors/job-cancelled-error.js';
import { ModelNotFoundError } from '../errors/model-not-found-error.js';
import { ProviderError } from '../errors/provider-error.js';
import { RateLimitedError } from '../errors/rate-limited-error.js';
import { JOB_BUCKETS } from './buckets.js';
import { FastCounter, FastHistogram } from './fast-metrics.js';

/** Time to first token: a warm model answers in tens of ms, a cold load takes seconds. */
export const TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Generation speed, tokens per second: CPU inference to batched GPU serving. */
export const TPS_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000];

/** Inputs per embedding call: 1 (nothing to batch) up to the largest batches configured. */
export const BATCH_ITEM_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** How a backend call ended: a fixed set, so the label stays bounded. */
export type BackendOutcome =
  | 'ok'
  /** The backend answered 4xx (not 429): the request's fault. */
  | 'client_error'
  /** 5xx. */
  | 'server_error'
  /** 429 from the backend. */
  | 'throttled'
  | 'connection'
  | 'timeout'
  | 'protocol'
  /** Refused without a call: the breaker is open. */
  | 'breaker_open'
  /** Refused without a call: no rate-limit token within the wait allowed. */
  | 'rate_limited'
  | 'cancelled'
  | 'error';

/** The outcome of a failed call, from its typed error. */
export function outcomeOf(err: unknown): BackendOutcome {
  if (err instanceof ProviderError) {
    if (err.kind !== 'http') return err.kind;
    if (err.status === 429) return 'throttled';
    return err.status !== undefined && err.status >= 500 ? 'server_error' : 'client_error';
  }
  // The backend answered that it does not have the model: the request's fault, like a 4xx.
  if (err instanceof ModelNotFoundError) return 'client_error';
  if (err instanceof BreakerOpenError) return 'breaker_open';
  if (err instanceof RateLimitedError) return 'rate_limited';
  if (err instanceof JobCancelledError || (err as { name?: unknown })?.name === 'AbortError')
    return 'cancelled';
  return 'error';
}

/** The labels of one backend route: all fixed by the configuration (model is the route's pattern). */
export interface BackendLabels {
  /** Kind of backend: ollama, openai, searxng, brave, local, noop. */
  provider: string;
  /** scheme://host:port, or "local" for in-process backends. */
  origin: string;
  /** The route's model pattern as configured ("*", "llama3*"), "none" for search; never a raw request field. */
  model: string;
}

/** A backend guard as the scrape reads it (see workers/providers/backend-guard.ts). */
export interface GuardSnapshot {
  /** kind@origin[#key-fingerprint] */
  name: string;
  breaker: { state: 'closed' | 'half-open' | 'open' };
  limiter?: { granted: number; waited: number; refused: number; totalWaitMs: number };
  retriesBy: Record<string, number>;
}

/** An HTTP pool as the scrape reads it (see shared/http/pool.ts). */
export interface PoolSnapshot {
  origin: string;
  maxConnectionsPerHost: number;
  connections: { open: number; free: number };
  inFlight: number;
  queued: number;
}

/** What the backend families read at each scrape. */
export interface BackendSource {
  guards(): GuardSnapshot[];
  pools(): PoolSnapshot[];
}

const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const;
const OUTCOMES: BackendOutcome[] = [
  'ok',
  'client_error',
  'server_error',
  'throttled',
  'connection',
  'timeout',
  'protocol',
  'breaker_open',
  'rate_limited',
  'cancelled',
  'error',
];

/**
 * Pre-bound series of one route: counting a call is a few increments and observations on children made
 * once, no label lookup and no allocation.
 */
export class BackendCallMeter {
  private readonly outcomes: Record<BackendOutcome, Counter.Internal>;
  private readonly duration: Histogram.Internal<'provider' | 'origin' | 'model'>;
  private readonly ttft: Histogram.Internal<'provider' | 'origin' | 'model'>;
  private readonly tps: Histogram.Internal<'provider' | 'origin' | 'model'>;
  private readonly tokensIn: Counter.Internal;
  private readonly tokensOut: Counter.Internal;
  private readonly inputs: Histogram.Internal<'provider' | 'origin' | 'model'>;

  constructor(m: BackendMetrics, l: BackendLabels) {
    this.inputs = m.callInputs.labels(l.provider, l.origin, l.model);
    this.outcomes = Object.fromEntries(
      OUTCOMES.map((o) => [o, m.requests.labels(l.provider, l.origin, l.model, o)]),
    ) as Record<BackendOutcome, Counter.Internal>;
    // Every outcome's series exists from the route's first call (at 0): rates and ratios need no absent().
    for (const c of Object.values(this.outcomes)) c.inc(0);
    this.duration = m.duration.labels(l.provider, l.origin, l.model);
    this.ttft = m.ttft.labels(l.provider, l.origin, l.model);
    this.tps = m.tokensPerSecond.labels(l.provider, l.origin, l.model);
    this.tokensIn = m.tokens.labels(l.provider, l.origin, l.model, 'in');
    this.tokensOut = m.tokens.labels(l.provider, l.origin, l.model, 'out');
  }

  /**
   * A call that answered: its duration, time to first token (when streamed), tokens in and out, and the
   * generation speed (the backend's figure, else out tokens over the time after the first one).
   */
  ok(seconds: number, ttftSeconds?: number, tokensIn = 0, tokensOut = 0, tokensPerSecond?: number): void {
    this.outcomes.ok.inc();
    this.duration.observe(seconds);
    if (ttftSeconds !== undefined) this.ttft.observe(ttftSeconds);
    if (tokensIn > 0) this.tokensIn.inc(tokensIn);
    if (tokensOut > 0) {
      this.tokensOut.inc(tokensOut);
      const gen = seconds - (ttftSeconds ?? 0);
      const tps = tokensPerSecond ?? (gen > 0 ? tokensOut / gen : undefined);
      if (tps !== undefined && Number.isFinite(tps) && tps > 0) this.tps.observe(tps);
    }
  }

  /** A batched call (embeddings) carried `n` inputs. */
  inputsPerCall(n: number): void {
    this.inputs.observe(n);
  }

  /** A call that failed (or was refused), after `seconds`. */
  failed(err: unknown, seconds: number): void {
    const outcome = outcomeOf(err);
    this.outcomes[outcome].inc();
    if (outcome !== 'breaker_open' && outcome !== 'rate_limited') this.duration.observe(seconds);
  }
}

/**
 * Backend families: calls by provider, origin, model (route pattern) and outcome, their latency, time to
 * first token, tokens in and out and generation speed (counted as calls end); and, read from the guards and
 * pools at each scrape, breaker states (0 closed, 1 half-open, 2 open), retries by reason, rate-limit waits
 * and refusals, pool connections and queued calls.
 */
export class BackendMetrics {
  readonly requests: Counter<'provider' | 'origin' | 'model' | 'outcome'>;
  readonly duration: Histogram<'provider' | 'origin' | 'model'>;
  readonly ttft: Histogram<'provider' | 'origin' | 'model'>;
  readonly tokens: Counter<'provider' | 'origin' | 'model' | 'direction'>;
  readonly tokensPerSecond: Histogram<'provider' | 'origin' | 'model'>;
  readonly callInputs: Histogram<'provider' | 'origin' | 'model'>;
  private readonly sources = new Set<BackendSource>();
  private readonly meters = new Map<string, BackendCallMeter>();

  constructor(registry: Registry) {
    const registers = [registry];
    const sources = this.sources;
    const guards = (): GuardSnapshot[] => [...sources].flatMap((s) => s.guards());
    const pools = (): PoolSnapshot[] => [...sources].flatMap((s) => s.pools());
    const labels = ['provider', 'origin', 'model'] as const;
    this.requests = new FastCounter({
      name: 'cell0_backend_requests_total',
      help: 'Backend calls by provider, origin, model (route pattern) and outcome (ok, client_error, server_error, throttled, connection, timeout, protocol, breaker_open, rate_limited, cancelled, error)',
      labelNames: [...labels, 'outcome'],
      registers,
    });
    this.duration = new FastHistogram({
      name: 'cell0_backend_request_duration_seconds',
      help: 'Duration of backend calls that were made (retries inside the guard included)',
      labelNames: labels,
      buckets: JOB_BUCKETS,
      registers,
    });
    this.ttft = new FastHistogram({
      name: 'cell0_backend_time_to_first_token_seconds',
      help: 'Time from the call to the first generated token, streamed inference calls',
      labelNames: labels,
      buckets: TTFT_BUCKETS,
      registers,
    });
    this.tokens = new FastCounter({
      name: 'cell0_backend_tokens_total',
      help: 'Tokens of answered inference calls: direction "in" (prompt) and "out" (completion)',
      labelNames: [...labels, 'direction'],
      registers,
    });
    this.tokensPerSecond = new FastHistogram({
      name: 'cell0_backend_tokens_per_second',
      help: 'Generation speed of answered inference calls, completion tokens per second',
      labelNames: labels,
      buckets: TPS_BUCKETS,
      registers,
    });
    this.callInputs = new FastHistogram({
      name: 'cell0_backend_call_inputs',
      help: 'Inputs per batched backend call (embeddings: texts sent in one call)',
      labelNames: labels,
      buckets: BATCH_ITEM_BUCKETS,
      registers,
    });
    new Gauge({
      name: 'cell0_backend_breaker_state',
      help: 'Circuit breaker of each backend guard: 0 closed, 1 half-open, 2 open',
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        for (const g of guards()) this.set({ backend: g.name }, BREAKER_VALUE[g.breaker.state]);
      },
    });
    new Counter({
      name: 'cell0_backend_retries_total',
      help: 'Backend calls retried inside a job attempt, by reason (429, 5xx, connection, timeout, protocol)',
      labelNames: ['backend', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const g of guards())
          for (const [reason, n] of Object.entries(g.retriesBy)) this.inc({ backend: g.name, reason }, n);
      },
    });
    const limiterCounter = (
      name: string,
      help: string,
      value: (l: NonNullable<GuardSnapshot['limiter']>) => number,
    ) =>
      new Counter({
        name,
        help,
        labelNames: ['backend'],
        registers,
        collect() {
          this.reset();
          for (const g of guards()) if (g.limiter) this.inc({ backend: g.name }, value(g.limiter));
        },
      });
    limiterCounter(
      'cell0_backend_rate_limit_waits_total',
      'Rate-limit permits that had to wait for a token',
      (l) => l.waited,
    );
    limiterCounter(
      'cell0_backend_rate_limit_refusals_total',
      'Backend calls refused by the rate limit (the wait would have been too long; the job went back to wait)',
      (l) => l.refused,
    );
    limiterCounter(
      'cell0_backend_rate_limit_wait_seconds_total',
      'Time granted permits spent waiting for a token',
      (l) => l.totalWaitMs / 1000,
    );
    new Gauge({
      name: 'cell0_http_pool_connections',
      help: 'Sockets of each origin pool, by state (busy, idle), and its limit (max)',
      labelNames: ['origin', 'state'],
      registers,
      collect() {
        this.reset();
        for (const p of pools()) {
          this.set({ origin: p.origin, state: 'busy' }, p.connections.open - p.connections.free);
          this.set({ origin: p.origin, state: 'idle' }, p.connections.free);
          this.set({ origin: p.origin, state: 'max' }, p.maxConnectionsPerHost);
        }
      },
    });
    new Gauge({
      name: 'cell0_http_pool_queued_requests',
      help: 'Calls of each origin pool waiting for a connection',
      labelNames: ['origin'],
      registers,
      collect() {
        this.reset();
        for (const p of pools()) this.set({ origin: p.origin }, p.queued);
      },
    });
    new Gauge({
      name: 'cell0_http_pool_in_flight_requests',
      help: 'Calls of each origin pool sent and not finished',
      labelNames: ['origin'],
      registers,
      collect() {
        this.reset();
        for (const p of pools()) this.set({ origin: p.origin }, p.inFlight);
      },
    });
  }

  /** The pre-bound series of a route (made once per label set; routes are fixed by the configuration). */
  meter(labels: BackendLabels): BackendCallMeter {
    const key = `${labels.provider}\u0000${labels.origin}\u0000${labels.model}`;
    let m = this.meters.get(key);
    if (!m) this.meters.set(key, (m = new BackendCallMeter(this, labels)));
    return m;
  }

  /** Reads guards and pools at each scrape; returns the function that stops it. */
  addSource(source: BackendSource): () => void {
    this.sources.add(source);
    return () => this.sources.delete(source);
  }
}
