import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { ClosedError, ModelMemoryBusyError, ModelTooLargeError } from '../errors.js';
import { EvictionPolicy, type ModelDriver, type ModelInfo, type ModelManagerStats } from './types.js';
import { withDefaults } from '../with-defaults.js';
import { createEvictionStrategies, type EvictionStrategy, type PolicyState } from './eviction/index.js';

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

const GB = 1e9;
/** What a refused caller is told to wait: loads and jobs take seconds, polling faster only adds load. */
const BUSY_RETRY_MS = 1000;
const POLICIES = new Set<string>(Object.values(EvictionPolicy));

const DEFAULTS = {
  policy: EvictionPolicy.LRU,
  keepAliveMs: 300_000,
  lfuHalfLifeMs: 600_000,
  estimatedLoadMsPerGb: 1000,
  defaultModelBytes: 4e9,
  acquireTimeoutMs: 30_000,
  now: (): number => Date.now(),
};
type Resolved = Omit<Required<ModelMemoryManagerOptions>, 'driver'> & { driver: ModelDriver | undefined };

/** An acquire waiting on a load in progress. */
interface Joiner {
  resolve(lease: ModelLease): void;
  reject(err: unknown): void;
  /** Stops listening to the caller's signal. */
  detach(): void;
}

/** One load in progress: everyone who asked for the model meanwhile gets it from this one load. */
interface Load {
  joiners: Set<Joiner>;
}

/** An acquire waiting for its turn to load (FIFO). */
interface Waiter {
  entry: Entry;
  signal: AbortSignal | undefined;
  /** `lease` is the load it joined; without it the model became resident meanwhile: look again. */
  done(r: { lease?: Promise<ModelLease> }): void;
  fail(err: unknown): void;
}

/** What the manager keeps about one model. */
interface Entry extends PolicyState {
  /** A measured load time beats a registered one, which beats the size-based estimate. */
  loadMsFrom: 'estimate' | 'registered' | 'measured';
  load: Load | undefined;
  /** Chosen as a victim (or swept) and its unload not finished: still in memory, no longer usable. */
  unloading: boolean;
  /** Bumped on every residency change, so reconcile can ignore what changed while it listed. */
  epoch: number;
}

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
export class ModelMemoryManager extends EventEmitter<ModelMemoryManagerEvents> {
  readonly budgetBytes: number;
  private readonly opts: Resolved;
  private readonly driver: ModelDriver | undefined;
  private readonly now: () => number;
  private currentPolicy: EvictionPolicy;
  private readonly models = new Map<string, Entry>();
  private readonly queue: Waiter[] = [];
  /** Resolved at the next change of memory, residency or use (a load waiting for unloads in flight). */
  private changeWaiters: (() => void)[] = [];
  private active: Load | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private pumping = false;
  private pumpAgain = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private epoch = 0;
  /** Every policy (each in shared/resources/eviction/), all kept up to date; the current one picks victims. */
  private readonly strategies: Readonly<Record<EvictionPolicy, EvictionStrategy>>;
  private readonly stats = {
    hits: 0,
    misses: 0,
    loads: 0,
    evictions: 0,
    evictionsByPolicy: {} as Partial<Record<EvictionPolicy, number>>,
    loadTimeSavedMs: 0,
    loadTimeSpentMs: 0,
    externalUnloads: 0,
  };

