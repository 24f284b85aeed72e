import { once } from 'node:events';
import { BreakerOpenError, RedisUnavailableError } from '../../shared/errors';
import { RedisClient } from '../../shared/redis/redis-client';
import { redisAnswers } from '../../shared/redis/embedded-redis';
import { post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server';
import { spawnCell0 } from '../helpers/cli';
import { rejectionOf, until } from '../helpers/wait';

describe('Redis outage (private redis-server, stopped and restarted)', () => {
  let redis: PrivateRedis;
  beforeAll(async () => {
    redis = await startPrivateRedis();
  });
  afterAll(() => redis.destroy());

  it('opens the breaker after N failures, refuses fast while open, half-opens, and closes when Redis is back', async () => {
    const client = new RedisClient({
      url: redis.url,
      breakerThreshold: 3,
      breakerResetMs: 600,
      commandTimeoutMs: 300,
    });
    try {
      await until(() => client.connection.status === 'ready', 10_000);
      await client.set('k', { a: 1 }, 60);
      expect(await client.get('k')).toEqual({ a: 1 });
      expect(await client.healthCheck()).toMatchObject({ healthy: true, circuitState: 'closed' });

      const closed = once(client.connection, 'close');
      await redis.stop();
      await closed;

      const opened = once(client, 'breaker:open');
      for (let i = 0; i < 3; i++)
        expect(await rejectionOf(client.get('k'))).toBeInstanceOf(RedisUnavailableError);
      await opened;
      expect(client.getMetrics().circuitState).toBe('open');

      const times: number[] = [];
      for (let i = 0; i < 25; i++) {
        const t0 = performance.now();
        const err = await rejectionOf(client.get('k'));
        times.push(performance.now() - t0);
        expect(err).toBeInstanceOf(BreakerOpenError);
        expect((err as BreakerOpenError).code).toBe('CELL0_BREAKER_OPEN');
      }
      times.sort((a, b) => a - b);
      expect(times[Math.floor(times.length / 2)]!).toBeLessThan(5);
      expect(await client.healthCheck()).toMatchObject({ healthy: false, circuitState: 'open' });

      // Half-open: one trial call; Redis is still down, so it fails and the breaker opens again.
      await until(() => client.breaker.state === 'half-open', 10_000);
      const reopened = once(client, 'breaker:open');
      expect(await rejectionOf(client.get('k'))).toBeInstanceOf(RedisUnavailableError);
      await reopened;

      const closedBreaker = once(client, 'breaker:close');
      await redis.start();
      await until(() => client.connection.status === 'ready' && client.breaker.state === 'half-open', 20_000);
      expect(await client.get('k')).toBeUndefined(); // a fresh server: the key is gone, the call works
      await closedBreaker;
      const m = client.getMetrics();
      expect(m.circuitState).toBe('closed');
      expect(m.failures).toBeGreaterThanOrEqual(4);
      expect(m.rejections).toBeGreaterThanOrEqual(25);
      expect(m.successes).toBeGreaterThanOrEqual(3);
    } finally {
      await client.close();
    }
  });

  describe('the API and a worker', () => {
    let fleet: TestFleet;
    beforeAll(async () => {
      if (!(await redisUp(redis))) await redis.start();
      fleet = await startTestFleet({ redisUrl: redis.url, breakerResetMs: 1000 });
      await fleet.client.start();
    });
    afterAll(() => fleet.close());

    it('answers 503 within 1 s while Redis is down, and works again once it is back, without a restart', async () => {
      const body = (n: number) => ({ model: 'qwen2.5:0.5b', prompt: `outage ${n}` });
      expect((await post(`${fleet.url}/v1/inference`, body(0))).status).toBe(200);

      await redis.stop();
      for (let i = 1; i <= 12; i++) {
        const t0 = performance.now();
        const r = await post(`${fleet.url}/v1/inference`, body(i));
        const ms = performance.now() - t0;
        expect({ i, status: r.status }).toEqual({ i, status: 503 });
        expect(ms).toBeLessThan(1000);
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
        expect(r.body).toMatchObject({ error: { code: 'CELL0_REDIS_UNAVAILABLE' } });
      }
      // Identical requests at once (one caller adds, the others follow it): all get 503 fast, none hangs.
      const t0 = performance.now();
      const same = await Promise.all(
        Array.from({ length: 20 }, () => post(`${fleet.url}/v1/inference`, body(50))),
      );
      expect(same.map((r) => r.status)).toEqual(Array(20).fill(503));
      expect(performance.now() - t0).toBeLessThan(1000);
      const ready = await fetch(`${fleet.url}/readyz`);
      expect(ready.status).toBe(503);

      await redis.start();
      let last = 0;
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        last = (await post(`${fleet.url}/v1/inference`, { ...body(99), wait: 5000 })).status;
        if (last === 200) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      // 200 means the producer reconnected AND the worker, which lost Redis too, took the job and ran it.
      expect(last).toBe(200);
      // Ready again without a restart. /readyz PINGs Redis with a 900 ms deadline, which a loaded host can
      // miss (it answers 503 "no answer within 900 ms" then): it must turn ready within 20 s; what it
      // said last is in the failure.
      let readyz: { status: number; body: unknown } = { status: 0, body: undefined };
      const readyBy = Date.now() + 20_000;
      while (Date.now() < readyBy) {
        const r = await fetch(`${fleet.url}/readyz`);
        readyz = { status: r.status, body: await r.json() };
        if (readyz.status === 200) break;
        await new Promise((res) => setTimeout(res, 250));
      }
      expect(readyz).toMatchObject({ status: 200 });
    });
  });
});

describe('shutdown while Redis is down', () => {
  it('api, worker and dashboard processes still exit promptly on SIGTERM', async () => {
    const redis = await startPrivateRedis();
    try {
      const procs = [['api'], ['worker'], ['dashboard']].map((args) =>
        spawnCell0(args, {
          REDIS_URL: redis.url,
          CELL0_PORT: '0',
          CELL0_DASHBOARD_PORT: '0',
          CELL0_OLLAMA_URL: 'http://127.0.0.1:9',
        }),
      );
      await Promise.all(procs.map((p) => p.waitFor(/ready/)));
      await redis.stop();
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      for (const p of procs) p.kill('SIGTERM');
      const codes = await Promise.all(procs.map((p) => p.exited));
      expect(codes).toEqual([0, 0, 0]);
      expect(Date.now() - t0).toBeLessThan(8000);
    } finally {
      await redis.destroy();
    }
  }, 40_000);
});

async function redisUp(r: PrivateRedis): Promise<boolean> {
  return redisAnswers(r.url, 300);
}
