import { performance } from 'node:perf_hooks';
import { RateLimitedError } from '../../shared/errors';
import { TokenBucketRateLimiter, type Permit } from '../../shared/rate-limit/token-bucket';
import { EPOCH_MS_RESOLUTION, configErrorFields, intervalViolation } from '../helpers/checks';
import { rejectionOf, until } from '../helpers/wait';

const bucket = (rate: number, capacity: number, extra: { maxInFlight?: number; maxWaitMs?: number } = {}) =>
  new TokenBucketRateLimiter({ name: 'test', rate, capacity, ...extra });

/** True when `p` has settled (after letting pending callbacks run). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('TokenBucketRateLimiter (in-process)', () => {
  it('starts full: capacity permits at once, then one every 1/rate', async () => {
    const b = bucket(20, 5); // 50 ms a token
    const t0 = performance.now();
    const burst: Permit[] = [];
    for (let i = 0; i < 5; i++) burst.push(await b.acquire());
    const burstMs = performance.now() - t0;
    expect(burstMs).toBeLessThan(40); // no waiting at all; generous for a noisy machine
    for (const p of burst) expect(p.waitedMs).toBeLessThan(40);

    const extra = 6;
    const t1 = performance.now();
    const spaced: Permit[] = [];
    for (let i = 0; i < extra; i++) spaced.push(await b.acquire());
    const elapsed = performance.now() - t1;
    // 6 tokens at 20/s = 300 ms from the first grant (a loaded machine may make the timers late).
    expect(elapsed).toBeGreaterThanOrEqual(extra * 50 - burstMs - 5);
    expect(elapsed).toBeLessThan(extra * 50 + 600);
    // The grant times themselves are spaced by exactly 1/rate (they are computed, not measured)...
    for (let i = 1; i < spaced.length; i++)
      expect(spaced[i]!.grantedAt - spaced[i - 1]!.grantedAt).toBeGreaterThanOrEqual(
        50 - EPOCH_MS_RESOLUTION,
      );
    // ...and the first one after the burst is one token period after the bucket started emptying.
    expect(spaced[0]!.grantedAt - burst[0]!.grantedAt).toBeGreaterThanOrEqual(50 - EPOCH_MS_RESOLUTION);
    expect(
      intervalViolation(
        [...burst, ...spaced].map((p) => p.grantedAt),
        20,
        5,
      ),
    ).toBeUndefined();

    const m = b.metrics();
    expect(m).toMatchObject({ name: 'test', scope: 'process', rate: 20, capacity: 5, maxInFlight: 0 });
    expect(m.granted).toBe(5 + extra);
    expect(m.waited).toBeGreaterThanOrEqual(extra - 1);
    expect(m.refused).toBe(0);
    expect(m.held).toBe(5 + extra); // never released
    for (const p of [...burst, ...spaced]) p.release();
    expect(b.metrics().held).toBe(0);
  });

  it.each([
    [30, 1, 8], // a period of 33.33 ms: rounding a reservation's wait up bends the guarantee
    [20, 5, 20],
    [7, 2, 10],
  ])(
    'concurrent callers (rate %d, capacity %d, %d callers) never get more than capacity + rate x interval',
    async (rate, capacity, callers) => {
      const b = bucket(rate, capacity, { maxWaitMs: 10_000 });
      const permits = await Promise.all(Array.from({ length: callers }, () => b.acquire()));
      const times = permits.map((p) => p.grantedAt);
      expect(intervalViolation(times, rate, capacity)).toBeUndefined();
      // Served in arrival order; the total span is what the rate allows, not more.
      for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThanOrEqual(times[i - 1]!);
      const span = times[times.length - 1]! - times[0]!;
      expect(span).toBeGreaterThanOrEqual(((callers - capacity) * 1000) / rate - EPOCH_MS_RESOLUTION);
      expect(span).toBeLessThan(((callers - capacity) * 1000) / rate + 50);
    },
  );

  it('refuses at once with RateLimitedError when the wait would exceed timeoutMs, spending no token', async () => {
    const b = bucket(10, 2); // 100 ms a token
    await b.acquire();
    await b.acquire();
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) {
      const err = await rejectionOf(b.acquire(1, { timeoutMs: 20 }));
      expect(err).toBeInstanceOf(RateLimitedError);
      expect((err as RateLimitedError).code).toBe('CELL0_RATE_LIMITED');
      expect((err as RateLimitedError).limiter).toBe('test');
      // When a call with the same 20 ms budget would be granted: the token is <= 100 ms away.
      const retry = (err as RateLimitedError).retryAfterMs;
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(100 - 20);
    }
    expect(await b.tryAcquire(1, 0)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(80); // refusals do not wait
    expect(b.metrics().refused).toBe(6);
    // Had the refusals taken tokens, the next one would be ~600 ms away; it is at most ~100 ms.
    const p = await b.acquire(1, { timeoutMs: 2000 });
    expect(p.waitedMs).toBeLessThan(100 + 150);
    // A wait that fits in the timeout is granted (it was refused above only for the timeout).
    const p2 = await b.acquire(1, { timeoutMs: 150 });
    expect(p2.waitedMs).toBeGreaterThanOrEqual(50);
    const m = b.metrics();
    expect(m.granted).toBe(4);
    expect(m.refused).toBe(6);
  });

  it('uses maxWaitMs as the default timeout', async () => {
    const b = bucket(1, 1, { maxWaitMs: 100 });
    await b.acquire();
    const err = await rejectionOf(b.acquire());
    expect(err).toBeInstanceOf(RateLimitedError);
    // The token is ~1000 ms away; a call waiting up to 100 ms gets it if it comes back after ~900 ms.
    expect((err as RateLimitedError).retryAfterMs).toBeGreaterThan(800);
    expect((err as RateLimitedError).retryAfterMs).toBeLessThanOrEqual(900);
  });

  it('rejects token counts outside (0, capacity] with RangeError, consuming nothing', async () => {
    const b = bucket(1, 3);
    for (const n of [4, 0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      const err = await rejectionOf(b.acquire(n));
      expect(err).toBeInstanceOf(RangeError);
      expect((err as Error).message).toMatch(/capacity 3/);
    }
    await expect(b.tryAcquire(4)).rejects.toBeInstanceOf(RangeError);
    await expect(b.scoped(4, async () => 1)).rejects.toBeInstanceOf(RangeError);
    // The bucket is still full.
    const p = await b.acquire(3, { timeoutMs: 0 });
    expect(p.waitedMs).toBeLessThan(40);
    expect(b.metrics()).toMatchObject({ granted: 1, refused: 0 });
  });

  it('refuses invalid options with a ConfigError naming the field', () => {
    expect(configErrorFields(() => new TokenBucketRateLimiter({ name: 'x', rate: 0, capacity: 1 }))).toEqual([
      'TokenBucketRateLimiter.rate',
    ]);
    expect(
      configErrorFields(() => new TokenBucketRateLimiter({ name: 'x', rate: 1, capacity: 0.5 })),
    ).toEqual(['TokenBucketRateLimiter.capacity']);
    expect(
      configErrorFields(
        () => new TokenBucketRateLimiter({ name: '', rate: 1, capacity: 1, maxInFlight: 1.5, maxWaitMs: -1 }),
      ),
    ).toEqual([
      'TokenBucketRateLimiter.name',
      'TokenBucketRateLimiter.maxInFlight',
      'TokenBucketRateLimiter.maxWaitMs',
    ]);
  });

  it('bounds permits in flight; release() frees a slot for a waiter', async () => {
    const b = bucket(1000, 100, { maxInFlight: 2 });
    const a = await b.acquire();
    const c = await b.acquire();
    expect(b.metrics().held).toBe(2);
    // No slot within the timeout: refused.
    const t0 = performance.now();
    const err = await rejectionOf(b.acquire(1, { timeoutMs: 100 }));
    expect(err).toBeInstanceOf(RateLimitedError);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    expect(b.metrics().refused).toBe(1);

    const waiting = b.acquire(1, { timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 150));
    expect(await settled(waiting)).toBe(false);
    const t1 = performance.now();
    a.release();
    a.release(); // idempotent: frees one slot, not two
    const d = await waiting;
    expect(performance.now() - t1).toBeLessThan(1000); // it polls; no need to wait for a timeout
    expect(b.metrics().held).toBe(2);
    expect(await b.tryAcquire()).toBe(false);
    c.release();
    d.release();
    expect(b.metrics().held).toBe(0);
    expect(await b.tryAcquire()).toBe(true);
  });

  it('scoped() holds a permit while fn runs and releases it when fn throws', async () => {
    const b = bucket(1000, 100, { maxInFlight: 1 });
    const inside = await b.scoped(1, async () => b.metrics().held);
    expect(inside).toBe(1);
    expect(b.metrics().held).toBe(0);
    const boom = new Error('boom');
    await expect(
      b.scoped(1, async () => {
        expect(b.metrics().held).toBe(1);
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(b.metrics().held).toBe(0);
    // The slot is really free: an immediate acquire succeeds.
    const p = await b.acquire(1, { timeoutMs: 0 });
    p.release();
  });

  it('releases on scope exit with `await using` / `using` and Symbol.asyncDispose', async () => {
    const b = bucket(1000, 100, { maxInFlight: 1 });
    {
      await using permit = await b.acquire();
      expect(permit.waitedMs).toBeGreaterThanOrEqual(0);
      expect(b.metrics().held).toBe(1);
    }
    expect(b.metrics().held).toBe(0);
    try {
      await using _permit = await b.acquire();
      throw new Error('leave the scope by throwing');
    } catch {
      // expected
    }
    expect(b.metrics().held).toBe(0);
    {
      using _permit = await b.acquire();
      expect(b.metrics().held).toBe(1);
    }
    expect(b.metrics().held).toBe(0);
    const p = await b.acquire();
    await p[Symbol.asyncDispose]();
    expect(b.metrics().held).toBe(0);
    expect(await b.tryAcquire()).toBe(true);
  });

  it('rejects with the signal reason when aborted while waiting for tokens or for a slot', async () => {
    const b = bucket(1, 1, { maxInFlight: 1 });
    const first = await b.acquire();
    first.release();
    // Waiting for tokens (the next one is ~1 s away).
    const ac = new AbortController();
    const reason = new Error('caller gave up');
    const t0 = performance.now();
    const waiting = b.acquire(1, { timeoutMs: 5000, signal: ac.signal });
    setTimeout(() => ac.abort(reason), 50);
    await expect(waiting).rejects.toBe(reason);
    expect(performance.now() - t0).toBeLessThan(800);
    expect(b.metrics()).toMatchObject({ granted: 1, held: 0 });

    // Already aborted: rejects at once.
    const done = new AbortController();
    done.abort(reason);
    await expect(b.acquire(1, { signal: done.signal })).rejects.toBe(reason);

    // Waiting for an in-flight slot.
    const c = bucket(1000, 100, { maxInFlight: 1 });
    const held = await c.acquire();
    const ac2 = new AbortController();
    const waiting2 = c.acquire(1, { timeoutMs: 5000, signal: ac2.signal });
    setTimeout(() => ac2.abort(reason), 50);
    await expect(waiting2).rejects.toBe(reason);
    expect(c.metrics().held).toBe(1);
    held.release();
    expect(c.metrics().held).toBe(0);
    expect(await c.tryAcquire()).toBe(true);
  });

  it('counts granted, waited, refused, held and wait times', async () => {
    const b = bucket(10, 1); // 100 ms a token
    const p1 = await b.acquire(); // immediate
    const p2 = await b.acquire(); // waits ~100 ms
    expect(await b.tryAcquire(1, 0)).toBe(false);
    let m = b.metrics();
    expect(m.granted).toBe(2);
    expect(m.waited).toBe(1);
    expect(m.refused).toBe(1);
    expect(m.held).toBe(2);
    expect(m.maxWaitMs).toBeGreaterThanOrEqual(90);
    expect(m.maxWaitMs).toBeLessThan(600);
    expect(m.totalWaitMs).toBeGreaterThanOrEqual(m.maxWaitMs);
    expect(m.totalWaitMs).toBeLessThan(m.maxWaitMs + 50);
    expect(Number.isInteger(m.totalWaitMs) && Number.isInteger(m.maxWaitMs)).toBe(true);
    p1.release();
    p2.release();
    m = b.metrics();
    expect(m.held).toBe(0);
    expect(m.granted).toBe(2);
    // tryAcquire that succeeds counts a grant and releases at once.
    await until(() => b.tryAcquire(1, 0), 2000, 'a token');
    expect(b.metrics()).toMatchObject({ granted: 3, held: 0 });
  });
});
