import { performance } from 'node:perf_hooks';
import { ClosedError, ModelMemoryBusyError, ModelTooLargeError } from '../errors.js';
import { EvictionPolicy } from './types.js';
import { ModelMemoryState } from './model-memory-state.js';
import {
  asError,
  BUSY_RETRY_MS,
  compareIds,
  validSize,
  type Entry,
  type Joiner,
  type Load,
  type ModelLease,
  type Waiter,
} from './model-memory-types.js';

export type {
  ModelLease,
  ModelMemoryManagerEvents,
  ModelMemoryManagerOptions,
} from './model-memory-types.js';

/**
 * Decides which models stay in the backend's memory (the seed's `ModelMemoryManager`). Every model a job
 * needs goes through acquire(): the manager evicts others by policy until it fits the budget, loads it
 * through the driver, and protects it from eviction while the lease is held.
 *
 * Loads run one at a time (a GPU backend loads one model at a time anyway): with a single load in flight the
 * bytes the backend holds are exactly what the manager counts, so a load never takes the backend over the
 * budget, even when an unload fails. (A model that turns out larger once loaded, or one found loaded by
 * reconcile, can: the manager then evicts by policy back down to it.) Hits, releases, sweeps and manual
 * evictions do not wait for the load in flight. A listener that throws cannot leave a load or an unload half
 * done: its exception is rethrown on its own.
 */
export class ModelMemoryManager extends ModelMemoryState {
  private readonly queue: Waiter[] = [];
  /** Resolved at the next change of memory, residency or use (a load waiting for unloads in flight). */
  private changeWaiters: (() => void)[] = [];
  private active: Load | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private pumping = false;
  private pumpAgain = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  /**
   * Bookkeeping only (the seed's access_model), synchronous: records an access; when the model is not
   * resident, evicts by policy until it fits and marks it resident, without calling the driver. A miss counts
   * a load of the model's registered (or estimated) load time. An unknown model is registered with
   * defaultModelBytes.
   * @throws ModelTooLargeError when it can never fit; ModelMemoryBusyError when it cannot fit now (nothing
   *   is evicted then), or when the model is being loaded or unloaded through the driver.
   */
  accessModel(modelId: string): { hit: boolean; evicted: string[] } {
    this.assertOpen();
    const e =
      this.models.get(modelId) ??
      this.entryOf(this.registerModel(modelId, modelId, this.opts.defaultModelBytes));
    if (this.isServing(e)) {
      this.recordHit(e);
      return { hit: true, evicted: [] };
    }
    if (e.load || e.unloading)
      throw new ModelMemoryBusyError(
        modelId,
        `model "${modelId}" is being loaded or unloaded`,
        BUSY_RETRY_MS,
      );
    this.checkFits(e);
    const plan = this.selectVictims(e.info.memoryBytes);
    if (!plan.enough) throw this.busy(e, 'now');
    const policy = this.currentPolicy;
    for (const v of plan.victims) this.markEvicted(v, policy, 'room');
    this.stats.misses++;
    this.markLoaded(e, e.info.loadMs, false);
    this.touch(e, this.now());
    this.notify('model:loaded', { modelId, loadMs: e.info.loadMs, memoryBytes: e.info.memoryBytes });
    return { hit: false, evicted: plan.victims.map((v) => v.info.modelId) };
  }

  /**
   * Makes the model resident and holds it for one job. When it is not resident, evicts by policy (unloading
   * victims before loading it), then loads it and measures the load; acquires of the same model meanwhile
   * share that load. When the memory is held by models in use, pinned or loading, waits in FIFO order until
   * room frees, up to acquireTimeoutMs. An unregistered model is registered with the driver's size for it
   * (else defaultModelBytes).
   * @throws ModelTooLargeError (never fits); ModelMemoryBusyError (no room within the wait, or victims
   *   would not unload); the driver's error when the load fails (for every acquire sharing it); ClosedError;
   *   the signal's reason when aborted.
   */
  async acquire(modelId: string, opts: { signal?: AbortSignal } = {}): Promise<ModelLease> {
    const { signal } = opts;
    this.assertOpen();
    signal?.throwIfAborted();
    const deadline = performance.now() + this.opts.acquireTimeoutMs;
    const e = this.models.get(modelId) ?? (await this.registerUnknown(modelId, signal));
    for (;;) {
      this.assertOpen();
      signal?.throwIfAborted();
      if (this.isServing(e)) {
        this.recordHit(e);
        return this.lease(e, true, 0);
      }
      if (e.load) return this.join(e, e.load, signal);
      this.checkFits(e);
      const r = await this.enqueue(e, deadline, signal);
      if (r.lease) return r.lease;
    }
  }

