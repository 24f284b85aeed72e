/*
 * The caching layer end to end: HTTP API → Cell0Client (cache lookups) → queue → Cell0Worker (write
 * through) → simulator, on a real Redis.
 */
import { post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { startPrivateRedis } from '../helpers/redis-server';
import { type SemanticCache } from '../../shared/cache/semantic';

describe('caching through the API', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    fleet = await startTestFleet({ caches: true, apiKeys: ['key-alpha', 'key-beta'] });
  });
  afterAll(() => fleet.close());

  const alpha = { authorization: 'Bearer key-alpha' };
  const beta = { authorization: 'Bearer key-beta' };
  const generateCalls = () => fleet.sim.stats().requests.byEndpoint['/api/generate'] ?? 0;

  it('answers the same inference request from the cache, without a job', async () => {
    const body = { model: 'qwen2.5:0.5b', prompt: 'Which ocean is the largest on Earth?' };
    const first = await post(`${fleet.url}/v1/inference`, body, { headers: alpha });
    expect(first.status).toBe(200);
    expect(first.body.cached).toBe(false);
    const calls = generateCalls();
    const second = await post(
      `${fleet.url}/v1/inference`,
      { ...body, prompt: 'which ocean is the largest on earth' },
      { headers: alpha },
    );
    expect(second.status).toBe(200);
    expect(second.body.cached).toBe('exact');
    expect(second.body.similarity).toBe(1);
    expect(second.body.cachedPrompt).toBeUndefined();
    expect(second.body.result).toEqual(first.body.result);
    expect(generateCalls()).toBe(calls);
  });

  it('does not answer a question with the reverse meaning from the cache', async () => {
    const a = await post(
      `${fleet.url}/v1/inference`,
      { model: 'qwen2.5:0.5b', prompt: 'Cheapest flights from Paris to Rome in May' },
      { headers: alpha },
    );
    expect(a.body.cached).toBe(false);
    const calls = generateCalls();
    const b = await post(
      `${fleet.url}/v1/inference`,
      { model: 'qwen2.5:0.5b', prompt: 'Cheapest flights from Rome to Paris in May' },
      { headers: alpha },
    );
    expect(b.status).toBe(200);
    expect(b.body.cached).toBe(false);
    expect(generateCalls()).toBe(calls + 1);
  });

  it('never lets two API keys see each other’s cached answers (or share a job)', async () => {
    const body = { model: 'qwen2.5:0.5b', prompt: 'Summarise our private roadmap for Q3' };
    const a = await post(`${fleet.url}/v1/inference`, body, { headers: alpha });
    expect(a.body.cached).toBe(false);
    const b = await post(`${fleet.url}/v1/inference`, body, { headers: beta });
    expect(b.status).toBe(200);
    expect(b.body.cached).toBe(false);
    expect(b.body.jobId).not.toBe(a.body.jobId);
    const again = await post(`${fleet.url}/v1/inference`, body, { headers: beta });
    expect(again.body.cached).toBe('exact');
    expect(again.body.jobId).toBe(b.body.jobId);
  });

  it('honours noCache (a fresh run) and noStore (nothing cached)', async () => {
    const body = { model: 'qwen2.5:0.5b', prompt: 'Name three noble gases' };
    await post(`${fleet.url}/v1/inference`, body, { headers: alpha });
    const calls = generateCalls();
    const fresh = await post(
      `${fleet.url}/v1/inference`,
      { ...body, cache: { noCache: true } },
      { headers: alpha },
    );
    expect(fresh.body.cached).toBe(false);
    expect(generateCalls()).toBe(calls + 1);

    const secret = { model: 'qwen2.5:0.5b', prompt: 'Do not keep this answer', cache: { noStore: true } };
    const s1 = await post(`${fleet.url}/v1/inference`, secret, { headers: alpha });
    expect(s1.body.cached).toBe(false);
    const s2 = await post(`${fleet.url}/v1/inference`, { ...secret, cache: {} }, { headers: alpha });
    expect(s2.body.cached).toBe(false); // not in the cache (the completed job may still answer it)
  });

  it('answers the same search from the search cache', async () => {
    const first = await post(`${fleet.url}/v1/search`, { query: 'capital of Australia' }, { headers: alpha });
    expect(first.body.cached).toBe(false);
    const second = await post(
      `${fleet.url}/v1/search`,
      { query: 'Capital of  Australia?' },
      { headers: alpha },
    );
    expect(second.body.cached).toBe('exact');
    expect((second.body.result as { hits: unknown[] }).hits).toEqual(
      (first.body.result as { hits: unknown[] }).hits,
    );
  });

  it('caches the read endpoints: a finished job’s view, with ETag and 304; a pending one never', async () => {
    const done = await post(
      `${fleet.url}/v1/inference`,
      { model: 'qwen2.5:0.5b', prompt: 'A finished job to read twice' },
      { headers: alpha },
    );
    const url = `${fleet.url}/v1/jobs/inference/${String(done.body.jobId)}`;
    const first = await fetch(url, { headers: alpha });
    expect(first.status).toBe(200);
    expect(first.headers.get('x-cache')).toBe('MISS');
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^"[^"]+"$/); // a strong ETag
    const second = await fetch(url, { headers: alpha });
    expect(second.headers.get('x-cache')).toBe('HIT');
    expect(await second.json()).toEqual(await first.json());
    const notModified = await fetch(url, { headers: { ...alpha, 'if-none-match': etag! } });
    expect(notModified.status).toBe(304);
    // Another key does not get alpha's cached answer (per-user entries).
    expect((await fetch(url, { headers: beta })).headers.get('x-cache')).toBe('MISS');

    // The queue is paused while the pending job is read, so it is still waiting however slow the host is
    // (a long generation could finish between two reads on a loaded one).
    const queue = fleet.client.submitter.getQueue('inference');
    await queue.pause();
    try {
      const pending = await post(
        `${fleet.url}/v1/inference`,
        { model: 'qwen2.5:0.5b', prompt: 'Still waiting when read', wait: 0 },
        { headers: alpha },
      );
      expect(pending.status).toBe(202);
      const pendingUrl = `${fleet.url}/v1/jobs/inference/${String(pending.body.jobId)}`;
      const p1 = await fetch(pendingUrl, { headers: alpha });
      expect(p1.status).toBe(200);
      expect((await p1.json()) as unknown).toMatchObject({ state: 'waiting' });
      expect(p1.headers.get('cache-control')).toBe('no-store');
      const p2 = await fetch(pendingUrl, { headers: alpha });
      expect(p2.headers.get('x-cache')).not.toBe('HIT');
    } finally {
      await queue.resume();
    }
  });

  it('answers a paraphrase from the semantic cache, and forgets it when the caller reports it wrong', async () => {
    const a = await post(
      `${fleet.url}/v1/inference`,
      { model: 'qwen2.5:0.5b', prompt: 'Give me a recipe for banana bread' },
      { headers: alpha },
    );
    expect(a.body.cached).toBe(false);
    // (politeness alone makes no difference to the lexical embedder: the same vector, similarity 1)
    const paraphrase = { model: 'qwen2.5:0.5b', prompt: 'Could you give me a banana bread recipe?' };
    const b = await post(`${fleet.url}/v1/inference`, paraphrase, { headers: alpha });
    expect(b.body.cached).toBe('semantic');
    expect(b.body.similarity).toBeGreaterThanOrEqual(0.9);
    expect(b.body.similarity).toBeLessThan(1);
    expect(b.body.jobId).toBe(a.body.jobId);
    expect(typeof b.body.cacheEntry).toBe('string');
    // the stored prompt this answer belongs to: with the request, a labelled pair when the caller reports it
    expect(b.body.cachedPrompt).toBe('Give me a recipe for banana bread');

    const bad = await post(`${fleet.url}/v1/cache/false-hits`, { cacheEntry: 42 }, { headers: alpha });
    expect(bad.status).toBe(400);
    const report = await fetch(`${fleet.url}/v1/cache/false-hits`, {
      method: 'POST',
      headers: { ...alpha, 'content-type': 'application/json' },
      body: JSON.stringify({ cacheEntry: b.body.cacheEntry }),
    });
    expect(report.status).toBe(204);
    const c = await post(`${fleet.url}/v1/inference`, paraphrase, { headers: alpha });
    expect(c.body.cached).toBe(false);
    const stats = fleet.client.caches.inference as unknown as { getStats(): { falseHitReports: number } };
    expect(stats.getStats().falseHitReports).toBe(1);
  });

  it('runs one cache lookup for identical requests in flight together (and one generation)', async () => {
    const cache = fleet.client.caches.inference as SemanticCache<unknown>;
    const body = { model: 'qwen2.5:0.5b', prompt: 'Name three rivers of Africa, one lookup for all' };
    const lookups0 = cache.getStats().lookups;
    const calls = generateCalls();
    // The generation is held 3 s, so all 40 requests reach the API while the first one's job runs.
    fleet.sim.setFaults({ slowRate: 1, slowMs: 3000 });
    const all = await Promise.all(
      Array.from({ length: 40 }, () => post(`${fleet.url}/v1/inference`, body, { headers: alpha })),
    ).finally(() => fleet.sim.setFaults({}));
    for (const r of all) expect(r.status).toBe(200);
    expect(new Set(all.map((r) => JSON.stringify(r.body.result))).size).toBe(1);
    expect(generateCalls() - calls).toBe(1);
    // One request looked the cache up; the other 39 shared its miss and joined its job.
    expect(cache.getStats().lookups - lookups0).toBe(1);
    // Once they are answered, the next one looks up again and finds the answer cached.
    const after = await post(`${fleet.url}/v1/inference`, body, { headers: alpha });
    expect(after.body.cached).toBe('exact');
    expect(cache.getStats().lookups - lookups0).toBe(2);
  });

  it('refuses a malformed cache field with 400 naming it', async () => {
    const r = await post(
      `${fleet.url}/v1/inference`,
      { model: 'm', prompt: 'p', cache: { noCache: 'yes' } },
      { headers: alpha },
    );
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).toContain('cache.noCache');
  });
});

