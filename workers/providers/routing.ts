import { ProviderUnavailableError } from '../../shared/errors.js';
import { matchesPattern } from '../../shared/config/provider-routes.js';
import { type InferenceJobData, type SearchJobData } from '../../shared/queues/schemas.js';
import { type InferenceResult, type SearchResult } from '../../shared/queues/results.js';
import { type BackendGuard } from './backend-guard.js';
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
    return r.guard.run((signal) => r.backend.run(job, { signal }), ctx.signal);
  }

  embed(model: string, input: string[], ctx: CallContext): Promise<EmbedResult> {
    const r = this.route(model);
    const embed = r.backend.embed?.bind(r.backend);
    if (!embed) throw new ProviderUnavailableError(r.backend.name, `${r.backend.name} has no embeddings`);
    if (!r.guard) return embed(model, input, ctx);
    return r.guard.run((signal) => embed(model, input, { signal }), ctx.signal);
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
    return this.guard.run((signal) => this.backend.search(job, { signal }), ctx.signal);
  }

  close(): Promise<void> {
    return this.backend.close();
  }
}