  /**
   * The lease {@link acquire} would resolve to at once, without its promise: `modelId` is resident and usable
   * now (counted as a hit, as acquire counts it); undefined otherwise, with nothing counted (then acquire it).
   * For the job path, where the model is nearly always resident.
   * @throws ClosedError
   */
  tryAcquire(modelId: string): ModelLease | undefined {
    this.assertOpen();
    const e = this.models.get(modelId);
    if (e === undefined || !this.isServing(e)) return undefined;
    this.recordHit(e);
    return this.lease(e, true, 0);
  }

  /**
   * Unloads the models idle longer than their keep-alive (resident, not in use, not pinned, not loading),
   * whatever the policy; counted as evictions under TTL. Returns the ids unloaded (a failed unload leaves the
   * model resident and emits model:error).
   */
  async sweepExpired(): Promise<string[]> {
    if (this.closed) return [];
    const now = this.now();
    const expired = [...this.models.values()]
      .filter((e) => this.isCandidate(e) && now - e.info.lastAccessAt > e.info.keepAliveMs)
      .sort((a, b) => compareIds(a.info.modelId, b.info.modelId));
    for (const e of expired) e.unloading = true;
    const gone: string[] = [];
    for (const e of expired)
      if (await this.unloadOne(e, EvictionPolicy.TTL, 'ttl')) gone.push(e.info.modelId);
    return gone;
  }

  /**
   * Brings the manager in line with what the backend holds (driver.listLoaded; a no-op without it). Models
   * counted resident but not listed were unloaded behind our back (externalUnloads); those in use are left
   * alone (the job's own request loads them again). Listed models not counted resident are adopted (an
   * unknown one is registered with the reported size), then models are evicted by policy until the budget
   * holds again. Models being loaded or unloaded, or that changed while the list was fetched, are skipped.
   */
  async reconcile(): Promise<void> {
    if (this.closed || !this.driver?.listLoaded) return;
    const since = this.epoch;
    let listed: { name: string; sizeBytes?: number }[];
    try {
      listed = await this.track(this.driver.listLoaded());
    } catch (err) {
      this.notify('model:error', { modelId: '*', op: 'reconcile', error: asError(err) });
      return;
    }
    const byName = new Map(listed.map((m) => [m.name, m]));
    // Ollama lists "llama3" as "llama3:latest".
    const find = (name: string) =>
      byName.get(name) ?? (name.includes(':') ? undefined : byName.get(`${name}:latest`));
    const seen = new Set<string>();
    const now = this.now();
    for (const e of this.models.values()) {
      const m = find(e.info.modelName);
      if (m) seen.add(m.name);
      if (e.load || e.unloading || e.epoch > since) continue;
      if (!m) {
        if (e.info.resident && e.info.inUse === 0) {
          e.info.resident = false;
          e.epoch = ++this.epoch;
          this.stats.externalUnloads++;
        }
        continue;
      }
      if (validSize(m.sizeBytes)) e.info.memoryBytes = m.sizeBytes;
      if (!e.info.resident) this.adopt(e, now);
    }
    for (const m of listed) {
      if (seen.has(m.name) || this.models.has(m.name)) continue;
      const e = this.entryOf(
        this.registerModel(
          m.name,
          m.name,
          validSize(m.sizeBytes) ? m.sizeBytes : this.opts.defaultModelBytes,
        ),
      );
      this.adopt(e, now);
    }
    if (this.projectedBytes() > this.budgetBytes) await this.shrink();
    this.changed();
  }

  /** Evicts one model now (driver.unload). False when it is not resident, in use, pinned, loading, or the unload failed. */
  async evict(modelId: string): Promise<boolean> {
    const e = this.models.get(modelId);
    if (this.closed || !e || !this.isCandidate(e)) return false;
    e.unloading = true;
    return this.unloadOne(e, this.currentPolicy, 'manual');
  }

