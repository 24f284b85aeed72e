import { performance } from 'node:perf_hooks';
import { request } from 'undici';
import { ConfigError, ErrorCode, ProviderError } from '../../shared/errors';
import { OllamaClient } from '../../workers/providers/ollama/index';
import { ArrivalWindow } from '../../workers/providers/simulator/arrival-window';
import { FaultInjector, mulberry32 } from '../../workers/providers/simulator/faults';
import {
  OllamaSimulator,
  type SimFaults,
  type SimulatorStats,
} from '../../workers/providers/simulator/index';
import { rejectionOf } from '../helpers/wait';

const EMBED_BODY = JSON.stringify({ model: 'all-minilm', input: 'hello' });

interface RawAnswer {
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

async function raw(
  base: string,
  path: string,
  init: { method?: 'GET' | 'POST' | 'HEAD'; body?: string } = {},
): Promise<RawAnswer> {
  const res = await request(base + path, {
    method: init.method ?? 'GET',
    body: init.body,
    headers: init.body !== undefined ? { 'content-type': 'application/json' } : {},
  });
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers };
}

const embed = (base: string): Promise<RawAnswer> =>
  raw(base, '/api/embed', { method: 'POST', body: EMBED_BODY });

async function simStats(sim: OllamaSimulator): Promise<SimulatorStats> {
  await sim.whenIdle();
  return sim.stats();
}

