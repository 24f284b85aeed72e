import { Breaker } from '../../shared/circuit-breaker';
import { BreakerOpenError } from '../../shared/errors';

const fail = () => Promise.reject(new Error('down'));
const ok = () => Promise.resolve('up');

describe('Breaker', () => {
  let b: Breaker;
  beforeEach(() => {
    b = new Breaker({ name: 'test', failureThreshold: 2, resetTimeoutMs: 60_000, timeoutMs: false });
  });
  afterEach(() => b.close());

  test('opens after the consecutive failures; reset() closes it and forgets them', async () => {
    for (let i = 0; i < 2; i++) await expect(b.fire(fail)).rejects.toThrow('down');
    expect(b.state).toBe('open');
    await expect(b.fire(ok)).rejects.toBeInstanceOf(BreakerOpenError);

    const closed = new Promise<void>((r) => b.once('breaker:close', () => r()));
    b.reset();
    await closed;
    expect(b.state).toBe('closed');
    expect(b.getMetrics().consecutiveFailures).toBe(0);
    await expect(b.fire(ok)).resolves.toBe('up');
    // One failure after the reset does not reopen it: the count started again.
    await expect(b.fire(fail)).rejects.toThrow('down');
    expect(b.state).toBe('closed');
  });

  test('counts what a closed breaker runs as opossum does: successes, failures, ignored errors, latency', async () => {
    const ignored = new Error('slow, not down');
    const c = new Breaker({
      name: 'counted',
      failureThreshold: 2,
      resetTimeoutMs: 60_000,
      timeoutMs: false,
      isIgnorable: (err) => err === ignored,
    });
    try {
      await expect(c.fire(ok)).resolves.toBe('up');
      await expect(c.fire(fail)).rejects.toThrow('down');
      expect(c.getMetrics()).toMatchObject({ calls: 2, successes: 1, failures: 1, consecutiveFailures: 1 });
      // An ignored error is rejected to the caller but counts as a success: the failure run starts over.
      await expect(c.fire(() => Promise.reject(ignored))).rejects.toBe(ignored);
      expect(c.getMetrics()).toMatchObject({ calls: 3, successes: 2, failures: 1, consecutiveFailures: 0 });
      // A function that throws instead of rejecting is a failure too, and the threshold opens the breaker.
      const opened = new Promise<void>((r) => c.once('breaker:open', () => r()));
      await expect(c.fire(fail)).rejects.toThrow('down');
      await expect(
        c.fire(() => {
          throw new Error('thrown');
        }),
      ).rejects.toThrow('thrown');
      await opened;
      expect(c.state).toBe('open');
      expect(c.retryAfterMs()).toBeGreaterThan(0);
      let ran = false;
      await expect(
        c.fire(async () => {
          ran = true;
        }),
      ).rejects.toBeInstanceOf(BreakerOpenError);
      expect(ran).toBe(false);
      expect(c.getMetrics()).toMatchObject({ calls: 6, successes: 2, failures: 3, rejections: 1 });
      expect(c.getMetrics().p99LatencyMs).toBeGreaterThanOrEqual(0);
    } finally {
      c.close();
    }
  });

  test('close() ends the breaker: idempotent, and later calls are refused without running', async () => {
    b.close();
    b.close();
    let ran = false;
    await expect(
      b.fire(async () => {
        ran = true;
      }),
    ).rejects.toThrow();
    expect(ran).toBe(false);
  });
});
