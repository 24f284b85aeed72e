import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { RateLimitedError } from '../../shared/errors';
import {
  RedisTokenBucketRateLimiter,
  type RedisTokenBucketOptions,
} from '../../shared/rate-limit/token-bucket';
import { testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';
import { closeRedis } from '../../shared/redis/connection';
import { scanEveryMaster, type RedisConnection } from '../../shared/redis/cluster';
import { startPrivateRedis } from '../helpers/redis-server';
import { EPOCH_MS_RESOLUTION, intervalViolation, packingViolation } from '../helpers/checks';
import { rejectionOf, until } from '../helpers/wait';
import { systemClock, type BucketClock } from '../../shared/rate-limit/bucket-clock';
import { type PermitGrant } from '../../shared/rate-limit/token-bucket';

/*
 * Grant times come from Redis's clock and are asserted there; how long a caller took on the host is not (a
 * busy host makes it longer, and that says nothing about the bucket). The buckets run on a clock that
 * records their sleeps, so "refused without waiting" is an observation, not a timing.
 */
class RecordingClock implements BucketClock {
  readonly sleeps: number[] = [];
  now(): number {
    return systemClock.now();
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (ms > 0) this.sleeps.push(ms);
    return systemClock.sleep(ms, signal);
  }
}

/** Every grant of `limiter`, in order. */
function grantsOf(limiter: RedisTokenBucketRateLimiter): PermitGrant[] {
  const grants: PermitGrant[] = [];
  limiter.on('permit:granted', (g) => grants.push(g));
  return grants;
}

const ROOT = join(__dirname, '..', '..');

async function redisNowMs(redis: RedisConnection): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

async function keysUnder(redis: RedisConnection, prefix: string): Promise<string[]> {
  const found: string[] = [];
  await scanEveryMaster(redis, `${prefix}*`, 1000, (keys) => found.push(...keys));
  return found.sort();
}

describe('RedisTokenBucketRateLimiter (fleet-wide, on Redis)', () => {
  const prefix = uniquePrefix('tbucket');
  let redis: RedisConnection;
  let other: RedisConnection; // a second connection: another process, as far as Redis can tell
  let n = 0;

  const make = (
    opts: Partial<Omit<RedisTokenBucketOptions, 'redis' | 'prefix'>> & { rate: number; capacity: number },
    conn: RedisConnection = redis,
  ) => new RedisTokenBucketRateLimiter({ name: `bucket${++n}`, ...opts, redis: conn, prefix });

  beforeAll(async () => {
    redis = testRedisConnection('test:bucket');
    other = testRedisConnection('test:bucket-other');
    await Promise.all([redis.ping(), other.ping()]);
  });

  afterAll(async () => {
    const keys = await keysUnder(redis, prefix);
    if (keys.length > 0) await redis.del(...keys);
    await Promise.all([closeRedis(redis), closeRedis(other)]);
  });

  it('starts full, then grants one token every 1/rate; grantedAt is on the Redis clock', async () => {
    const clock = new RecordingClock();
    const b = make({ rate: 20, capacity: 5, clock });
    const grants = grantsOf(b);
    const before = await redisNowMs(redis);
    const burst = [];
    for (let i = 0; i < 5; i++) burst.push(await b.acquire());
    // A full bucket grants at once: each grant is for the moment it was reserved, and nobody slept.
    for (const g of grants) expect(g.grantedAt).toBe(g.reservedAt);
    expect(clock.sleeps).toEqual([]);
    for (const p of burst) expect(p.grantedAt).toBeGreaterThanOrEqual(before);
    const after = await redisNowMs(redis);
    for (const p of burst) expect(p.grantedAt).toBeLessThanOrEqual(after);

    const extra = 6;
    const spaced = [];
    for (let i = 0; i < extra; i++) spaced.push(await b.acquire());
    // The bucket refills from the first grant on: 11 grants span at least 6 token periods of Redis time.
    expect(spaced[extra - 1]!.grantedAt - burst[0]!.grantedAt).toBeGreaterThanOrEqual(
      extra * 50 - EPOCH_MS_RESOLUTION,
    );
    // Not pairwise spacing: a host that stalls between two acquires lets the bucket refill, and the next
    // grants may then come closer than 1/rate; the bound over every interval is what holds.
    expect(
      intervalViolation(
        [...burst, ...spaced].map((p) => p.grantedAt),
        20,
        5,
      ),
    ).toBeUndefined();
    // ...and it holds back nothing: a caller that had to wait got its token the moment it was there.
    expect(packingViolation(grants, 20)).toBeUndefined();

    const m = b.metrics();
    expect(m).toMatchObject({ scope: 'fleet', rate: 20, capacity: 5, maxInFlight: 0, refused: 0 });
    expect(m.granted).toBe(5 + extra);
    // A grant waited when the bucket reserved a token ahead (how many did depends on how fast the host
    // came back for them, so it is counted, not predicted): the callers that waited slept for it.
    const waited = grants.filter((g) => g.grantedAt > g.reservedAt).length;
    expect(m.waited).toBe(waited);
    expect(clock.sleeps.length).toBeGreaterThanOrEqual(waited);
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
      const grants = grantsOf(b);
      const permits = await Promise.all(Array.from({ length: callers }, () => b.acquire()));
      const times = permits.map((p) => p.grantedAt);
      expect(intervalViolation(times, rate, capacity)).toBeUndefined();
      expect(packingViolation(grants, rate)).toBeUndefined();
      const sorted = [...times].sort((x, y) => x - y);
      const span = sorted[sorted.length - 1]! - sorted[0]!;
      expect(span).toBeGreaterThanOrEqual(((callers - capacity) * 1000) / rate - EPOCH_MS_RESOLUTION);
    },
  );

  it('two limiters on separate connections share one bucket', async () => {
    // 2 tokens a second: the host may stall for most of a period between two steps and b still finds
    // the bucket empty.
    const a = make({ rate: 2, capacity: 4, maxWaitMs: 10_000 });
    const b = new RedisTokenBucketRateLimiter({
      name: a.name,
      rate: 2,
      capacity: 4,
      maxWaitMs: 10_000,
      redis: other,
      prefix,
    });
    expect(b.bucketKey).toBe(a.bucketKey);
    const grants = grantsOf(a);
    const grantsB = grantsOf(b);
    const first = [];
    for (let i = 0; i < 4; i++) first.push(await a.acquire());
    // a emptied the bucket: b gets nothing at once, and a token 500 ms after a's first grant.
    expect(await b.tryAcquire(1, 0)).toBe(false);
    const err = await rejectionOf(b.acquire(1, { timeoutMs: 10 }));
    expect(err).toBeInstanceOf(RateLimitedError);
    // When a call with the same 10 ms budget would be granted: the token is <= 500 ms away.
    expect((err as RateLimitedError).retryAfterMs).toBeGreaterThanOrEqual(1);
    expect((err as RateLimitedError).retryAfterMs).toBeLessThanOrEqual(500 - 10);
    const fromB = await b.acquire();
    expect(fromB.grantedAt - first[0]!.grantedAt).toBeGreaterThanOrEqual(500 - EPOCH_MS_RESOLUTION);
    // Both hammer the bucket at once: the merged grants still obey one limit.
    const more = await Promise.all([
      ...Array.from({ length: 6 }, () => a.acquire()),
      ...Array.from({ length: 6 }, () => b.acquire()),
    ]);
    const all = [...first, fromB, ...more].map((p) => p.grantedAt);
    expect(intervalViolation(all, 2, 4)).toBeUndefined();
    expect(packingViolation([...grants, ...grantsB], 2)).toBeUndefined();
    const sorted = [...all].sort((x, y) => x - y);
    expect(sorted[sorted.length - 1]! - sorted[0]!).toBeGreaterThanOrEqual(
      ((17 - 4) * 1000) / 2 - EPOCH_MS_RESOLUTION,
    );
    expect(a.metrics().granted + b.metrics().granted).toBe(17);
    expect(b.metrics().refused).toBe(2);
  });

  it('refuses at once when the wait exceeds timeoutMs, without taking tokens', async () => {
    // 1 token every 5 s: the refusals must all come before the next token, on Redis's clock, so a host
    // stall between them must stay under 5 s (at 1 token a second, a stall of a second at load 20 let one
    // through).
    const period = 5000;
    const clock = new RecordingClock();
    const b = make({ rate: 1000 / period, capacity: 2, clock });
    const grants = grantsOf(b);
    await b.acquire();
    await b.acquire();
    const stateBefore = await redis.hgetall(b.bucketKey);
    for (let i = 0; i < 5; i++) {
      const err = await rejectionOf(b.acquire(1, { timeoutMs: 20 }));
      expect(err).toBeInstanceOf(RateLimitedError);
      const retry = (err as RateLimitedError).retryAfterMs;
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(period - 20);
    }
    expect(clock.sleeps).toEqual([]); // refusals do not wait
    // A refusal writes nothing.
    expect(await redis.hgetall(b.bucketKey)).toEqual(stateBefore);
    await b.acquire(1, { timeoutMs: period + 1000 });
    // The bucket imposed at most one token period (five had the refusals taken tokens).
    const last = grants[grants.length - 1]!;
    expect(last.grantedAt - last.reservedAt).toBeLessThanOrEqual(period);
    expect(last.grantedAt - grants[0]!.grantedAt).toBeGreaterThanOrEqual(period - EPOCH_MS_RESOLUTION);
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
    p1.release(); // a slot taken by one process is freed for another
    const p3 = await waiting; // granted, not refused at its 10 s timeout
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
    // 2 s: long enough that a stall on the host cannot let the lease expire before the first check.
    const opts = { rate: 1000, capacity: 100, maxInFlight: 1, leaseTtlMs: 2000 };
    const dead = make(opts);
    const alive = new RedisTokenBucketRateLimiter({ ...opts, name: dead.name, redis: other, prefix });
    const redisBefore = await redisNowMs(redis);
    await dead.acquire(); // never released
    const redisAfter = await redisNowMs(redis);
    const [, score] = await redis.zrange(dead.leasesKey, 0, 0, 'WITHSCORES');
    // The lease expires 2 s after it was taken, on Redis's clock.
    expect(Number(score)).toBeGreaterThanOrEqual(redisBefore + 2000);
    expect(Number(score)).toBeLessThanOrEqual(redisAfter + 2000);
    expect(await alive.tryAcquire(1, 100)).toBe(false);
    const p = await alive.acquire(1, { timeoutMs: 10_000 });
    // Granted within its timeout, and not before the lease expired — on the clock the limiter runs on
    // (Redis's TIME, as every grant time in this file): the grant's own Redis time, and Redis's time after it.
    // Not on this process's monotonic clock: the host's wall clock, which Redis reads, may be stepped against
    // it (a busy CI run saw this grant 1,386 ms after the lease on the monotonic clock, where the lease's
    // score was at least 2,000 ms after it was taken on Redis's clock).
    expect(p.grantedAt).toBeGreaterThanOrEqual(Number(score));
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
        75_000,
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
        return JSON.parse(line!) as { grantedAt: number[]; reservedAt: number[]; refused: number };
      });
      const merged = results.flatMap((r) => r.grantedAt);
      const expected = capacity + (rate * durationMs) / 1000; // 85
      // How many tokens the processes took depends on how often a busy host let them ask; what the bucket
      // guarantees does not: never more than the limit over any interval, and never a token held back from
      // a caller that waited for it (so with callers always waiting, the limit is what they get).
      expect(merged.length).toBeLessThanOrEqual(Math.ceil(expected * 1.25));
      for (const r of results) expect(r.grantedAt.length).toBeGreaterThan(0); // every process got a share
      expect(intervalViolation(merged, rate, capacity)).toBeUndefined();
      const grants = results.flatMap((r) =>
        r.grantedAt.map((grantedAt, i) => ({ tokens: 1, grantedAt, reservedAt: r.reservedAt[i]! })),
      );
      expect(packingViolation(grants, rate)).toBeUndefined();
      // They did wait: most of the tokens were reserved ahead of their grant time.
      expect(grants.filter((g) => g.grantedAt > g.reservedAt).length).toBeGreaterThan(capacity);
      // The grants span about the run's duration (Redis clock), and no more tokens than it allows.
      const sorted = [...merged].sort((x, y) => x - y);
      const span = sorted[sorted.length - 1]! - sorted[0]!;
      expect(span).toBeLessThanOrEqual(durationMs + 1000);
      expect(merged.length).toBeLessThanOrEqual(capacity + (rate * (span + EPOCH_MS_RESOLUTION)) / 1000);
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
  }, 150_000);
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
      expect(performance.now() - t0).toBeLessThan(10_000); // not its timeout: the signal ended it
    } finally {
      conn.disconnect();
      await server.destroy();
    }
  });
});
