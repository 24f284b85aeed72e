import { ClosedError } from '../../../shared/errors.js';
import { type SimModel } from './catalog.js';

/** A model held in (simulated) memory. */
export interface Resident {
  readonly model: SimModel;
  /** Context length it was loaded with (what /api/ps reports). */
  readonly contextLength: number;
  /** Requests using it right now; a busy model is never unloaded by expiry or eviction. */
  busy: number;
  /** Epoch ms after which an idle model is unloaded; Infinity = never. */
  expiresAt: number;
  /** Order of last use, for LRU eviction (a counter, so two uses in one ms still order). */
  lastUsed: number;
  /** An explicit unload came while it was busy: unload when the last request ends. */
  unloadWhenIdle: boolean;
}

/** Why a model left memory. */
export type UnloadReason = 'expired' | 'evicted' | 'requested';

/** Options of {@link ResidentModels}. */
export interface ResidentModelsOptions {
  /** Most models resident at once (loads in progress count); beyond it the least recently used idle one goes. */
  maxLoaded: number;
  /** How long loading a model takes, in ms. */
  loadMs(model: SimModel): number;
  /** Runs `fn` after `ms` on a timer the owner tracks and clears on close; returns a cancel function. */
  setTimer(fn: () => void, ms: number): () => void;
  onLoad(model: SimModel): void;
  onUnload(model: SimModel, reason: UnloadReason): void;
  /** The wall clock keep_alive counts on (epoch ms). */
  now(): number;
}

interface Loading {
  promise: Promise<Resident>;
  /** Requests waiting for this load; the resident starts with that many users so none can be evicted. */
  waiters: number;
  cancel(): void;
}

/** A lease on a resident model, with how long the caller waited for it to load. */
export interface Acquired {
  resident: Resident;
  loadMs: number;
}

/**
 * Which models are loaded, Ollama style: a request makes its model resident until keep_alive runs out; at
 * most `maxLoaded` are resident (LRU eviction of idle ones); concurrent requests for a model being loaded
 * share one load.
 */
export class ResidentModels {
  private readonly resident = new Map<string, Resident>();
  private readonly loading = new Map<string, Loading>();
  private useCounter = 0;
  private closed = false;

  constructor(private readonly opts: ResidentModelsOptions) {}

  /** Makes `model` resident (loading it if needed) and marks it busy; pair with release(). */
  async acquire(model: SimModel, keepAliveMs: number, numCtx: number | undefined): Promise<Acquired> {
    if (this.closed) throw new ClosedError('OllamaSimulator');
    this.sweep();
    const existing = this.resident.get(model.name);
    if (existing !== undefined) {
      existing.busy++;
      // A new request supersedes an unload that was waiting for the model to go idle, as in Ollama.
      existing.unloadWhenIdle = false;
      this.touch(existing, keepAliveMs);
      return { resident: existing, loadMs: 0 };
    }
    const started = performance.now();
    let load = this.loading.get(model.name);
    if (load === undefined) {
      const contextLength = Math.min(numCtx !== undefined && numCtx > 0 ? numCtx : 4096, model.contextLength);
      load = this.startLoad(model, contextLength);
    }
    load.waiters++;
    const resident = await load.promise;
    this.touch(resident, keepAliveMs);
    return { resident, loadMs: performance.now() - started };
  }

  /** Ends one use of a resident model; keep_alive counts from now. */
  release(resident: Resident, keepAliveMs: number): void {
    resident.busy = Math.max(0, resident.busy - 1);
    this.touch(resident, keepAliveMs);
    if (this.resident.get(resident.model.name) !== resident) return;
    if (resident.busy === 0 && (keepAliveMs === 0 || resident.unloadWhenIdle)) {
      this.remove(resident, 'requested');
    }
    this.trim(this.opts.maxLoaded);
  }

  /**
   * Unloads a model (keep_alive 0 with no prompt). A model being loaded is unloaded once loaded; a busy
   * one when its last request ends. Returns false when it was neither resident nor loading.
   */
  async unload(name: string): Promise<boolean> {
    const load = this.loading.get(name);
    if (load !== undefined) await load.promise;
    const resident = this.resident.get(name);
    if (resident === undefined) return false;
    if (resident.busy > 0) {
      resident.unloadWhenIdle = true;
    } else {
      this.remove(resident, 'requested');
    }
    return true;
  }

  /** Unloads idle models whose keep_alive has run out. */
  sweep(now = this.opts.now()): void {
    for (const resident of [...this.resident.values()]) {
      if (resident.busy === 0 && resident.expiresAt <= now) this.remove(resident, 'expired');
    }
  }

  /** The time on the clock keep_alive counts on (epoch ms). */
  now(): number {
    return this.opts.now();
  }

  /** Resident models, most recently used first. */
  list(): Resident[] {
    this.sweep();
    return [...this.resident.values()].sort((a, b) => b.lastUsed - a.lastUsed);
  }

  /** Forgets every resident model without counting unloads (loads in progress still finish). */
  clear(): void {
    this.resident.clear();
  }

  /** Fails loads in progress with ClosedError and forgets everything. */
  close(): void {
    this.closed = true;
    for (const load of this.loading.values()) load.cancel();
    this.loading.clear();
    this.resident.clear();
  }

  private startLoad(model: SimModel, contextLength: number): Loading {
    // Ollama frees memory before loading, so make room for the newcomer first.
    this.trim(this.opts.maxLoaded - 1);
    this.opts.onLoad(model);
    let cancelTimer: () => void = () => undefined;
    let fail: (err: Error) => void = () => undefined;
    const entry: Loading = {
      waiters: 0,
      promise: new Promise<Resident>((resolve, reject) => {
        fail = reject;
        const finish = (): void => {
          this.loading.delete(model.name);
          const resident: Resident = {
            model,
            contextLength,
            busy: entry.waiters,
            expiresAt: Number.POSITIVE_INFINITY,
            lastUsed: ++this.useCounter,
            unloadWhenIdle: false,
          };
          this.resident.set(model.name, resident);
          resolve(resident);
        };
        cancelTimer = this.opts.setTimer(finish, Math.max(0, this.opts.loadMs(model)));
      }),
      cancel: () => {
        cancelTimer();
        fail(new ClosedError('OllamaSimulator'));
      },
    };
    // Nobody may be waiting when close() cancels a load.
    entry.promise.catch(() => undefined);
    this.loading.set(model.name, entry);
    return entry;
  }

  private touch(resident: Resident, keepAliveMs: number): void {
    resident.lastUsed = ++this.useCounter;
    resident.expiresAt =
      keepAliveMs === Number.POSITIVE_INFINITY ? keepAliveMs : this.opts.now() + keepAliveMs;
  }

  /** Evicts least recently used idle models until at most `limit` are resident or loading. */
  private trim(limit: number): void {
    while (this.resident.size + this.loading.size > limit) {
      let victim: Resident | undefined;
      for (const resident of this.resident.values()) {
        if (resident.busy === 0 && (victim === undefined || resident.lastUsed < victim.lastUsed)) {
          victim = resident;
        }
      }
      if (victim === undefined) return;
      this.remove(victim, 'evicted');
    }
  }

  private remove(resident: Resident, reason: UnloadReason): void {
    this.resident.delete(resident.model.name);
    this.opts.onUnload(resident.model, reason);
  }
}
