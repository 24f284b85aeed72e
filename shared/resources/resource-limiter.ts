/*
 * Decides from samples whether this worker is under resource pressure. The decision is kept as state and
 * read synchronously (underPressure) before each job; samples come from the monitor's timer. Hysteresis and
 * consecutive counts keep a value hovering at its limit from flapping the worker between taking and
 * refusing jobs.
 */
import { EventEmitter } from 'node:events';
import { ClosedError } from '../errors.js';
import {
  type LimitCheck,
  type ResourceKind,
  type ResourceLimits,
  type ResourceSample,
  type ResourceViolation,
  type SampleSource,
} from './types.js';
import { settledWithin, sleep } from '../sleep.js';
import { withDefaults } from '../with-defaults.js';

/** Options of a resource limiter. */
export interface ResourceLimiterOptions {
  /**
   * Where samples come from. With start(), the limiter listens to the source's 'sample' events if it is an
   * EventEmitter (a ResourceMonitor); else it polls getCurrentUsage() every pollMs.
   */
  source: SampleSource;
  /** Defaults: memory 85, cpu 90, disk 95, heap 0 (off), eventLoopDelay 0 (off). 0 turns a limit off. */
  limits?: Partial<ResourceLimits>;
  /**
   * A value that went over its limit must fall this many points (percent; for eventLoopDelay, this % of the
   * limit) below it before the pressure ends. 0 <= hysteresis < 100, and below every percent limit set.
   * Default 5.
   */
  hysteresis?: number;
  /** Samples in a row over a limit before pressure starts on memory, disk, heap and event-loop delay. Default 1. */
  consecutive?: number;
  /** The same for CPU, which is spiky: one busy second should not stop a worker. Default 2. */
  cpuConsecutive?: number;
  /** Poll interval when the source has no events, ms (>= 10). Default 1000. */
  pollMs?: number;
  /** Time limit for one cleanup handler, ms. Default 10000 (a hung handler must not stall the next episode). */
  handlerTimeoutMs?: number;
}

/** Runs once when pressure starts, with the violations that started it. */
export type CleanupHandler = (violations: ResourceViolation[]) => void | Promise<void>;

/** Events of a resource limiter. */
export interface ResourceLimiterEvents {
  'pressure:start': [ResourceViolation[]];
  /** Still under pressure; the set of violated resources changed. */
  'pressure:change': [ResourceViolation[]];
  'pressure:end': [];
  /** A cleanup handler threw, rejected or timed out (the others still ran). */
  'handler:error': [{ error: Error; handler: string }];
}

const DEFAULT_LIMITS: ResourceLimits = {
  maxMemoryPercent: 85,
  maxCpuPercent: 90,
  maxDiskPercent: 95,
  maxHeapPercent: 0,
  maxEventLoopDelayMs: 0,
};
const DEFAULTS = { hysteresis: 5, consecutive: 1, cpuConsecutive: 2, pollMs: 1000, handlerTimeoutMs: 10_000 };

/** Each resource: its limit, where its value is in a sample, and whether the limit is a percent. */
const RESOURCES: readonly {
  kind: ResourceKind;
  limit: keyof ResourceLimits;
  value: (s: ResourceSample) => number;
  percent: boolean;
}[] = [
  { kind: 'memory', limit: 'maxMemoryPercent', value: (s) => s.memoryPercent, percent: true },
  { kind: 'cpu', limit: 'maxCpuPercent', value: (s) => s.cpuPercent, percent: true },
  { kind: 'disk', limit: 'maxDiskPercent', value: (s) => s.diskPercent, percent: true },
  { kind: 'heap', limit: 'maxHeapPercent', value: (s) => s.process.heapPercent, percent: true },
  {
    kind: 'eventLoopDelay',
    limit: 'maxEventLoopDelayMs',
    value: (s) => s.process.eventLoopDelayP99Ms,
    percent: false,
  },
];

/** Per resource: samples in a row over the limit, and whether it counts as violated now. */
interface ResourceState {
  over: number;
  violated: boolean;
}

