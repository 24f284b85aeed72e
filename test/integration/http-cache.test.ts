import { once } from 'node:events';
import { createServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import express from 'express';
import { CacheStrategy, ResponseCache, type CacheConfig } from '../../shared/cache/http';
import { RedisClient } from '../../shared/redis/redis-client';
import { listenLocal } from '../helpers/listen';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server';
import { until } from '../helpers/wait';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  ms: number;
}

/** An express app with the cache in front of a set of counting routes, on a free port. */
interface Harness {
  url: string;
  cache: ResponseCache;
  redis: RedisClient;
  prefix: string;
  /** Handler runs per route name. */
  calls: Map<string, number>;
  /**
   * Holds every later run of the /short handler until the returned function is called: a refresh then
   * cannot finish while a test's requests are still arriving, however slowly a busy host sends them.
   */
  holdShort(): () => void;
  req(path: string, init?: { method?: string; headers?: Record<string, string> }): Promise<Reply>;
  close(): Promise<void>;
}

const harnesses: Harness[] = [];

async function setup(
  config: CacheConfig = {},
  opts: { redisUrl?: string; breakerResetMs?: number; configure?: (cache: ResponseCache) => void } = {},
): Promise<Harness> {
  const prefix = uniquePrefix('httpc');
  const redis = new RedisClient({
    url: opts.redisUrl ?? testRedisUrl(),
    breakerResetMs: opts.breakerResetMs ?? 60_000,
  });
  const cache = new ResponseCache({ redis, config: { prefix, maxBodySizeBytes: 4096, ...config } });
  const calls = new Map<string, number>();
  const count = (name: string) => {
    const n = (calls.get(name) ?? 0) + 1;
    calls.set(name, n);
    return n;
  };
  cache.configureEndpoint('/items/:id', CacheStrategy.ALWAYS, 60);
  cache.configureEndpoint('/vary', CacheStrategy.ALWAYS, 60);
  cache.configureEndpoint('/tenant', CacheStrategy.ALWAYS, 60, { vary: ['X-Tenant'] });
  cache.configureEndpoint('/status/:code', CacheStrategy.ALWAYS, 60);
  cache.configureEndpoint('/big', CacheStrategy.ALWAYS, 60);
  cache.configureEndpoint('/cookie', CacheStrategy.ALWAYS, 60);
  cache.configureEndpoint('/me', CacheStrategy.ALWAYS, 60, { perUser: true });
  cache.configureEndpoint('/cc', CacheStrategy.CACHE_CONTROL, 60);
  cache.configureEndpoint('/always-cc', CacheStrategy.ALWAYS, 60);
  cache.configureEndpoint('/never', CacheStrategy.NEVER);
  cache.configureEndpoint('/short', CacheStrategy.ALWAYS, 1);
  cache.configureEndpoint('/v1/nested/:id', CacheStrategy.ALWAYS, 60);
  opts.configure?.(cache);

  const app = express();
  app.set('etag', false);
  let reqId = 0;
  // Outer middleware: a per-request header the cache must neither store nor replay.
  app.use((_req, res, next) => {
    res.setHeader('X-Request-Id', `r${++reqId}`);
    next();
  });
  app.use(cache.middleware());
  app.get('/items/:id', (req, res) => {
    count(`items/${req.params.id}`);
    res.setHeader('X-Custom', 'yes');
    res.json({ id: req.params.id, query: req.query, pad: 'x'.repeat(200) });
  });
  app.post('/items/:id', (req, res) => {
    count(`post/${req.params.id}`);
    res.json({ posted: req.params.id });
  });
  app.get('/vary', (req, res) => {
    count('vary');
    res.setHeader('Vary', 'Accept-Language');
    res.json({ lang: req.headers['accept-language'] ?? 'none' });
  });
  app.get('/tenant', (req, res) => {
    count('tenant');
    res.json({ tenant: req.headers['x-tenant'] ?? 'none' });
  });
  app.get('/status/:code', (req, res) => {
    count(`status/${req.params.code}`);
    res.status(Number(req.params.code)).json({ code: req.params.code });
  });
  app.get('/big', (req, res) => {
    count('big');
    const n = Number(req.query.n ?? 10_000);
    res.setHeader('Content-Type', 'text/plain');
    if (req.query.stream) {
      // Several writes: the cache must stop buffering at its limit and stream the rest.
      for (let i = 0; i < n; i += 1000) res.write('y'.repeat(Math.min(1000, n - i)));
      res.end();
    } else {
      res.send('z'.repeat(n));
    }
  });
  app.get('/cookie', (_req, res) => {
    count('cookie');
    res.cookie('session', 'abc');
    res.json({ ok: true });
  });
  app.get('/me', (req, res) => {
    count(`me/${req.headers.authorization ?? 'anon'}`);
    res.setHeader('Cache-Control', 'private, max-age=60');
    res.json({ user: req.headers.authorization ?? 'anon' });
  });
  app.get('/cc', (req, res) => {
    count(`cc/${String(req.query.cc)}`);
    if (typeof req.query.cc === 'string') res.setHeader('Cache-Control', req.query.cc);
    res.json({ cc: req.query.cc ?? null });
  });
  app.get('/always-cc', (_req, res) => {
    count('always-cc');
    res.setHeader('Cache-Control', 'no-store, max-age=0');
    res.json({ ok: true });
  });
  app.get('/never', (_req, res) => {
    count('never');
    res.json({ ok: true });
  });
  let generation = 0;
  let gate: Promise<void> | undefined;
  app.get('/short', async (req, res) => {
    count('short');
    const gen = ++generation;
    await sleep(Number(req.query.ms ?? 0));
    await gate;
    res.json({ gen });
  });
  app.get('/plain', (_req, res) => {
    count('plain');
    res.json({ ok: true });
  });
  const v1 = express.Router();
  v1.get('/nested/:id', (req, res) => {
    count(`nested/${req.params.id}`);
    res.json({ nested: req.params.id });
  });
  app.use('/v1', v1);

  const server = listenLocal(createServer(app));
  const { url, close } = await server;
  const h: Harness = {
    url,
    cache,
    redis,
    prefix,
    calls,
    holdShort: () => {
      let release!: () => void;
      gate = new Promise<void>((r) => (release = r));
      return () => {
        gate = undefined;
        release();
      };
    },
    req: async (path, init = {}) => {
      const t0 = performance.now();
      const res = await fetch(url + path, { method: init.method ?? 'GET', headers: init.headers ?? {} });
      const text = await res.text();
      return { status: res.status, headers: res.headers, text, ms: performance.now() - t0 };
    },
    close: async () => {
      await cache.whenIdle();
      await close();
      // Clean every key of this prefix.
      if (redis.connection.status === 'ready') {
        const keys = await redis.connection.keys(`${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`);
        if (keys.length) await redis.connection.del(...keys);
      }
      await redis.close();
    },
  };
  harnesses.push(h);
  await until(() => redis.connection.status === 'ready', 10_000, 'redis ready');
  return h;
}