/** `n` embed requests, at most `concurrency` at a time; a rejected request shows as status -1. */
async function embedMany(base: string, n: number, concurrency: number): Promise<number[]> {
  const statuses: number[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      next++;
      statuses.push(
        await embed(base).then(
          (a) => a.status,
          () => -1,
        ),
      );
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return statuses;
}

const count = (values: readonly number[], v: number): number => values.filter((x) => x === v).length;

const DEFAULT_FAULTS = {
  dropRate: 0,
  rate429: 0,
  rate500: 0,
  slowRate: 0,
  retryAfterSec: 1,
  slowMs: 2000,
  seed: expect.any(Number) as unknown,
};

describe('OllamaSimulator fault injection', () => {
  let sim: OllamaSimulator;

  beforeAll(async () => {
    sim = new OllamaSimulator({ ttftMs: 1, tokensPerSec: 2000, loadMsPerGb: 0 });
    await sim.start();
  });

  afterAll(() => sim.close());

  beforeEach(async () => {
    sim.setFaults({});
    await sim.whenIdle();
    sim.reset({ models: true });
  });

  test('rate429 = 1 answers 429 with Retry-After and an Ollama error body', async () => {
    sim.setFaults({ rate429: 1, retryAfterSec: 7 });
    const res = await raw(sim.url, '/api/generate', {
      method: 'POST',
      body: JSON.stringify({ model: 'qwen2.5:0.5b', prompt: 'x' }),
    });
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('7');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(res.text)).toEqual({ error: expect.any(String) });

    const stats = await simStats(sim);
    expect(stats.faults).toEqual({ injected429: 1, injected500: 0, slowed: 0, dropped: 0, rateLimited: 0 });
    expect(stats.requests.total).toBe(1);
    expect(stats.errors).toBe(1);
    expect(stats.aborted).toBe(0);
  });

  test('the OllamaClient sees an injected 429 as a retryable ProviderError with retryAfterMs', async () => {
    sim.setFaults({ rate429: 1, retryAfterSec: 2 });
    const client = new OllamaClient({ baseUrl: sim.url });
    try {
      const err = await rejectionOf(client.chat({ model: 'qwen2.5:0.5b', messages: [] }));
      expect(err).toBeInstanceOf(ProviderError);
      expect(err).toMatchObject({ status: 429, retryable: true, retryAfterMs: 2000 });
      expect((err as Error).message).toContain('too many requests');
    } finally {
      await client.close();
    }
  });

  test('rate500 = 1 answers 500 with an Ollama error body', async () => {
    sim.setFaults({ rate500: 1 });
    const res = await raw(sim.url, '/api/chat', {
      method: 'POST',
      body: JSON.stringify({ model: 'qwen2.5:0.5b', messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(res.status).toBe(500);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['retry-after']).toBeUndefined();
    expect(JSON.parse(res.text)).toEqual({ error: expect.any(String) });
    const stats = await simStats(sim);
    expect(stats.faults.injected500).toBe(1);
    expect(stats.errors).toBe(1);
  });

  test('slowRate = 1 delays the request by slowMs and then answers normally', async () => {
    sim.setFaults({ slowRate: 1, slowMs: 300 });
    const t0 = performance.now();
    const res = await embed(sim.url);
    const took = performance.now() - t0;
    expect(res.status).toBe(200);
    expect((JSON.parse(res.text) as { embeddings: number[][] }).embeddings).toHaveLength(1);
    expect(took).toBeGreaterThanOrEqual(290);
    const stats = await simStats(sim);
    expect(stats.faults.slowed).toBe(1);
    expect(stats.errors).toBe(0);
  });

  test('dropRate = 1 resets the connection: a socket error, counted as aborted and not as an error', async () => {
    sim.setFaults({ dropRate: 1 });
    const err = await rejectionOf(embed(sim.url));
    expect((err as { code?: string }).code).toMatch(/^(UND_ERR_SOCKET|ECONNRESET|EPIPE)$/);
    const stats = await simStats(sim);
    expect(stats.faults.dropped).toBe(1);
    expect(stats.aborted).toBe(1);
    expect(stats.errors).toBe(0);
    expect(stats.inFlight).toBe(0);
    expect(stats.requests.total).toBe(1);
  });

  test('fractional rates with a seed give counts in the expected band, reproducibly', async () => {
    const faults: SimFaults = {
      seed: 12345,
      dropRate: 0.05,
      rate429: 0.2,
      rate500: 0.1,
      slowRate: 0.1,
      slowMs: 5,
    };
    sim.setFaults(faults);
    const n = 300;
    const statuses = await embedMany(sim.url, n, 12);
    const stats = await simStats(sim);

    // Client and server agree.
    expect(count(statuses, 429)).toBe(stats.faults.injected429);
    expect(count(statuses, 500)).toBe(stats.faults.injected500);
    expect(count(statuses, -1)).toBe(stats.faults.dropped);
    expect(count(statuses, 200)).toBe(
      n - stats.faults.injected429 - stats.faults.injected500 - stats.faults.dropped,
    );
    expect(stats.requests.total).toBe(n);
    expect(stats.aborted).toBe(stats.faults.dropped);
    expect(stats.errors).toBe(stats.faults.injected429 + stats.faults.injected500);

    // Expected 15 / 60 / 30 / 30; the bands are more than 3.5 standard deviations wide.
    expect(stats.faults.dropped).toBeGreaterThanOrEqual(3);
    expect(stats.faults.dropped).toBeLessThanOrEqual(30);
    expect(stats.faults.injected429).toBeGreaterThanOrEqual(35);
    expect(stats.faults.injected429).toBeLessThanOrEqual(85);
    expect(stats.faults.injected500).toBeGreaterThanOrEqual(12);
    expect(stats.faults.injected500).toBeLessThanOrEqual(48);
    expect(stats.faults.slowed).toBeGreaterThanOrEqual(12);
    expect(stats.faults.slowed).toBeLessThanOrEqual(48);

    // The same seed draws the same faults (the counts do not depend on arrival order).
    const again = new OllamaSimulator({ loadMsPerGb: 0, faults });
    await again.start();
    try {
      await embedMany(again.url, n, 12);
      expect((await simStats(again)).faults).toEqual(stats.faults);
    } finally {
      await again.close();
    }
  });

  test('fractions summing over 1 and bad values are refused: ConfigError and 400', async () => {
    const tooMuch = (): OllamaSimulator => new OllamaSimulator({ faults: { rate429: 0.6, rate500: 0.5 } });
    expect(tooMuch).toThrow(ConfigError);
    expect(tooMuch).toThrow(/OllamaSimulator\.faults: .*<= 1/);
    expect(
      () => new OllamaSimulator({ faults: { rate429: 0.1, rate500: 0.2, slowRate: 0.7 } }),
    ).not.toThrow();
    expect(() => new OllamaSimulator({ faults: { rate500: 1.5 } })).toThrow(/faults\.rate500/);
    expect(() => new OllamaSimulator({ faults: { retryAfterSec: 1.5 } })).toThrow(/faults\.retryAfterSec/);
    expect(() => new OllamaSimulator({ faults: { slowMs: -1 } })).toThrow(/faults\.slowMs/);
    expect(() => new OllamaSimulator({ faults: { seed: 0.5 } })).toThrow(/faults\.seed/);
    expect(() => new OllamaSimulator({ faults: { rateLimit: { rate: 0, capacity: 1 } } })).toThrow(
      /faults\.rateLimit\.rate/,
    );
    expect(() => new OllamaSimulator({ faults: { rateLimit: { rate: 1, capacity: 0 } } })).toThrow(
      /faults\.rateLimit\.capacity/,
    );
    const err = (() => {
      try {
        sim.setFaults({ dropRate: 0.5, slowRate: 0.6 });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe(ErrorCode.CONFIG_INVALID);

    sim.setFaults({ rate500: 0.25, seed: 3 });
    const post = (body: unknown): Promise<RawAnswer> =>
      raw(sim.url, '/_sim/faults', { method: 'POST', body: JSON.stringify(body) });
    const sum = await post({ rate429: 0.6, dropRate: 0.6 });
    expect(sum.status).toBe(400);
    expect(sum.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(sum.text)).toEqual({ error: expect.stringMatching(/faults: .*<= 1/) });
    const bad = await post({ rate429: 'lots' });
    expect(JSON.parse(bad.text)).toEqual({ error: expect.stringContaining('faults.rate429') });
    const unknown = await post({ rate_429: 0.5 });
    expect(unknown.status).toBe(400);
    expect(JSON.parse(unknown.text)).toEqual({
      error: expect.stringContaining('faults.rate_429: unknown field'),
    });
    expect((await post([1])).status).toBe(400);
    expect((await raw(sim.url, '/_sim/faults', { method: 'POST', body: '{' })).status).toBe(400);
    // A refused setting leaves the previous one in force.
    expect(sim.faults).toMatchObject({ rate500: 0.25, seed: 3 });
  });

  test('GET and POST /_sim/faults round-trip the settings', async () => {
    const initial = await raw(sim.url, '/_sim/faults');
    expect(initial.status).toBe(200);
    expect(JSON.parse(initial.text)).toEqual(DEFAULT_FAULTS);

    const wanted = { rate500: 0.25, seed: 9, rateLimit: { rate: 5, capacity: 2 } };
    const posted = await raw(sim.url, '/_sim/faults', { method: 'POST', body: JSON.stringify(wanted) });
    expect(posted.status).toBe(200);
    const expected = { ...DEFAULT_FAULTS, ...wanted };
    expect(JSON.parse(posted.text)).toEqual(expected);
    const read = JSON.parse((await raw(sim.url, '/_sim/faults')).text) as SimFaults;
    expect(read).toEqual(expected);
    expect(sim.faults).toEqual(read);

    // What GET answers can be posted back unchanged; null means the default.
    const back = await raw(sim.url, '/_sim/faults', { method: 'POST', body: JSON.stringify(read) });
    expect(JSON.parse(back.text)).toEqual(read);
    const cleared = await raw(sim.url, '/_sim/faults', {
      method: 'POST',
      body: JSON.stringify({ rateLimit: null, seed: null }),
    });
    expect(JSON.parse(cleared.text)).toEqual(DEFAULT_FAULTS);
    expect(sim.faults.rateLimit).toBeUndefined();

    // The constructor option shows the same way.
    const s = new OllamaSimulator({ faults: { slowRate: 0.5, slowMs: 10, seed: 1 } });
    expect(s.faults).toEqual({ ...DEFAULT_FAULTS, slowRate: 0.5, slowMs: 10, seed: 1 });
  });

  test('rateLimit answers 429 beyond capacity and recovers once tokens refill', async () => {
    sim.setFaults({ rateLimit: { rate: 2, capacity: 3 } });
    const burst = await Promise.all(Array.from({ length: 6 }, () => embed(sim.url)));
    const ok = burst.filter((r) => r.status === 200);
    const limited = burst.filter((r) => r.status === 429);
    // 3 tokens, plus at most one refilled while the burst arrives on a slow machine.
    expect(ok.length).toBeGreaterThanOrEqual(3);
    expect(ok.length).toBeLessThanOrEqual(4);
    expect(ok.length + limited.length).toBe(6);
    for (const r of limited) {
      expect(r.headers['retry-after']).toBe('1');
      expect(JSON.parse(r.text)).toEqual({ error: expect.stringContaining('rate limit') });
    }
    let stats = await simStats(sim);
    expect(stats.faults.rateLimited).toBe(limited.length);
    expect(stats.faults.injected429).toBe(0);
    expect(stats.errors).toBe(limited.length);

    // Retry-After later a token is there again.
    await new Promise((r) => setTimeout(r, 1100));
    expect((await embed(sim.url)).status).toBe(200);
    stats = await simStats(sim);
    expect(stats.faults.rateLimited).toBe(limited.length);
  });

  test('arrivals.maxPerSecond counts model-serving requests in a 1 s window; reset zeroes it', async () => {
    await Promise.all(Array.from({ length: 5 }, () => embed(sim.url)));
    await Promise.all([raw(sim.url, '/api/tags'), raw(sim.url, '/'), raw(sim.url, '/_sim/stats')]);
    let stats = await simStats(sim);
    expect(stats.arrivals.maxPerSecond).toBe(5);

    // Faulted requests arrived too.
    sim.setFaults({ rate500: 1 });
    await Promise.all(Array.from({ length: 2 }, () => embed(sim.url)));
    stats = await simStats(sim);
    expect(stats.arrivals.maxPerSecond).toBeGreaterThanOrEqual(5);
    expect(stats.arrivals.maxPerSecond).toBeLessThanOrEqual(7);

    const reset = JSON.parse((await raw(sim.url, '/_sim/reset', { method: 'POST' })).text) as SimulatorStats;
    expect(reset.arrivals.maxPerSecond).toBe(0);
    expect(reset.faults).toEqual({ injected429: 0, injected500: 0, slowed: 0, dropped: 0, rateLimited: 0 });
  });

  test('health, listing and control endpoints are never faulted', async () => {
    sim.setFaults({ dropRate: 1, rateLimit: { rate: 0.001, capacity: 1 } });
    for (let i = 0; i < 3; i++) {
      expect((await raw(sim.url, '/')).status).toBe(200);
      expect((await raw(sim.url, '/', { method: 'HEAD' })).status).toBe(200);
      expect((await raw(sim.url, '/api/ps')).status).toBe(200);
      expect((await raw(sim.url, '/api/tags')).status).toBe(200);
      expect((await raw(sim.url, '/api/version')).status).toBe(200);
      expect((await raw(sim.url, '/_sim/stats')).status).toBe(200);
      expect((await raw(sim.url, '/_sim/faults')).status).toBe(200);
    }
    // A wrong method is refused before fault injection.
    expect((await raw(sim.url, '/api/generate')).status).toBe(405);
    let stats = await simStats(sim);
    expect(stats.faults).toEqual({ injected429: 0, injected500: 0, slowed: 0, dropped: 0, rateLimited: 0 });
    expect(stats.arrivals.maxPerSecond).toBe(0);
    expect(stats.aborted).toBe(0);

    // The model-serving endpoints are: the first takes the token and is dropped, the next is limited.
    expect(await rejectionOf(embed(sim.url))).toBeInstanceOf(Error);
    const limited = await raw(sim.url, '/api/embeddings', {
      method: 'POST',
      body: JSON.stringify({ model: 'all-minilm', prompt: 'x' }),
    });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(900);
    stats = await simStats(sim);
    expect(stats.faults).toMatchObject({ dropped: 1, rateLimited: 1 });
    expect((await raw(sim.url, '/_sim/reset', { method: 'POST' })).status).toBe(200);
  });
});

describe('fault building blocks', () => {
  test('mulberry32 is deterministic per seed and uniform in [0, 1)', () => {
    const a = mulberry32(7);
    const b = mulberry32(7);
    const c = mulberry32(8);
    const xs = Array.from({ length: 10_000 }, () => a());
    expect(Array.from({ length: 10_000 }, () => b())).toEqual(xs);
    expect(c()).not.toBe(xs[0]);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.47);
    expect(mean).toBeLessThan(0.53);
  });

  test('the token bucket refills at `rate` up to `capacity`, on an explicit clock', () => {
    const f = new FaultInjector({ rateLimit: { rate: 1, capacity: 2 } });
    expect(f.decide(0)).toEqual({ kind: 'none' });
    expect(f.decide(0)).toEqual({ kind: 'none' });
    expect(f.decide(0)).toEqual({ kind: 'rateLimited', retryAfterSec: 1 });
    expect(f.decide(500)).toEqual({ kind: 'rateLimited', retryAfterSec: 1 });
    expect(f.decide(1000)).toEqual({ kind: 'none' });
    expect(f.decide(1000)).toMatchObject({ kind: 'rateLimited' });
    // A long pause refills to capacity, not beyond.
    expect(f.decide(60_000)).toEqual({ kind: 'none' });
    expect(f.decide(60_000)).toEqual({ kind: 'none' });
    expect(f.decide(60_000)).toMatchObject({ kind: 'rateLimited' });

    const slow = new FaultInjector({ rateLimit: { rate: 0.25, capacity: 1 } });
    expect(slow.decide(0)).toEqual({ kind: 'none' });
    expect(slow.decide(0)).toEqual({ kind: 'rateLimited', retryAfterSec: 4 });
    expect(slow.decide(1000)).toEqual({ kind: 'rateLimited', retryAfterSec: 3 });
  });

  test('one draw picks drop / 429 / 500 / slow / none in proportion', () => {
    const f = new FaultInjector({
      seed: 1,
      dropRate: 0.1,
      rate429: 0.2,
      rate500: 0.3,
      slowRate: 0.4,
      slowMs: 9,
    });
    const seen = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const d = f.decide(i);
      seen.set(d.kind, (seen.get(d.kind) ?? 0) + 1);
      if (d.kind === 'slow') expect(d.ms).toBe(9);
    }
    expect(seen.get('none')).toBeUndefined();
    expect(seen.get('drop')).toBeGreaterThan(800);
    expect(seen.get('drop')).toBeLessThan(1200);
    expect(seen.get('429')).toBeGreaterThan(1750);
    expect(seen.get('429')).toBeLessThan(2250);
    expect(seen.get('500')).toBeGreaterThan(2700);
    expect(seen.get('500')).toBeLessThan(3300);
    expect(seen.get('slow')).toBeGreaterThan(3650);
    expect(seen.get('slow')).toBeLessThan(4350);
  });

  test('ArrivalWindow keeps the most arrivals within any sliding window', () => {
    const w = new ArrivalWindow(1000);
    for (const t of [0, 100, 200, 999]) w.record(t);
    expect(w.max).toBe(4);
    w.record(1000); // 0 has left the window (t - 1000, t]
    expect(w.max).toBe(4);
    w.record(1050);
    expect(w.max).toBe(5);
    w.record(5000);
    expect(w.max).toBe(5);
    w.reset();
    expect(w.max).toBe(0);

    // Many arrivals 10 ms apart: 100 per second, however long it runs.
    for (let i = 0; i < 20_000; i++) w.record(10_000 + i * 10);
    expect(w.max).toBe(100);
  });
});