type State = Record<ResourceKind, ResourceState>;

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function isNumber(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

function sameResources(a: ResourceViolation[], b: ResourceViolation[]): boolean {
  if (a.length !== b.length) return false;
  const kinds = new Set(a.map((v) => v.resource));
  return b.every((v) => kinds.has(v.resource));
}

/**
 * Compares samples with the worker's resource limits, keeps the pressure state (with hysteresis and
 * consecutive counts), and runs the cleanup handlers once per episode of pressure. The worker reads
 * `underPressure` before each job.
 */
export class ResourceLimiter extends EventEmitter<ResourceLimiterEvents> {
  readonly limits: Readonly<ResourceLimits>;
  private readonly source: SampleSource;
  private readonly opts: Required<Omit<ResourceLimiterOptions, 'source' | 'limits'>>;
  private readonly handlers = new Set<{ fn: CleanupHandler; name: string }>();
  private state: State;
  private pressure = false;
  private current: ResourceViolation[] = [];
  private injected: ResourceViolation | undefined;
  /** The sample evaluated last: evaluating it again re-decides without counting it twice. */
  private lastSample: ResourceSample | undefined;
  private episodeCount = 0;
  private idle: Promise<void> = Promise.resolve();
  private following: (() => void) | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(opts: ResourceLimiterOptions) {
    super();
    if (!opts || typeof opts.source?.getCurrentUsage !== 'function')
      throw new TypeError('ResourceLimiter: option "source" must have getCurrentUsage()');
    const { source: _source, limits: _limits, ...rest } = opts;
    const o = withDefaults(DEFAULTS, rest);
    const limits = withDefaults(DEFAULT_LIMITS, opts.limits);
    const fail = (option: string, expected: string, got: unknown): never => {
      throw new TypeError(`ResourceLimiter: option "${option}" must be ${expected}, got ${String(got)}`);
    };
    if (!(isNumber(o.hysteresis) && o.hysteresis >= 0 && o.hysteresis < 100))
      fail('hysteresis', 'a number >= 0 and < 100', o.hysteresis);
    for (const k of ['consecutive', 'cpuConsecutive'] as const)
      if (!(Number.isInteger(o[k]) && o[k] >= 1)) fail(k, 'an integer >= 1', o[k]);
    if (!(isNumber(o.pollMs) && o.pollMs >= 10)) fail('pollMs', '>= 10 ms', o.pollMs);
    if (!(isNumber(o.handlerTimeoutMs) && o.handlerTimeoutMs > 0))
      fail('handlerTimeoutMs', '> 0 ms', o.handlerTimeoutMs);
    for (const r of RESOURCES) {
      const v = limits[r.limit];
      const option = `limits.${r.limit}`;
      if (!r.percent) {
        if (!(isNumber(v) && v >= 0)) fail(option, 'ms >= 0 (0 = off)', v);
      } else if (!(isNumber(v) && v >= 0 && v <= 100)) {
        fail(option, 'a percent 0–100 (0 = off)', v);
      } else if (v > 0 && v <= o.hysteresis) {
        // Its release level would be <= 0: pressure on it could never end.
        fail(option, `above the hysteresis (${o.hysteresis} points) or 0 (off)`, v);
      }
    }
    this.source = opts.source;
    this.opts = o;
    this.limits = Object.freeze({ ...limits });
    this.state = this.freshState();
  }

  /**
   * Pure check of a sample (default: the source's latest) against the limits, given the current state:
   * hysteresis (a resource under pressure stays violated until its value falls below its release level) and
   * consecutive counts (this sample counted as the next one in a row, unless it is the one evaluated last).
   * Changes nothing. No sample yet → within.
   */
  checkLimits(sample: ResourceSample | undefined = this.source.getCurrentUsage()): LimitCheck {
    if (!sample) return { withinLimits: true, violations: [] };
    return this.step(sample).check;
  }

  /**
   * Feeds a sample: updates the state, emits events on transitions and, on the transition into pressure,
   * starts every cleanup handler once for that episode (in the background: see handlersIdle()). The same
   * sample object evaluated again is re-decided (an inject() may have changed) but not counted twice toward
   * `consecutive`. Returns the new check.
   */
  evaluate(sample: ResourceSample): LimitCheck {
    if (this.closed) throw new ClosedError('ResourceLimiter');
    const { check, state } = this.step(sample);
    this.state = state;
    this.lastSample = sample;
    const before = this.current;
    const was = this.pressure;
    this.pressure = !check.withinLimits;
    this.current = check.violations;
    if (!was && this.pressure) {
      this.episodeCount++;
      this.runHandlers(check.violations);
      this.emit('pressure:start', [...check.violations]);
    } else if (was && !this.pressure) {
      this.emit('pressure:end');
    } else if (this.pressure && !sameResources(before, check.violations)) {
      this.emit('pressure:change', [...check.violations]);
    }
    return { withinLimits: check.withinLimits, violations: [...check.violations] };
  }

  /** Adds a handler run once at the start of each episode of pressure. Returns a function that removes it. */
  registerCleanupHandler(fn: CleanupHandler, name?: string): () => void {
    if (typeof fn !== 'function')
      throw new TypeError('ResourceLimiter: a cleanup handler must be a function');
    const entry = { fn, name: name ?? (fn.name || `handler#${this.handlers.size + 1}`) };
    this.handlers.add(entry);
    return () => {
      this.handlers.delete(entry);
    };
  }

  /** Starts following the source: its 'sample' events when it has them, else polling. Idempotent. */
  start(): void {
    if (this.closed) throw new ClosedError('ResourceLimiter');
    if (this.following) return;
    const onSample = (s: ResourceSample): void => {
      this.evaluate(s);
    };
    if (this.source instanceof EventEmitter) {
      const emitter = this.source as EventEmitter<{ sample: [ResourceSample] }>;
      emitter.on('sample', onSample);
      this.following = () => emitter.off('sample', onSample);
    } else {
      const timer = setInterval(() => {
        const s = this.source.getCurrentUsage();
        if (s && s !== this.lastSample) this.evaluate(s);
      }, this.opts.pollMs);
      timer.unref();
      this.following = () => clearInterval(timer);
    }
    // Decide from what is known now rather than wait one interval.
    const latest = this.source.getCurrentUsage();
    if (latest) this.evaluate(latest);
  }

  /** True while under pressure (cheap; what the worker reads before each job). */
  get underPressure(): boolean {
    return this.pressure;
  }

  /** The violations of the last evaluation (empty when within). */
  get violations(): ResourceViolation[] {
    return [...this.current];
  }

  /** Episodes of pressure since creation. */
  get episodes(): number {
    return this.episodeCount;
  }

  /**
   * For operators and tests: a violation forced on top of the samples until cleared with inject(undefined).
   * Re-evaluates the source's latest sample at once when there is one; else it takes effect on the next
   * evaluate().
   */
  inject(violation: ResourceViolation | undefined): void {
    if (violation !== undefined) {
      const { resource, value, threshold } = violation;
      if (!RESOURCES.some((r) => r.kind === resource))
        throw new TypeError(`ResourceLimiter.inject: unknown resource "${String(resource)}"`);
      if (!(isNumber(value) && isNumber(threshold)))
        throw new TypeError('ResourceLimiter.inject: value and threshold must be numbers');
      this.injected = { resource, value, threshold };
    } else {
      this.injected = undefined;
    }
    const latest = this.source.getCurrentUsage();
    if (latest && !this.closed) this.evaluate(latest);
  }

  /** Resolves when the cleanup handlers started so far have finished (or timed out). */
  handlersIdle(): Promise<void> {
    return this.idle;
  }

  /** Stops following the source and waits for running handlers (each bounded by handlerTimeoutMs). Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.following?.();
      this.following = undefined;
      await settledWithin(this.idle, this.opts.handlerTimeoutMs);
    })();
    return this.closing;
  }

  private freshState(): State {
    const s = {} as State;
    for (const r of RESOURCES) s[r.kind] = { over: 0, violated: false };
    return s;
  }

  /** The decision for `sample` and the state it leads to; touches nothing. */
  private step(sample: ResourceSample): { check: LimitCheck; state: State } {
    const again = sample === this.lastSample;
    const state = {} as State;
    const violations: ResourceViolation[] = [];
    for (const r of RESOURCES) {
      const threshold = this.limits[r.limit];
      const prev = this.state[r.kind];
      const value = r.value(sample);
      // A reading that is not a number (a broken sampler) neither starts nor holds pressure.
      if (threshold === 0 || !Number.isFinite(value)) {
        state[r.kind] = { over: 0, violated: false };
        continue;
      }
      const over = value > threshold ? (again ? prev.over : prev.over + 1) : 0;
      const release = r.percent
        ? threshold - this.opts.hysteresis
        : threshold * (1 - this.opts.hysteresis / 100);
      const needed = r.kind === 'cpu' ? this.opts.cpuConsecutive : this.opts.consecutive;
      const violated = prev.violated ? value >= release : over >= needed;
      state[r.kind] = { over, violated };
      if (violated) violations.push({ resource: r.kind, value, threshold });
    }
    if (this.injected) {
      const i = violations.findIndex((v) => v.resource === this.injected?.resource);
      if (i >= 0) violations.splice(i, 1);
      violations.push({ ...this.injected });
    }
    return { check: { withinLimits: violations.length === 0, violations }, state };
  }

  /** Starts every handler at once; each is isolated and bounded by handlerTimeoutMs. */
  private runHandlers(violations: ResourceViolation[]): void {
    const batch = [...this.handlers].map(async ({ fn, name }) => {
      const bound = new AbortController();
      try {
        // Deferred to a microtask: a synchronous handler neither runs inside evaluate() nor throws out of it.
        const run = Promise.resolve().then(() => fn([...violations]));
        const result = await Promise.race([
          run.then(() => 'done' as const),
          sleep(this.opts.handlerTimeoutMs, { signal: bound.signal, unref: true }).then(
            () => 'timeout' as const,
          ),
        ]);
        if (result === 'timeout') {
          // It may still finish later; a late rejection is nobody's to handle.
          run.catch(() => undefined);
          this.emit('handler:error', {
            error: new Error(
              `cleanup handler "${name}" did not finish within ${this.opts.handlerTimeoutMs} ms`,
            ),
            handler: name,
          });
        }
      } catch (err) {
        this.emit('handler:error', { error: toError(err), handler: name });
      } finally {
        bound.abort();
      }
    });
    // Earlier episodes' handlers may still run (bounded by their timeout): idle covers them too. Only a
    // throwing 'handler:error' listener can reject here; idle must still settle, and settle quietly.
    const previous = this.idle;
    this.idle = Promise.all([previous, ...batch.map((p) => p.catch(() => undefined))]).then(() => undefined);
  }
}