  constructor(opts: ModelMemoryManagerOptions) {
    super();
    const o = withDefaults<Resolved>(DEFAULTS, opts);
    const bad = (name: string, expected: string, got: unknown): never => {
      throw new TypeError(`ModelMemoryManager: option "${name}" must be ${expected}, got ${String(got)}`);
    };
    if (!(typeof o.budgetBytes === 'number' && Number.isFinite(o.budgetBytes) && o.budgetBytes > 0))
      bad('budgetBytes', 'a number of bytes > 0', o.budgetBytes);
    if (!POLICIES.has(o.policy)) bad('policy', `one of ${[...POLICIES].join(', ')}`, o.policy);
    if (
      o.driver !== undefined &&
      !(typeof o.driver.load === 'function' && typeof o.driver.unload === 'function')
    )
      bad('driver', 'an object with load() and unload()', o.driver);
    for (const k of ['keepAliveMs', 'estimatedLoadMsPerGb', 'acquireTimeoutMs'] as const)
      if (!(typeof o[k] === 'number' && Number.isFinite(o[k]) && o[k] >= 0)) bad(k, 'a number >= 0', o[k]);
    for (const k of ['lfuHalfLifeMs', 'defaultModelBytes'] as const)
      if (!(typeof o[k] === 'number' && Number.isFinite(o[k]) && o[k] > 0)) bad(k, 'a number > 0', o[k]);
    if (typeof o.now !== 'function') bad('now', 'a function', o.now);
    this.opts = o;
    this.budgetBytes = o.budgetBytes;
    this.driver = o.driver;
    this.now = o.now;
    this.currentPolicy = o.policy;
    this.strategies = createEvictionStrategies({ lfuHalfLifeMs: o.lfuHalfLifeMs });
  }

  /** The policy that picks the next victims; may be changed at any time (every policy's state is kept). */
  get policy(): EvictionPolicy {
    return this.currentPolicy;
  }

  set policy(p: EvictionPolicy) {
    if (!POLICIES.has(p))
      throw new TypeError(
        `ModelMemoryManager: policy must be one of ${[...POLICIES].join(', ')}, got ${String(p)}`,
      );
    this.currentPolicy = p;
  }

