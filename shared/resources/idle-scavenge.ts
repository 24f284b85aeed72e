import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** V8's collector as `--expose-gc` gives it: `{ type: 'minor' }` runs one scavenge of the young generation. */
export type GcFunction = (opts: { type: 'minor' | 'major' }) => void;

/** Options of {@link IdleScavenger}. */
export interface IdleScavengerOptions {
  /**
   * How long the event loop must have been idle before the young generation is scavenged, ms. Default 30.
   * Shorter than the gaps between a service's bursts of work, longer than the loop's pauses within one.
   */
  idleMs?: number;
  /** How often the loop's utilisation is looked at, ms. Default 10. */
  checkEveryMs?: number;
  /**
   * Event-loop time busy since the last scavenge below which none is run (too little was allocated to be
   * worth one), ms. Default 5.
   */
  minBusyMs?: number;
  /**
   * Busy time within one check below which the loop counts as idle in it, ms: the check's own callback and
   * a stray timer are not work. Default 0.5.
   */
  idleBusyMs?: number;
  /** The collector; default V8's own (see {@link exposedGc}). Injected by tests. */
  gc?: GcFunction;
  /** The loop's utilisation since `prev` (performance.eventLoopUtilization); injected by tests. */
  utilization?: (prev?: EventLoopUtilization) => EventLoopUtilization;
  /** The young generation's size now, bytes (V8's new space); injected by tests. */
  youngSize?: () => number;
  /**
   * Told when a scavenge made the young generation smaller (the process runs without a floor under it: see
   * the class's comment); the scavenger has stopped then.
   */
  onShrink?: (fromBytes: number, toBytes: number) => void;
}

const DEFAULTS = { idleMs: 30, checkEveryMs: 10, minBusyMs: 5, idleBusyMs: 0.5 };

/** V8's new space (the young generation's two semi-spaces), bytes. */
function newSpaceSize(): number {
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space') return s.space_size;
  return 0;
}

let exposed: GcFunction | undefined;

/**
 * V8's `gc()`, without starting node with `--expose-gc`: the flag is set now and the function taken from a
 * fresh context, where V8 installs it. The main context's globals are left as they are.
 */
export function exposedGc(): GcFunction {
  if (exposed) return exposed;
  const g = (globalThis as { gc?: unknown }).gc;
  if (typeof g === 'function') return (exposed = g as GcFunction);
  setFlagsFromString('--expose-gc');
  return (exposed = runInNewContext('gc') as GcFunction);
}

/**
 * Scavenges the young generation when the event loop has been idle for a while after doing work, so that
 * the next burst of requests starts with an empty young generation instead of one its first requests fill.
 *
 * Why: a scavenge stops the loop while it copies whatever in the young generation is still alive. In the
 * middle of a burst that is every request in flight, so the pause is long (10–20 ms for 100 concurrent
 * streams, more on a loaded host); between bursts almost nothing is alive and the same scavenge takes well
 * under a millisecond. Node has no idle-time collection of its own, so without this the young generation's
 * fill at a burst's start is wherever the last burst left it, and a burst of 100 streams (which allocates
 * about as much as a 16 MB semi-space holds before its median first token) met a scavenge in nearly every
 * case. The loop counts as idle while its utilisation stays below `idleBusyMs` per check: under steady load
 * it never is, and this does nothing.
 *
 * V8 shrinks the young generation at a scavenge when its recent allocation rate is low, which is what an
 * idle scavenge after a quiet stretch meets: the next burst then starts with a semi-space of 1 MB and meets
 * several scavenges instead of none. Run the process with a floor under the semi-spaces equal to their cap
 * (`node --max-semi-space-size=16 --min-semi-space-size=16`, as `npm start` and the Dockerfile do); without
 * one, the first idle scavenge that shrinks the young generation stops the scavenger (`onShrink`).
 */
export class IdleScavenger {
  private readonly o: typeof DEFAULTS;
  private readonly gc: GcFunction;
  private readonly utilization: (prev?: EventLoopUtilization) => EventLoopUtilization;
  private readonly youngSize: () => number;
  private readonly onShrink: ((fromBytes: number, toBytes: number) => void) | undefined;
  /** A scavenge shrank the young generation: stopped for good. */
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private last: EventLoopUtilization | undefined;
  /** Idle time in a row, ms. */
  private idleFor = 0;
  /** Busy time since the last scavenge, ms. */
  private busySince = 0;
  /** Scavenges run so far. */
  scavenges = 0;

  constructor(opts: IdleScavengerOptions = {}) {
    const o = { ...DEFAULTS };
    for (const k of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
      const v = opts[k];
      if (v === undefined) continue;
      if (!(Number.isFinite(v) && v >= 0))
        throw new TypeError(`IdleScavenger: option "${k}" must be a number >= 0`);
      o[k] = v;
    }
    if (!(o.checkEveryMs > 0)) throw new TypeError('IdleScavenger: option "checkEveryMs" must be > 0');
    this.o = o;
    this.gc = opts.gc ?? exposedGc();
    this.utilization = opts.utilization ?? ((prev) => performance.eventLoopUtilization(prev));
    this.youngSize = opts.youngSize ?? newSpaceSize;
    this.onShrink = opts.onShrink;
  }

  /** Starts looking at the loop (idempotent). */
  start(): void {
    if (this.timer || this.stopped) return;
    this.last = this.utilization();
    this.timer = setInterval(() => this.check(), this.o.checkEveryMs);
    this.timer.unref();
  }

  /**
   * One look at the loop since the last one: runs a scavenge once it has been idle for `idleMs` after at
   * least `minBusyMs` of work since the last scavenge. Called by the timer; exported for tests.
   */
  check(): void {
    if (this.stopped) return;
    const now = this.utilization();
    const d = this.utilization(this.last);
    this.last = now;
    if (d.active > this.o.idleBusyMs) {
      this.idleFor = 0;
      this.busySince += d.active;
      return;
    }
    this.idleFor += d.active + d.idle;
    if (this.idleFor < this.o.idleMs || this.busySince < this.o.minBusyMs) return;
    this.busySince = 0;
    this.scavenges++;
    const before = this.youngSize();
    this.gc({ type: 'minor' });
    const after = this.youngSize();
    if (after < before) {
      this.stopped = true;
      void this.close();
      this.onShrink?.(before, after);
    }
  }

  /** Stops (idempotent). */
  close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    return Promise.resolve();
  }
}
