import { until } from '../helpers/wait';
import { once } from 'node:events';
import { type RedisConnection } from '../../shared/redis/cluster';
import { DEFAULT_SEARCH_TTLS, SearchCache, normalizeQuery } from '../../shared/cache/search-cache';
import { SearchProvider, SearchType } from '../../shared/queues/enums';
import { type SearchResult } from '../../shared/queues/results';
import { RedisClient } from '../../shared/redis/redis-client';
import { closeRedis, waitUntilReady } from '../../shared/redis/connection';
import { startPrivateRedis } from '../helpers/redis-server';
import { deleteMatching, testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';

const result = (query: string): SearchResult => ({
  query,
  provider: 'local',
  type: 'web',
  total: 1,
  hits: [{ title: 't', url: 'https://example.org/', snippet: 's', source: 'x', rank: 1, score: 1 }],
  tookMs: 1,
  servedBy: 'test',
});

const req = (
  query: string,
  extra: Partial<{ type: SearchType; namespace: string; offset: number }> = {},
) => ({
  query,
  provider: SearchProvider.LOCAL,
  type: extra.type ?? SearchType.WEB,
  limit: 10,
  offset: extra.offset ?? 0,
  ...(extra.namespace !== undefined ? { namespace: extra.namespace } : {}),
});

describe('normalizeQuery', () => {
  it('folds case, whitespace and punctuation, but keeps what carries meaning', () => {
    expect(normalizeQuery('  What is   REDIS?! ')).toBe('what is redis');
    expect(normalizeQuery('what is redis')).toBe('what is redis');
    expect(normalizeQuery('c++ vs c#')).toBe('c++ vs c#');
    expect(normalizeQuery('c vs c')).not.toBe(normalizeQuery('c++ vs c#'));
    expect(normalizeQuery('node.js streams.')).toBe('node.js streams');
    expect(normalizeQuery('top 10 films of 1999')).not.toBe(normalizeQuery('top 5 films of 1999'));
    expect(normalizeQuery('Ｒｅｄｉｓ')).toBe('redis');
  });
});

describe('SearchCache', () => {
  const prefix = uniquePrefix('scache');
  let client: RedisClient;
  let raw: RedisConnection;
  beforeAll(async () => {
    client = new RedisClient({ url: testRedisUrl() });
    await waitUntilReady(client.connection, 5000);
    raw = testRedisConnection('test:raw');
  });
  afterAll(async () => {
    await deleteMatching(raw, `${prefix}*`);
    await closeRedis(raw);
    await client.close();
  });

  it('answers the same search (after normalisation) from the cache, and counts hits and misses', async () => {
    const cache = new SearchCache({ redis: client, prefix });
    expect(await cache.get(req('What is Redis?'))).toBeUndefined();
    await cache.set(req('What is Redis?'), result('What is Redis?'));
    expect(await cache.get(req('  what is   redis '))).toEqual(result('What is Redis?'));
    expect(await cache.get(req('what is redis', { offset: 10 }))).toBeUndefined();
    expect(await cache.get(req('what is redis', { type: SearchType.NEWS }))).toBeUndefined();
    expect(await cache.get(req('what is redis', { namespace: 'tenant-b' }))).toBeUndefined();
    expect(cache.getStats()).toMatchObject({ hits: 1, misses: 4, sets: 1, errors: 0, hitRate: 0.2 });
    expect(await cache.size()).toBe(1);
  });

  it('keeps entries for their type’s lifetime: defaults, overrides and setTtl', async () => {
    const cache = new SearchCache({ redis: client, prefix, ttls: { [SearchType.WEB]: 120 } });
    expect(cache.ttlOf(SearchType.NEWS)).toBe(DEFAULT_SEARCH_TTLS.news);
    expect(DEFAULT_SEARCH_TTLS.news).toBeLessThan(DEFAULT_SEARCH_TTLS.academic);
    cache.setTtl(SearchType.NEWS, 1);
    await cache.set(req('ttl news', { type: SearchType.NEWS }), result('ttl news'));
    await cache.set(req('ttl web'), result('ttl web'));
    expect(await raw.ttl(cache.keyOf(req('ttl web')))).toBeGreaterThan(100);
    expect(await raw.ttl(cache.keyOf(req('ttl web')))).toBeLessThanOrEqual(120);
    expect(await cache.get(req('ttl news', { type: SearchType.NEWS }))).toBeDefined();
    await new Promise((r) => setTimeout(r, 1300));
    expect(await cache.get(req('ttl news', { type: SearchType.NEWS }))).toBeUndefined();
    expect(() => cache.setTtl(SearchType.WEB, 0)).toThrow(/>= 1/);
  });

  it('serves repeated hits from the in-process tier and never keeps misses there', async () => {
    const cache = new SearchCache({ redis: client, prefix, l1: { maxsize: 100, ttlSeconds: 30 } });
    const other = new SearchCache({ redis: client, prefix });
    expect(await cache.get(req('l1 query'))).toBeUndefined();
    await other.set(req('l1 query'), result('l1 query')); // written by another process
    expect(await cache.get(req('l1 query'))).toBeDefined(); // the miss was not remembered
    expect(await cache.get(req('l1 query'))).toBeDefined();
    expect(cache.getStats()).toMatchObject({ hits: 2, l1Hits: 1, misses: 1 });
  });

  it('degrades to a miss when Redis is away, never throws, and sends nothing while the breaker is open', async () => {
    const server = await startPrivateRedis();
    const down = new RedisClient({ url: server.url, breakerThreshold: 2, breakerResetMs: 60_000 });
    await waitUntilReady(down.connection, 5000);
    try {
      const cache = new SearchCache({ redis: down, prefix });
      await cache.set(req('outage'), result('outage'));
      expect(await cache.get(req('outage'))).toBeDefined();
      const closed = once(down.connection, 'close');
      await server.stop();
      await closed;
      // The first failures open the breaker; every call answers a miss, none throws.
      for (let i = 0; i < 3; i++) expect(await cache.get(req('outage'))).toBeUndefined();
      expect(down.breaker.state).toBe('open');
      // Fast by construction, not by a stopwatch (a busy host makes any call slow): with the breaker open, a
      // lookup is refused before anything is sent: no command, no wait for a connection or a timeout.
      const before = down.breaker.getMetrics();
      for (let i = 0; i < 10; i++) expect(await cache.get(req('outage'))).toBeUndefined();
      await expect(cache.set(req('outage 2'), result('outage 2'))).resolves.toBeUndefined();
      const after = down.breaker.getMetrics();
      const attempted = (m: typeof before) => m.successes + m.failures + m.timeouts;
      expect(attempted(after)).toBe(attempted(before));
      expect(after.rejections - before.rejections).toBeGreaterThanOrEqual(11);
      expect(cache.getStats().errors).toBeGreaterThanOrEqual(14);
      // Bring Redis back before closing: ioredis lingers ~2 s after a refused reconnect otherwise.
      await server.start();
      await until(() => down.connection.status === 'ready', 10_000, 'the client to reconnect');
    } finally {
      await down.close();
      await server.destroy();
    }
  });
});
