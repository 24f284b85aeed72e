import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { RateLimitedError } from '../../shared/errors';
import {
  RedisTokenBucketRateLimiter,
  type RedisTokenBucketOptions,
} from '../../shared/rate-limit/token-bucket';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { startPrivateRedis } from '../helpers/redis-server';
import { EPOCH_MS_RESOLUTION, intervalViolation } from '../helpers/checks';
import { rejectionOf, until } from '../helpers/wait';

const ROOT = join(__dirname, '..', '..');

async function redisNowMs(redis: Redis): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    found.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return found.sort();
}

describe('RedisTokenBucketRateLimiter (fleet-wide, on Redis)', () => {
  const prefix = uniquePrefix('tbucket');
  let redis: Redis;
  let other: Redis; // a second connection: another process, as far as Redis can tell
  let n = 0;

  const make = (
    opts: Partial<Omit<RedisTokenBucketOptions, 'redis' | 'prefix'>> & { rate: number; capacity: number },
    conn: Redis = redis,
  ) => new RedisTokenBucketRateLimiter({ name: `bucket${++n}`, ...opts, redis: conn, prefix });

  beforeAll(async () => {
    redis = new Redis(testRedisUrl());
    other = new Redis(testRedisUrl());
    await Promise.all([redis.ping(), other.ping()]);
  });

  afterAll(async () => {
    const keys = await keysUnder(redis, prefix);
    if (keys.length > 0) await redis.del(...keys);
    await Promise.all([redis.quit(), other.quit()]);
  });

  it('starts full, then grants one token every 1/rate; grantedAt is on the Redis clock', async () => {
    const b = make({ rate: 20, capacity: 5 });
    const before = await redisNowMs(redis);
    const t0 = performance.now();
    const burst = [];
    for (let i = 0; i < 5; i++) burst.push(await b.acquire());
    const burstMs = performance.now() - t0;
    expect(burstMs).toBeLessThan(500); // five round trips, no waiting
    for (const p of burst) expect(p.grantedAt).toBeGreaterThanOrEqual(before);
    const after = await redisNowMs(redis);
    for (const p of burst) expect(p.grantedAt).toBeLessThanOrEqual(after);

    const extra = 6;
    const t1 = performance.now();
    const spaced = [];
    for (let i = 0; i < extra; i++) spaced.push(await b.acquire());
    const elapsed = performance.now() - t1;
    // The bucket refills from the first grant on, so the burst's own duration counts.
    expect(elapsed).toBeGreaterThanOrEqual(extra * 50 - burstMs - 5);
    expect(elapsed).toBeLessThan(extra * 50 + 800);
    for (let i = 1; i < spaced.length; i++)
      expect(spaced[i]!.grantedAt - spaced[i - 1]!.grantedAt).toBeGreaterThanOrEqual(
        50 - EPOCH_MS_RESOLUTION,
      );
    expect(
      intervalViolation(
        [...burst, ...spaced].map((p) => p.grantedAt),
        20,
        5,
      ),
    ).toBeUndefined();

    const m = b.metrics();
    expect(m).toMatchObject({ scope: 'fleet', rate: 20, capacity: 5, maxInFlight: 0, refused: 0 });
    expect(m.granted).toBe(5 + extra);
    // The burst did not wait (a round trip is no wait); the later grants did (the first of them may
    // have found a token refilled during a slow burst).
    expect(m.waited).toBeGreaterThanOrEqual(extra - 1);
    expect(m.waited).toBeLessThanOrEqual(extra);
    expect(m.held).toBe(5 + extra);
    for (const p of [...burst, ...spaced]) p.release();
    expect(b.metrics().held).toBe(0);
  });

  it.each([
    [30, 1, 10],
    [20, 5, 25],
  ])(
    'concurrent callers (rate %d, capacity %d, %d callers) respect capacity + rate x interval',
    async (rate, capacity, callers) => {
      const b = make({ rate, capacity, maxWaitMs: 10_000 });
      const permits = await Promise.all(Array.from({ length: callers }, () => b.acquire()));
      const times = permits.map((p) => p.grantedAt);
      expect(intervalViolation(times, rate, capacity)).toBeUndefined();
      const sorted = [...times].sort((x, y) => x - y);
      const span = sorted[sorted.length - 1]! - sorted[0]!;
      expect(span).toBeGreaterThanOrEqual(((callers - capacity) * 1000) / rate - EPOCH_MS_RESOLUTION);
      expect(span).toBeLessThan(((callers - capacity) * 1000) / rate + 300);
    },
  );

  it('two limiters on separate connections share one bucket', async () => {
    const a = make({ rate: 10, capacity: 4, maxWaitMs: 10_000 });
    const b = new RedisTokenBucketRateLimiter({ name: a.name, rate: 10, capacity: 4, redis: other, prefix });
    expect(b.bucketKey).toBe(a.bucketKey);
    const first = [];
    for (let i = 0; i < 4; i++) first.push(await a.acquire());
    // a emptied the bucket: b gets nothing at once, and a token ~100 ms later.
    expect(await b.tryAcquire(1, 0)).toBe(false);
    const err = await rejectionOf(b.acquire(1, { timeoutMs: 10 }));
    expect(err).toBeInstanceOf(RateLimitedError);
    // When a call with the same 10 ms budget would be granted: the token is <= 100 ms away.
    expect((err as RateLimitedError).retryAfterMs).toBeGreaterThanOrEqual(1);
    expect((err as RateLimitedError).retryAfterMs).toBeLessThanOrEqual(100 - 10);
    const fromB = await b.acquire();
    expect(fromB.grantedAt - first[0]!.grantedAt).toBeGreaterThanOrEqual(100 - EPOCH_MS_RESOLUTION);
    // Both hammer the bucket at once: the merged grants still obey one limit.
    const more = await Promise.all([
      ...Array.from({ length: 6 }, () => a.acquire()),
      ...Array.from({ length: 6 }, () => b.acquire()),
    ]);
    const all = [...first, fromB, ...more].map((p) => p.grantedAt);
    expect(intervalViolation(all, 10, 4)).toBeUndefined();
    const sorted = [...all].sort((x, y) => x - y);
    expect(sorted[sorted.length - 1]! - sorted[0]!).toBeGreaterThanOrEqual(
      ((17 - 4) * 1000) / 10 - EPOCH_MS_RESOLUTION,
    );
    expect(a.metrics().granted + b.metrics().granted).toBe(17);
    expect(b.metrics().refused).toBe(2);
  });

  it('refuses at once when the wait exceeds timeoutMs, without taking tokens', async () => {
    const b = make({ rate: 10, capacity: 2 });
    await b.acquire();
    await b.acquire();
    const stateBefore = await redis.hgetall(b.bucketKey);
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) {
      const err = await rejectionOf(b.acquire(1, { timeoutMs: 20 }));
      expect(err).toBeInstanceOf(RateLimitedError);
      const retry = (err as RateLimitedError).retryAfterMs;
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(100 - 20);
    }
    expect(performance.now() - t0).toBeLessThan(500);
    // A refusal writes nothing.
    expect(await redis.hgetall(b.bucketKey)).toEqual(stateBefore);
    const p = await b.acquire(1, { timeoutMs: 2000 });
    expect(p.waitedMs).toBeLessThan(100 + 250); // ~600 ms had the refusals taken tokens
    expect(b.metrics()).toMatchObject({ granted: 3, refused: 5 });
    await expect(b.acquire(3)).rejects.toBeInstanceOf(RangeError);
  });

  it('bounds permits in flight fleet-wide; release() frees a slot', async () => {
    const a = make({ rate: 1000, capacity: 100, maxInFlight: 2 });
    const b = new RedisTokenBucketRateLimiter({
      name: a.name,
      rate: 1000,
      capacity: 100,
      maxInFlight: 2,
      redis: other,
      prefix,
    });
    const p1 = await a.acquire();
    const p2 = await b.acquire();
    expect(await redis.zcard(a.leasesKey)).toBe(2);
    const err = await rejectionOf(a.acquire(1, { timeoutMs: 150 }));
    expect(err).toBeInstanceOf(RateLimitedError);
    const waiting = b.acquire(1, { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 200));
    expect(b.metrics().granted).toBe(1); // still waiting
    const t0 = performance.now();
    p1.release(); // a slot taken by one process is freed for another
    const p3 = await waiting;
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(await redis.zcard(a.leasesKey)).toBe(2);
    expect(b.metrics().waited).toBe(1); // it polled for a slot
    p2.release();
    {
      await using _p4 = await a.acquire(1, { timeoutMs: 1000 });
      expect(await redis.zcard(a.leasesKey)).toBe(2);
    }
    p3.release();
    await until(async () => (await redis.zcard(a.leasesKey)) === 0, 2000, 'all leases removed');
    expect(a.metrics().held + b.metrics().held).toBe(0);
  });

  it('lets an unreleased lease expire after leaseTtlMs (its holder died)', async () => {
    const opts = { rate: 1000, capacity: 100, maxInFlight: 1, leaseTtlMs: 500 };
    const dead = make(opts);
    const alive = new RedisTokenBucketRateLimiter({ ...opts, name: dead.name, redis: other, prefix });
    const t0 = performance.now();
    const redisBefore = await redisNowMs(redis);
    await dead.acquire(); // never released
    const redisAfter = await redisNowMs(redis);
    const [, score] = await redis.zrange(dead.leasesKey, 0, 0, 'WITHSCORES');
    expect(Number(score)).toBeGreaterThanOrEqual(redisBefore + 500);
    expect(Number(score)).toBeLessThanOrEqual(redisAfter + 500);
    expect(await alive.tryAcquire(1, 100)).toBe(false);
    const p = await alive.acquire(1, { timeoutMs: 5000 });
    const sinceLease = performance.now() - t0;
    // Not before the lease's 500 ms are up (1 ms for Redis's ms clock), and not long after.
    expect(sinceLease).toBeGreaterThanOrEqual(499);
    expect(sinceLease).toBeLessThan(3000);
    expect(await redisNowMs(redis)).toBeGreaterThanOrEqual(Number(score));
    p.release();
  });

  it('keeps its state under the prefix, in keys that expire', async () => {
    const b = make({ rate: 10, capacity: 2, maxInFlight: 3, leaseTtlMs: 300 });
    expect(b.bucketKey).toBe(`${prefix}:ratelimit:${b.name}`);
    expect(b.leasesKey).toBe(`${prefix}:ratelimit:${b.name}:leases`);
    const p = await b.acquire();
    const mine = (await keysUnder(redis, prefix)).filter((k) => k.startsWith(b.bucketKey));
    expect(mine).toEqual([b.bucketKey, b.leasesKey]);
    // One token short: refilled in 100 ms, so the state is worthless after that (+ 1 s margin).
    const bucketTtl = await redis.pttl(b.bucketKey);
    expect(bucketTtl).toBeGreaterThan(0);
    expect(bucketTtl).toBeLessThanOrEqual(1100);
    const leasesTtl = await redis.pttl(b.leasesKey);
    expect(leasesTtl).toBeGreaterThan(0);
    expect(leasesTtl).toBeLessThanOrEqual(1300);
    p.release();
    await until(
      async () => (await redis.exists(b.bucketKey, b.leasesKey)) === 0,
      5000,
      'the bucket keys to expire',
    );
    // An unreleased lease's set expires too.
    await b.acquire();
    await until(async () => (await redis.exists(b.leasesKey)) === 0, 5000, 'the leases key to expire');
  });

  it('rejects with the signal reason when aborted while waiting, and gives its lease back', async () => {
    const b = make({ rate: 1, capacity: 1, maxInFlight: 5 });
    (await b.acquire()).release();
    const ac = new AbortController();
    const reason = new Error('caller gave up');
    const waiting = b.acquire(1, { timeoutMs: 5000, signal: ac.signal });
    await until(async () => (await redis.zcard(b.leasesKey)) === 1, 2000, 'the reservation');
    ac.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    await until(async () => (await redis.zcard(b.leasesKey)) === 0, 2000, 'the lease to be removed');
    expect(b.metrics()).toMatchObject({ granted: 1, held: 0 });
  });

  it('three processes hammering one bucket get capacity + rate x duration between them', async () => {
    const rate = 20;
    const capacity = 5;
    const durationMs = 4000;
    const name = `hammer${++n}`;
    const children: ChildProcess[] = [];
    try {
      const outputs = Array.from({ length: 3 }, () => {
        const child = spawn(
          process.execPath,
          ['--import', 'tsx', join(ROOT, 'test', 'helpers', 'bucket-hammer.ts')],
          {
            cwd: ROOT,
            env: {
              PATH: process.env.PATH ?? '',
              HOME: process.env.HOME ?? '',
              REDIS_URL: testRedisUrl(),
              PREFIX: prefix,
              NAME: name,
              RATE: String(rate),
              CAPACITY: String(capacity),
              DURATION_MS: String(durationMs),
              CONCURRENCY: '2',
            },
            stdio: ['pipe', 'pipe', 'pipe'],
          },
        );
        children.push(child);
        let out = '';
        let err = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        const exited = new Promise<number | string>((resolve) =>
          child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
        );
        return { child, out: () => out, err: () => err, exited };
      });
      // Start together once all three are connected (tsx start-up time varies a lot on a busy machine).
      await until(
        () => outputs.every((o) => o.out().includes('ready\n') || o.child.exitCode !== null),
        30_000,
        'the hammer processes to be ready',
      );
      for (const o of outputs) o.child.stdin!.end('go\n');
      const codes = await Promise.all(outputs.map((o) => o.exited));
      const results = outputs.map((o, i) => {
        expect({ child: i, code: codes[i], stderr: o.err() }).toEqual({ child: i, code: 0, stderr: '' });
        const line = o
          .out()
          .split('\n')
          .find((l) => l.startsWith('{'));
        return JSON.parse(line!) as { grantedAt: number[]; refused: number };
      });
      const merged = results.flatMap((r) => r.grantedAt);
      const expected = capacity + (rate * durationMs) / 1000; // 85
      expect(merged.length).toBeGreaterThanOrEqual(Math.floor(expected * 0.75));
      expect(merged.length).toBeLessThanOrEqual(Math.ceil(expected * 1.25));
      for (const r of results) expect(r.grantedAt.length).toBeGreaterThan(0); // every process got a share
      expect(intervalViolation(merged, rate, capacity)).toBeUndefined();
      // The grants span about the run's duration (Redis clock), and no more tokens than it allows.
      const sorted = [...merged].sort((x, y) => x - y);
      const span = sorted[sorted.length - 1]! - sorted[0]!;
      expect(span).toBeLessThanOrEqual(durationMs + 1000);
      expect(merged.length).toBeLessThanOrEqual(capacity + (rate * (span + EPOCH_MS_RESOLUTION)) / 1000);
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
  }, 90_000);
});

describe('RedisTokenBucketRateLimiter while Redis is away', () => {
  it('ends a wait on the caller’s signal even though the script call never returns', async () => {
    const server = await startPrivateRedis();
    const conn = new Redis(server.url, { maxRetriesPerRequest: null, retryStrategy: () => 100 });
    try {
      const limiter = new RedisTokenBucketRateLimiter({
        name: 'away',
        rate: 5,
        capacity: 1,
        redis: conn,
        prefix: uniquePrefix('rl-away'),
      });
      (await limiter.acquire()).release();
      await server.stop();
      const ac = new AbortController();
      const reason = new Error('job cancelled');
      setTimeout(() => ac.abort(reason), 200);
      const t0 = performance.now();
      const err = await rejectionOf(limiter.acquire(1, { timeoutMs: 10_000, signal: ac.signal }));
      expect(err).toBe(reason);
      expect(performance.now() - t0).toBeLessThan(2000);
    } finally {
      conn.disconnect();
      await server.destroy();
    }
  });
});
