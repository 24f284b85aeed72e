import { ClosedError, ModelMemoryBusyError, ModelTooLargeError } from '../../shared/errors';
import {
  ModelMemoryManager,
  type ModelMemoryManagerOptions,
} from '../../shared/resources/model-memory-manager';
import { EvictionPolicy, type ModelDriver } from '../../shared/resources/types';
import { rejectionOf } from '../helpers/wait';

const GB = 1e9;
const S = 1000;

/** A clock the tests move by hand. */
function clock(start = 0) {
  const c = { t: start, now: () => c.t };
  return c;
}

/** Lets pending promise callbacks and immediates run. */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** True when `p` has settled (after letting pending callbacks run). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await tick();
  return done;
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * An in-memory backend: records every call, holds its own set of loaded models, and remembers the most bytes
 * it ever held (checked against the budget at every load). A load advances the test clock by its load time.
 */
class FakeDriver implements ModelDriver {
  readonly calls: string[] = [];
  readonly loaded = new Map<string, number>();
  readonly failLoad = new Set<string>();
  readonly failUnload = new Set<string>();
  /** Size the backend reports once loaded (defaults to the declared size). */
  readonly actualSize = new Map<string, number>();
  /** When set, loads wait for it (to hold a load in flight). */
  gate: Promise<void> | undefined;
  maxHeld = 0;

  constructor(
    private readonly sizes: Record<string, number>,
    private readonly c: { t: number },
    private readonly loadMsOf: (name: string) => number = () => 1500,
  ) {}

  held(): number {
    let sum = 0;
    for (const b of this.loaded.values()) sum += b;
    return sum;
  }

  async load(name: string): Promise<void> {
    this.calls.push(`load:${name}`);
    await this.gate;
    await tick();
    if (this.failLoad.has(name)) throw new Error(`cannot load ${name}`);
    this.c.t += this.loadMsOf(name);
    this.loaded.set(name, this.actualSize.get(name) ?? this.sizes[name] ?? 4 * GB);
    this.maxHeld = Math.max(this.maxHeld, this.held());
  }

  async unload(name: string): Promise<void> {
    this.calls.push(`unload:${name}`);
    await tick();
    if (this.failUnload.has(name)) throw new Error(`cannot unload ${name}`);
    this.loaded.delete(name);
  }

  async listLoaded(): Promise<{ name: string; sizeBytes?: number }[]> {
    return [...this.loaded].map(([name, sizeBytes]) => ({ name, sizeBytes }));
  }

  async sizeOf(name: string): Promise<number | undefined> {
    return this.sizes[name];
  }
}

function names(m: ModelMemoryManager): string[] {
  return m.getStats().resident.map((r) => r.modelId);
}

