import { type FieldIssue } from '../../../shared/errors.js';
import { SimHttpError } from './http-exchange.js';

/**
 * How a simulated model behaves on one GPU (the simulator's `gpu` option). Without it the simulator gives
 * every request its own full-speed generator, however many arrive at once; with it a model has a fixed
 * number of parallel slots, shares its decode throughput between the requests in them (continuous
 * batching: the aggregate rises with concurrency towards a ceiling while each request slows down), keeps a
 * bounded wait queue and answers 503 beyond it, as Ollama does.
 *
 * The defaults describe a 7B model (Q4, about 4.7 GB) on one data-centre GPU; docs/backends.md gives the
 * published figures they come from.
 */
export interface GpuProfile {
  /** Requests one model runs at once, like OLLAMA_NUM_PARALLEL (vLLM: max_num_seqs). Default 4. */
  numParallel?: number;
  /**
   * Requests that may wait for a slot, per model; the next one gets 503 "server busy", like OLLAMA_MAX_QUEUE.
   * Default 512 (Ollama's default).
   */
  maxQueue?: number;
  /** Decode speed of a request alone on the GPU, tokens/s. Default 100. */
  singleStreamTokensPerSec?: number;
  /**
   * The aggregate decode speed the model approaches as more requests share it, tokens/s (the batching
   * ceiling, set by memory bandwidth and compute). Default 1500.
   */
  maxAggregateTokensPerSec?: number;
  /** Prompt evaluation (prefill) speed, tokens/s: a prompt of n tokens adds n / this to the first token. Default 3000. */
  prefillTokensPerSec?: number;
}

export const GPU_DEFAULTS: Required<GpuProfile> = {
  numParallel: 4,
  maxQueue: 512,
  singleStreamTokensPerSec: 100,
  maxAggregateTokensPerSec: 1500,
  prefillTokensPerSec: 3000,
};

/** Ollama's answer when its queue is full (status 503). */
export const SERVER_BUSY_MESSAGE = 'server busy, please try again.  maximum pending requests exceeded';

/** What GET /_sim/stats reports under `gpu` when the profile is on. */
export interface GpuStats {
  profile: Required<GpuProfile>;
  /** Requests answered 503 because the model's wait queue was full. */
  rejected: number;
  /** Highest number of requests waiting for a slot (any one model) since start or reset. */
  maxQueued: number;
  /** Per model: slots busy and requests waiting now. */
  models: Record<string, { busy: number; queued: number }>;
}

/** Problems with a profile, each naming the field. */
export function validateGpuProfile(profile: GpuProfile, prefix: string): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const p = { ...GPU_DEFAULTS, ...profile };
  const bad = (field: keyof GpuProfile, reason: string) =>
    issues.push({ field: `${prefix}.${field}`, reason: `${reason}, got ${JSON.stringify(p[field])}` });
  if (!Number.isInteger(p.numParallel) || p.numParallel < 1) bad('numParallel', 'expected an integer >= 1');
  if (!Number.isInteger(p.maxQueue) || p.maxQueue < 0) bad('maxQueue', 'expected an integer >= 0');
  for (const f of ['singleStreamTokensPerSec', 'maxAggregateTokensPerSec', 'prefillTokensPerSec'] as const) {
    if (!Number.isFinite(p[f]) || p[f] <= 0) bad(f, 'expected a number > 0');
  }
  if (p.maxAggregateTokensPerSec < p.singleStreamTokensPerSec)
    bad('maxAggregateTokensPerSec', 'expected at least singleStreamTokensPerSec');
  return issues;
}

/**
 * Aggregate decode tokens/s of `n` requests sharing a model: s·n / (1 + (n−1)·s/c), with s the
 * single-stream speed and c the ceiling. One request gets s; the aggregate rises with n and tends to c;
 * each request's share (the aggregate / n) falls as n grows.
 */
export function aggregateTokensPerSec(profile: Required<GpuProfile>, n: number): number {
  if (n <= 0) return 0;
  const s = profile.singleStreamTokensPerSec;
  const c = profile.maxAggregateTokensPerSec;
  return (s * n) / (1 + ((n - 1) * s) / c);
}

/** A request holding one of a model's slots. */
export interface GpuSlot {
  /** Marks the start of decoding (the first token is produced now); later tokens follow the shared rate. */
  startDecode(now: number): void;
  /** Tokens produced by `now`, counting the first (0 before startDecode). */
  produced(now: number): number;
  /** When the `count`-th token will be due, if the number of busy slots stays as it is now. */
  timeOf(count: number, now: number): number;
  /** The current time per token of this request, ms. */
  msPerToken(): number;
  /** Frees the slot (idempotent) and lets the next waiting request in. */
  release(now: number): void;
}

