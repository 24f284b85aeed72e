import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import {
  BreakerOpenError,
  ModelNotFoundError,
  ProviderError,
  RateLimitedError,
  type ProviderFailureKind,
} from '../../shared/errors';
import { httpStatusError } from '../../shared/http/errors';
import { sleep } from '../../shared/sleep';
import { TokenBucketRateLimiter } from '../../shared/rate-limit/token-bucket';
import {
  BackendGuard,
  countsAgainstBackend,
  type BackendGuardOptions,
} from '../../workers/providers/backend-guard';
import { rejectionOf, until } from '../helpers/wait';

/** An HTTP error answer as the provider clients build it (retryable for 408, 429 and 5xx). */
const http = (status: number, retryAfter?: string) =>
  httpStatusError('fake', '/x', status, retryAfter, 'said no');
/** A failure to get an answer at all: always retryable. */
const noAnswer = (kind: Exclude<ProviderFailureKind, 'http'>) =>
  new ProviderError('fake', `/x: ${kind}`, undefined, kind !== 'protocol', { kind });

/** A backend call that fails with the given errors in turn, then answers "ok"; records when it was called. */
function script(...failures: Error[]) {
  const calls: number[] = [];
  const call = async (signal: AbortSignal): Promise<string> => {
    expect(signal).toBeInstanceOf(AbortSignal);
    calls.push(performance.now());
    const err = failures[calls.length - 1];
    if (err) throw err;
    return 'ok';
  };
  return { call, calls };
}

/** The guard's waits between tries, recorded, each still on a real timer ({@link sleep}). */
function recordedSleep() {
  const slept: number[] = [];
  return {
    slept,
    sleep: (ms: number, options: { signal: AbortSignal }) => {
      slept.push(ms);
      return sleep(ms, options);
    },
  };
}

/** A backend call that always fails with `err`. */
function always(err: Error) {
  const calls: number[] = [];
  return {
    calls,
    call: async (): Promise<never> => {
      calls.push(performance.now());
      throw err;
    },
  };
}

