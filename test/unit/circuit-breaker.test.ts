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