describe('ModelMemoryManager: victim selection (bookkeeping mode)', () => {
  /*
   * One script, run under every policy. Budget 12 GB; A 4 GB, B 4 GB, C 2 GB, E 2 GB fill it; then D (4 GB)
   * arrives at t=80 s and must evict, then B comes back at t=90 s.
   *
   *   model  GB  loadMs  keepAlive  accesses (s)  | at t=80: LRU  FIFO  TTL expiry  LFU score  GDSF H
   *   A      4   8000    3600 s     0, 40, 50     |           50   0     3650        2.83       3×8000/4 = 6000
   *   B      4   1000    60 s       10, 60        |           60   10    120         1.90       2×1000/4 = 500
   *   C      2   300     600 s      20, 70        |           70   20    670         1.92       2×300/2  = 300
   *   E      2   2000    300 s      30            |           30   30    330         0.94       1×2000/2 = 1000
   *
   * (LFU: each access weighs 2^(-age/600 s); GDSF: L + freq × loadMs / GB, L = 0 before any eviction.)
   * D needs 4 GB: each policy evicts from the front of its order until 4 GB are freed:
   *   LRU  E(30) A(50)        → [E, A]
   *   FIFO A(0)               → [A]
   *   LFU  E(0.94) B(1.90)    → [E, B]
   *   TTL  B(120)             → [B]
   *   GDSF C(300) B(500)      → [C, B]
   */
  const models: [string, number, number, number][] = [
    // id, GB, loadMs, keepAlive s
    ['A', 4, 8000, 3600],
    ['B', 4, 1000, 60],
    ['C', 2, 300, 600],
    ['D', 4, 4000, 300],
    ['E', 2, 2000, 300],
  ];
  const script: [number, string][] = [
    [0, 'A'],
    [10, 'B'],
    [20, 'C'],
    [30, 'E'],
    [40, 'A'],
    [50, 'A'],
    [60, 'B'],
    [70, 'C'],
    [80, 'D'],
    [90, 'B'],
  ];

  function run(policy: EvictionPolicy): { evicted: string[][]; hits: boolean[]; m: ModelMemoryManager } {
    const c = clock();
    const m = new ModelMemoryManager({ budgetBytes: 12 * GB, policy, now: c.now });
    for (const [id, gb, loadMs, keepAliveS] of models)
      m.registerModel(id, id, gb * GB, 0, { loadMs, keepAliveMs: keepAliveS * S });
    const evicted: string[][] = [];
    const hits: boolean[] = [];
    for (const [t, id] of script) {
      c.t = t * S;
      const r = m.accessModel(id);
      evicted.push(r.evicted);
      hits.push(r.hit);
    }
    return { evicted, hits, m };
  }

  /*
   * At t=90 s, B again:
   *   LRU, FIFO: B is resident → hit.
   *   LFU: resident A, C, D (10 GB); B needs 2 GB more. Scores at 90: D 0.99 (one access at 80),
   *        C 1.90, A 2.80 → [D].
   *   TTL: resident A, C, E, D (12 GB); needs 4 GB. Expiries: E 330, D 380, C 670, A 3650 → [E, D].
   *   GDSF: resident A, E, D (10 GB); needs 2 GB. Evicting C (300) then B (500) raised L to 500, so D,
   *        loaded at 80, has H = 500 + 4000/4 = 1500; E 1000, A 6000 → [E].
   */
  const expected: Record<EvictionPolicy, { atD: string[]; atB: string[]; resident: string[] }> = {
    [EvictionPolicy.LRU]: { atD: ['E', 'A'], atB: [], resident: ['B', 'C', 'D'] },
    [EvictionPolicy.FIFO]: { atD: ['A'], atB: [], resident: ['B', 'C', 'D', 'E'] },
    [EvictionPolicy.LFU]: { atD: ['E', 'B'], atB: ['D'], resident: ['A', 'B', 'C'] },
    [EvictionPolicy.TTL]: { atD: ['B'], atB: ['E', 'D'], resident: ['A', 'B', 'C'] },
    [EvictionPolicy.COST_BASED]: { atD: ['C', 'B'], atB: ['E'], resident: ['A', 'B', 'D'] },
  };

  it.each(Object.values(EvictionPolicy))('%s evicts exactly the expected victims', (policy) => {
    const { evicted, hits, m } = run(policy);
    const want = expected[policy];
    // The first eight accesses fill the budget exactly and never evict.
    expect(evicted.slice(0, 8)).toEqual([[], [], [], [], [], [], [], []]);
    expect(hits.slice(0, 8)).toEqual([false, false, false, false, true, true, true, true]);
    expect(evicted[8]).toEqual(want.atD);
    expect(evicted[9]).toEqual(want.atB);
    expect(hits[9]).toBe(want.atB.length === 0);
    expect(names(m)).toEqual(want.resident);
    const s = m.getStats();
    const victims = want.atD.length + want.atB.length;
    expect(s.evictions).toBe(victims);
    expect(s.evictionsByPolicy).toEqual({ [policy]: victims });
    expect(s.usedBytes).toBeLessThanOrEqual(12 * GB);
    expect(s.usedBytes).toBe(
      want.resident.reduce((sum, id) => sum + models.find(([mid]) => mid === id)![1] * GB, 0),
    );
  });

  it('the five policies disagree on this script (each one is really in effect)', () => {
    const runs = Object.values(EvictionPolicy).map((p) => JSON.stringify(run(p).evicted));
    expect(new Set(runs).size).toBe(5);
  });

  it('counts hits, misses, loads and load time saved and spent', () => {
    const { m } = run(EvictionPolicy.LRU);
    const s = m.getStats();
    // Misses: A B C E D; hits: A A B C B.
    expect(s).toMatchObject({
      hits: 5,
      misses: 5,
      loads: 5,
      policy: EvictionPolicy.LRU,
      budgetBytes: 12 * GB,
    });
    expect(s.loadTimeSpentMs).toBe(8000 + 1000 + 300 + 2000 + 4000);
    expect(s.loadTimeSavedMs).toBe(8000 + 8000 + 1000 + 300 + 1000);
    expect(m.getModel('A')).toMatchObject({
      accesses: 3,
      resident: false,
      loadedAt: 0,
      lastAccessAt: 50 * S,
    });
  });

  it('the policy can be switched at runtime (the seed sets manager.policy)', () => {
    const c = clock();
    const m = new ModelMemoryManager({ budgetBytes: 8 * GB, now: c.now });
    m.registerModel('old', 'old', 4 * GB);
    m.registerModel('hot', 'hot', 4 * GB);
    m.registerModel('new', 'new', 4 * GB);
    m.accessModel('old'); // t=0, loaded first
    c.t = 1 * S;
    m.accessModel('hot');
    c.t = 2 * S;
    m.accessModel('hot');
    c.t = 2.5 * S;
    m.accessModel('old'); // old is now the most recent
    m.policy = EvictionPolicy.FIFO;
    c.t = 3 * S;
    expect(m.accessModel('new').evicted).toEqual(['old']); // LRU would have taken 'hot'
    expect(() => {
      m.policy = 'MRU' as EvictionPolicy;
    }).toThrow(TypeError);
  });

  it('FIFO ignores accesses; ties break by model id', () => {
    const c = clock();
    const m = new ModelMemoryManager({ budgetBytes: 8 * GB, policy: EvictionPolicy.FIFO, now: c.now });
    m.accessModel('b'); // unregistered: defaultModelBytes (4 GB)
    m.accessModel('a'); // same loadedAt (t=0): id breaks the tie
    c.t = 10 * S;
    m.accessModel('a');
    m.accessModel('b');
    expect(m.accessModel('c').evicted).toEqual(['a']);
    expect(m.getModel('c')?.memoryBytes).toBe(4e9);
  });

  it('TTL takes the longest-expired model first, even when another was used less recently', () => {
    const c = clock();
    const m = new ModelMemoryManager({ budgetBytes: 8 * GB, policy: EvictionPolicy.TTL, now: c.now });
    m.registerModel('long', 'long', 4 * GB, 0, { keepAliveMs: 3600 * S });
    m.registerModel('short', 'short', 4 * GB, 0, { keepAliveMs: 30 * S });
    m.registerModel('x', 'x', 4 * GB);
    m.accessModel('long'); // t=0: expires at 3600 s
    c.t = 100 * S;
    m.accessModel('short'); // t=100: expired at 130 s
    c.t = 200 * S;
    expect(m.accessModel('x').evicted).toEqual(['short']); // LRU would take 'long'
  });
});

