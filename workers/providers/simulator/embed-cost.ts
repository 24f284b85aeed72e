/**
 * The simulator's cost model for embedding calls: each model computes at most `parallel` calls at once
 * (like Ollama's OLLAMA_NUM_PARALLEL; further calls wait their turn, first come first served), and a call
 * takes `callMs + itemMs × inputs` once it has its turn. A call of 64 inputs costs 15 + 32 = 47 ms with the
 * defaults, 64 calls of one input 64 × 15.5 = 992 ms of compute: the per-call overhead is what batching saves.
 */
export interface EmbedCostOptions {
  /** Fixed cost of one call, ms. */
  callMs: number;
  /** Cost of each input of a call, ms. */
  itemMs: number;
  /** Calls one model computes at once. */
  parallel: number;
  /** Runs `fn` after `ms` (the simulator's own timers, cleared on close); returns a cancel function. */
  setTimer: (fn: () => void, ms: number) => () => void;
}

/** Embedding calls and inputs, overall and per model. */
export interface EmbedCallStats {
  calls: number;
  inputs: number;
  /** Most inputs in one call. */
  maxInputsPerCall: number;
  byModel: Record<string, { calls: number; inputs: number }>;
}

interface Lane {
  busy: number;
  waiting: (() => void)[];
}

/** Schedules embedding calls per model under the cost model, and counts them. */
export class EmbedCost {
  private readonly lanes = new Map<string, Lane>();
  private counts: EmbedCallStats = { calls: 0, inputs: 0, maxInputsPerCall: 0, byModel: {} };

  constructor(private readonly opts: EmbedCostOptions) {}

  /** The time a call of `inputs` inputs computes for, ms. */
  costMs(inputs: number): number {
    return this.opts.callMs + this.opts.itemMs * inputs;
  }

  /**
   * Counts a call of `inputs` inputs to `model`, waits for the model's turn and then for the call's cost.
   * Resolves early (the slot freed) when `signal` aborts: the client went away.
   */
  async run(model: string, inputs: number, signal: AbortSignal): Promise<void> {
    this.count(model, inputs);
    const ms = this.costMs(inputs);
    if (ms <= 0) return;
    const lane = this.laneOf(model);
    if (lane.busy >= this.opts.parallel) {
      await new Promise<void>((resolve) => lane.waiting.push(resolve));
    } else lane.busy++;
    try {
      if (signal.aborted) return;
      await new Promise<void>((resolve) => {
        const onAbort = (): void => {
          cancel();
          resolve();
        };
        const cancel = this.opts.setTimer(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        }, ms);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    } finally {
      // The slot passes straight to the next waiting call (it stays counted as busy).
      const next = lane.waiting.shift();
      if (next) next();
      else lane.busy--;
    }
  }

  stats(): EmbedCallStats {
    const byModel: EmbedCallStats['byModel'] = {};
    for (const [m, c] of Object.entries(this.counts.byModel)) byModel[m] = { ...c };
    return { ...this.counts, byModel };
  }

  /** Zeroes the counters (calls under way keep their slots). */
  reset(): void {
    this.counts = { calls: 0, inputs: 0, maxInputsPerCall: 0, byModel: {} };
  }

  private count(model: string, inputs: number): void {
    const c = this.counts;
    c.calls++;
    c.inputs += inputs;
    c.maxInputsPerCall = Math.max(c.maxInputsPerCall, inputs);
    const m = (c.byModel[model] ??= { calls: 0, inputs: 0 });
    m.calls++;
    m.inputs += inputs;
  }

  private laneOf(model: string): Lane {
    let lane = this.lanes.get(model);
    if (!lane) {
      lane = { busy: 0, waiting: [] };
      this.lanes.set(model, lane);
    }
    return lane;
  }
}
