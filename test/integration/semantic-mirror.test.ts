import {
  CacheMatchConfidence,
  SemanticCache,
  type SemanticCacheOptions,
  SemanticLocalState,
  type SemanticScope,
} from '../../shared/cache/semantic';
import { buildCaches } from '../../shared/cache/from-config';
import { LSH_BANDS, LSH_ROWS } from '../../shared/cache/semantic/lsh';
import { loadConfig } from '../../shared/config/config';
import { keyBase, ScopeKeys } from '../../shared/cache/semantic/scope';
import { BandMirror } from '../../shared/cache/semantic/semantic-mirror';
import { type RedisConnection } from '../../shared/redis/cluster';
import { waitUntilReady } from '../../shared/redis/connection';
import { RedisClient } from '../../shared/redis/redis-client';
import {
  closeTestClients,
  keysMatching,
  openTestClients,
  testRedisUrl,
  uniquePrefix,
} from '../helpers/redis';
import { until } from '../helpers/wait';

/**
 * The band buckets live in each process's mirror (semantic-mirror.ts), kept from the scope's band stream:
 * Redis keeps and reads no bucket, a store made by one process is found by another's next lookup, a mirror
 * that fell behind the stream is rebuilt, and a mirror kept from the stream holds what one built from Redis
 * holds, across evictions, removals, stores again, slot reuse and generations.
 */
const SCOPE: SemanticScope = { model: 'llama3.1:8b', params: { max_tokens: 8 } };
const LOW = { minConfidence: CacheMatchConfidence.LOW };

/** A stored prompt and a paraphrase that the cache answers with it (not exact: another normal form). */
const stored = (i: number): string => `How do I reset my password for account ${i}?`;
const asked = (i: number): string => `how can i reset my password for account ${i}`;