describe('ModelMemoryManager: LFU decay', () => {
  function scenario(gapMs: number): string[] {
    const c = clock();
    const m = new ModelMemoryManager({ budgetBytes: 8 * GB, policy: EvictionPolicy.LFU, now: c.now });
    // A burst of 100 accesses to "old" over 100 s...
    for (let i = 0; i < 100; i++) {
      c.t = i * S;
      m.accessModel('old');
    }
    // ...then, gapMs later, three accesses to "recent" within the last minute before "new" arrives.
    for (let i = 0; i < 3; i++) {
      c.t = 100 * S + gapMs + i * 20 * S;
      m.accessModel('recent');
    }
    c.t += 10 * S;
    return m.accessModel('new').evicted;
  }

  it('an old burst fades: after an hour, 3 recent hits beat 100 old ones (half-life 10 min)', () => {
    // old: 100 × 2^(-~3600/600) ≈ 1.6; recent: ≈ 3 × 0.97 ≈ 2.9.
    expect(scenario(3600 * S)).toEqual(['old']);
  });

  it('but a recent burst still counts: a minute later, 100 hits beat 3', () => {
    expect(scenario(60 * S)).toEqual(['recent']);
  });
});

describe('ModelMemoryManager: priority, pinning, sizes', () => {
  it('evicts a lower-priority model before a higher-priority one, whatever the policy says', () => {
    for (const policy of Object.values(EvictionPolicy)) {
      const c = clock();
      const m = new ModelMemoryManager({ budgetBytes: 8 * GB, policy, now: c.now });
      m.registerModel('important', 'important', 4 * GB, 5, { loadMs: 1 });
      m.registerModel('cheap', 'cheap', 4 * GB, 0, { loadMs: 100_000 });
      m.accessModel('important'); // oldest, least used, cheapest to reload: every policy's victim...
      c.t = 10 * S;
      for (let i = 0; i < 5; i++) m.accessModel('cheap');
      c.t = 20 * S;
      expect([policy, m.accessModel('newcomer').evicted]).toEqual([policy, ['cheap']]);
    }
  });

  it('never evicts a pinned model, and evicts nothing when the rest would not make room', () => {
    const c = clock();
    const m = new ModelMemoryManager({ budgetBytes: 10 * GB, now: c.now });
    m.registerModel('p', 'p', 4 * GB);
    m.registerModel('b', 'b', 2 * GB);
    m.registerModel('c', 'c', 2 * GB);
    m.registerModel('big', 'big', 7 * GB);
    m.registerModel('mid', 'mid', 4 * GB);
    m.accessModel('p');
    m.pin('p');
    c.t = 1;
    m.accessModel('b');
    c.t = 2;
    m.accessModel('c');
    // big needs 7 GB: 2 GB free + b + c = 6 GB. Evicting them would be useless: nothing is evicted.
    const err = (() => {
      try {
        m.accessModel('big');
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ModelMemoryBusyError);
    expect((err as ModelMemoryBusyError).code).toBe('CELL0_MODEL_MEMORY_BUSY');
    expect(names(m)).toEqual(['b', 'c', 'p']);
    expect(m.getStats().evictions).toBe(0);
    // mid (4 GB) fits by evicting b only; p is the least recently used but pinned.
    c.t = 3;
    expect(m.accessModel('mid').evicted).toEqual(['b']);
    m.unpin('p');
    c.t = 4;
    expect(m.accessModel('b').evicted).toEqual(['p']);
    expect(m.getModel('p')?.pinned).toBe(false);
    expect(() => m.pin('nope')).toThrow(RangeError);
  });

  it('refuses a model larger than the whole budget, evicting nothing (ModelTooLargeError)', async () => {
    const m = new ModelMemoryManager({ budgetBytes: 10 * GB });
    m.registerModel('a', 'a', 4 * GB);
    m.accessModel('a');
    m.registerModel('huge', 'huge', 11 * GB);
    expect(() => m.accessModel('huge')).toThrow(ModelTooLargeError);
    try {
      m.accessModel('huge');
    } catch (e) {
      expect((e as ModelTooLargeError).code).toBe('CELL0_MODEL_TOO_LARGE');
    }
    expect(names(m)).toEqual(['a']);
    const d = new FakeDriver({ huge: 11 * GB }, clock());
    const m2 = new ModelMemoryManager({ budgetBytes: 10 * GB, driver: d });
    const err = await rejectionOf(m2.acquire('huge'));
    expect(err).toBeInstanceOf(ModelTooLargeError);
    expect(d.calls).toEqual([]);
  });

  it('re-registering updates size, priority, pin and keep-alive and keeps the counters', () => {
    const m = new ModelMemoryManager({ budgetBytes: 10 * GB, estimatedLoadMsPerGb: 500 });
    const first = m.registerModel('a', 'a', 2 * GB);
    expect(first).toMatchObject({ priority: 0, pinned: false, keepAliveMs: 300_000, loadMs: 1000 });
    m.accessModel('a');
    m.accessModel('a');
    const again = m.registerModel('a', 'a-v2', 4 * GB, 3, { pinned: true, keepAliveMs: 5 });
    expect(again).toMatchObject({
      modelName: 'a-v2',
      memoryBytes: 4 * GB,
      priority: 3,
      pinned: true,
      keepAliveMs: 5,
      loadMs: 2000, // still an estimate: follows the size
      accesses: 2,
      resident: true,
    });
    // A copy: changing it changes nothing.
    again.priority = 99;
    expect(m.getModel('a')?.priority).toBe(3);
    expect(m.getStats()).toMatchObject({ hits: 1, misses: 1, usedBytes: 4 * GB });
  });

  it.each([
    ['modelId', () => ['', 'x', GB, 0]],
    ['modelName', () => ['x', '', GB, 0]],
    ['memoryBytes', () => ['x', 'x', 0, 0]],
    ['memoryBytes', () => ['x', 'x', Infinity, 0]],
    ['priority', () => ['x', 'x', GB, NaN]],
  ] as [string, () => [string, string, number, number]][])('registerModel validates %s', (field, args) => {
    const m = new ModelMemoryManager({ budgetBytes: GB });
    expect(() => m.registerModel(...args())).toThrow(new RegExp(field));
    expect(() => m.registerModel(...args())).toThrow(TypeError);
  });
});

describe('ModelMemoryManager: options', () => {
  it.each([
    ['budgetBytes', { budgetBytes: 0 }],
    ['budgetBytes', { budgetBytes: Number.NaN }],
    ['policy', { budgetBytes: GB, policy: 'RANDOM' as EvictionPolicy }],
    ['driver', { budgetBytes: GB, driver: {} as ModelDriver }],
    ['keepAliveMs', { budgetBytes: GB, keepAliveMs: -1 }],
    ['lfuHalfLifeMs', { budgetBytes: GB, lfuHalfLifeMs: 0 }],
    ['estimatedLoadMsPerGb', { budgetBytes: GB, estimatedLoadMsPerGb: -5 }],
    ['defaultModelBytes', { budgetBytes: GB, defaultModelBytes: 0 }],
    ['acquireTimeoutMs', { budgetBytes: GB, acquireTimeoutMs: Infinity }],
    ['now', { budgetBytes: GB, now: 5 as unknown as () => number }],
  ] as [string, ModelMemoryManagerOptions][])('rejects a bad %s with a TypeError naming it', (name, opts) => {
    expect(() => new ModelMemoryManager(opts)).toThrow(TypeError);
    expect(() => new ModelMemoryManager(opts)).toThrow(`"${name}"`);
  });

  it('takes the defaults for options left out or undefined', () => {
    const m = new ModelMemoryManager({ budgetBytes: GB, policy: undefined, keepAliveMs: undefined });
    expect(m.policy).toBe(EvictionPolicy.LRU);
    expect(m.budgetBytes).toBe(GB);
    expect(m.registerModel('a', 'a', GB).keepAliveMs).toBe(300_000);
  });
});

describe('ModelMemoryManager: acquire through a driver', () => {
  const sizes = { a: 4 * GB, b: 4 * GB, c: 4 * GB, d: 4 * GB, small: 2 * GB };

  function setup(extra: Partial<ModelMemoryManagerOptions> = {}) {
    const c = clock(1_000_000);
    const d = new FakeDriver(sizes, c);
    const m = new ModelMemoryManager({ budgetBytes: 8 * GB, driver: d, now: c.now, ...extra });
    return { c, d, m };
  }

  /** Loads and releases the models in order, a second apart. */
  async function warm(m: ModelMemoryManager, c: { t: number }, ...ids: string[]) {
    for (const id of ids) {
      c.t += S;
      (await m.acquire(id)).release();
    }
  }

  it('unloads the victim before loading the new model, and measures the load', async () => {
    const { c, d, m } = setup();
    const loaded: { modelId: string; loadMs: number }[] = [];
    const evicted: { modelId: string; reason: string; policy: EvictionPolicy }[] = [];
    m.on('model:loaded', (e) => loaded.push(e));
    m.on('model:evicted', (e) => evicted.push(e));
    await warm(m, c, 'a', 'b');
    c.t += S;
    const lease = await m.acquire('c');
    expect(d.calls).toEqual(['load:a', 'load:b', 'unload:a', 'load:c']);
    expect(lease).toMatchObject({ modelId: 'c', hit: false, loadMs: 1500 });
    expect(m.getModel('c')).toMatchObject({ resident: true, inUse: 1, loadMs: 1500 });
    expect(evicted).toEqual([
      { modelId: 'a', reason: 'room', policy: EvictionPolicy.LRU, memoryBytes: 4 * GB },
    ]);
    expect(loaded.map((e) => e.modelId)).toEqual(['a', 'b', 'c']);
    lease.release();
    lease.release(); // no-op
    expect(m.getModel('c')?.inUse).toBe(0);
    const hit = await m.acquire('c');
    expect(hit).toMatchObject({ hit: true, loadMs: 0 });
    hit.release();
    expect(m.getStats()).toMatchObject({
      hits: 1,
      misses: 3,
      loads: 3,
      loadTimeSpentMs: 4500,
      loadTimeSavedMs: 1500,
    });
    expect([...d.loaded.keys()].sort()).toEqual(names(m));
    expect(d.maxHeld).toBeLessThanOrEqual(8 * GB);
  });

  it('tryAcquire leases a resident model at once, as acquire would; else undefined, counting nothing', async () => {
    const { c, d, m } = setup();
    // Unknown, then being loaded: not leased, nothing counted, nothing loaded by it.
    expect(m.tryAcquire('a')).toBeUndefined();
    const gate = deferred();
    d.gate = gate.promise;
    const loading = m.acquire('a');
    await tick();
    expect(m.tryAcquire('a')).toBeUndefined();
    gate.resolve();
    (await loading).release();
    expect(m.getStats()).toMatchObject({ hits: 0, misses: 1, loads: 1 });
    // Resident: a hit, held until released (so never evicted meanwhile), its use time touched.
    c.t += S;
    const lease = m.tryAcquire('a');
    expect(lease).toMatchObject({ modelId: 'a', hit: true, loadMs: 0 });
    expect(m.getModel('a')).toMatchObject({ inUse: 1, lastAccessAt: c.t });
    expect(m.getStats()).toMatchObject({ hits: 1, misses: 1, loads: 1, loadTimeSavedMs: 1500 });
    await warm(m, c, 'b');
    // a is the least recently used, but held: b goes to make room for c.
    const cl = await m.acquire('c');
    expect(d.calls).toEqual(['load:a', 'load:b', 'unload:b', 'load:c']);
    lease!.release();
    expect(m.getModel('a')?.inUse).toBe(0);
    cl.release();
    await m.close();
    expect(() => m.tryAcquire('a')).toThrow(ClosedError);
  });

  it('concurrent acquires of one model share one load', async () => {
    const { d, m } = setup();
    const gate = deferred();
    d.gate = gate.promise;
    const p = [m.acquire('a'), m.acquire('a'), m.acquire('a')];
    await tick();
    expect(d.calls).toEqual(['load:a']);
    gate.resolve();
    const leases = await Promise.all(p);
    expect(d.calls).toEqual(['load:a']);
    expect(leases.map((l) => l.hit)).toEqual([false, false, false]);
    expect(m.getModel('a')?.inUse).toBe(3);
    expect(m.getStats().loads).toBe(1);
    for (const l of leases) l.release();
    expect(m.getModel('a')?.inUse).toBe(0);
  });

  it('a failing load reaches every acquire sharing it and leaves the model not resident', async () => {
    const { d, m } = setup();
    const errors: string[] = [];
    m.on('model:error', (e) => errors.push(`${e.op}:${e.modelId}`));
    d.failLoad.add('a');
    const [e1, e2] = await Promise.all([rejectionOf(m.acquire('a')), rejectionOf(m.acquire('a'))]);
    expect((e1 as Error).message).toBe('cannot load a');
    expect(e2).toBe(e1);
    expect(d.calls).toEqual(['load:a']);
    expect(m.getModel('a')).toMatchObject({ resident: false, inUse: 0 });
    expect(m.getStats()).toMatchObject({ loads: 0, usedBytes: 0 });
    expect(errors).toEqual(['load:a']);
    // Nothing is left held: the next try loads again.
    d.failLoad.delete('a');
    (await m.acquire('a')).release();
    expect(d.calls).toEqual(['load:a', 'load:a']);
  });

  it('a failing unload keeps the model resident and tries the next victim', async () => {
    const { c, d, m } = setup();
    const errors: string[] = [];
    m.on('model:error', (e) => errors.push(`${e.op}:${e.modelId}`));
    await warm(m, c, 'a', 'b');
    d.failUnload.add('a');
    c.t += S;
    (await m.acquire('c')).release();
    expect(d.calls.slice(2)).toEqual(['unload:a', 'unload:b', 'load:c']);
    expect(errors).toEqual(['unload:a']);
    expect(names(m)).toEqual(['a', 'c']);
    expect(m.getStats().evictions).toBe(1);
    expect(d.held()).toBeLessThanOrEqual(8 * GB);
    // Now no victim unloads: busy, and c's replacement is never loaded.
    d.failUnload.add('c');
    c.t += S;
    const err = await rejectionOf(m.acquire('d'));
    expect(err).toBeInstanceOf(ModelMemoryBusyError);
    expect((err as ModelMemoryBusyError).retryAfterMs).toBe(1000);
    expect(d.calls).not.toContain('load:d');
    expect(names(m)).toEqual(['a', 'c']);
    expect(m.getModel('d')?.resident).toBe(false);
    expect(d.maxHeld).toBeLessThanOrEqual(8 * GB);
  });

  it('never evicts a model in use; waits for a release when nothing can be evicted', async () => {
    const { c, d, m } = setup();
    await warm(m, c, 'b');
    const a = await m.acquire('a'); // held
    c.t += S;
    // Make the held model the least recently used: LRU would pick it, but it is in use.
    m.accessModel('b');
    const cl = await m.acquire('c');
    expect(d.calls.slice(-2)).toEqual(['unload:b', 'load:c']);
    expect(m.getModel('a')?.resident).toBe(true);
    // a and c both held: d must wait.
    const pd = m.acquire('d');
    expect(await settled(pd)).toBe(false);
    expect(d.calls).not.toContain('load:d');
    expect(d.held()).toBe(8 * GB);
    a.release();
    const dl = await pd;
    expect(dl.hit).toBe(false);
    expect(d.calls.slice(-2)).toEqual(['unload:a', 'load:d']);
    expect(names(m)).toEqual(['c', 'd']);
    cl.release();
    dl.release();
    expect(d.maxHeld).toBeLessThanOrEqual(8 * GB);
  });

  it('waiters are served in FIFO order', async () => {
    const { d, m } = setup();
    const a = await m.acquire('a');
    const b = await m.acquire('b');
    const order: string[] = [];
    const pc = m.acquire('c').then((l) => (order.push('c'), l));
    await tick();
    const pd = m.acquire('d').then((l) => (order.push('d'), l));
    await tick();
    b.release(); // room for one: the first waiter (c) gets it
    const lc = await pc;
    expect(await settled(pd)).toBe(false);
    a.release();
    const ld = await pd;
    expect(order).toEqual(['c', 'd']);
    expect(d.calls.filter((x) => x.startsWith('load:'))).toEqual(['load:a', 'load:b', 'load:c', 'load:d']);
    lc.release();
    ld.release();
    expect(d.maxHeld).toBeLessThanOrEqual(8 * GB);
  });

  it('gives up after acquireTimeoutMs with ModelMemoryBusyError', async () => {
    const { d, m } = setup({ acquireTimeoutMs: 30 });
    const a = await m.acquire('a');
    const b = await m.acquire('b');
    const err = await rejectionOf(m.acquire('c'));
    expect(err).toBeInstanceOf(ModelMemoryBusyError);
    expect((err as ModelMemoryBusyError).code).toBe('CELL0_MODEL_MEMORY_BUSY');
    expect((err as ModelMemoryBusyError).retryAfterMs).toBe(1000);
    // The waiter is gone: a later release does not load c.
    a.release();
    b.release();
    await tick();
    expect(d.calls).toEqual(['load:a', 'load:b']);
  });

  it('an aborted acquire rejects with the signal reason and leaves no waiter behind', async () => {
    const { d, m } = setup();
    const a = await m.acquire('a');
    const b = await m.acquire('b');
    const ac = new AbortController();
    const p = m.acquire('c', { signal: ac.signal });
    await tick();
    ac.abort(new Error('job cancelled'));
    expect(((await rejectionOf(p)) as Error).message).toBe('job cancelled');
    a.release();
    b.release();
    await tick();
    expect(d.calls).not.toContain('load:c');
    // Aborting one of two acquires sharing a load: the other still gets the model, no lease is leaked.
    const gate = deferred();
    d.gate = gate.promise;
    const ac2 = new AbortController();
    const p1 = m.acquire('c', { signal: ac2.signal });
    const p2 = m.acquire('c');
    await tick();
    ac2.abort(new Error('gone'));
    gate.resolve();
    expect(((await rejectionOf(p1)) as Error).message).toBe('gone');
    const l2 = await p2;
    expect(m.getModel('c')?.inUse).toBe(1);
    l2.release();
    // Already aborted: rejects at once.
    await expect(m.acquire('a', { signal: AbortSignal.abort(new Error('early')) })).rejects.toThrow('early');
  });

  it('registers an unknown model with the size the driver gives', async () => {
    const { d, m } = setup();
    (await m.acquire('small')).release();
    expect(m.getModel('small')).toMatchObject({ memoryBytes: 2 * GB, resident: true });
    (await m.acquire('mystery')).release(); // the driver does not know: defaultModelBytes
    expect(m.getModel('mystery')?.memoryBytes).toBe(4 * GB);
    expect(d.maxHeld).toBeLessThanOrEqual(8 * GB);
  });

  it('counts the size the backend reports after a load, evicting more when over budget', async () => {
    const { c, d, m } = setup();
    await warm(m, c, 'small', 'a');
    d.actualSize.set('b', 5 * GB); // declared 4 GB, takes 5 once loaded (context, KV cache)
    c.t += S;
    (await m.acquire('b')).release();
    // b (4 GB declared) fits once small goes (LRU); at its real 5 GB, a must go too.
    expect(d.calls.slice(2)).toEqual(['unload:small', 'load:b', 'unload:a']);
    expect(m.getModel('b')?.memoryBytes).toBe(5 * GB);
    expect(names(m)).toEqual(['b']);
    expect(d.held()).toBe(5 * GB);
  });

  it('reconcile marks models the backend unloaded on its own, and adopts ones it loaded', async () => {
    const { c, d, m } = setup();
    await warm(m, c, 'a', 'b');
    d.loaded.delete('a'); // e.g. the backend's own keep-alive expired
    await m.reconcile();
    expect(m.getModel('a')?.resident).toBe(false);
    expect(m.getStats().externalUnloads).toBe(1);
    // Someone loaded x (3 GB) and c (4 GB) behind our back: 4 + 3 + 4 > 8, so the LRU (b) goes.
    d.loaded.set('x', 3 * GB);
    d.loaded.set('c', 4 * GB);
    c.t += S;
    await m.reconcile();
    expect(m.getModel('x')).toMatchObject({ resident: true, memoryBytes: 3 * GB });
    expect(names(m)).toEqual(['c', 'x']);
    expect(d.calls.slice(-1)).toEqual(['unload:b']);
    expect(d.held()).toBe(7 * GB);
    expect(m.getStats().externalUnloads).toBe(1);
  });

  it('sweepExpired unloads idle models past their keep-alive, not ones in use or pinned', async () => {
    const { c, d, m } = setup({ budgetBytes: 16 * GB, keepAliveMs: 60 * S });
    await warm(m, c, 'a', 'b', 'c');
    m.registerModel('d', 'd', 4 * GB, 0, { keepAliveMs: 3600 * S });
    await warm(m, c, 'd');
    m.pin('c');
    const b = await m.acquire('b');
    c.t += 61 * S;
    expect(await m.sweepExpired()).toEqual(['a']);
    expect(d.calls.slice(-1)).toEqual(['unload:a']);
    expect(names(m)).toEqual(['b', 'c', 'd']);
    expect(m.getStats().evictionsByPolicy).toEqual({ [EvictionPolicy.TTL]: 1 });
    // Released, b is idle from now: not expired yet.
    b.release();
    expect(await m.sweepExpired()).toEqual([]);
    c.t += 61 * S;
    expect(await m.sweepExpired()).toEqual(['b']);
  });

  it('evict() unloads one model, refusing one in use or pinned', async () => {
    const { c, d, m } = setup();
    const evicted: string[] = [];
    m.on('model:evicted', (e) => evicted.push(`${e.modelId}:${e.reason}`));
    await warm(m, c, 'a');
    const b = await m.acquire('b');
    expect(await m.evict('b')).toBe(false);
    m.pin('a');
    expect(await m.evict('a')).toBe(false);
    expect(await m.evict('nope')).toBe(false);
    m.unpin('a');
    expect(await m.evict('a')).toBe(true);
    expect(await m.evict('a')).toBe(false); // not resident any more
    expect(d.calls.slice(-1)).toEqual(['unload:a']);
    expect(evicted).toEqual(['a:manual']);
    expect(m.getStats()).toMatchObject({ evictions: 1, evictionsByPolicy: {} });
    b.release();
  });

  it('close() rejects waiters and later acquires with ClosedError, is idempotent, and unloads nothing', async () => {
    const { d, m } = setup();
    const a = await m.acquire('a');
    await m.acquire('b');
    const waiting = m.acquire('c');
    await tick();
    await Promise.all([m.close(), m.close()]);
    expect(await rejectionOf(waiting)).toBeInstanceOf(ClosedError);
    expect(await rejectionOf(m.acquire('a'))).toBeInstanceOf(ClosedError);
    expect(() => m.accessModel('a')).toThrow(ClosedError);
    await m.close();
    a.release();
    await tick();
    expect(d.calls).toEqual(['load:a', 'load:b']);
    expect(d.held()).toBe(8 * GB);
  });
});
