import { ProviderUnavailableError } from '../../shared/errors.js';
import { matchesPattern } from '../../shared/config/provider-routes.js';
import { type InferenceJobData, type SearchJobData } from '../../shared/queues/schemas.js';
import { type InferenceResult, type SearchResult } from '../../shared/queues/results.js';
import { type BackendGuard } from './backend-guard.js';
import { type ConcurrencyLimiter } from './adaptive-limit.js';
import { type CallContext, type EmbedResult, type InferenceBackend, type SearchBackend } from './provider.js';

/** One model pattern and the backend (with its guard) that serves it. */
export interface InferenceRoute {
  /** Glob over model names (`*` = any run of characters). */
  pattern: string;
  backend: InferenceBackend;
  /** Rate limit, breaker and retries of the backend's origin; none for in-process backends. */
  guard?: BackendGuard;
}

/**
 * Sends each inference job to the backend of the first route whose pattern matches its model, through that
 * backend's guard. A model no route matches fails at once (not retryable) with PROVIDER_UNAVAILABLE.
 */
export class InferenceRouter implements InferenceBackend {
  readonly name = 'router';
  private closing: Promise<void> | undefined;
  constructor(readonly routes: readonly InferenceRoute[]) {
    if (routes.length === 0) throw new TypeError('InferenceRouter: at least one route is required');
  }

  /** The route serving `model`, or undefined. */
  routeFor(model: string): InferenceRoute | undefined {
    return this.routes.find((r) => matchesPattern(r.pattern, model));
  }

  private route(model: string): InferenceRoute {
    const r = this.routeFor(model);
    if (r === undefined)
      throw new ProviderUnavailableError(
        'inference',
        `no backend is configured for model "${model}" (see CELL0_MODEL_ROUTES)`,
      );
    return r;
  }

  run(job: InferenceJobData, ctx: CallContext): Promise<Omit<InferenceResult, 'servedBy'>> {
    const r = this.route(job.model);
    if (!r.guard) return r.backend.run(job, ctx);
    // A retry inside the guard starts the text over (a stream cut short is retried): the token stream is
    // told, so its readers do not append the new try's text to the failed one's.
    let tries = 0;
    /** The time the backend reported for the current try (its concurrency limit's sample). */
    let backendMs: number | undefined;
    const onBackendTime = (ms: number): void => {
      backendMs = ms;
      ctx.onBackendTime?.(ms);
    };
    return r.guard.run(
      (signal, firstOutput) => {
        if (tries++ > 0) ctx.onRestart?.();
        backendMs = undefined;
        const onToken = ctx.onToken;
        // A streamed call's first token is its first output (the concurrency limit's slow start).
        if (!onToken) return r.backend.run(job, { ...ctx, signal, onBackendTime });
        let first = true;
        return r.backend.run(job, {
          ...ctx,
          signal,
          onBackendTime,
          onToken: (text) => {
            if (first) {
              first = false;
              firstOutput();
            }
            onToken(text);
          },
        });
      },
      ctx.signal,
      {
        // Latency per token produced: a 500-token answer is not "slower" than a 5-token one.
        units: (res) => res.usage.completionTokens,
        backendMs: () => backendMs,
        ...(ctx.onStart ? { onStart: ctx.onStart } : {}),
      },
    );
  }

  embed(model: string, input: string[], ctx: CallContext): Promise<EmbedResult> {
    const r = this.route(model);
    const embed = r.backend.embed?.bind(r.backend);
    if (!embed) throw new ProviderUnavailableError(r.backend.name, `${r.backend.name} has no embeddings`);
    if (!r.guard) return embed(model, input, ctx);
    return r.guard.run((signal) => embed(model, input, { signal }), ctx.signal, {
      units: () => input.length,
      ...(ctx.onStart ? { onStart: ctx.onStart } : {}),
    });
  }

  /** The models the backends behind the routes list (those that can list theirs; one failing is skipped). */
  async listModels(ctx: CallContext): Promise<string[]> {
    const lists = await Promise.allSettled(
      this.backends().map((b) => b.listModels?.(ctx) ?? Promise.resolve([])),
    );
    const names = new Set<string>();
    for (const l of lists) if (l.status === 'fulfilled') for (const m of l.value) names.add(m);
    return [...names].sort();
  }

  /**
   * Calls the backends behind the routes take at once now: the sum of their guards' concurrency limits;
   * undefined when a route has no such limit (an in-process backend, a guard without one).
   */
  concurrencyLimit(): number | undefined {
    return this.sumOfLimiters((c) => c.limit);
  }

  /**
   * Calls the backends behind the routes may take soon: the sum of their guards' limiters' capacities (a
   * limit in slow start counts at its cap); undefined as for {@link concurrencyLimit}. What a worker holds
   * jobs for.
   */
  concurrencyCapacity(): number | undefined {
    return this.sumOfLimiters((c) => c.capacity);
  }

  /**
   * Calls `listener` each time a capacity {@link concurrencyCapacity} sums rises (see
   * ConcurrencyLimiter#onCapacityRaised). Returns the unsubscribe.
   */
  onCapacityRaised(listener: () => void): () => void {
    const limiters = new Set(this.routes.map((r) => r.guard?.concurrency).filter((c) => c !== undefined));
    const offs = [...limiters].map((c) => c.onCapacityRaised(listener));
    return () => offs.forEach((off) => off());
  }

  private sumOfLimiters(of: (c: ConcurrencyLimiter) => number): number | undefined {
    const limits = new Map<unknown, number>();
    for (const r of this.routes) {
      const c = r.guard?.concurrency;
      if (!c) return undefined;
      limits.set(c, of(c));
    }
    return [...limits.values()].reduce((a, b) => a + b, 0);
  }

  /** Every distinct backend behind the routes. */
  backends(): InferenceBackend[] {
    return [...new Set(this.routes.map((r) => r.backend))];
  }

  /** Closes every backend (each even when another fails). Idempotent: every call returns the same promise. */
  close(): Promise<void> {
    this.closing ??= Promise.allSettled(this.backends().map((b) => b.close())).then(() => undefined);
    return this.closing;
  }
}

/** A remote search backend behind its origin's guard. */
export class GuardedSearch implements SearchBackend {
  constructor(
    readonly backend: SearchBackend,
    readonly guard: BackendGuard,
  ) {}

  get name(): string {
    return this.backend.name;
  }

  get origin(): string | undefined {
    return this.backend.origin;
  }

  search(job: SearchJobData, ctx: CallContext): Promise<Omit<SearchResult, 'servedBy' | 'tookMs'>> {
    return this.guard.run(
      (signal) => this.backend.search(job, { signal }),
      ctx.signal,
      ctx.onStart ? { onStart: ctx.onStart } : {},
    );
  }

  close(): Promise<void> {
    return this.backend.close();
  }
}
