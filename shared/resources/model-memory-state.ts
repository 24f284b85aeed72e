import { EventEmitter } from 'node:events';
import { ModelMemoryBusyError, ModelTooLargeError } from '../errors.js';
import { type EvictionPolicy, type ModelDriver, type ModelInfo, type ModelManagerStats } from './types.js';
import { withDefaults } from '../with-defaults.js';
import { createEvictionStrategies, type EvictionStrategy } from './eviction/index.js';
import {
  BUSY_RETRY_MS,
  compareIds,
  DEFAULTS,
  GB,
  POLICIES,
  type Entry,
  type ModelMemoryManagerEvents,
  type ModelMemoryManagerOptions,
  type Resolved,
} from './model-memory-types.js';

/**
 * The bookkeeping of ModelMemoryManager: which models it knows and which are resident, how many bytes they
 * hold, the eviction order (priority, then the policy, then id) and the counters. No driver calls: the
 * manager (model-memory-manager.ts) loads and unloads through its driver and calls these as it does.
 */
export abstract class ModelMemoryState extends EventEmitter<ModelMemoryManagerEvents> {
  readonly budgetBytes: number;
  protected readonly opts: Resolved;
  protected readonly driver: ModelDriver | undefined;
  protected readonly now: () => number;
  protected currentPolicy: EvictionPolicy;
  protected readonly models = new Map<string, Entry>();
  protected epoch = 0;
  /** Every policy (each in shared/resources/eviction/), all kept up to date; the current one picks victims. */
  protected readonly strategies: Readonly<Record<EvictionPolicy, EvictionStrategy>>;
  protected readonly stats = {
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

  protected known(modelId: string, what: string): Entry {
    const e = this.models.get(modelId);
    if (!e) throw new RangeError(`ModelMemoryManager.${what}: unknown model "${modelId}"`);
    return e;
  }

  protected entryOf(info: ModelInfo): Entry {
    return this.models.get(info.modelId)!;
  }

  protected estimateLoadMs(bytes: number): number {
    return (this.opts.estimatedLoadMsPerGb * bytes) / GB;
  }

  /** Resident and usable: not being loaded or unloaded. */
  protected isServing(e: Entry): boolean {
    return e.info.resident && !e.unloading && !e.load;
  }

  /** May be evicted now. */
  protected isCandidate(e: Entry): boolean {
    return this.isServing(e) && !e.info.pinned && e.info.inUse === 0;
  }

  protected checkFits(e: Entry): void {
    if (e.info.memoryBytes > this.budgetBytes)
      throw new ModelTooLargeError(e.info.modelId, e.info.memoryBytes, this.budgetBytes);
  }

  /** Bytes the backend holds: resident models (also those being unloaded) and the one loading. */
  protected backendBytes(): number {
    let sum = 0;
    for (const e of this.models.values()) if (e.info.resident || e.load) sum += e.info.memoryBytes;
    return sum;
  }

  /** Bytes held once the unloads in flight are done: what planning counts on. */
  protected projectedBytes(): number {
    let sum = 0;
    for (const e of this.models.values())
      if ((e.info.resident && !e.unloading) || e.load) sum += e.info.memoryBytes;
    return sum;
  }

  protected busy(e: Entry, when: string): ModelMemoryBusyError {
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
  protected candidates(exclude?: ReadonlySet<Entry>): Entry[] {
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
  protected selectVictims(
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
  protected touch(e: Entry, now: number): void {
    e.info.lastAccessAt = now;
    e.info.accesses++;
    for (const p of Object.values(this.strategies)) p.onAccess?.(e, now);
  }

  /** The model became resident: the policies that reset their state on a load do so. */
  protected loaded(e: Entry): void {
    for (const p of Object.values(this.strategies)) p.onLoad?.(e);
  }

  protected recordHit(e: Entry): void {
    this.stats.hits++;
    this.stats.loadTimeSavedMs += e.info.loadMs;
    this.touch(e, this.now());
    this.notify('model:hit', { modelId: e.info.modelId });
  }

  protected markLoaded(e: Entry, loadMs: number, measured: boolean): void {
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
  protected adopt(e: Entry, now: number): void {
    e.info.resident = true;
    e.info.loadedAt = now;
    e.info.lastAccessAt = now;
    this.loaded(e);
    e.epoch = ++this.epoch;
  }

  protected markEvicted(e: Entry, policy: EvictionPolicy, reason: 'room' | 'ttl' | 'manual'): void {
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

  /**
   * Emits without letting a listener's exception cut a state change short (which would strand a load or an
   * unload half done): the exception is rethrown on its own, as from any callback.
   */
  protected notify<K extends keyof ModelMemoryManagerEvents>(
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

  /** Something that may free room happened (the manager wakes what waits for it). */
  protected abstract changed(): void;
}