describe('SemanticCache band mirrors (on Redis)', () => {
  const prefix = uniquePrefix('semmir');
  let raw: RedisConnection;
  let client: RedisClient;
  /** A second process's connection. */
  let other: RedisClient;
  let n = 0;

  /** Two processes' caches of one prefix (the same scopes, each with its own mirror). */
  const pair = (
    opts: Partial<SemanticCacheOptions> = {},
  ): { a: SemanticCache<string>; b: SemanticCache<string>; keys: ScopeKeys } => {
    const p = `{${prefix.replace(/[{}]/g, '')}-${++n}}`;
    const a = new SemanticCache<string>({ ...opts, redis: client, prefix: p });
    const b = new SemanticCache<string>({ ...opts, redis: other, prefix: p });
    const keys = new ScopeKeys(keyBase(p), a.entryIdOf('x', SCOPE).split(':')[0]!);
    return { a, b, keys };
  };
  const mirrorOf = (cache: SemanticCache<string>): BandMirror =>
    (cache as unknown as { mirror: BandMirror }).mirror;
  /** The scope's buckets as a process that starts now sees them (a mirror built from Redis). */
  const fresh = async (keys: ScopeKeys): Promise<string[]> => {
    const m = new BandMirror(client, LSH_BANDS, LSH_ROWS);
    await m.build(keys);
    return m.contents(keys);
  };

  beforeAll(async () => {
    ({ raw, client } = await openTestClients());
    other = new RedisClient({ url: testRedisUrl() });
    await waitUntilReady(other.connection, 10_000);
  });

  afterAll(async () => {
    await other.close();
    await closeTestClients({ raw, client }, `${prefix.replace(/[{}]/g, '')}*`);
  });

  it('keeps no band bucket in Redis: a lookup call returns stream entries, the mirror ranks', async () => {
    const { a, b, keys } = pair();
    for (let i = 0; i < 30; i++) await b.set(stored(i), `answer ${i}`, SCOPE);
    expect(await keysMatching(raw, `${keys.bandPrefix}*`)).toEqual([]);
    expect(await a.get('something else', SCOPE, LOW)).toBeUndefined(); // its scripts defined, its mirror built
    const conn = client.connection as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const spy = jest.spyOn(conn, 'cell0SemanticLookupBuffer');
    try {
      for (let i = 0; i < 30; i += 7)
        expect(await a.get(asked(i), SCOPE, LOW)).toMatchObject({ value: `answer ${i}` });
      expect(spy).toHaveBeenCalled();
      for (const result of spy.mock.results) {
        const reply = (await result.value) as (Buffer | number | null)[];
        // per lookup: 0, generations, stream entries (text lines, no packed codes), '1' (mirrored)
        for (let o = 0; o < reply.length; o += 4) {
          expect(Number(reply[o])).toBe(0);
          expect(String(reply[o + 3])).toBe('1');
          const lines = String(reply[o + 2] ?? '');
          if (lines.length > 0) expect(lines).toMatch(/^(#\d+-\d+|[+-]\d+ h\d+\.\d+ [0-9a-z:,]+)(\n|$)/);
        }
      }
    } finally {
      spy.mockRestore();
    }
    expect(mirrorOf(a).rebuilds).toBe(1);
    expect(a.getStats().errors).toBe(0);
  });

  it("finds another process's store on its next lookup (read-your-writes), each one", async () => {
    const { a, b } = pair();
    expect(await a.get(asked(0), SCOPE, LOW)).toBeUndefined(); // a's mirror of the scope: built
    for (let i = 1; i <= 25; i++) {
      await b.set(stored(i), `answer ${i}`, SCOPE);
      expect(await a.get(asked(i), SCOPE, LOW)).toMatchObject({
        value: `answer ${i}`,
        confidence: expect.not.stringMatching(/exact/),
      });
    }
    expect(mirrorOf(a).rebuilds).toBe(1); // kept from the stream, not rebuilt
  });

  it('rebuilds a mirror that fell behind the stream (trimmed, or too far behind), and still finds every store', async () => {
    const { a, b, keys } = pair();
    await b.set(stored(0), 'answer 0', SCOPE);
    expect(await a.get(asked(0), SCOPE, LOW)).toMatchObject({ value: 'answer 0' });
    expect(mirrorOf(a).rebuilds).toBe(1);
    // the stream loses the mirror's last entry
    await b.set(stored(1), 'answer 1', SCOPE);
    await raw.xtrim(keys.stream, 'MAXLEN', 0);
    await b.set(stored(2), 'answer 2', SCOPE);
    expect(await a.get(asked(1), SCOPE, LOW)).toMatchObject({ value: 'answer 1' });
    expect(await a.get(asked(2), SCOPE, LOW)).toMatchObject({ value: 'answer 2' });
    expect(mirrorOf(a).rebuilds).toBe(2);
    // more stream entries since the mirror's last than a lookup call returns: rebuilt too
    for (let i = 3; i < 3 + 520; i++)
      await b.set(`unrelated prompt number ${i} about ${i * 7919}`, 'x', SCOPE);
    await b.set(stored(600), 'answer 600', SCOPE);
    expect(await a.get(asked(600), SCOPE, LOW)).toMatchObject({ value: 'answer 600' });
    expect(mirrorOf(a).rebuilds).toBe(3);
    expect(a.getStats().errors).toBe(0);
  });

  it("applies a process's own stores from their replies: its lookups read none back, and its mirror stays equal to one built from Redis", async () => {
    const { a, b, keys } = pair({ maxEntriesPerScope: 12 });
    expect(await a.get(asked(0), SCOPE, LOW)).toBeUndefined(); // a's mirror of the scope: built
    const conn = client.connection as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const spy = jest.spyOn(conn, 'cell0SemanticLookupBuffer');
    /** The stream entries (text) the lookup calls since the last look returned, and the calls. */
    const readBack = async (): Promise<{ calls: number; text: string }> => {
      let text = '';
      for (const result of spy.mock.results) {
        const reply = (await result.value) as (Buffer | number | null)[];
        for (let o = 0; o < reply.length; o += 4) text += String(reply[o + 2] ?? '');
      }
      const calls = spy.mock.calls.length;
      spy.mockClear();
      return { calls, text };
    };
    try {
      // its own stores only (12 of them: the scope's bound, evictions once full): each found by the
      // next lookup, from the mirror the store's reply caught up; no lookup reads a stream entry back
      for (let i = 0; i < 16; i++) {
        await a.set(stored(i), `answer ${i}`, SCOPE, { ttlSeconds: i % 2 === 0 ? 30 : 150 });
        if (i % 5 === 4) await a.set(stored(i - 2), `again ${i - 2}`, SCOPE); // a new slot
        expect(await a.get(asked(i), SCOPE, LOW)).toMatchObject({ value: `answer ${i}` });
      }
      const own = await readBack();
      expect(own.calls).toBeGreaterThanOrEqual(16);
      expect(own.text).toBe('');
      expect(mirrorOf(a).contents(keys)).toEqual(await fresh(keys));
      // another process's store between: a's next store does not follow its mirror, so the lookup after
      // it reads both entries from the stream, and the store after that is applied from its reply again
      await b.set(stored(20), 'answer 20', SCOPE);
      await a.set(stored(21), 'answer 21', SCOPE);
      expect(await a.get(asked(20), SCOPE, LOW)).toMatchObject({ value: 'answer 20' });
      expect((await readBack()).text).toMatch(/^#\d+-\d+\n[+-]\d+ h/);
      await a.set(stored(22), 'answer 22', SCOPE);
      expect(await a.get(asked(22), SCOPE, LOW)).toMatchObject({ value: 'answer 22' });
      expect(await a.get(asked(21), SCOPE, LOW)).toMatchObject({ value: 'answer 21' });
      expect((await readBack()).text).toBe('');
    } finally {
      spy.mockRestore();
    }
    expect(mirrorOf(a).contents(keys)).toEqual(await fresh(keys));
    expect(mirrorOf(a).rebuilds).toBe(1);
    expect(a.getStats().errors).toBe(0);
  });

  it("applies its own stores' entries also when several calls left from one mirror position, in any order of replies: its lookups read none back", async () => {
    // one call per store: stores made together leave from the same position, each call's entry follows
    // the one before it in the stream, not the position sent
    const { a, keys } = pair({ writeBatching: { maxBatchSize: 1 } });
    expect(await a.get(asked(0), SCOPE, LOW)).toBeUndefined(); // a's mirror of the scope: built
    const conn = client.connection as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const spy = jest.spyOn(conn, 'cell0SemanticLookupBuffer');
    try {
      for (let round = 0; round < 3; round++) {
        const ids = [0, 1, 2, 3].map((k) => 10 * round + k);
        await Promise.all(ids.map((i) => a.set(stored(i), `answer ${i}`, SCOPE)));
        for (const i of ids)
          expect(await a.get(asked(i), SCOPE, LOW)).toMatchObject({ value: `answer ${i}` });
      }
      expect(spy.mock.calls.length).toBeGreaterThanOrEqual(12);
      for (const result of spy.mock.results) {
        const reply = (await result.value) as (Buffer | number | null)[];
        for (let o = 0; o < reply.length; o += 4) expect(String(reply[o + 2] ?? '')).toBe('');
      }
    } finally {
      spy.mockRestore();
    }
    const { ownApplied, ownLater } = mirrorOf(a).stats;
    expect(ownApplied + ownLater).toBe(12);
    expect(mirrorOf(a).contents(keys)).toEqual(await fresh(keys));
    expect(mirrorOf(a).rebuilds).toBe(1);
    expect(a.getStats().errors).toBe(0);
  });

  it("shares a process's mirror and kept records between its caches (an API's and a worker's): the worker's stores are read back by neither the API's lookups nor its record reads", async () => {
    const p = `{${prefix.replace(/[{}]/g, '')}-${++n}}`;
    const localState = new SemanticLocalState();
    // the API's cache looks up, the worker's (its own connection) stores
    const api = new SemanticCache<string>({ redis: client, prefix: p, localState });
    const worker = new SemanticCache<string>({ redis: other, prefix: p, localState });
    const keys = new ScopeKeys(keyBase(p), api.entryIdOf('x', SCOPE).split(':')[0]!);
    expect(await api.get(asked(0), SCOPE, LOW)).toBeUndefined(); // the mirror of the scope: built
    const conn = client.connection as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const lookups = jest.spyOn(conn, 'cell0SemanticLookupBuffer');
    const records = jest.spyOn(conn, 'hmgetBuffer');
    try {
      for (let i = 0; i < 12; i++) {
        await worker.set(stored(i), `answer ${i}`, SCOPE);
        expect(await api.get(asked(i), SCOPE, LOW)).toMatchObject({ value: `answer ${i}` });
      }
      expect(lookups.mock.calls.length).toBeGreaterThanOrEqual(12);
      for (const result of lookups.mock.results) {
        const reply = (await result.value) as (Buffer | number | null)[];
        for (let o = 0; o < reply.length; o += 4) expect(String(reply[o + 2] ?? '')).toBe('');
      }
      // every candidate's record was one the worker wrote: kept, not read
      expect(records).not.toHaveBeenCalled();
    } finally {
      lookups.mockRestore();
      records.mockRestore();
    }
    expect(mirrorOf(api)).toBe(mirrorOf(worker));
    expect(mirrorOf(api).contents(keys)).toEqual(await fresh(keys));
    expect(mirrorOf(api).rebuilds).toBe(1);
    expect(api.getStats().errors + worker.getStats().errors).toBe(0);
    // caches of another layout cannot share it
    expect(() => new SemanticCache<string>({ redis: client, prefix: '{other}', localState })).toThrow(
      /another layout/,
    );
  });

  it('gives the caches that buildCaches makes for one Redis and prefix (an API and a worker) one local state', () => {
    const config = (queuePrefix: string) =>
      loadConfig({ REDIS_URL: testRedisUrl(), CELL0_QUEUE_PREFIX: queuePrefix });
    const p = `{semmircfg${++n}${Date.now()}}`;
    const [api, worker, elsewhere] = [
      buildCaches(config(p), client),
      buildCaches(config(p), other),
      buildCaches(config(`{x${p.slice(1)}`), client),
    ];
    const mirror = (c: typeof api) => mirrorOf(c!.inference as unknown as SemanticCache<string>);
    expect(mirror(api)).toBe(mirror(worker));
    expect(mirror(elsewhere)).not.toBe(mirror(api));
  });

  it('buildCaches at CELL0_SEMANTIC_MIN_CONFIDENCE=exact stores for the exact key only; at high it indexes', async () => {
    const vecKeys: Record<string, string[]> = {};
    for (const level of ['exact', 'high']) {
      const p = `{${prefix.replace(/[{}]/g, '')}-cfg${++n}}`;
      const config = loadConfig({
        REDIS_URL: testRedisUrl(),
        CELL0_QUEUE_PREFIX: p,
        CELL0_SEMANTIC_MIN_CONFIDENCE: level,
      });
      const caches = buildCaches(config, client)!;
      expect(caches.minConfidence).toBe(level);
      const cache = caches.inference as unknown as SemanticCache<string>;
      await cache.set(stored(1), 'answer 1', SCOPE);
      expect(await cache.get(stored(1), SCOPE)).toMatchObject({ confidence: 'exact', value: 'answer 1' });
      vecKeys[level] = (await keysMatching(raw, `${keyBase(p)}:{*`)).filter((k) => k.endsWith(':vec'));
    }
    expect(vecKeys.high).toHaveLength(1);
    expect(vecKeys.exact).toEqual([]);
  });

  it('keeps a mirror equal to one built from Redis across evictions, removals, stores again, slot reuse and generations', async () => {
    const { a, b, keys } = pair({ maxEntriesPerScope: 12 });
    expect(await a.get(asked(0), SCOPE, LOW)).toBeUndefined(); // built while the scope is empty
    const ttls = [30, 70, 150]; // three generations (TTL classes)
    for (let i = 0; i < 30; i++) {
      await b.set(stored(i), `answer ${i}`, SCOPE, { ttlSeconds: ttls[i % 3]! });
      if (i % 5 === 4) await b.set(stored(i - 2), `again ${i - 2}`, SCOPE, { ttlSeconds: 70 }); // a new slot
      if (i % 7 === 6) await b.reportFalseHit(b.entryIdOf(stored(i - 1), SCOPE));
      if (i % 4 === 0) await a.get(`something else ${i}`, SCOPE, LOW);
    }
    // entries that expire give their slots to the free list at once: later stores take them again
    for (let i = 100; i < 104; i++) await b.set(stored(i), `short ${i}`, SCOPE, { ttlSeconds: 0.2 });
    await until(
      async () =>
        (await raw.exists(
          ...[100, 101, 102, 103].map((i) => keys.entry(b.entryIdOf(stored(i), SCOPE).split(':')[1]!)),
        )) === 0,
      10_000,
      'the short-lived entries to expire',
    );
    // the next store removes them (their slots to the free list), the ones after take those slots
    await b.set(stored(200), 'answer 200', SCOPE, { ttlSeconds: 30 });
    const freed = await raw.llen(keys.free);
    expect(freed).toBeGreaterThan(0);
    for (let i = 201; i < 206; i++) await b.set(stored(i), `answer ${i}`, SCOPE, { ttlSeconds: 30 });
    expect(await raw.llen(keys.free)).toBeLessThan(freed);
    // a's lookup catches its mirror up: the same buckets as a mirror built from Redis now
    expect(await a.get(asked(205), SCOPE, LOW)).toMatchObject({ value: 'answer 205' });
    const kept = mirrorOf(a).contents(keys);
    expect(kept).toEqual(await fresh(keys));
    // every live indexed entry, 20 bands each
    expect(kept.length).toBe(20 * (await raw.hlen(keys.vec)));
    expect(await raw.zcard(keys.lru)).toBeLessThanOrEqual(12);
    expect(mirrorOf(a).rebuilds).toBe(1);
  });
});