afterEach(async () => {
  while (harnesses.length) await harnesses.pop()!.close();
});

/** GET twice with the store of the first settled in between. */
async function twice(
  h: Harness,
  path: string,
  headers: Record<string, string> = {},
): Promise<[Reply, Reply]> {
  const a = await h.req(path, { headers });
  await h.cache.whenIdle();
  const b = await h.req(path, { headers });
  return [a, b];
}

describe('ResponseCache (real Redis, real express app)', () => {
  it('MISS then HIT with the same body and headers, Age, a strong ETag; per-request headers not replayed', async () => {
    const h = await setup();
    const [a, b] = await twice(h, '/items/1');
    expect(a.status).toBe(200);
    expect(a.headers.get('x-cache')).toBe('MISS');
    expect(a.headers.get('age')).toBe('0');
    expect(a.headers.get('etag')).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect(b.status).toBe(200);
    expect(b.headers.get('x-cache')).toBe('HIT');
    expect(Number(b.headers.get('age'))).toBeGreaterThanOrEqual(0);
    expect(b.text).toBe(a.text);
    for (const name of ['etag', 'content-type', 'content-length', 'x-custom'])
      expect(b.headers.get(name)).toBe(a.headers.get(name));
    expect(a.headers.get('x-request-id')).not.toBe(b.headers.get('x-request-id'));
    expect(h.calls.get('items/1')).toBe(1);

    // Age grows.
    await sleep(1100);
    const c = await h.req('/items/1');
    expect(c.headers.get('x-cache')).toBe('HIT');
    expect(Number(c.headers.get('age'))).toBeGreaterThanOrEqual(1);
  });

  it('If-None-Match matching the ETag gives 304 without a body, on a hit and on a miss', async () => {
    const h = await setup();
    const first = await h.req('/items/2');
    await h.cache.whenIdle();
    const etag = first.headers.get('etag')!;

    const hit = await h.req('/items/2', { headers: { 'if-none-match': etag } });
    expect(hit.status).toBe(304);
    expect(hit.text).toBe('');
    expect(hit.headers.get('x-cache')).toBe('HIT');
    expect(hit.headers.get('etag')).toBe(etag);
    // Weak comparison, lists.
    const weak = await h.req('/items/2', { headers: { 'if-none-match': `"nope", W/${etag}` } });
    expect(weak.status).toBe(304);
    const other = await h.req('/items/2', { headers: { 'if-none-match': '"nope"' } });
    expect(other.status).toBe(200);
    expect(other.text).toBe(first.text);

    expect(await h.cache.invalidate('/items/2')).toBe(1);
    const miss = await h.req('/items/2', { headers: { 'if-none-match': etag } });
    expect(miss.status).toBe(304);
    expect(miss.text).toBe('');
    expect(miss.headers.get('x-cache')).toBe('MISS');
    expect(h.calls.get('items/2')).toBe(2);
    await h.cache.whenIdle();
    // The 304 miss still stored the full answer.
    const after = await h.req('/items/2');
    expect(after.headers.get('x-cache')).toBe('HIT');
    expect(after.text).toBe(first.text);
    expect(h.cache.getStats().notModified).toBe(3);
  });

  it('keys on the sorted query: ?a=1&b=2 and ?b=2&a=1 share an entry, ?a=1 does not', async () => {
    const h = await setup();
    await h.req('/items/3?a=1&b=2');
    await h.cache.whenIdle();
    const swapped = await h.req('/items/3?b=2&a=1');
    expect(swapped.headers.get('x-cache')).toBe('HIT');
    const fewer = await h.req('/items/3?a=1');
    expect(fewer.headers.get('x-cache')).toBe('MISS');
    expect(JSON.parse(fewer.text)).toMatchObject({ query: { a: '1' } });
    expect(h.calls.get('items/3')).toBe(2);
  });

  it('partitions by the headers the response names in Vary, and by configured vary headers', async () => {
    const h = await setup();
    const en1 = await h.req('/vary', { headers: { 'accept-language': 'en' } });
    await h.cache.whenIdle();
    const fr1 = await h.req('/vary', { headers: { 'accept-language': 'fr' } });
    await h.cache.whenIdle();
    const en2 = await h.req('/vary', { headers: { 'accept-language': 'en' } });
    const fr2 = await h.req('/vary', { headers: { 'accept-language': 'fr' } });
    expect([en1, fr1, en2, fr2].map((r) => r.headers.get('x-cache'))).toEqual(['MISS', 'MISS', 'HIT', 'HIT']);
    expect(JSON.parse(en2.text)).toEqual({ lang: 'en' });
    expect(JSON.parse(fr2.text)).toEqual({ lang: 'fr' });
    expect(en2.headers.get('vary')).toBe('Accept-Language');
    expect(h.calls.get('vary')).toBe(2);

    const a1 = await h.req('/tenant', { headers: { 'x-tenant': 'a' } });
    await h.cache.whenIdle();
    const b1 = await h.req('/tenant', { headers: { 'x-tenant': 'b' } });
    await h.cache.whenIdle();
    const a2 = await h.req('/tenant', { headers: { 'x-tenant': 'a' } });
    expect([a1, b1, a2].map((r) => r.headers.get('x-cache'))).toEqual(['MISS', 'MISS', 'HIT']);
    expect(JSON.parse(a2.text)).toEqual({ tenant: 'a' });
  });

  it('never caches POST, non-200 answers, over-size bodies or Set-Cookie answers; 203 is cached', async () => {
    const h = await setup();
    for (let i = 0; i < 2; i++) {
      const p = await h.req('/items/4', { method: 'POST' });
      expect(p.status).toBe(200);
      expect(p.headers.get('x-cache')).toBeNull();
      await h.cache.whenIdle();
    }
    expect(h.calls.get('post/4')).toBe(2);
    expect((await h.req('/items/4')).headers.get('x-cache')).toBe('MISS');

    for (const code of [201, 202, 204, 404, 500]) {
      const [a, b] = await twice(h, `/status/${code}`);
      expect([a.status, b.status]).toEqual([code, code]);
      expect(b.headers.get('x-cache')).toBe('MISS');
      expect(h.calls.get(`status/${code}`)).toBe(2);
    }
    const [, b203] = await twice(h, '/status/203');
    expect(b203.status).toBe(203);
    expect(b203.headers.get('x-cache')).toBe('HIT');

    // Limit 4096: a 10 000-byte body, sent in one piece or streamed in 1000-byte writes.
    for (const path of ['/big?n=10000', '/big?n=10000&stream=1']) {
      const [a, b] = await twice(h, path);
      expect(a.status).toBe(200);
      expect(a.text).toBe((path.includes('stream') ? 'y' : 'z').repeat(10_000));
      expect(a.headers.get('x-cache')).toBe('MISS');
      expect(a.headers.get('etag')).toBeNull();
      expect(b.headers.get('x-cache')).toBe('MISS');
      expect(b.text).toBe(a.text);
    }
    // Just under the limit is stored.
    const [, small] = await twice(h, '/big?n=4096');
    expect(small.headers.get('x-cache')).toBe('HIT');
    expect(small.text).toBe('z'.repeat(4096));

    const [c1, c2] = await twice(h, '/cookie');
    expect(c1.headers.get('set-cookie')).toContain('session=abc');
    expect(c2.headers.get('x-cache')).toBe('MISS');
    expect(c2.headers.get('set-cookie')).toContain('session=abc');
    expect(h.calls.get('cookie')).toBe(2);
  });

  it('bypasses requests with Authorization or Cookie unless the endpoint is perUser, then keys per user', async () => {
    const h = await setup();
    for (const headers of [{ authorization: 'Bearer alice' }, { cookie: 'sid=1' }] as Record<
      string,
      string
    >[]) {
      const [a, b] = await twice(h, '/items/5', headers);
      expect([a.headers.get('x-cache'), b.headers.get('x-cache')]).toEqual(['BYPASS', 'BYPASS']);
    }
    expect(h.calls.get('items/5')).toBe(4);
    expect(h.cache.getStats().bypassed).toBe(4);

    const alice = { authorization: 'Bearer alice' };
    const bob = { authorization: 'Bearer bob' };
    const [a1, a2] = await twice(h, '/me', alice);
    const [b1, b2] = await twice(h, '/me', bob);
    const [n1, n2] = await twice(h, '/me');
    expect([a1, a2, b1, b2, n1, n2].map((r) => r.headers.get('x-cache'))).toEqual([
      'MISS',
      'HIT',
      'MISS',
      'HIT',
      'MISS',
      'HIT',
    ]);
    expect(JSON.parse(a2.text)).toEqual({ user: 'Bearer alice' });
    expect(JSON.parse(b2.text)).toEqual({ user: 'Bearer bob' });
    expect(JSON.parse(n2.text)).toEqual({ user: 'anon' });
    // The credential is hashed, never stored in clear in the key.
    const keys = await h.redis.connection.keys(`${h.prefix.replace(/[{}]/g, '\\$&')}*`);
    expect(keys.some((k) => k.includes('alice'))).toBe(false);
    expect(keys.filter((k) => k.includes('/me')).length).toBe(3);
  });

  it('CACHE_CONTROL: obeys no-store, no-cache, private, max-age / s-maxage, and request no-cache / no-store', async () => {
    const h = await setup();
    for (const cc of ['no-store', 'private, max-age=60', 'no-cache', 'max-age=0']) {
      const path = `/cc?cc=${encodeURIComponent(cc)}`;
      const [, b] = await twice(h, path);
      expect([cc, b.headers.get('x-cache')]).toEqual([cc, 'MISS']);
    }
    const [, pub] = await twice(h, '/cc?cc=public');
    expect(pub.headers.get('x-cache')).toBe('HIT');

    // max-age sets the TTL (and the Redis TTL is TTL + SWR window: 2 + 30 s here).
    const [, m] = await twice(h, '/cc?cc=max-age%3D2');
    expect(m.headers.get('x-cache')).toBe('HIT');
    const mKey = (await h.redis.connection.keys(`*httpcache:e:/cc?cc=max-age%3D2*`))[0]!;
    const pttl = await h.redis.connection.pttl(mKey);
    expect(pttl).toBeGreaterThan(30_000);
    expect(pttl).toBeLessThanOrEqual(32_000);

    // s-maxage wins over max-age; must-revalidate disables the stale window: gone after 1 s.
    const sPath = `/cc?cc=${encodeURIComponent('max-age=100, s-maxage=1, must-revalidate')}`;
    const [, s1] = await twice(h, sPath);
    expect(s1.headers.get('x-cache')).toBe('HIT');
    await sleep(1100);
    expect((await h.req(sPath)).headers.get('x-cache')).toBe('MISS');

    // Request no-cache → miss path (handler runs, entry replaced); no-store → BYPASS.
    const before = h.calls.get('cc/public');
    const nc = await h.req('/cc?cc=public', { headers: { 'cache-control': 'no-cache' } });
    expect(nc.headers.get('x-cache')).toBe('MISS');
    expect(h.calls.get('cc/public')).toBe(before! + 1);
    const ns = await h.req('/cc?cc=public', { headers: { 'cache-control': 'no-store' } });
    expect(ns.headers.get('x-cache')).toBe('BYPASS');
    await h.cache.whenIdle();
    expect((await h.req('/cc?cc=public')).headers.get('x-cache')).toBe('HIT');

    // ALWAYS ignores the response's Cache-Control (and the request's).
    const [, always] = await twice(h, '/always-cc');
    expect(always.headers.get('x-cache')).toBe('HIT');
    const alwaysNc = await h.req('/always-cc', { headers: { 'cache-control': 'no-cache' } });
    expect(alwaysNc.headers.get('x-cache')).toBe('HIT');
  });

  it('NEVER bypasses; unconfigured routes pass untouched; nested routers match on the full path', async () => {
    const h = await setup();
    const [a, b] = await twice(h, '/never');
    expect([a.headers.get('x-cache'), b.headers.get('x-cache')]).toEqual(['BYPASS', 'BYPASS']);
    expect(h.calls.get('never')).toBe(2);
    const [p1, p2] = await twice(h, '/plain');
    expect([p1.headers.get('x-cache'), p2.headers.get('x-cache'), p2.headers.get('etag')]).toEqual([
      null,
      null,
      null,
    ]);
    expect(h.calls.get('plain')).toBe(2);
    const [, n2] = await twice(h, '/v1/nested/7');
    expect(n2.headers.get('x-cache')).toBe('HIT');
    expect(JSON.parse(n2.text)).toEqual({ nested: '7' });
  });

  it('expires entries after their TTL', async () => {
    const h = await setup({ staleWhileRevalidateSeconds: 0 });
    const [a, b] = await twice(h, '/short');
    expect([a.headers.get('x-cache'), b.headers.get('x-cache')]).toEqual(['MISS', 'HIT']);
    await sleep(1100);
    const c = await h.req('/short');
    expect(c.headers.get('x-cache')).toBe('MISS');
    expect(JSON.parse(c.text)).toEqual({ gen: 2 });
  });

  it('stale-while-revalidate: N concurrent requests after expiry all get STALE fast; the handler runs once more', async () => {
    const h = await setup({ staleWhileRevalidateSeconds: 10 });
    const first = await h.req('/short?ms=300');
    expect(first.headers.get('x-cache')).toBe('MISS');
    expect(first.ms).toBeGreaterThanOrEqual(290);
    await h.cache.whenIdle();
    await sleep(1100);

    const n = 25;
    // The refresh is held until every reply is in: a reply that waited for the handler could not arrive
    // (no stopwatch needed), and a slow host cannot let the refresh finish before the last request.
    const release = h.holdShort();
    const replies = await Promise.all(Array.from({ length: n }, () => h.req('/short?ms=300')));
    release();
    expect(replies.map((r) => r.headers.get('x-cache'))).toEqual(Array(n).fill('STALE'));
    for (const r of replies) {
      expect(JSON.parse(r.text)).toEqual({ gen: 1 });
      expect(Number(r.headers.get('age'))).toBeGreaterThanOrEqual(1);
    }
    await h.cache.whenIdle();
    expect(h.calls.get('short')).toBe(2);
    expect(h.cache.getStats()).toMatchObject({ stale: n, revalidations: 1 });

    const fresh = await h.req('/short?ms=300');
    expect(fresh.headers.get('x-cache')).toBe('HIT');
    expect(JSON.parse(fresh.text)).toEqual({ gen: 2 });
    expect(fresh.headers.get('x-request-id')).toMatch(/^r\d+$/);
    expect(h.calls.get('short')).toBe(2);
  });

  it('stale-while-revalidate: two cache instances (two processes) share one refresh through the Redis lock', async () => {
    const h = await setup({ staleWhileRevalidateSeconds: 10 });
    const other = new ResponseCache({
      redis: h.redis,
      config: { prefix: h.prefix, staleWhileRevalidateSeconds: 10, maxBodySizeBytes: 4096 },
    });
    other.configureEndpoint('/short', CacheStrategy.ALWAYS, 1);
    const app2 = express();
    app2.use(other.middleware());
    let runs2 = 0;
    let gate2: Promise<void> | undefined;
    app2.get('/short', async (_req, res) => {
      runs2++;
      await sleep(300);
      await gate2;
      res.json({ gen: 'other' });
    });
    const srv2 = await listenLocal(createServer(app2));
    try {
      await h.req('/short?ms=300');
      await h.cache.whenIdle();
      await sleep(1100);
      // Both refreshes (whichever instance wins the lock) are held until every reply is in.
      const release = h.holdShort();
      let release2!: () => void;
      gate2 = new Promise<void>((r) => (release2 = r));
      const replies = await Promise.all(
        Array.from({ length: 10 }, (_, i) => fetch((i % 2 ? srv2.url : h.url) + '/short?ms=300')),
      );
      release();
      release2();
      expect(replies.map((r) => r.headers.get('x-cache'))).toEqual(Array(10).fill('STALE'));
      await Promise.all(replies.map((r) => r.text()));
      await h.cache.whenIdle();
      await other.whenIdle();
      expect((h.calls.get('short') ?? 0) - 1 + runs2).toBe(1);
      expect(h.cache.getStats().revalidations + other.getStats().revalidations).toBe(1);
    } finally {
      await srv2.close();
    }
  });

  it('answers HEAD from the GET entry', async () => {
    const h = await setup();
    const headMiss = await h.req('/items/6', { method: 'HEAD' });
    expect(headMiss.status).toBe(200);
    expect(headMiss.headers.get('x-cache')).toBe('MISS');
    const get = await h.req('/items/6');
    expect(get.headers.get('x-cache')).toBe('MISS');
    await h.cache.whenIdle();
    const head = await h.req('/items/6', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('x-cache')).toBe('HIT');
    expect(head.text).toBe('');
    expect(head.headers.get('content-length')).toBe(String(Buffer.byteLength(get.text)));
    expect(head.headers.get('etag')).toBe(get.headers.get('etag'));
    expect(h.calls.get('items/6')).toBe(2);
  });

  it('invalidate(prefix) and invalidate() delete entries', async () => {
    const h = await setup();
    for (const p of ['/items/7', '/items/70', '/items/8', '/vary']) await h.req(p);
    await h.cache.whenIdle();
    expect(await h.cache.countEntries()).toBe(4);
    expect(await h.cache.invalidate('/items/7')).toBe(2);
    expect((await h.req('/items/7')).headers.get('x-cache')).toBe('MISS');
    expect((await h.req('/items/8')).headers.get('x-cache')).toBe('HIT');
    await h.cache.whenIdle();
    expect(await h.cache.invalidate()).toBe(3);
    expect(await h.cache.countEntries()).toBe(0);
    expect((await h.req('/vary')).headers.get('x-cache')).toBe('MISS');
  });

  it('counts hits, misses, stores and the hit rate', async () => {
    const h = await setup();
    await h.req('/items/9');
    await h.cache.whenIdle();
    await h.req('/items/9');
    await h.req('/items/9');
    await h.req('/never');
    await h.req('/plain');
    expect(h.cache.getStats()).toEqual({
      hits: 2,
      misses: 1,
      stale: 0,
      stored: 1,
      bypassed: 1,
      notModified: 0,
      revalidations: 0,
      errors: 0,
      hitRate: 2 / 3,
    });
  });

  describe('Redis down', () => {
    let redis: PrivateRedis;
    beforeAll(async () => {
      redis = await startPrivateRedis();
    });
    afterAll(() => redis.destroy());

    it('still answers every request from the handler, with no noticeable delay; recovers when Redis is back', async () => {
      const h = await setup({}, { redisUrl: redis.url, breakerResetMs: 300 });
      const [a, b] = await twice(h, '/items/10');
      expect([a.headers.get('x-cache'), b.headers.get('x-cache')]).toEqual(['MISS', 'HIT']);

      const closed = once(h.redis.connection, 'close');
      await redis.stop();
      await closed;

      const before = h.redis.getMetrics();
      for (let i = 0; i < 40; i++) {
        const r = await h.req('/items/10');
        expect(r.status).toBe(200);
        expect(r.headers.get('x-cache')).toBe('MISS');
        expect(r.text).toBe(a.text);
      }
      // No delay by construction, not by a stopwatch (a busy host slows every request): no call waited for
      // a command timeout (a closed connection fails at once), and once the breaker opened, lookups were
      // refused without touching Redis (between its 300 ms half-open trials).
      const after = h.redis.getMetrics();
      expect(after.timeouts).toBe(before.timeouts);
      expect(after.rejections).toBeGreaterThan(before.rejections);
      expect(h.cache.getStats().errors).toBeGreaterThan(0);
      expect(h.calls.get('items/10')).toBe(41);
      await expect(h.cache.invalidate()).rejects.toThrow();

      // Back: the breaker half-opens, a miss stores again, then hits.
      await redis.start();
      await until(() => h.redis.connection.status === 'ready', 10_000, 'reconnect');
      await until(
        async () => {
          await h.cache.whenIdle();
          return (await h.req('/items/10')).headers.get('x-cache') === 'HIT';
        },
        10_000,
        'a HIT after Redis is back',
      );
    });
  });
});