describe('caching while Redis is away', () => {
  it('degrades every cache to a miss: the request takes the queue path and gets its 503 quickly', async () => {
    const redis = await startPrivateRedis();
    const fleet = await startTestFleet({ redisUrl: redis.url, caches: true, breakerResetMs: 1000 });
    await fleet.client.start();
    try {
      const ok = await post(`${fleet.url}/v1/search`, { query: 'hydrogen' });
      expect(ok.status).toBe(200);
      await redis.stop();
      for (const [path, body] of [
        ['/v1/search', { query: 'hydrogen' }],
        ['/v1/inference', { model: 'qwen2.5:0.5b', prompt: 'still answered?' }],
      ] as const) {
        const t0 = performance.now();
        const r = await post(`${fleet.url}${path}`, body);
        expect(r.status).toBe(503);
        expect(r.body).toMatchObject({
          error: { code: expect.stringMatching(/REDIS_UNAVAILABLE|BREAKER_OPEN/) },
        });
        expect(performance.now() - t0).toBeLessThan(1000);
      }
      const stats = fleet.client.caches.search!.getStats();
      expect(stats.errors).toBeGreaterThanOrEqual(1);
    } finally {
      // Back up, and the fleet working again, before it closes: a fleet closed while its connections are
      // still reconnecting leaves the test process alive (noted as a known issue).
      await redis.start();
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const r = await post(`${fleet.url}/v1/search`, { query: `recovered ${Date.now()}`, wait: 3000 });
        if (r.status === 200) break;
        await new Promise((res) => setTimeout(res, 200));
      }
      await fleet.close();
      await redis.destroy();
    }
  });
});
