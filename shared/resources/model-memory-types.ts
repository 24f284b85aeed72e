import { EvictionPolicy, type ModelDriver } from './types.js';
import { type PolicyState } from './eviction/index.js';

/* The options, events and leases of ModelMemoryManager (model-memory-manager.ts re-exports them), and the state it keeps per model. */

/** Options of {@link ModelMemoryManager}. */
export interface ModelMemoryManagerOptions {
  /** Memory budget for resident models, bytes (> 0). Required. */
  budgetBytes: number;
  /** How victims are picked. Default EvictionPolicy.LRU. */
  policy?: EvictionPolicy;
  /** Drives the backend; when absent the manager only does bookkeeping (bench, tests). */
  driver?: ModelDriver;
  /** Default keep-alive of models (TTL policy and sweepExpired), ms. Default 300000. */
  keepAliveMs?: number;
  /** LFU: half-life of an access's weight, ms. Default 600000 (10 min). */
  lfuHalfLifeMs?: number;
  /**
   * Load time assumed for a model never loaded yet, per GB (1e9 bytes), ms: COST_BASED needs a cost before
   * it has measured one. Default 1000.
   */
  estimatedLoadMsPerGb?: number;
  /** Size assumed for a model that is not registered and whose size the driver cannot tell, bytes. Default 4e9. */
  defaultModelBytes?: number;
  /**
   * How long acquire() waits for its turn to load (room held by in-use, pinned or loading models, or another
   * model's load) before ModelMemoryBusyError, ms of real time. Default 30000.
   */
  acquireTimeoutMs?: number;
  /** Clock of accesses and policies (epoch ms), for tests and the trace-driven bench. Default Date.now. */
  now?: () => number;
}

/** Events of {@link ModelMemoryManager}. */
export interface ModelMemoryManagerEvents {
  'model:loaded': [{ modelId: string; loadMs: number; memoryBytes: number }];
  'model:evicted': [
    { modelId: string; policy: EvictionPolicy; reason: 'room' | 'ttl' | 'manual'; memoryBytes: number },
  ];
  'model:hit': [{ modelId: string }];
  /** A backend call failed. `modelId` is "*" when the failure is not about one model (listing them). */
  'model:error': [{ modelId: string; op: 'load' | 'unload' | 'reconcile'; error: Error }];
}

/** A model held for one job; release() exactly once (further calls are no-ops). */
export interface ModelLease {
  readonly modelId: string;
  /** True when the model was resident already. */
  readonly hit: boolean;
  /** What loading it cost this job, ms (0 on a hit). */
  readonly loadMs: number;
  release(): void;
}

export const GB = 1e9;
/** What a refused caller is told to wait: loads and jobs take seconds, polling faster only adds load. */
export const BUSY_RETRY_MS = 1000;
export const POLICIES = new Set<string>(Object.values(EvictionPolicy));

export const DEFAULTS = {
  policy: EvictionPolicy.LRU,
  keepAliveMs: 300_000,
  lfuHalfLifeMs: 600_000,
  estimatedLoadMsPerGb: 1000,
  defaultModelBytes: 4e9,
  acquireTimeoutMs: 30_000,
  now: (): number => Date.now(),
};
export type Resolved = Omit<Required<ModelMemoryManagerOptions>, 'driver'> & {
  driver: ModelDriver | undefined;
};

/** An acquire waiting on a load in progress. */
export interface Joiner {
  resolve(lease: ModelLease): void;
  reject(err: unknown): void;
  /** Stops listening to the caller's signal. */
  detach(): void;
}

/** One load in progress: everyone who asked for the model meanwhile gets it from this one load. */
export interface Load {
  joiners: Set<Joiner>;
}

/** An acquire waiting for its turn to load (FIFO). */
export interface Waiter {
  entry: Entry;
  signal: AbortSignal | undefined;
  /** `lease` is the load it joined; without it the model became resident meanwhile: look again. */
  done(r: { lease?: Promise<ModelLease> }): void;
  fail(err: unknown): void;
}

/** What the manager keeps about one model. */
export interface Entry extends PolicyState {
  /** A measured load time beats a registered one, which beats the size-based estimate. */
  loadMsFrom: 'estimate' | 'registered' | 'measured';
  load: Load | undefined;
  /** Chosen as a victim (or swept) and its unload not finished: still in memory, no longer usable. */
  unloading: boolean;
  /** Bumped on every residency change, so reconcile can ignore what changed while it listed. */
  epoch: number;
}

export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function validSize(n: number | undefined): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n > 0;
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
