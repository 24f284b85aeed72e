import { type BackendCallMeter, type BackendMetrics } from '../../shared/metrics/backend-metrics.js';
import { type InferenceJobData, type SearchJobData } from '../../shared/queues/schemas.js';
import { type InferenceResult, type SearchResult } from '../../shared/queues/results.js';
import { type CallContext, type EmbedResult, type InferenceBackend, type SearchBackend } from './provider.js';
import { InferenceRouter, type InferenceRoute } from './routing.js';

/**
 * An inference backend whose calls are counted in the backend families: outcome, duration, time to first
 * token, tokens in and out, tokens per second, labelled by the route that serves the model (its provider,
 * origin and pattern: never the model name a request carried). The series of each route are bound once;
 * a call costs a route lookup (the router does the same one) and a few increments.
 */
export class MeteredInference implements InferenceBackend {
  readonly name: string;
  readonly origin: string | undefined;
  readonly embed?: (model: string, input: string[], ctx: CallContext) => Promise<EmbedResult>;
  readonly load?: InferenceBackend['load'];
  readonly unload?: InferenceBackend['unload'];
  readonly listLoaded?: InferenceBackend['listLoaded'];
  readonly listModels?: InferenceBackend['listModels'];
  readonly modelSizes?: InferenceBackend['modelSizes'];
  /** The router's, when the inner backend is one (the embedding batcher names the provider by it). */
  readonly routeFor?: (model: string) => InferenceRoute | undefined;
  private readonly meters = new Map<InferenceRoute | undefined, BackendCallMeter>();

  constructor(
    readonly inner: InferenceBackend,
    private readonly metrics: BackendMetrics,
  ) {
    this.name = inner.name;
    this.origin = inner.origin;
    if (inner.embed) {
      const embed = inner.embed.bind(inner);
      this.embed = async (model, input, ctx) => {
        const m = this.meterFor(model);
        m?.inputsPerCall(input.length);
        const t0 = performance.now();
        try {
          const r = await embed(model, input, ctx);
          m?.ok((performance.now() - t0) / 1000, undefined, r.promptTokens ?? 0, 0);
          return r;
        } catch (err) {
          m?.failed(err, (performance.now() - t0) / 1000);
          throw err;
        }
      };
    }
    if (inner.load) this.load = inner.load.bind(inner);
    if (inner.unload) this.unload = inner.unload.bind(inner);
    if (inner.listLoaded) this.listLoaded = inner.listLoaded.bind(inner);
    if (inner.listModels) this.listModels = inner.listModels.bind(inner);
    if (inner.modelSizes) this.modelSizes = inner.modelSizes.bind(inner);
    if (inner instanceof InferenceRouter) this.routeFor = inner.routeFor.bind(inner);
  }

  async run(job: InferenceJobData, ctx: CallContext): Promise<Omit<InferenceResult, 'servedBy'>> {
    const m = this.meterFor(job.model);
    const t0 = performance.now();
    try {
      const r = await this.inner.run(job, ctx);
      const t = r.timings;
      m?.ok(
        (performance.now() - t0) / 1000,
        t.ttftMs !== undefined ? t.ttftMs / 1000 : undefined,
        r.usage.promptTokens,
        r.usage.completionTokens,
        t.tokensPerSec,
      );
      return r;
    } catch (err) {
      m?.failed(err, (performance.now() - t0) / 1000);
      throw err;
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** The bound series of the route serving `model` (undefined: no route, the router refuses it). */
  private meterFor(model: string): BackendCallMeter | undefined {
    const inner = this.inner;
    const route = inner instanceof InferenceRouter ? inner.routeFor(model) : undefined;
    if (inner instanceof InferenceRouter && !route) return undefined;
    let m = this.meters.get(route);
    if (!m) {
      const backend: InferenceBackend = route?.backend ?? inner;
      m = this.metrics.meter({
        provider: backend.name,
        origin: backend.origin ?? 'local',
        model: route?.pattern ?? '*',
      });
      this.meters.set(route, m);
    }
    return m;
  }
}

/** A search backend whose calls are counted in the backend families (model label "none"). */
export class MeteredSearch implements SearchBackend {
  private readonly meter: BackendCallMeter;

  constructor(
    readonly inner: SearchBackend,
    metrics: BackendMetrics,
  ) {
    this.meter = metrics.meter({ provider: inner.name, origin: inner.origin ?? 'local', model: 'none' });
  }

  get name(): string {
    return this.inner.name;
  }

  get origin(): string | undefined {
    return this.inner.origin;
  }

  async search(job: SearchJobData, ctx: CallContext): Promise<Omit<SearchResult, 'servedBy' | 'tookMs'>> {
    const t0 = performance.now();
    try {
      const r = await this.inner.search(job, ctx);
      this.meter.ok((performance.now() - t0) / 1000);
      return r;
    } catch (err) {
      this.meter.failed(err, (performance.now() - t0) / 1000);
      throw err;
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
