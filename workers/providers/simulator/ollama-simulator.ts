import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ClosedError, ConfigError, type FieldIssue } from '../../../shared/errors.js';
import {
  DEFAULT_ALIASES,
  buildCatalog,
  normalizeModelName,
  unknownModelEntry,
  type SimModel,
  type SimModelSpec,
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
import {
  optionalBoolean,
  optionalNumber,
  optionalNumberArray,
  optionalString,
  optionalStringArray,
  readEmbedInput,
  readMessages,
  readOptions,
} from './request-fields.js';
import { type Resident, ResidentModels } from './resident-models.js';
import { SimulatorCounters, type SimulatorStats } from './simulator-stats.js';
import { EmbedCost } from './embed-cost.js';
import { GpuModel, validateGpuProfile, type GpuProfile, type GpuStats, type GpuSlot } from './gpu-model.js';
import { fixedPace, gpuPace, type Pace } from './pace.js';
import { contextIds, estimateTokens, planText, simulatedEmbedding } from './text.js';
import { withDefaults } from '../../../shared/with-defaults.js';

/** Options of {@link OllamaSimulator}. */
export interface OllamaSimulatorOptions {
  /** Interface to listen on. Default '127.0.0.1'. */
  host?: string;
  /** Port to listen on; 0 picks a free one (read it from start() or `url`). Default 0. */
  port?: number;
  /** Time from the model being ready to the first token (prompt evaluation), in ms. Default 40. */
  ttftMs?: number;
  /** Generation speed after the first token. Default 200. */
  tokensPerSec?: number;
  /** Load time per GB (1e9 bytes) of model weights, paid when a model is not resident. Default 100. */
  loadMsPerGb?: number;
  /** Most models resident at once, like OLLAMA_MAX_LOADED_MODELS; beyond it the LRU idle one is unloaded. Default 3. */
  maxLoaded?: number;
  /**
   * false: unknown models answer 404 like Ollama ("try pulling it first"). true: any name works, as a 4 GB
   * 7B-class model. Default false.
   */
  allowAnyModel?: boolean;
  /** keep_alive of requests that give none (seconds, or a duration such as "5m"). Default '5m'. */
  defaultKeepAlive?: string | number;
  /** Largest accepted request body; larger ones get 413. Default 10 MiB. */
  maxBodyBytes?: number;
  /** Models added to the default catalog; an entry with a default model's name replaces it. Default none. */
  models?: readonly SimModelSpec[];
  /**
   * Cost of an /api/embed call: `embedCallMs` per call plus `embedItemMs` per input, with at most
   * `embedParallel` calls per model computing at once (more wait their turn). Defaults 15, 0.5 and 4: a
   * backend where batching pays, as it does on a GPU. See docs/backends.md.
   */
  embedCallMs?: number;
  embedItemMs?: number;
  embedParallel?: number;
  /**
   * Faults injected into /api/generate, /api/chat, /api/embed and /api/embeddings; change them at run time
   * with setFaults() or POST /_sim/faults. Default none.
   */
  faults?: SimFaults;
  /**
   * GPU-like serving (gpu-model.ts): per-model parallel slots, throughput shared by continuous batching, a
   * bounded wait queue answering 503, prompt evaluation time. false (the default): every request gets its
   * own generator at tokensPerSec, however many run at once. `tokensPerSec` is unused when this is on.
   */
  gpu?: GpuProfile | false;
}

const DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  ttftMs: 40,
  tokensPerSec: 200,
  loadMsPerGb: 100,
  maxLoaded: 3,
  allowAnyModel: false,
  defaultKeepAlive: '5m' as string | number,
  maxBodyBytes: 10 * 1024 * 1024,
  embedCallMs: 15,
  embedItemMs: 0.5,
  embedParallel: 4,
  models: [] as readonly SimModelSpec[],
  faults: {} as SimFaults,
  gpu: false as GpuProfile | false,
} satisfies Required<OllamaSimulatorOptions>;

type ResolvedOptions = Required<OllamaSimulatorOptions>;

/** What /api/version answers. */
export const SIMULATOR_VERSION = '0.0.0-cell0-sim';

