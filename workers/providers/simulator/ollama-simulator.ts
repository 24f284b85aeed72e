import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ClosedError, ConfigError } from '../../../shared/errors.js';
import {
  DEFAULT_ALIASES,
  buildCatalog,
  normalizeModelName,
  unknownModelEntry,
  type SimModel,
} from './catalog.js';
import { type Exchange, SimHttpError, readJsonBody, sendError, sendJson, sendText } from './http-exchange.js';
import {
  FAULT_ENDPOINTS,
  FaultInjector,
  validateSimFaults,
  type FaultDecision,
  type SimFaults,
} from './faults.js';
import { KeepAliveError, keepAliveMs } from './keep-alive.js';
import { optionalString } from './request-fields.js';
import { ResidentModels } from './resident-models.js';
import { SimulatorCounters, type SimulatorStats } from './simulator-stats.js';
import { EmbedCost } from './embed-cost.js';
import { GpuModel, type GpuStats } from './gpu-model.js';
import { withDefaults } from '../../../shared/with-defaults.js';
import {
  DEFAULTS,
  validate,
  type OllamaSimulatorOptions,
  type ResolvedOptions,
} from './simulator-options.js';
import { type SimContext } from './sim-context.js';
import { handleGeneration } from './generation.js';
import { handleEmbed, handleLegacyEmbeddings } from './embeddings.js';
import { localModels, runningModels } from './model-listing.js';

export { type OllamaSimulatorOptions } from './simulator-options.js';

/** What /api/version answers. */
export const SIMULATOR_VERSION = '0.0.0-cell0-sim';

/** How often idle models past their keep_alive are unloaded (they are also checked on every request). */
const SWEEP_INTERVAL_MS = 1000;

type Handler = (ex: Exchange) => Promise<void> | void;

interface Route {
  methods: readonly string[];
  handler: Handler;
}

/**
 * An HTTP server that speaks the Ollama API with simulated models: deterministic text, real timing (load
 * time, time to first token, tokens per second), resident models with keep_alive and LRU eviction, and
 * counters at GET /_sim/stats. Answers start with "[simulated <model>]".
 */
export class OllamaSimulator {
  private readonly opts: ResolvedOptions;
  private readonly catalog: Map<string, SimModel>;
  /** Models made up on first use under allowAnyModel; kept so their digest and residency stay stable. */
  private readonly adHocModels = new Map<string, SimModel>();
  private readonly defaultKeepAliveMs: number;
  private readonly counters = new SimulatorCounters();
  private readonly embedCost: EmbedCost;
  private readonly residency: ResidentModels;
  private readonly routes: Map<string, Route>;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly idleWaiters = new Set<() => void>();
  private injector: FaultInjector;
  private readonly gpu: GpuModel | undefined;
  private server: Server | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private address: { url: string; port: number } | undefined;
  private starting: Promise<{ url: string; port: number }> | undefined;
  private closing: Promise<void> | undefined;
  /** What the request handlers (generation.ts, embeddings.ts) use of this simulator. */
  private readonly ctx: SimContext;

  constructor(opts: OllamaSimulatorOptions = {}) {
    const merged = withDefaults<ResolvedOptions>(DEFAULTS, opts);
    const issues = validate(merged);
    if (issues.length > 0) throw new ConfigError(issues);
    this.opts = merged;
    this.catalog = buildCatalog(merged.models);
    this.defaultKeepAliveMs = keepAliveMs(merged.defaultKeepAlive);
    this.injector = new FaultInjector(merged.faults);
    this.embedCost = new EmbedCost({
      callMs: merged.embedCallMs,
      itemMs: merged.embedItemMs,
      parallel: merged.embedParallel,
      setTimer: (fn, ms) => this.setTimer(fn, ms),
    });
    this.gpu = merged.gpu === false ? undefined : new GpuModel(merged.gpu);
    this.residency = new ResidentModels({
      maxLoaded: merged.maxLoaded,
      loadMs: (model) => (model.sizeBytes / 1e9) * merged.loadMsPerGb,
      setTimer: (fn, ms) => this.setTimer(fn, ms),
      now: merged.now,
      onLoad: () => {
        this.counters.loads++;
      },
      onUnload: (_model, reason) => {
        this.counters.unloads++;
        if (reason === 'evicted') this.counters.evictions++;
      },
    });
    this.ctx = {
      opts: merged,
      counters: this.counters,
      residency: this.residency,
      embedCost: this.embedCost,
      gpu: this.gpu,
      setTimer: (fn, ms) => this.setTimer(fn, ms),
      modelOf: (body, struct) => this.modelOf(body, struct),
      keepAliveOf: (body) => this.keepAliveOf(body),
    };
    const post = ['POST'];
    const get = ['GET', 'HEAD'];
    this.routes = new Map<string, Route>([
      ['/', { methods: get, handler: (ex) => sendText(ex, 200, 'Ollama is running') }],
      ['/api/generate', { methods: post, handler: (ex) => handleGeneration(this.ctx, ex, 'generate') }],
      ['/api/chat', { methods: post, handler: (ex) => handleGeneration(this.ctx, ex, 'chat') }],
      ['/api/embed', { methods: post, handler: (ex) => handleEmbed(this.ctx, ex) }],
      ['/api/embeddings', { methods: post, handler: (ex) => handleLegacyEmbeddings(this.ctx, ex) }],
      [
        '/api/ps',
        { methods: get, handler: (ex) => sendJson(ex, 200, { models: runningModels(this.residency) }) },
      ],
      [
        '/api/tags',
        { methods: get, handler: (ex) => sendJson(ex, 200, { models: localModels(this.catalog) }) },
      ],
      ['/api/version', { methods: get, handler: (ex) => sendJson(ex, 200, { version: SIMULATOR_VERSION }) }],
      ['/_sim/stats', { methods: ['GET'], handler: (ex) => sendJson(ex, 200, this.stats()) }],
      ['/_sim/reset', { methods: post, handler: (ex) => this.handleReset(ex) }],
      ['/_sim/faults', { methods: ['GET', 'POST'], handler: (ex) => this.handleFaults(ex) }],
    ]);
  }