describe('BackendGuard', () => {
  const guards: BackendGuard[] = [];
  const guard = (opts: Partial<BackendGuardOptions> = {}) => {
    const g = new BackendGuard({
      name: 'fake@http://127.0.0.1:1',
      failureThreshold: 1000,
      random: () => 0,
      ...opts,
      retry: { baseDelayMs: 1, ...opts.retry },
    });
    guards.push(g);
    return g;
  };
  const signal = () => new AbortController().signal;
  afterEach(() => {
    for (const g of guards.splice(0)) g.close();
  });

  describe('retries', () => {
    it.each([
      ['5xx', () => http(503)],
      ['5xx', () => http(500)],
      ['connection', () => noAnswer('connection')],
      ['timeout', () => noAnswer('timeout')],
    ])('retries %s up to maxRetries, then throws the last error', async (reason, make) => {
      const g = guard({ retry: { maxRetries: 3 } });
      const last = make();
      const f = script(make(), make(), make(), last);
      const err = await rejectionOf(g.run(f.call, signal()));
      expect(err).toBe(last);
      expect(f.calls).toHaveLength(4);
      expect(g.metrics().retries).toBe(3);
      expect(g.metrics().retriesBy).toEqual({ [reason]: 3 });
    });

    it('returns the answer when a retry succeeds', async () => {
      const g = guard({ retry: { maxRetries: 2 } });
      const f = script(http(502), noAnswer('connection'));
      await expect(g.run(f.call, signal())).resolves.toBe('ok');
      expect(f.calls).toHaveLength(3);
      expect(g.metrics().retriesBy).toEqual({ '5xx': 1, connection: 1 });
    });

    it('never retries with maxRetries 0', async () => {
      const g = guard({ retry: { maxRetries: 0 } });
      const f = always(http(503));
      expect(await rejectionOf(g.run(f.call, signal()))).toBeInstanceOf(ProviderError);
      expect(f.calls).toHaveLength(1);
      expect(g.metrics().retries).toBe(0);
    });

    it.each([400, 401, 403, 404, 422])('never retries a %d', async (status) => {
      const g = guard({ retry: { maxRetries: 5 } });
      const e = http(status);
      const f = always(e);
      expect(await rejectionOf(g.run(f.call, signal()))).toBe(e);
      expect(f.calls).toHaveLength(1);
      expect(g.metrics()).toMatchObject({ retries: 0, retriesBy: {} });
    });

    it('never retries ModelNotFoundError, a broken answer or errors that are not ProviderErrors', async () => {
      for (const e of [
        new ModelNotFoundError('fake', 'nope:7b'),
        noAnswer('protocol'),
        new TypeError('a bug'),
        new Error('plain'),
      ]) {
        const g = guard({ retry: { maxRetries: 5 } });
        const f = always(e);
        expect(await rejectionOf(g.run(f.call, signal()))).toBe(e);
        expect(f.calls).toHaveLength(1);
        expect(g.metrics().retries).toBe(0);
      }
    });

    it('waits at least Retry-After for a 429, plus jitter of at most baseDelayMs', async () => {
      const { slept, sleep } = recordedSleep();
      const g = guard({
        random: () => 1,
        sleep,
        retry: { maxRetries: 2, baseDelayMs: 20, maxRetryAfterMs: 1000 },
      });
      const tooMany = http(429, '0.15'); // Retry-After: 0.15 s
      expect(tooMany.retryAfterMs).toBe(150);
      const f = script(tooMany);
      const delays: number[] = [];
      g.on('retry', (e) => delays.push(e.delayMs));
      await expect(g.run(f.call, signal())).resolves.toBe('ok');
      expect(f.calls).toHaveLength(2);
      expect(delays).toEqual([150 + 20]);
      // It waits what it says, on a timer, before the second try (how much longer a busy host takes is not
      // the guard's: the wait asked for is checked, not an upper bound of wall time).
      expect(slept).toEqual([170]);
      expect(f.calls[1]! - f.calls[0]!).toBeGreaterThanOrEqual(150 + 20 - 2); // timers may run a ms early
      expect(g.metrics().retriesBy).toEqual({ '429': 1 });
    });

    it('honours Retry-After on a 503 too, and a 429 without it backs off like any retry', async () => {
      const g = guard({ retry: { maxRetries: 2, baseDelayMs: 5 } }); // random 0: jitter 0
      const f = script(http(503, '0.1'), http(429));
      const delays: number[] = [];
      g.on('retry', (e) => delays.push(e.delayMs));
      await expect(g.run(f.call, signal())).resolves.toBe('ok');
      expect(delays).toEqual([100, 0]);
      expect(f.calls[1]! - f.calls[0]!).toBeGreaterThanOrEqual(98);
      expect(g.metrics().retriesBy).toEqual({ '5xx': 1, '429': 1 });
    });

    it('does not wait in-line for a Retry-After longer than maxRetryAfterMs', async () => {
      const { slept, sleep } = recordedSleep();
      const g = guard({ sleep, retry: { maxRetries: 3, maxRetryAfterMs: 1000 } });
      const e = http(429, '5');
      const f = always(e);
      expect(await rejectionOf(g.run(f.call, signal()))).toBe(e);
      expect(slept).toEqual([]);
      expect(f.calls).toHaveLength(1);
      expect(g.retryDelay(e, 0)).toBeUndefined();
      expect(g.retryDelay(http(429, '1'), 0)).toBeGreaterThanOrEqual(1000); // exactly the limit is honoured
    });

    it('backs off with full jitter within [0, min(maxDelayMs, baseDelayMs * 2^n)]', () => {
      for (const r of [0, 0.25, 0.5, 0.999999]) {
        const g = guard({ random: () => r, retry: { maxRetries: 10, baseDelayMs: 100, maxDelayMs: 1000 } });
        for (let n = 0; n < 8; n++) {
          const cap = Math.min(1000, 100 * 2 ** n);
          const d = g.retryDelay(http(503), n)!;
          expect(d).toBeGreaterThanOrEqual(0);
          expect(d).toBeLessThanOrEqual(cap);
          expect(d).toBeCloseTo(r * cap, 9);
        }
        // Past maxRetries, or for what must not be retried: no delay.
        expect(g.retryDelay(http(503), 10)).toBeUndefined();
        expect(g.retryDelay(http(400), 0)).toBeUndefined();
        expect(g.retryDelay(new Error('x'), 0)).toBeUndefined();
      }
      // The default randomness stays within the same bounds.
      const g = guard({ random: Math.random, retry: { maxRetries: 10, baseDelayMs: 100, maxDelayMs: 1000 } });
      for (let i = 0; i < 200; i++) {
        const n = i % 8;
        const d = g.retryDelay(noAnswer('connection'), n)!;
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(Math.min(1000, 100 * 2 ** n));
      }
    });

    it('sleeps the backoff between tries, doubling up to maxDelayMs', async () => {
      const { slept, sleep } = recordedSleep();
      const g = guard({ random: () => 1, sleep, retry: { maxRetries: 4, baseDelayMs: 40, maxDelayMs: 100 } });
      const f = always(http(500));
      const events: Array<{ attempt: number; delayMs: number }> = [];
      g.on('retry', ({ attempt, delayMs, error }) => {
        expect(error).toBeInstanceOf(ProviderError);
        events.push({ attempt, delayMs });
      });
      await rejectionOf(g.run(f.call, signal()));
      expect(events).toEqual([
        { attempt: 1, delayMs: 40 },
        { attempt: 2, delayMs: 80 },
        { attempt: 3, delayMs: 100 },
        { attempt: 4, delayMs: 100 },
      ]);
      expect(slept).toEqual([40, 80, 100, 100]);
      // Each try waits for its sleep (the timer's, so at least the delay apart).
      const gaps = f.calls.slice(1).map((t, i) => t - f.calls[i]!);
      [40, 80, 100, 100].forEach((d, i) => expect(gaps[i]!).toBeGreaterThanOrEqual(d - 2));
    });

    it('stops retrying when the caller aborts', async () => {
      const g = guard({ random: () => 1, retry: { maxRetries: 5, baseDelayMs: 5000, maxDelayMs: 5000 } });
      const ac = new AbortController();
      const reason = new Error('job cancelled');
      const f = always(http(503));
      g.once('retry', () => setTimeout(() => ac.abort(reason), 20));
      const t0 = performance.now();
      await expect(g.run(f.call, ac.signal)).rejects.toBe(reason);
      expect(performance.now() - t0).toBeLessThan(2000);
      expect(f.calls).toHaveLength(1);
      // Aborted before the failure: the failure is thrown, not retried.
      const e = http(503);
      const aborted = new AbortController();
      const h = guard({ retry: { maxRetries: 5 } });
      const calls: number[] = [];
      await expect(
        h.run(async () => {
          calls.push(1);
          aborted.abort(reason);
          throw e;
        }, aborted.signal),
      ).rejects.toBe(e);
      expect(calls).toHaveLength(1);
    });

    it('refuses a negative maxRetries', () => {
      expect(() => new BackendGuard({ name: 'x', retry: { maxRetries: -1 } })).toThrow(TypeError);
      expect(() => new BackendGuard({ name: 'x', retry: { maxRetries: 1.5 } })).toThrow(/maxRetries/);
    });
  });

  describe('breaker', () => {
    it('opens after failureThreshold consecutive failures, refuses without calling, half-opens and closes', async () => {
      const limiter = new TokenBucketRateLimiter({ name: 'l', rate: 1000, capacity: 100 });
      const g = guard({ failureThreshold: 3, resetTimeoutMs: 300, limiter, retry: { maxRetries: 0 } });
      const opened = once(g, 'breaker:open');
      const f = always(http(503));
      for (let i = 0; i < 2; i++) await rejectionOf(g.run(f.call, signal()));
      expect(g.breaker.state).toBe('closed');
      await rejectionOf(g.run(f.call, signal()));
      await opened;
      const openedAt = performance.now();
      expect(g.breaker.state).toBe('open');
      expect(f.calls).toHaveLength(3);
      const granted = limiter.metrics().granted;
      expect(granted).toBe(3);

      // Open: refused at once, the backend is not called and no token is spent.
      const ok = script();
      for (let i = 0; i < 5; i++) {
        const err = await rejectionOf(g.run(ok.call, signal()));
        expect(err).toBeInstanceOf(BreakerOpenError);
        expect((err as BreakerOpenError).retryAfterMs).toBeLessThanOrEqual(300);
      }
      expect(ok.calls).toHaveLength(0);
      expect(limiter.metrics().granted).toBe(granted);
      expect(g.metrics().breaker.rejections).toBeGreaterThanOrEqual(5);

      // Half-open after resetTimeoutMs; one successful trial closes it.
      const halfOpen = once(g, 'breaker:half-open');
      await until(() => g.breaker.state === 'half-open', 5000, 'half-open');
      await halfOpen;
      expect(performance.now() - openedAt).toBeGreaterThanOrEqual(250);
      const closed = once(g, 'breaker:close');
      await expect(g.run(ok.call, signal())).resolves.toBe('ok');
      await closed;
      expect(g.breaker.state).toBe('closed');
      expect(ok.calls).toHaveLength(1);
      expect(g.metrics().breaker.consecutiveFailures).toBe(0);
    });

    it('reopens when the half-open trial fails', async () => {
      const g = guard({ failureThreshold: 2, resetTimeoutMs: 200, retry: { maxRetries: 0 } });
      const f = always(noAnswer('connection'));
      await rejectionOf(g.run(f.call, signal()));
      await rejectionOf(g.run(f.call, signal()));
      expect(g.breaker.state).toBe('open');
      await until(() => g.breaker.state === 'half-open', 5000, 'half-open');
      const reopened = once(g, 'breaker:open');
      expect(await rejectionOf(g.run(f.call, signal()))).toBeInstanceOf(ProviderError);
      await reopened;
      expect(g.breaker.state).toBe('open');
      expect(await rejectionOf(g.run(f.call, signal()))).toBeInstanceOf(BreakerOpenError);
      expect(f.calls).toHaveLength(3);
    });

    it('counts each retried failure, so one call with retries can open it', async () => {
      const g = guard({ failureThreshold: 3, resetTimeoutMs: 10_000, retry: { maxRetries: 5 } });
      const f = always(http(500));
      const err = await rejectionOf(g.run(f.call, signal()));
      // The third failure opened the breaker; the next try was refused instead of calling.
      expect(f.calls).toHaveLength(3);
      expect(err).toBeInstanceOf(BreakerOpenError);
      expect(g.breaker.state).toBe('open');
    });

    it('does not count 4xx, 429 or non-backend errors toward opening', async () => {
      const g = guard({ failureThreshold: 2, resetTimeoutMs: 10_000, retry: { maxRetries: 0 } });
      for (const e of [
        http(400),
        http(401),
        http(404),
        http(429),
        http(429, '1'),
        new ModelNotFoundError('fake', 'm'),
        new Error('bug'),
      ])
        for (let i = 0; i < 3; i++) await rejectionOf(g.run(always(e).call, signal()));
      expect(g.breaker.state).toBe('closed');
      expect(g.metrics().breaker.failures).toBe(0);
      expect(g.metrics().breaker.consecutiveFailures).toBe(0);
      // ...while two 5xx in a row do.
      await rejectionOf(g.run(always(http(502)).call, signal()));
      await rejectionOf(g.run(always(http(502)).call, signal()));
      expect(g.breaker.state).toBe('open');
    });

    it('classifies what counts against a backend', () => {
      expect(countsAgainstBackend(http(500))).toBe(true);
      expect(countsAgainstBackend(http(503))).toBe(true);
      expect(countsAgainstBackend(noAnswer('connection'))).toBe(true);
      expect(countsAgainstBackend(noAnswer('timeout'))).toBe(true);
      expect(countsAgainstBackend(noAnswer('protocol'))).toBe(true);
      expect(countsAgainstBackend(http(429))).toBe(false);
      expect(countsAgainstBackend(http(404))).toBe(false);
      expect(countsAgainstBackend(new ModelNotFoundError('fake', 'm'))).toBe(false);
      expect(countsAgainstBackend(new Error('x'))).toBe(false);
    });
  });

  describe('limiter', () => {
    it('takes a token for every try, including retries, and holds no slot while backing off', async () => {
      const limiter = new TokenBucketRateLimiter({ name: 'l', rate: 1000, capacity: 100, maxInFlight: 1 });
      const g = guard({ limiter, random: () => 1, retry: { maxRetries: 3, baseDelayMs: 100 } });
      const heldDuringBackoff: number[] = [];
      g.on('retry', () => setTimeout(() => heldDuringBackoff.push(limiter.metrics().held), 50));
      const f = script(http(503), noAnswer('timeout'));
      await expect(g.run(f.call, signal())).resolves.toBe('ok');
      expect(f.calls).toHaveLength(3);
      expect(limiter.metrics()).toMatchObject({ granted: 3, held: 0 });
      expect(heldDuringBackoff).toEqual([0, 0]);
      const m = g.metrics();
      expect(m.limiter).toMatchObject({ name: 'l', granted: 3 });
      expect(m.retries).toBe(2);
      expect(m.retriesBy).toEqual({ '5xx': 1, timeout: 1 });
    });

    it('holds the permit while the call runs and releases it when the call fails for good', async () => {
      const limiter = new TokenBucketRateLimiter({ name: 'l', rate: 1000, capacity: 100, maxInFlight: 1 });
      const g = guard({ limiter, retry: { maxRetries: 0 } });
      let heldInside = -1;
      await rejectionOf(
        g.run(async () => {
          heldInside = limiter.metrics().held;
          throw http(400);
        }, signal()),
      );
      expect(heldInside).toBe(1);
      expect(limiter.metrics().held).toBe(0);
    });

    it('gives up with RateLimitedError, without calling, when no token comes within maxLimiterWaitMs', async () => {
      const limiter = new TokenBucketRateLimiter({ name: 'l', rate: 1, capacity: 1 });
      const g = guard({ limiter, maxLimiterWaitMs: 50, retry: { maxRetries: 3 } });
      const ok = script();
      await expect(g.run(ok.call, signal())).resolves.toBe('ok');
      const t0 = performance.now();
      const err = await rejectionOf(g.run(ok.call, signal()));
      expect(err).toBeInstanceOf(RateLimitedError);
      expect(performance.now() - t0).toBeLessThan(500);
      expect(ok.calls).toHaveLength(1);
      // A retry that finds no token ends the same way: two tries, the second refused by the limit.
      const h = guard({
        limiter: new TokenBucketRateLimiter({ name: 'm', rate: 1, capacity: 1 }),
        maxLimiterWaitMs: 50,
        retry: { maxRetries: 3 },
      });
      const f = always(http(503));
      expect(await rejectionOf(h.run(f.call, signal()))).toBeInstanceOf(RateLimitedError);
      expect(f.calls).toHaveLength(1);
      expect(h.metrics()).toMatchObject({ retries: 1, limiter: { granted: 1, refused: 1 } });
    });

    it('reports the limiter metrics only when it has one', () => {
      expect(guard().metrics()).not.toHaveProperty('limiter');
      expect(guard().metrics()).toMatchObject({ name: 'fake@http://127.0.0.1:1', retries: 0, retriesBy: {} });
    });
  });

  describe('health', () => {
    it('says the state, since when, the wait until the trial call, and the last failure that counted', async () => {
      const g = guard({ failureThreshold: 2, resetTimeoutMs: 60_000, retry: { maxRetries: 0 } });
      const before = Date.now();
      expect(g.health()).toEqual({
        name: 'fake@http://127.0.0.1:1',
        state: 'closed',
        since: expect.any(String),
        retryAfterMs: 0,
      });
      // A 404 is the caller's problem: not a failure of the backend, not remembered.
      await rejectionOf(g.run(always(http(404)).call, signal()));
      expect(g.health().lastError).toBeUndefined();
      const refused = new ProviderError('fake', '/x: connection failed', undefined, true, {
        kind: 'connection',
        cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
      });
      const opened = once(g, 'breaker:open');
      await rejectionOf(g.run(always(http(502)).call, signal()));
      expect(g.health().lastError).toEqual({
        code: 'CELL0_PROVIDER_ERROR',
        kind: 'http',
        status: 502,
        at: expect.any(String),
      });
      // The failure that opens the breaker is already in the health its 'breaker:open' listeners read.
      let seenOnOpen: ReturnType<BackendGuard['health']> | undefined;
      g.once('breaker:open', () => (seenOnOpen = g.health()));
      await rejectionOf(g.run(always(refused).call, signal()));
      await opened;
      expect(seenOnOpen?.lastError).toMatchObject({ kind: 'connection', cause: 'ECONNREFUSED' });
      const h = g.health();
      expect(h.state).toBe('open');
      expect(Date.parse(h.since)).toBeGreaterThanOrEqual(before);
      expect(h.retryAfterMs).toBeGreaterThan(50_000);
      expect(h.retryAfterMs).toBeLessThanOrEqual(60_000);
    });
  });
});