  /**
   * Declares a model (the seed's register_model). Registering it again updates its name, size, priority,
   * pin and keep-alive (those given) and keeps its counters and residency.
   * @param priority higher = more important; lower priorities are evicted first, whatever the policy. Default 0.
   * @param opts.loadMs a known load time, ms, until one is measured.
   */
  registerModel(
    modelId: string,
    modelName: string,
    memoryBytes: number,
    priority?: number,
    opts: { pinned?: boolean; keepAliveMs?: number; loadMs?: number } = {},
  ): ModelInfo {
    const where = 'ModelMemoryManager.registerModel';
    if (typeof modelId !== 'string' || modelId.length === 0)
      throw new TypeError(`${where}: modelId must be a non-empty string`);
    if (typeof modelName !== 'string' || modelName.length === 0)
      throw new TypeError(`${where}: modelName must be a non-empty string`);
    if (!(typeof memoryBytes === 'number' && Number.isFinite(memoryBytes) && memoryBytes > 0))
      throw new TypeError(`${where}: memoryBytes must be a number > 0, got ${String(memoryBytes)}`);
    if (priority !== undefined && !(typeof priority === 'number' && Number.isFinite(priority)))
      throw new TypeError(`${where}: priority must be a finite number, got ${String(priority)}`);
    for (const k of ['keepAliveMs', 'loadMs'] as const) {
      const v = opts[k];
      if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0))
        throw new TypeError(`${where}: ${k} must be a number >= 0, got ${String(v)}`);
    }
    const existing = this.models.get(modelId);
    if (existing) {
      const info = existing.info;
      info.modelName = modelName;
      info.memoryBytes = memoryBytes;
      if (priority !== undefined) info.priority = priority;
      if (opts.pinned !== undefined) info.pinned = opts.pinned;
      if (opts.keepAliveMs !== undefined) info.keepAliveMs = opts.keepAliveMs;
      if (opts.loadMs !== undefined && existing.loadMsFrom !== 'measured') {
        info.loadMs = opts.loadMs;
        existing.loadMsFrom = 'registered';
      } else if (existing.loadMsFrom === 'estimate') info.loadMs = this.estimateLoadMs(memoryBytes);
      // Unpinning or shrinking may let a waiting acquire in.
      this.changed();
      return { ...info };
    }
    const entry: Entry = {
      info: {
        modelId,
        modelName,
        memoryBytes,
        priority: priority ?? 0,
        pinned: opts.pinned ?? false,
        keepAliveMs: opts.keepAliveMs ?? this.opts.keepAliveMs,
        resident: false,
        inUse: 0,
        loadMs: opts.loadMs ?? this.estimateLoadMs(memoryBytes),
        loadedAt: 0,
        lastAccessAt: 0,
        accesses: 0,
      },
      loadMsFrom: opts.loadMs === undefined ? 'estimate' : 'registered',
      load: undefined,
      unloading: false,
      lfuScore: 0,
      lfuAt: 0,
      freq: 0,
      h: 0,
      epoch: 0,
    };
    this.models.set(modelId, entry);
    return { ...entry.info };
  }

  /** Protects a registered model from eviction (it stays resident once loaded). */
  pin(modelId: string): void {
    this.known(modelId, 'pin').info.pinned = true;
  }

  unpin(modelId: string): void {
    this.known(modelId, 'unpin').info.pinned = false;
    this.changed();
  }

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

  /** A copy of what the manager knows of a model. */
  getModel(modelId: string): ModelInfo | undefined {
    const e = this.models.get(modelId);
    return e ? { ...e.info } : undefined;
  }

  /**
   * Counters and memory (the seed's get_stats). usedBytes is what the backend holds as far as the manager
   * knows: the resident models (including ones being unloaded) and the one being loaded. Manual evictions
   * count in `evictions` but under no policy.
   */
  getStats(): ModelManagerStats {
    const resident = [...this.models.values()]
      .filter((e) => e.info.resident)
      .sort((a, b) => compareIds(a.info.modelId, b.info.modelId))
      .map(({ info }) => ({
        modelId: info.modelId,
        memoryBytes: info.memoryBytes,
        inUse: info.inUse,
        pinned: info.pinned,
        priority: info.priority,
      }));
    return {
      policy: this.currentPolicy,
      budgetBytes: this.budgetBytes,
      usedBytes: this.backendBytes(),
      resident,
      ...this.stats,
      evictionsByPolicy: { ...this.stats.evictionsByPolicy },
    };
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

  private known(modelId: string, what: string): Entry {
    const e = this.models.get(modelId);
    if (!e) throw new RangeError(`ModelMemoryManager.${what}: unknown model "${modelId}"`);
    return e;
  }

  private entryOf(info: ModelInfo): Entry {
    return this.models.get(info.modelId)!;
  }

  private estimateLoadMs(bytes: number): number {
    return (this.opts.estimatedLoadMsPerGb * bytes) / GB;
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

  /** Resident and usable: not being loaded or unloaded. */
  private isServing(e: Entry): boolean {
    return e.info.resident && !e.unloading && !e.load;
  }

  /** May be evicted now. */
  private isCandidate(e: Entry): boolean {
    return this.isServing(e) && !e.info.pinned && e.info.inUse === 0;
  }

  private checkFits(e: Entry): void {
    if (e.info.memoryBytes > this.budgetBytes)
      throw new ModelTooLargeError(e.info.modelId, e.info.memoryBytes, this.budgetBytes);
  }

  /** Bytes the backend holds: resident models (also those being unloaded) and the one loading. */
  private backendBytes(): number {
    let sum = 0;
    for (const e of this.models.values()) if (e.info.resident || e.load) sum += e.info.memoryBytes;
    return sum;
  }

  /** Bytes held once the unloads in flight are done: what planning counts on. */
  private projectedBytes(): number {
    let sum = 0;
    for (const e of this.models.values())
      if ((e.info.resident && !e.unloading) || e.load) sum += e.info.memoryBytes;
    return sum;
  }

  private busy(e: Entry, when: string): ModelMemoryBusyError {
    let held = 0;
    for (const m of this.models.values())
      if ((m.info.resident || m.load) && !this.isCandidate(m)) held += m.info.memoryBytes;
    return new ModelMemoryBusyError(
      e.info.modelId,
      `no room for model "${e.info.modelId}" (${e.info.memoryBytes} bytes) ${when}: ${held} of the ` +
        `${this.budgetBytes} budget bytes are held by models in use, pinned, loading or unloading`,
      BUSY_RETRY_MS,
    );
  }

  /** The models that may be evicted, in eviction order: priority, then the policy, then id. */
  private candidates(exclude?: ReadonlySet<Entry>): Entry[] {
    const now = this.now();
    const strategy = this.strategies[this.currentPolicy];
    const keyed = [...this.models.values()]
      .filter((e) => this.isCandidate(e) && !exclude?.has(e))
      .map((e) => ({ e, key: strategy.key(e, now) }));
    keyed.sort(
      (a, b) =>
        a.e.info.priority - b.e.info.priority ||
        a.key - b.key ||
        compareIds(a.e.info.modelId, b.e.info.modelId),
    );
    return keyed.map((k) => k.e);
  }

  /**
   * The shortest prefix of the eviction order that makes room for `extraBytes` more; `enough` is false (with
   * every candidate listed) when even all of them would not.
   */
  private selectVictims(
    extraBytes: number,
    exclude?: ReadonlySet<Entry>,
  ): { victims: Entry[]; enough: boolean } {
    const shortfall = this.projectedBytes() + extraBytes - this.budgetBytes;
    if (shortfall <= 0) return { victims: [], enough: true };
    const victims: Entry[] = [];
    let freed = 0;
    for (const c of this.candidates(exclude)) {
      victims.push(c);
      freed += c.info.memoryBytes;
      if (freed >= shortfall) return { victims, enough: true };
    }
    return { victims, enough: false };
  }

  /** One access: every policy's state is kept up to date so the policy can be switched at any time. */
  private touch(e: Entry, now: number): void {
    e.info.lastAccessAt = now;
    e.info.accesses++;
    for (const p of Object.values(this.strategies)) p.onAccess?.(e, now);
  }

  /** The model became resident: the policies that reset their state on a load do so. */
  private loaded(e: Entry): void {
    for (const p of Object.values(this.strategies)) p.onLoad?.(e);
  }

  private recordHit(e: Entry): void {
    this.stats.hits++;
    this.stats.loadTimeSavedMs += e.info.loadMs;
    this.touch(e, this.now());
    this.notify('model:hit', { modelId: e.info.modelId });
  }

  private markLoaded(e: Entry, loadMs: number, measured: boolean): void {
    const now = this.now();
    e.info.resident = true;
    e.info.loadedAt = now;
    e.info.lastAccessAt = now;
    if (measured) {
      e.info.loadMs = loadMs;
      e.loadMsFrom = 'measured';
    }
    this.loaded(e);
    e.epoch = ++this.epoch;
    this.stats.loads++;
    this.stats.loadTimeSpentMs += loadMs;
  }

  /** Taken into residency from the backend's list: not a load we paid for. */
  private adopt(e: Entry, now: number): void {
    e.info.resident = true;
    e.info.loadedAt = now;
    e.info.lastAccessAt = now;
    this.loaded(e);
    e.epoch = ++this.epoch;
  }

  private markEvicted(e: Entry, policy: EvictionPolicy, reason: 'room' | 'ttl' | 'manual'): void {
    e.info.resident = false;
    e.unloading = false;
    e.epoch = ++this.epoch;
    this.stats.evictions++;
    if (reason !== 'manual')
      this.stats.evictionsByPolicy[policy] = (this.stats.evictionsByPolicy[policy] ?? 0) + 1;
    if (reason === 'room') this.strategies[policy].onEvictForRoom?.(e);
    this.notify('model:evicted', {
      modelId: e.info.modelId,
      policy,
      reason,
      memoryBytes: e.info.memoryBytes,
    });
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

  /**
   * Emits without letting a listener's exception cut a state change short (which would strand a load or an
   * unload half done): the exception is rethrown on its own, as from any callback.
   */
  private notify<K extends keyof ModelMemoryManagerEvents>(
    event: K,
    ...args: ModelMemoryManagerEvents[K]
  ): void {
    try {
      // TypeScript cannot match a generic K against emit's conditional parameter type.
      (this.emit as (event: K, ...args: ModelMemoryManagerEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      process.nextTick(() => {
        throw err;
      });
    }
  }

  /** Something that may free room happened: wake what waits for it. */
  private changed(): void {
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

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function validSize(n: number | undefined): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n > 0;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