  /** Starts listening. Idempotent while running; rejects with ClosedError after close(). */
  start(): Promise<{ url: string; port: number }> {
    if (this.closing !== undefined) return Promise.reject(new ClosedError('OllamaSimulator'));
    this.starting ??= this.listen().catch((err: unknown) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  /** Base URL, e.g. http://127.0.0.1:41234. Throws before start() has resolved. */
  get url(): string {
    if (this.address === undefined) {
      throw new Error('OllamaSimulator is not listening yet: await start() first');
    }
    return this.address.url;
  }

  /** Counters since start or the last reset. */
  stats(): SimulatorStats & { gpu?: GpuStats } {
    const snapshot = { ...this.counters.snapshot(), embed: this.embedCost.stats() };
    return this.gpu === undefined ? snapshot : { ...snapshot, gpu: this.gpu.stats() };
  }

  /** Zeroes the counters; with `models: true` also forgets every resident model. */
  reset(opts: { models?: boolean } = {}): void {
    if (opts.models === true) this.residency.clear();
    this.counters.reset();
    this.embedCost.reset();
    this.gpu?.resetCounters();
  }

  /** The fault settings in force: defaults filled in, with the seed in use (a copy). */
  get faults(): SimFaults {
    return this.injector.settings;
  }

  /**
   * Replaces the fault settings (fields left out take their defaults, not their previous values) and
   * restarts the PRNG and the token bucket (full). Throws ConfigError when they are invalid.
   */
  setFaults(faults: SimFaults): void {
    const issues = validateSimFaults(faults, 'OllamaSimulator.faults');
    if (issues.length > 0) throw new ConfigError(issues);
    this.injector = new FaultInjector(faults);
  }

  /** Resolves once no request is in flight (at once if none is). */
  whenIdle(): Promise<void> {
    if (this.counters.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.add(resolve));
  }

  /**
   * Stops the server: clears every timer, fails loads in progress, drops open connections (streams end
   * mid-way, as if the server died). Idempotent: every call returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async listen(): Promise<{ url: string; port: number }> {
    const server = createServer((req, res) => this.dispatch(req, res));
    // Outlive the client's keep-alive (undici: 4 s) so a pooled socket is never closed under a new request.
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    this.address = { url: `http://${host}:${port}`, port };
    this.counters.startedAt = new Date().toISOString();
    this.sweepTimer = setInterval(() => this.residency.sweep(), SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
    return this.address;
  }

  private async shutdown(): Promise<void> {
    // A start() still binding would otherwise finish after this and leave a server and a timer behind.
    await this.starting?.catch(() => undefined);
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.residency.close();
    const server = this.server;
    if (server === undefined || !server.listening) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private setTimer(fn: () => void, ms: number): () => void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
    return () => {
      clearTimeout(timer);
      this.timers.delete(timer);
    };
  }

  private dispatch(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://simulator');
    const path = url.pathname;
    const counted = path === '/' || path.startsWith('/api/');
    const controller = new AbortController();
    const ex: Exchange = {
      req,
      res,
      path,
      query: url.searchParams,
      signal: controller.signal,
      receivedAt: performance.now(),
    };

    if (counted) this.counters.request(path);
    res.once('close', () => {
      const complete = res.writableEnded;
      if (!complete) controller.abort(new Error('client closed the connection'));
      if (!counted) return;
      if (!complete) this.counters.aborted++;
      else if (res.statusCode >= 400) this.counters.errors++;
      this.counters.inFlight--;
      if (this.counters.inFlight === 0) {
        for (const resolve of this.idleWaiters) resolve();
        this.idleWaiters.clear();
      }
    });

    const route = this.routes.get(path);
    if (route === undefined) {
      sendText(ex, 404, '404 page not found');
      return;
    }
    if (!route.methods.includes(req.method ?? '')) {
      sendJson(ex, 405, { error: 'method not allowed' });
      return;
    }
    // Fault injection sees every routed exchange before its handler and can answer it instead.
    let delayMs = 0;
    if (FAULT_ENDPOINTS.has(path)) {
      this.counters.arrivals.record(ex.receivedAt);
      const fault = this.injector.decide(ex.receivedAt);
      if (fault.kind === 'slow') {
        this.counters.faults.slowed++;
        delayMs = fault.ms;
      } else if (fault.kind !== 'none') {
        this.answerFault(ex, fault);
        return;
      }
    }
    Promise.resolve()
      .then(() => (delayMs > 0 ? this.delay(ex, delayMs) : undefined))
      .then(() => (ex.signal.aborted ? undefined : route.handler(ex)))
      .catch((err: unknown) => {
        if (err instanceof SimHttpError) sendError(ex, err.status, err.message);
        else if (err instanceof ClosedError) ex.res.destroy();
        else sendError(ex, 500, err instanceof Error ? err.message : String(err));
      });
  }

  /** Answers a request with an injected fault instead of its handler (a drop sends nothing). */
  private answerFault(ex: Exchange, fault: Exclude<FaultDecision, { kind: 'none' | 'slow' }>): void {
    switch (fault.kind) {
      case 'drop':
        // Counted as aborted by the close listener: the response never completes.
        this.counters.faults.dropped++;
        ex.req.socket.destroy();
        return;
      case 'rateLimited':
        this.counters.faults.rateLimited++;
        ex.res.setHeader('retry-after', String(fault.retryAfterSec));
        sendError(ex, 429, `rate limit exceeded, retry in ${fault.retryAfterSec}s (simulated)`);
        return;
      case '429':
        this.counters.faults.injected429++;
        ex.res.setHeader('retry-after', String(fault.retryAfterSec));
        sendError(ex, 429, 'too many requests (simulated fault)');
        return;
      case '500':
        this.counters.faults.injected500++;
        sendError(ex, 500, 'internal server error (simulated fault)');
        return;
    }
  }

  /** Waits `ms` (a slowed request); resolves early when the client goes away. */
  private delay(ex: Exchange, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const onAbort = (): void => {
        cancel();
        resolve();
      };
      const cancel = this.setTimer(() => {
        ex.signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      ex.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private lookup(requestedName: string): SimModel {
    const name = normalizeModelName(requestedName);
    const alias = DEFAULT_ALIASES[name];
    const known =
      this.catalog.get(name) ??
      (alias === undefined ? undefined : this.catalog.get(alias)) ??
      this.adHocModels.get(name);
    if (known !== undefined) return known;
    if (!this.opts.allowAnyModel) {
      throw new SimHttpError(404, `model "${requestedName}" not found, try pulling it first`);
    }
    const made = unknownModelEntry(name);
    this.adHocModels.set(name, made);
    return made;
  }

  private keepAliveOf(body: Record<string, unknown>): number {
    if (body.keep_alive === undefined || body.keep_alive === null) return this.defaultKeepAliveMs;
    try {
      return keepAliveMs(body.keep_alive);
    } catch (err) {
      if (err instanceof KeepAliveError) throw new SimHttpError(400, err.message);
      throw err;
    }
  }

  /** Reads `model`, counts it, and resolves it in the catalog (404 when unknown). */
  private modelOf(body: Record<string, unknown>, struct: string): { requestedName: string; model: SimModel } {
    const value = body.model;
    if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) {
      throw new SimHttpError(400, 'model is required');
    }
    const requestedName = optionalString(body, 'model', struct) ?? '';
    this.counters.model(normalizeModelName(requestedName));
    return { requestedName, model: this.lookup(requestedName) };
  }

  private async handleReset(ex: Exchange): Promise<void> {
    this.reset({ models: ex.query.get('models') === '1' });
    sendJson(ex, 200, this.stats());
  }

  /** GET /_sim/faults: the settings in force. POST: replaces them with the JSON body (400 when invalid). */
  private async handleFaults(ex: Exchange): Promise<void> {
    if (ex.req.method === 'POST') {
      const body = await readJsonBody(ex, this.opts.maxBodyBytes);
      const issues = validateSimFaults(body, 'faults');
      if (issues.length > 0) {
        throw new SimHttpError(
          400,
          'invalid faults: ' + issues.map((i) => `${i.field}: ${i.reason}`).join('; '),
        );
      }
      this.injector = new FaultInjector(body as SimFaults);
    }
    sendJson(ex, 200, this.faults);
  }
}