/** Streams wake at most this often and send every token due since the last wake. */
const TICK_MS = 15;
/** With the GPU profile, a generation re-reads its shared speed at least this often. */
const GPU_RECHECK_MS = 100;
/** How often idle models past their keep_alive are unloaded (they are also checked on every request). */
const SWEEP_INTERVAL_MS = 1000;
/** What "forever" (negative keep_alive) shows as in /api/ps: Go's max time.Duration, as Ollama shows it. */
const FOREVER_MS = 9_223_372_036_854;

const nsOf = (ms: number): number => Math.max(0, Math.round(ms * 1e6));
const clock = (): number => performance.now();

type Handler = (ex: Exchange) => Promise<void> | void;

interface Route {
  methods: readonly string[];
  handler: Handler;
}

type GenerationKind = 'generate' | 'chat';

/** A generation request after validation. */
interface GenerationPlan {
  kind: GenerationKind;
  /** The model name as the request spelled it (echoed back, as Ollama does). */
  requestedName: string;
  model: SimModel;
  stream: boolean;
  keepAliveMs: number;
  tokens: string[];
  doneReason: string;
  promptText: string;
  promptEvalCount: number;
  priorContext: number[];
  numCtx: number | undefined;
}

function validate(o: ResolvedOptions): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const check = (ok: boolean, field: keyof ResolvedOptions, reason: string): void => {
    if (!ok)
      issues.push({
        field: `OllamaSimulator.${field}`,
        reason: `${reason}, got ${JSON.stringify(o[field])}`,
      });
  };
  check(typeof o.host === 'string' && o.host.length > 0, 'host', 'expected a host name or address');
  check(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535, 'port', 'expected an integer 0..65535');
  check(Number.isFinite(o.ttftMs) && o.ttftMs >= 0, 'ttftMs', 'expected a number of ms >= 0');
  check(Number.isFinite(o.tokensPerSec) && o.tokensPerSec > 0, 'tokensPerSec', 'expected a number > 0');
  check(Number.isFinite(o.loadMsPerGb) && o.loadMsPerGb >= 0, 'loadMsPerGb', 'expected a number of ms >= 0');
  check(Number.isInteger(o.maxLoaded) && o.maxLoaded >= 1, 'maxLoaded', 'expected an integer >= 1');
  check(Number.isInteger(o.maxBodyBytes) && o.maxBodyBytes > 0, 'maxBodyBytes', 'expected an integer > 0');
  check(Number.isFinite(o.embedCallMs) && o.embedCallMs >= 0, 'embedCallMs', 'expected a number of ms >= 0');
  check(Number.isFinite(o.embedItemMs) && o.embedItemMs >= 0, 'embedItemMs', 'expected a number of ms >= 0');
  check(
    Number.isInteger(o.embedParallel) && o.embedParallel >= 1,
    'embedParallel',
    'expected an integer >= 1',
  );
  check(typeof o.allowAnyModel === 'boolean', 'allowAnyModel', 'expected a boolean');
  check(Array.isArray(o.models), 'models', 'expected an array of model specs');
  issues.push(...validateSimFaults(o.faults, 'OllamaSimulator.faults'));
  if (o.gpu !== false) issues.push(...validateGpuProfile(o.gpu, 'OllamaSimulator.gpu'));
  try {
    keepAliveMs(o.defaultKeepAlive);
  } catch (err) {
    check(false, 'defaultKeepAlive', err instanceof Error ? err.message : 'expected seconds or a duration');
  }
  return issues;
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
      onLoad: () => {
        this.counters.loads++;
      },
      onUnload: (_model, reason) => {
        this.counters.unloads++;
        if (reason === 'evicted') this.counters.evictions++;
      },
    });
    const post = ['POST'];
    const get = ['GET', 'HEAD'];
    this.routes = new Map<string, Route>([
      ['/', { methods: get, handler: (ex) => sendText(ex, 200, 'Ollama is running') }],
      ['/api/generate', { methods: post, handler: (ex) => this.handleGeneration(ex, 'generate') }],
      ['/api/chat', { methods: post, handler: (ex) => this.handleGeneration(ex, 'chat') }],
      ['/api/embed', { methods: post, handler: (ex) => this.handleEmbed(ex) }],
      ['/api/embeddings', { methods: post, handler: (ex) => this.handleLegacyEmbeddings(ex) }],
      ['/api/ps', { methods: get, handler: (ex) => sendJson(ex, 200, { models: this.runningModels() }) }],
      ['/api/tags', { methods: get, handler: (ex) => sendJson(ex, 200, { models: this.localModels() }) }],
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

  private async handleGeneration(ex: Exchange, kind: GenerationKind): Promise<void> {
    const struct = kind === 'generate' ? 'GenerateRequest' : 'ChatRequest';
    const body = await readJsonBody(ex, this.opts.maxBodyBytes);
    const { requestedName, model } = this.modelOf(body, struct);
    const keepAlive = this.keepAliveOf(body);
    const stream = optionalBoolean(body, 'stream', struct) ?? true;
    const options = readOptions(body);

    let promptText: string;
    let seedInput: string;
    let loadOnly: boolean;
    if (kind === 'generate') {
      const prompt = optionalString(body, 'prompt', struct) ?? '';
      const system = optionalString(body, 'system', struct) ?? '';
      const suffix = optionalString(body, 'suffix', struct) ?? '';
      const images = optionalStringArray(body, 'images', struct) ?? [];
      loadOnly = prompt === '' && images.length === 0;
      promptText = [system, prompt, suffix].filter((s) => s.length > 0).join('\n');
      seedInput = JSON.stringify([system, prompt, suffix]);
    } else {
      const messages = readMessages(body);
      loadOnly = messages.length === 0;
      promptText = messages.map((m) => m.content).join('\n');
      seedInput = JSON.stringify(messages.map((m) => [m.role, m.content]));
    }

    if (loadOnly) {
      await this.loadOrUnload(ex, kind, requestedName, model, keepAlive, stream, options.numCtx);
      return;
    }
    if (model.kind === 'embedding')
      throw new SimHttpError(400, `"${requestedName}" does not support ${kind}`);

    const planned = planText(
      { model: model.name, input: seedInput, seed: options.seed, temperature: options.temperature },
      options.numPredict,
      options.stop,
    );
    await this.generate(ex, {
      kind,
      requestedName,
      model,
      stream,
      keepAliveMs: keepAlive,
      tokens: planned.tokens,
      doneReason: planned.doneReason,
      promptText,
      promptEvalCount: Math.max(1, estimateTokens(promptText)),
      priorContext: kind === 'generate' ? (optionalNumberArray(body, 'context', struct) ?? []) : [],
      numCtx: options.numCtx,
    });
  }

  /** A request with a model and nothing to do: Ollama loads it ("load") or, with keep_alive 0, unloads it. */
  private async loadOrUnload(
    ex: Exchange,
    kind: GenerationKind,
    requestedName: string,
    model: SimModel,
    keepAlive: number,
    stream: boolean,
    numCtx: number | undefined,
  ): Promise<void> {
    let doneReason: string;
    if (keepAlive === 0) {
      await this.residency.unload(model.name);
      doneReason = 'unload';
    } else {
      const { resident } = await this.residency.acquire(model, keepAlive, numCtx);
      this.residency.release(resident, keepAlive);
      doneReason = 'load';
    }
    const answer = {
      model: requestedName,
      created_at: new Date().toISOString(),
      ...(kind === 'generate' ? { response: '' } : { message: { role: 'assistant', content: '' } }),
      done: true,
      done_reason: doneReason,
    };
    if (!stream) {
      sendJson(ex, 200, answer);
      return;
    }
    if (ex.res.writableEnded || ex.res.destroyed) return;
    ex.res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    ex.res.end(JSON.stringify(answer) + '\n');
  }

  private async generate(ex: Exchange, plan: GenerationPlan): Promise<void> {
    // With the GPU profile a request first needs one of its model's slots (or answers 503 when the queue is full).
    const slot =
      this.gpu === undefined ? undefined : await this.gpu.acquire(plan.model.name, ex.signal, clock);
    try {
      const { resident, loadMs } = await this.residency.acquire(plan.model, plan.keepAliveMs, plan.numCtx);
      try {
        if (ex.signal.aborted) return;
        await this.emit(ex, plan, ex.receivedAt, loadMs, slot);
      } finally {
        this.residency.release(resident, plan.keepAliveMs);
      }
    } finally {
      slot?.release(clock());
    }
  }

  /** When the tokens of `plan` are due, counted from the end of the model load. */
  private paceOf(plan: GenerationPlan, loadEnd: number, slot: GpuSlot | undefined): Pace {
    if (slot === undefined || this.gpu === undefined)
      return fixedPace(loadEnd + this.opts.ttftMs, this.opts.tokensPerSec);
    return gpuPace(loadEnd + this.opts.ttftMs + this.gpu.prefillMs(plan.promptEvalCount), slot);
  }

  /**
   * Produces the tokens on schedule: the first at load end + ttftMs, then one every 1/tokensPerSec. A
   * stream wakes at most every TICK_MS and sends all tokens due, so high rates cost no timer per token.
   * Resolves when the answer is complete or the client has gone.
   */
  private emit(
    ex: Exchange,
    plan: GenerationPlan,
    t0: number,
    loadMs: number,
    slot?: GpuSlot,
  ): Promise<void> {
    const loadEnd = performance.now();
    const pace = this.paceOf(plan, loadEnd, slot);
    const firstDue = pace.firstDue;
    const total = plan.tokens.length;
    const dueAt = (now: number): number => Math.min(total, pace.due(now));

    return new Promise<void>((resolve) => {
      let sent = 0;
      let firstSentAt: number | undefined;
      let cancelTimer: () => void = () => undefined;

      const onAbort = (): void => {
        cancelTimer();
        // A non-streamed answer was being generated all along; count what would have been produced.
        if (!plan.stream) this.counters.tokensGenerated += dueAt(performance.now());
        resolve();
      };
      ex.signal.addEventListener('abort', onAbort, { once: true });

      const finish = (now: number): void => {
        ex.signal.removeEventListener('abort', onAbort);
        const first = plan.stream ? (firstSentAt ?? now) : firstDue;
        const interval = pace.msPerToken();
        const text = plan.tokens.join('');
        const stats = {
          done: true,
          done_reason: plan.doneReason,
          ...(plan.kind === 'generate'
            ? { context: [...plan.priorContext, ...contextIds(plan.promptText), ...contextIds(text)] }
            : {}),
          total_duration: nsOf(now - t0),
          load_duration: nsOf(loadMs),
          prompt_eval_count: plan.promptEvalCount,
          // The first token's own compute time is part of eval, as in Ollama's accounting.
          prompt_eval_duration: nsOf(first - loadEnd - interval),
          eval_count: total,
          eval_duration: nsOf(now - first + interval),
        };
        const head = { model: plan.requestedName, created_at: new Date().toISOString() };
        if (plan.stream) {
          const last =
            plan.kind === 'generate' ? { response: '' } : { message: { role: 'assistant', content: '' } };
          ex.res.end(JSON.stringify({ ...head, ...last, ...stats }) + '\n');
        } else {
          this.counters.tokensGenerated += total;
          const whole =
            plan.kind === 'generate' ? { response: text } : { message: { role: 'assistant', content: text } };
          sendJson(ex, 200, { ...head, ...whole, ...stats });
        }
        resolve();
      };

      const step = (): void => {
        if (ex.signal.aborted) return;
        const now = performance.now();
        const due = dueAt(now);
        if (plan.stream && due > sent) {
          if (!ex.res.headersSent) ex.res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          const createdAt = new Date().toISOString();
          let lines = '';
          for (let i = sent; i < due; i++) {
            const token = plan.tokens[i] ?? '';
            const piece =
              plan.kind === 'generate'
                ? { response: token }
                : { message: { role: 'assistant', content: token } };
            lines +=
              JSON.stringify({ model: plan.requestedName, created_at: createdAt, ...piece, done: false }) +
              '\n';
          }
          ex.res.write(lines);
          this.counters.tokensGenerated += due - sent;
          sent = due;
          firstSentAt ??= now;
        }
        if (due >= total) {
          finish(now);
          return;
        }
        let wait: number;
        if (!plan.stream) wait = pace.timeOf(total, now) - now;
        else if (sent === 0) wait = firstDue - now;
        else wait = Math.max(TICK_MS, pace.timeOf(sent + 1, now) - now);
        // A shared speed changes as other requests come and go: look again at least this often.
        if (slot !== undefined) wait = Math.min(wait, GPU_RECHECK_MS);
        cancelTimer = this.setTimer(step, Math.max(0, wait));
      };
      step();
    });
  }

  private async handleEmbed(ex: Exchange): Promise<void> {
    const body = await readJsonBody(ex, this.opts.maxBodyBytes);
    const { requestedName, model } = this.modelOf(body, 'EmbedRequest');
    const keepAlive = this.keepAliveOf(body);
    const inputs = readEmbedInput(body);
    const truncate = optionalBoolean(body, 'truncate', 'EmbedRequest') ?? true;
    const dimensions = optionalNumber(body, 'dimensions', 'EmbedRequest');
    if (dimensions !== undefined && (!Number.isInteger(dimensions) || dimensions < 1)) {
      throw new SimHttpError(400, 'dimensions must be a positive integer');
    }
    const numCtx = readOptions(body).numCtx;

    const { resident, loadMs } = await this.residency.acquire(model, keepAlive, numCtx);
    let embeddings: number[][];
    let promptEvalCount: number;
    try {
      ({ embeddings, promptEvalCount } = this.embedAll(inputs ?? [], resident, truncate, dimensions));
      // The compute time of the call (a request with no input only loads the model).
      if (inputs !== undefined && inputs.length > 0)
        await this.embedCost.run(model.name, inputs.length, ex.signal);
    } finally {
      this.residency.release(resident, keepAlive);
    }
    sendJson(ex, 200, {
      model: requestedName,
      embeddings,
      total_duration: nsOf(performance.now() - ex.receivedAt),
      load_duration: nsOf(loadMs),
      prompt_eval_count: promptEvalCount,
    });
  }

  private embedAll(
    inputs: readonly string[],
    resident: Resident,
    truncate: boolean,
    dimensions: number | undefined,
  ): { embeddings: number[][]; promptEvalCount: number } {
    let promptEvalCount = 0;
    const dims = resident.model.embeddingDims;
    const embeddings = inputs.map((input) => {
      const tokens = Math.max(1, estimateTokens(input));
      if (tokens > resident.contextLength && !truncate) {
        throw new SimHttpError(400, 'input exceeds maximum context length');
      }
      promptEvalCount += Math.min(tokens, resident.contextLength);
      const full = simulatedEmbedding(input, dims);
      return dimensions !== undefined && dimensions < dims ? renormalize(full.slice(0, dimensions)) : full;
    });
    return { embeddings, promptEvalCount };
  }

  /** POST /api/embeddings, the API /api/embed replaced: one prompt in, `{ embedding }` out. */
  private async handleLegacyEmbeddings(ex: Exchange): Promise<void> {
    const body = await readJsonBody(ex, this.opts.maxBodyBytes);
    const { model } = this.modelOf(body, 'EmbeddingRequest');
    const keepAlive = this.keepAliveOf(body);
    const prompt = optionalString(body, 'prompt', 'EmbeddingRequest') ?? '';
    const { resident } = await this.residency.acquire(model, keepAlive, readOptions(body).numCtx);
    try {
      if (prompt !== '') await this.embedCost.run(model.name, 1, ex.signal);
    } finally {
      this.residency.release(resident, keepAlive);
    }
    const embedding = prompt === '' ? [] : simulatedEmbedding(prompt, model.embeddingDims);
    sendJson(ex, 200, { embedding });
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

  private details(model: SimModel): Record<string, unknown> {
    return {
      parent_model: '',
      format: 'gguf',
      family: model.family,
      families: [model.family],
      parameter_size: model.parameterSize,
      quantization_level: model.quantization,
    };
  }

  private runningModels(): Array<Record<string, unknown>> {
    const now = Date.now();
    return this.residency.list().map((r) => ({
      name: r.model.name,
      model: r.model.name,
      size: r.model.sizeBytes,
      digest: r.model.digest,
      details: this.details(r.model),
      expires_at: new Date(Number.isFinite(r.expiresAt) ? r.expiresAt : now + FOREVER_MS).toISOString(),
      size_vram: r.model.sizeBytes,
      context_length: r.contextLength,
    }));
  }

  private localModels(): Array<Record<string, unknown>> {
    return [...this.catalog.values()].map((m) => ({
      name: m.name,
      model: m.name,
      modified_at: m.modifiedAt,
      size: m.sizeBytes,
      digest: m.digest,
      details: this.details(m),
    }));
  }
}

function renormalize(vector: number[]): number[] {
  const norm = Math.sqrt(vector.reduce((sum, v) => sum + v * v, 0));
  return norm === 0 ? vector : vector.map((v) => v / norm);
}
