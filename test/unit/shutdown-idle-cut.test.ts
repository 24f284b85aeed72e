import { type Worker } from 'bullmq';
import { silentLogger } from '../../shared/logger';
import { Shutdown } from '../../workers/worker/shutdown';

/**
 * The idle cut of a worker's close: with no job running, a BullMQ close that does not return (it waits for a
 * Redis that is gone) is cut after a 2 s grace — or at once when the worker knows its Redis is unreachable.
 */
describe('Shutdown (a worker closing with no job running)', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  /** A BullMQ worker whose close never returns, as with Redis unreachable. */
  const stuckWorker = () => ({
    close: () => new Promise<void>(() => undefined),
    cancelAllJobs: () => undefined,
  });

  function start(opts: { active: () => number; redisReady?: () => boolean }) {
    const w = stuckWorker();
    const shutdown = new Shutdown({
      timeoutMs: 60_000,
      workers: () => [w as unknown as Worker],
      log: silentLogger(),
      ...opts,
    });
    let settled = false;
    void shutdown.run().then(() => {
      settled = true;
    });
    return { settled: () => settled, shutdown };
  }

  it('cuts at once when Redis is unreachable: no grace to wait out', async () => {
    const s = start({ active: () => 0, redisReady: () => false });
    await jest.advanceTimersByTimeAsync(0);
    expect(s.settled()).toBe(true);
    expect(s.shutdown.forced).toBe(false);
  });

  it('keeps the 2 s grace while Redis answers', async () => {
    const s = start({ active: () => 0, redisReady: () => true });
    await jest.advanceTimersByTimeAsync(1900);
    expect(s.settled()).toBe(false);
    await jest.advanceTimersByTimeAsync(300);
    expect(s.settled()).toBe(true);
  });

  it('cuts within one check (100 ms) when Redis goes away during the grace', async () => {
    let ready = true;
    const s = start({ active: () => 0, redisReady: () => ready });
    await jest.advanceTimersByTimeAsync(500);
    expect(s.settled()).toBe(false);
    ready = false;
    await jest.advanceTimersByTimeAsync(100);
    expect(s.settled()).toBe(true);
  });

  it('never cuts while a job runs, Redis or not: the job has its timeout', async () => {
    let active = 1;
    const s = start({ active: () => active, redisReady: () => false });
    await jest.advanceTimersByTimeAsync(10_000);
    expect(s.settled()).toBe(false);
    active = 0;
    await jest.advanceTimersByTimeAsync(100);
    expect(s.settled()).toBe(true);
    expect(s.shutdown.forced).toBe(false);
  });
});