interface Waiter {
  grant(slot: GpuSlot): void;
}

/**
 * One model's slots and wait queue. Decode progress is kept as "virtual tokens": v(t) grows at the
 * per-request rate of the moment, so a request that started decoding at v0 has produced v(t) − v0 tokens
 * since; v is advanced whenever the number of busy slots changes.
 */
class ModelEngine {
  busy = 0;
  readonly waiting: Waiter[] = [];
  private v = 0;
  private vAt = 0;

  constructor(private readonly profile: Required<GpuProfile>) {}

  perRequestRate(n = this.busy): number {
    return n <= 0 ? 0 : aggregateTokensPerSec(this.profile, n) / n;
  }

  virtualAt(now: number): number {
    return this.v + (Math.max(0, now - this.vAt) / 1000) * this.perRequestRate();
  }

  /** Moves v to `now` at the old rate, before the number of busy slots changes. */
  advance(now: number): void {
    this.v = this.virtualAt(now);
    this.vAt = Math.max(this.vAt, now);
  }

  newSlot(now: number, onRelease: () => void): GpuSlot {
    this.advance(now);
    this.busy++;
    let v0: number | undefined;
    let released = false;
    return {
      startDecode: (at) => {
        v0 ??= this.virtualAt(at);
      },
      produced: (at) => (v0 === undefined ? 0 : 1 + Math.max(0, Math.floor(this.virtualAt(at) - v0 + 1e-9))),
      timeOf: (count, at) => {
        const rate = this.perRequestRate();
        if (v0 === undefined) return at + ((count - 1) / rate) * 1000;
        const remaining = v0 + count - 1 - this.virtualAt(at);
        return at + (Math.max(0, remaining) / rate) * 1000;
      },
      msPerToken: () => 1000 / this.perRequestRate(),
      release: (at) => {
        if (released) return;
        released = true;
        this.advance(at);
        this.busy--;
        onRelease();
      },
    };
  }
}

/** The GPU of a simulator: one engine per model, created on first use. */
export class GpuModel {
  readonly profile: Required<GpuProfile>;
  private readonly engines = new Map<string, ModelEngine>();
  private rejected = 0;
  private maxQueued = 0;

  constructor(profile: GpuProfile = {}) {
    this.profile = { ...GPU_DEFAULTS, ...profile };
  }

  /**
   * Takes one of the model's slots: at once when one is free, else after waiting in the model's queue.
   * Throws SimHttpError 503 when the queue is full; rejects when `signal` aborts while waiting.
   */
  acquire(model: string, signal: AbortSignal, now: () => number): Promise<GpuSlot> {
    const engine = this.engine(model);
    const grantNext = () => {
      const next = engine.waiting.shift();
      next?.grant(engine.newSlot(now(), grantNext));
    };
    if (engine.busy < this.profile.numParallel && engine.waiting.length === 0) {
      return Promise.resolve(engine.newSlot(now(), grantNext));
    }
    if (engine.waiting.length >= this.profile.maxQueue) {
      this.rejected++;
      return Promise.reject(new SimHttpError(503, SERVER_BUSY_MESSAGE));
    }
    return new Promise<GpuSlot>((resolve, reject) => {
      const waiter: Waiter = {
        grant: (slot) => {
          signal.removeEventListener('abort', onAbort);
          resolve(slot);
        },
      };
      const onAbort = () => {
        const i = engine.waiting.indexOf(waiter);
        if (i >= 0) engine.waiting.splice(i, 1);
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      engine.waiting.push(waiter);
      this.maxQueued = Math.max(this.maxQueued, engine.waiting.length);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Time to first token of a prompt of `promptTokens` on top of the fixed part. */
  prefillMs(promptTokens: number): number {
    return (promptTokens / this.profile.prefillTokensPerSec) * 1000;
  }

  stats(): GpuStats {
    const models: GpuStats['models'] = {};
    for (const [name, e] of this.engines) models[name] = { busy: e.busy, queued: e.waiting.length };
    return { profile: { ...this.profile }, rejected: this.rejected, maxQueued: this.maxQueued, models };
  }

  /** Zeroes the counters (slots in use and waiting requests stay). */
  resetCounters(): void {
    this.rejected = 0;
    this.maxQueued = 0;
  }

  private engine(model: string): ModelEngine {
    let e = this.engines.get(model);
    if (e === undefined) {
      e = new ModelEngine(this.profile);
      this.engines.set(model, e);
    }
    return e;
  }
}