  /**
   * Takes no more acquires (ClosedError) and rejects those waiting for room with ClosedError. Acquires
   * already sharing a load get it. Resolves once the driver calls in flight have settled; models stay loaded.
   * Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      for (const w of this.queue.splice(0)) w.fail(new ClosedError('ModelMemoryManager'));
      await Promise.allSettled([...this.inflight]);
    })();
    return this.closing;
  }

  // ---- internals -------------------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('ModelMemoryManager');
  }

  private async registerUnknown(modelId: string, signal: AbortSignal | undefined): Promise<Entry> {
    let size: number | undefined;
    if (this.driver?.sizeOf && typeof modelId === 'string' && modelId.length > 0) {
      try {
        size = await this.driver.sizeOf(modelId, signal);
      } catch (err) {
        signal?.throwIfAborted();
        // The size is corrected from listLoaded after the load; the default is good enough to plan with.
        this.notify('model:error', { modelId, op: 'load', error: asError(err) });
      }
    }
    // Another acquire may have registered it while the driver answered.
    return (
      this.models.get(modelId) ??
      this.entryOf(this.registerModel(modelId, modelId, validSize(size) ? size : this.opts.defaultModelBytes))
    );
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const done = (): void => void this.inflight.delete(p);
    p.then(done, done);
    return p;
  }

  /** Unloads a model already marked `unloading`. False (it stays resident, model:error) when the driver fails. */
  private async unloadOne(
    e: Entry,
    policy: EvictionPolicy,
    reason: 'room' | 'ttl' | 'manual',
  ): Promise<boolean> {
    try {
      if (this.driver) await this.track(this.driver.unload(e.info.modelName));
    } catch (err) {
      e.unloading = false;
      this.notify('model:error', { modelId: e.info.modelId, op: 'unload', error: asError(err) });
      this.changed();
      return false;
    }
    this.markEvicted(e, policy, reason);
    this.changed();
    return true;
  }

  /** Something that may free room happened: wake what waits for it. */
  protected override changed(): void {
    const waiters = this.changeWaiters;
    this.changeWaiters = [];
    for (const w of waiters) w();
    this.pump();
  }

  private nextChange(): Promise<void> {
    return new Promise((resolve) => this.changeWaiters.push(resolve));
  }

