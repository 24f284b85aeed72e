import { RateLimitedError } from '../../shared/errors';
import {
  TokenBucketRateLimiter,
  type Permit,
  type PermitGrant,
  type TokenBucketOptions,
} from '../../shared/rate-limit/token-bucket';
import { systemClock } from '../../shared/rate-limit/bucket-clock';
import { configErrorFields, intervalViolation, packingViolation } from '../helpers/checks';
import { ManualClock, flush } from '../helpers/manual-clock';
import { rejectionOf } from '../helpers/wait';

/*
 * Time is the subject here: every bucket runs on a ManualClock, so grant times, waits and refusals are
 * exact and nothing depends on how busy the host is. One test checks the system clock on its own.
 */
function bucket(
  rate: number,
  capacity: number,
  extra: Partial<TokenBucketOptions> = {},
): { b: TokenBucketRateLimiter; clock: ManualClock; grants: PermitGrant[] } {
  const clock = new ManualClock();
  const b = new TokenBucketRateLimiter({ name: 'test', rate, capacity, clock, ...extra });
  const grants: PermitGrant[] = [];
  b.on('permit:granted', (g) => grants.push(g));
  return { b, clock, grants };
}

/** True when `p` has settled (after letting pending callbacks run). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await flush();
  return done;
}

describe('TokenBucketRateLimiter (in-process)', () => {
  it('starts full: capacity permits at once, then one every 1/rate, each waiting exactly for its token', async () => {
    const { b, clock, grants } = bucket(20, 5); // 50 ms a token
    const t0 = clock.now();
    const burst: Permit[] = [];
    for (let i = 0; i < 5; i++) burst.push(await b.acquire());
    for (const p of burst) expect(p).toMatchObject({ waitedMs: 0, grantedAt: t0 });
    expect(clock.sleeps).toEqual([]); // no waiting at all

    const extra = 6;
    const spaced: Permit[] = [];
    for (let i = 0; i < extra; i++) spaced.push(await clock.run(b.acquire()));
    // The k-th token after the burst is due k periods after the bucket started emptying.
    spaced.forEach((p, k) => {
      expect(p.grantedAt).toBeCloseTo(t0 + (k + 1) * 50, 3);
      expect(p.waitedMs).toBeCloseTo(50, 3);
    });
    expect(clock.now()).toBeCloseTo(t0 + extra * 50, 3);
    expect(
      intervalViolation(
        [...burst, ...spaced].map((p) => p.grantedAt),
        20,
        5,
      ),
    ).toBeUndefined();
    // The observable record: one event per permit, with the same grant time the permit carries.
    expect(grants.map((g) => g.grantedAt)).toEqual([...burst, ...spaced].map((p) => p.grantedAt));
    expect(grants.every((g) => g.limiter === 'test' && g.tokens === 1)).toBe(true);
    // Each caller after the burst reserved when it asked and was granted when its token was there.
    grants.slice(5).forEach((g, k) => expect(g.reservedAt).toBeCloseTo(t0 + k * 50, 3));
    expect(packingViolation(grants, 20)).toBeUndefined();

    const m = b.metrics();
    expect(m).toMatchObject({ name: 'test', scope: 'process', rate: 20, capacity: 5, maxInFlight: 0 });
    expect(m).toMatchObject({ granted: 5 + extra, waited: extra, refused: 0, held: 5 + extra });
    expect(m.totalWaitMs).toBe(extra * 50);
    expect(m.maxWaitMs).toBe(50);
    for (const p of [...burst, ...spaced]) p.release();
    expect(b.metrics().held).toBe(0);
  });

  it('refills while idle, never beyond capacity', async () => {
    const { b, clock } = bucket(10, 3); // 100 ms a token
    for (let i = 0; i < 3; i++) await b.acquire();
    await clock.advance(150); // 1.5 tokens back
    expect(await b.tryAcquire(1, 0)).toBe(true);
    expect(await b.tryAcquire(1, 0)).toBe(false);
    await clock.advance(60_000); // long idle: full, not more
    for (let i = 0; i < 3; i++) expect(await b.tryAcquire(1, 0)).toBe(true);
    expect(await b.tryAcquire(1, 0)).toBe(false);
  });

  it.each([
    [30, 1, 8], // a period of 33.33 ms: rounding a reservation's wait up bends the guarantee
    [20, 5, 20],
    [7, 2, 10],
  ])(
    'concurrent callers (rate %d, capacity %d, %d callers) never get more than capacity + rate x interval',
    async (rate, capacity, callers) => {
      const { b, clock, grants } = bucket(rate, capacity, { maxWaitMs: 10_000 });
      const t0 = clock.now();
      const permits = await clock.run(Promise.all(Array.from({ length: callers }, () => b.acquire())));
      const times = permits.map((p) => p.grantedAt);
      expect(intervalViolation(times, rate, capacity)).toBeUndefined();
      expect(packingViolation(grants, rate)).toBeUndefined();
      // Served in arrival order, and no later than the rate allows: the span is exactly the tokens' refill.
      for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThanOrEqual(times[i - 1]!);
      expect(times[times.length - 1]! - t0).toBeCloseTo(((callers - capacity) * 1000) / rate, 3);
    },
  );

  it('refuses at once with RateLimitedError when the wait would exceed timeoutMs, spending no token', async () => {
    const { b, clock } = bucket(10, 2); // 100 ms a token
    const refusals: number[] = [];
    b.on('permit:refused', (r) => refusals.push(r.retryAfterMs));
    await b.acquire();
    await b.acquire();
    await clock.advance(10); // the next token is 90 ms away
    for (let i = 0; i < 5; i++) {
      const err = await rejectionOf(b.acquire(1, { timeoutMs: 20 }));
      expect(err).toBeInstanceOf(RateLimitedError);
      expect((err as RateLimitedError).code).toBe('CELL0_RATE_LIMITED');
      expect((err as RateLimitedError).limiter).toBe('test');
      // When a call with the same 20 ms budget would be granted: 90 - 20 ms from now.
      expect((err as RateLimitedError).retryAfterMs).toBe(70);
    }
    expect(await b.tryAcquire(1, 0)).toBe(false);
    expect(clock.sleeps).toEqual([]); // refusals do not wait
    expect(refusals).toEqual([70, 70, 70, 70, 70, 90]);
    expect(b.metrics().refused).toBe(6);
    // Had the refusals taken tokens, the next one would be ~600 ms away; it is 90 ms away.
    const p = await clock.run(b.acquire(1, { timeoutMs: 2000 }));
    expect(p.waitedMs).toBeCloseTo(90, 3);
    // A wait that fits in the timeout is granted (it was refused above only for the timeout).
    const p2 = await clock.run(b.acquire(1, { timeoutMs: 150 }));
    expect(p2.waitedMs).toBeCloseTo(100, 3);
    expect(b.metrics()).toMatchObject({ granted: 4, refused: 6 });
  });

  it('uses maxWaitMs as the default timeout', async () => {
    const { b } = bucket(1, 1, { maxWaitMs: 100 });
    await b.acquire();
    const err = await rejectionOf(b.acquire());
    expect(err).toBeInstanceOf(RateLimitedError);
    // The token is 1000 ms away; a call waiting up to 100 ms gets it if it comes back after 900 ms.
    expect((err as RateLimitedError).retryAfterMs).toBe(900);
  });

  it('rejects token counts outside (0, capacity] with RangeError, consuming nothing', async () => {
    const { b } = bucket(1, 3);
    for (const n of [4, 0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      const err = await rejectionOf(b.acquire(n));
      expect(err).toBeInstanceOf(RangeError);
      expect((err as Error).message).toMatch(/capacity 3/);
    }
    await expect(b.tryAcquire(4)).rejects.toBeInstanceOf(RangeError);
    await expect(b.scoped(4, async () => 1)).rejects.toBeInstanceOf(RangeError);
    // The bucket is still full.
    const p = await b.acquire(3, { timeoutMs: 0 });
    expect(p.waitedMs).toBe(0);
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
    expect(
      configErrorFields(
        () =>
          new TokenBucketRateLimiter({
            name: 'x',
            rate: 1,
            capacity: 1,
            clock: { now: () => 0 } as unknown as ManualClock,
          }),
      ),
    ).toEqual(['TokenBucketRateLimiter.clock']);
  });

  it('bounds permits in flight; release() frees a slot for a waiter', async () => {
    const { b, clock } = bucket(1000, 100, { maxInFlight: 2 });
    const a = await b.acquire();
    const c = await b.acquire();
    expect(b.metrics().held).toBe(2);
    // No slot within the timeout: refused once the timeout has passed on the clock, not before.
    const t0 = clock.now();
    const err = await rejectionOf(clock.run(b.acquire(1, { timeoutMs: 100 })));
    expect(err).toBeInstanceOf(RateLimitedError);
    expect(clock.now() - t0).toBeGreaterThanOrEqual(100);
    expect(b.metrics().refused).toBe(1);

    const waiting = b.acquire(1, { timeoutMs: 5000 });
    await clock.advance(150);
    expect(await settled(waiting)).toBe(false);
    const t1 = clock.now();
    a.release();
    a.release(); // idempotent: frees one slot, not two
    const d = await clock.run(waiting);
    // It polls (at most every 200 ms): the slot is taken at the next poll, not at the timeout.
    expect(clock.now() - t1).toBeLessThanOrEqual(200 * 1.5);
    expect(b.metrics().held).toBe(2);
    expect(await b.tryAcquire()).toBe(false);
    c.release();
    d.release();
    expect(b.metrics().held).toBe(0);
    expect(await b.tryAcquire()).toBe(true);
  });

  it('scoped() holds a permit while fn runs and releases it when fn throws', async () => {
    const { b } = bucket(1000, 100, { maxInFlight: 1 });
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
    const { b } = bucket(1000, 100, { maxInFlight: 1 });
    {
      await using permit = await b.acquire();
      expect(permit.waitedMs).toBe(0);
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
    const { b, clock } = bucket(1, 1, { maxInFlight: 1 });
    const first = await b.acquire();
    first.release();
    // Waiting for tokens (the next one is 1 s away).
    const ac = new AbortController();
    const reason = new Error('caller gave up');
    const waiting = b.acquire(1, { timeoutMs: 5000, signal: ac.signal });
    await clock.advance(50);
    expect(await settled(waiting)).toBe(false);
    ac.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    expect(clock.pending).toBe(0); // its sleep is gone
    expect(b.metrics()).toMatchObject({ granted: 1, held: 0 });

    // Already aborted: rejects at once.
    const done = new AbortController();
    done.abort(reason);
    await expect(b.acquire(1, { signal: done.signal })).rejects.toBe(reason);

    // Waiting for an in-flight slot.
    const { b: c, clock: clock2 } = bucket(1000, 100, { maxInFlight: 1 });
    const held = await c.acquire();
    const ac2 = new AbortController();
    const waiting2 = c.acquire(1, { timeoutMs: 5000, signal: ac2.signal });
    await clock2.advance(50);
    ac2.abort(reason);
    await expect(waiting2).rejects.toBe(reason);
    expect(c.metrics().held).toBe(1);
    held.release();
    expect(c.metrics().held).toBe(0);
    expect(await c.tryAcquire()).toBe(true);
  });

  it('counts granted, waited, refused, held and wait times', async () => {
    const { b, clock } = bucket(10, 1); // 100 ms a token
    const p1 = await b.acquire(); // immediate
    const p2 = await clock.run(b.acquire()); // waits 100 ms
    expect(await b.tryAcquire(1, 0)).toBe(false);
    let m = b.metrics();
    expect(m).toMatchObject({ granted: 2, waited: 1, refused: 1, held: 2, maxWaitMs: 100, totalWaitMs: 100 });
    p1.release();
    p2.release();
    m = b.metrics();
    expect(m.held).toBe(0);
    expect(m.granted).toBe(2);
    // tryAcquire that succeeds counts a grant and releases at once.
    await clock.advance(100);
    expect(await b.tryAcquire(1, 0)).toBe(true);
    expect(b.metrics()).toMatchObject({ granted: 3, held: 0 });
  });
});

describe('TokenBucketRateLimiter on the system clock', () => {
  it('never hands out a permit before its grant time (timers may fire early; it sleeps the rest)', async () => {
    const b = new TokenBucketRateLimiter({ name: 'sys', rate: 40, capacity: 1 }); // 25 ms a token
    await b.acquire();
    for (let i = 0; i < 4; i++) {
      const p = await b.acquire();
      // Only lower bounds: a busy host makes a wait longer, never shorter.
      expect(systemClock.now()).toBeGreaterThanOrEqual(p.grantedAt);
      expect(p.waitedMs).toBeGreaterThan(0);
    }
  });
});
