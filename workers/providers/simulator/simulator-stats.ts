import { ArrivalWindow } from './arrival-window.js';
import { type EmbedCallStats } from './embed-cost.js';

/** What GET /_sim/stats answers. Counters cover /api/* and / only (never /_sim/*). */
export interface SimulatorStats {
  /** ISO 8601: when the simulator started listening (empty before start()). */
  startedAt: string;
  requests: {
    total: number;
    /** Requests per path, e.g. { "/api/generate": 3, "/": 1 }. */
    byEndpoint: Record<string, number>;
    /** Requests per model (full name with tag), for requests that named one. */
    byModel: Record<string, number>;
  };
  /** Requests being handled now (a gauge: reset does not zero it). */
  inFlight: number;
  /** Highest inFlight since start or the last reset. */
  maxInFlight: number;
  /** Tokens produced, including those of generations cut short by the client. */
  tokensGenerated: number;
  loads: number;
  /** Every model leaving memory: keep_alive expiry, explicit unload, keep_alive 0, eviction. */
  unloads: number;
  /** The unloads done to stay within maxLoaded (least recently used first). */
  evictions: number;
  /** Requests whose client went away before the answer was complete. */
  aborted: number;
  /** Answers with an HTTP status of 400 or more (injected 429s and 500s included). */
  errors: number;
  /** Injected faults (see SimFaults); dropped requests are also counted in `aborted`, not in `errors`. */
  faults: {
    injected429: number;
    injected500: number;
    slowed: number;
    dropped: number;
    /** 429s of the rateLimit token bucket (not in injected429). */
    rateLimited: number;
  };
  /** Arrivals at the model-serving endpoints (/api/generate, /api/chat, /api/embed, /api/embeddings). */
  arrivals: {
    /** The most that arrived within any sliding 1000 ms window. */
    maxPerSecond: number;
  };
  /** Embedding calls (/api/embed and /api/embeddings) and their inputs, overall and per model. */
  embed: EmbedCallStats;
}

/** The simulator's counters, with the bookkeeping the stats need. */
export class SimulatorCounters {
  startedAt = '';
  total = 0;
  byEndpoint = new Map<string, number>();
  byModel = new Map<string, number>();
  inFlight = 0;
  maxInFlight = 0;
  tokensGenerated = 0;
  loads = 0;
  unloads = 0;
  evictions = 0;
  aborted = 0;
  errors = 0;
  readonly faults: SimulatorStats['faults'] = {
    injected429: 0,
    injected500: 0,
    slowed: 0,
    dropped: 0,
    rateLimited: 0,
  };
  /** Arrivals at the model-serving endpoints, for arrivals.maxPerSecond. */
  readonly arrivals = new ArrivalWindow(1000);

  request(endpoint: string): void {
    this.total++;
    this.byEndpoint.set(endpoint, (this.byEndpoint.get(endpoint) ?? 0) + 1);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
  }

  model(name: string): void {
    this.byModel.set(name, (this.byModel.get(name) ?? 0) + 1);
  }

  /** Zeroes every counter; inFlight is a gauge of live requests and stays. */
  reset(): void {
    this.total = 0;
    this.byEndpoint.clear();
    this.byModel.clear();
    this.maxInFlight = this.inFlight;
    this.tokensGenerated = 0;
    this.loads = 0;
    this.unloads = 0;
    this.evictions = 0;
    this.aborted = 0;
    this.errors = 0;
    for (const key of Object.keys(this.faults) as Array<keyof typeof this.faults>) this.faults[key] = 0;
    this.arrivals.reset();
  }

  snapshot(): Omit<SimulatorStats, 'embed'> {
    return {
      startedAt: this.startedAt,
      requests: {
        total: this.total,
        byEndpoint: Object.fromEntries(this.byEndpoint),
        byModel: Object.fromEntries(this.byModel),
      },
      inFlight: this.inFlight,
      maxInFlight: this.maxInFlight,
      tokensGenerated: this.tokensGenerated,
      loads: this.loads,
      unloads: this.unloads,
      evictions: this.evictions,
      aborted: this.aborted,
      errors: this.errors,
      faults: { ...this.faults },
      arrivals: { maxPerSecond: this.arrivals.max },
    };
  }
}