  private enqueue(
    entry: Entry,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<{ lease?: Promise<ModelLease> }> {
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const i = this.queue.indexOf(w);
        if (i >= 0) this.queue.splice(i, 1);
      };
      const giveUp = (err: unknown): void => {
        cleanup();
        reject(err);
        // The head may have changed: whoever is next may fit.
        this.pump();
      };
      const onAbort = (): void => giveUp(signal!.reason);
      const w: Waiter = {
        entry,
        signal,
        done: (r) => {
          cleanup();
          resolve(r);
        },
        fail: (err) => {
          cleanup();
          reject(err);
        },
      };
      const timer = setTimeout(
        () => giveUp(this.busy(entry, `within ${this.opts.acquireTimeoutMs} ms`)),
        Math.max(0, deadline - performance.now()),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(w);
      this.pump();
    });
  }

  /**
   * Serves the queue head while it can: strict FIFO, so a large model is not starved by smaller ones behind
   * it. Starts at most one load; runs again on every change.
   */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        while (this.queue.length > 0) {
          const w = this.queue[0]!;
          const e = w.entry;
          if (this.isServing(e)) {
            w.done({});
            continue;
          }
          if (e.load) {
            w.done({ lease: this.join(e, e.load, w.signal) });
            continue;
          }
          if (this.active || e.unloading) break;
          if (e.info.memoryBytes > this.budgetBytes) {
            w.fail(new ModelTooLargeError(e.info.modelId, e.info.memoryBytes, this.budgetBytes));
            continue;
          }
          const plan = this.selectVictims(e.info.memoryBytes);
          if (!plan.enough) break;
          const load = this.startLoad(e, plan.victims);
          // Joined before any await of the load, so the load cannot finish without this acquire.
          w.done({ lease: this.join(e, load, w.signal) });
        }
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private startLoad(e: Entry, victims: Entry[]): Load {
    for (const v of victims) v.unloading = true;
    const load: Load = { joiners: new Set() };
    e.load = load;
    this.active = load;
    void this.track(this.runLoad(e, load, victims, this.currentPolicy));
    return load;
  }

  /** Adds an acquire to a load in progress; it gets a lease when the load ends (or its error). */
  private join(e: Entry, load: Load, signal: AbortSignal | undefined): Promise<ModelLease> {
    this.stats.misses++;
    return new Promise<ModelLease>((resolve, reject) => {
      const onAbort = (): void => {
        load.joiners.delete(j);
        reject(signal!.reason);
      };
      const j: Joiner = { resolve, reject, detach: () => signal?.removeEventListener('abort', onAbort) };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      load.joiners.add(j);
    });
  }

  /** Never rejects: the outcome goes to the joiners. */
  private async runLoad(e: Entry, load: Load, victims: Entry[], policy: EvictionPolicy): Promise<void> {
    let loadMs = 0;
    let failure: { err: unknown } | undefined;
    try {
      await this.makeRoom(e, victims, policy);
      loadMs = await this.driverLoad(e);
      this.markLoaded(e, loadMs, this.driver !== undefined);
      await this.checkLoadedSize(e);
    } catch (err) {
      failure = { err };
    }
    e.load = undefined;
    this.active = undefined;
    const now = this.now();
    for (const j of load.joiners) {
      j.detach();
      if (failure) j.reject(failure.err);
      else {
        this.touch(e, now);
        j.resolve(this.lease(e, false, loadMs));
      }
    }
    load.joiners.clear();
    if (!failure)
      this.notify('model:loaded', { modelId: e.info.modelId, loadMs, memoryBytes: e.info.memoryBytes });
    // Busy is not the backend's fault: the unload failures behind it were reported already.
    else if (!(failure.err instanceof ModelMemoryBusyError))
      this.notify('model:error', { modelId: e.info.modelId, op: 'load', error: asError(failure.err) });
    this.changed();
  }

  /**
   * Unloads the planned victims, then waits until the backend really holds room for the model (unloads of
   * sweeps in flight, victims that failed to unload): plans more victims when it has to, ModelMemoryBusyError
   * when none are left.
   */
  private async makeRoom(e: Entry, victims: Entry[], policy: EvictionPolicy): Promise<void> {
    const failed = new Set<Entry>();
    let pending = victims;
    for (;;) {
      for (const v of pending) if (!(await this.unloadOne(v, policy, 'room'))) failed.add(v);
      if (this.backendBytes() <= this.budgetBytes) return;
      pending = [];
      // Whoever marked them (a sweep, a shrink) is unloading them: their bytes are counted as free already.
      if (this.anyUnloading()) {
        await this.nextChange();
        continue;
      }
      const plan = this.selectVictims(0, failed);
      if (!plan.enough) throw this.busy(e, 'now (victims failed to unload)');
      for (const v of plan.victims) v.unloading = true;
      pending = plan.victims;
    }
  }

  private anyUnloading(): boolean {
    for (const m of this.models.values()) if (m.unloading) return true;
    return false;
  }

  /** Load time on the manager's clock; without a driver, the model's known or estimated figure. */
  private async driverLoad(e: Entry): Promise<number> {
    if (!this.driver) return e.info.loadMs;
    const t0 = this.now();
    await this.track(this.driver.load(e.info.modelName));
    return Math.max(0, this.now() - t0);
  }

  /** The backend knows the real size once loaded (weights + context): count that, evict more if over. */
  private async checkLoadedSize(e: Entry): Promise<void> {
    if (!this.driver?.listLoaded) return;
    try {
      const listed = await this.track(this.driver.listLoaded());
      const name = e.info.modelName;
      const m = listed.find((l) => l.name === name || (!name.includes(':') && l.name === `${name}:latest`));
      if (m && validSize(m.sizeBytes)) e.info.memoryBytes = m.sizeBytes;
    } catch (err) {
      this.notify('model:error', { modelId: e.info.modelId, op: 'reconcile', error: asError(err) });
      return;
    }
    if (this.projectedBytes() > this.budgetBytes) await this.shrink();
  }

  /** Evicts by policy until the budget holds, as far as candidates allow. */
  private async shrink(): Promise<void> {
    const { victims } = this.selectVictims(0);
    for (const v of victims) v.unloading = true;
    const policy = this.currentPolicy;
    for (const v of victims) await this.unloadOne(v, policy, 'room');
  }

  private lease(e: Entry, hit: boolean, loadMs: number): ModelLease {
    e.info.inUse++;
    let released = false;
    return {
      modelId: e.info.modelId,
      hit,
      loadMs,
      release: () => {
        if (released) return;
        released = true;
        e.info.inUse--;
        // Idle from the end of the job, as a backend's keep-alive counts it.
        e.info.lastAccessAt = Math.max(e.info.lastAccessAt, this.now());
        this.changed();
      },
    };
  }
}
