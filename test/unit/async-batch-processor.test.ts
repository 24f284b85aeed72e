import { AsyncBatchProcessor, type BatchOutcome } from '../../shared/batch/index.js';
import { BatchQueueFullError, ClosedError, ErrorCode } from '../../shared/errors.js';

/** A handler whose calls are recorded and answered only when the test says so. */
function controlledHandler<T, R>(answer: (items: T[], key: string) => BatchOutcome<R>[]) {
  const calls: { items: T[]; key: string; release: () => void; fail: (e: Error) => void }[] = [];
  const waiters: ((n: number) => void)[] = [];
  const handler = (items: T[], key: string) =>
    new Promise<BatchOutcome<R>[]>((resolve, reject) => {
      calls.push({ items, key, release: () => resolve(answer(items, key)), fail: reject });
      for (const w of waiters.splice(0)) w(calls.length);
    });
  /** Resolves once at least `n` calls were made. */
  const untilCalls = (n: number) =>
    new Promise<void>((resolve) => {
      if (calls.length >= n) return resolve();
      const check = (m: number) => (m >= n ? resolve() : waiters.push(check));
      waiters.push(check);
    });
  return { calls, handler, untilCalls };
}

const double = (items: number[]) => items.map((n) => n * 2);

describe('AsyncBatchProcessor', () => {
  test('endOfTurn: with maxWaitMs 0 the batch leaves when the hook fires it, not on a setImmediate of its own', async () => {
    const c = controlledHandler<number, number>(double);
    const hooked: (() => void)[] = [];
    let accept = true;
    const p = new AsyncBatchProcessor<number, number>({
      handler: c.handler,
      maxWaitMs: 0,
      endOfTurn: (fire) => {
        if (!accept) return false;
        hooked.push(fire);
        return true;
      },
    });
    const first = [p.add(1), p.add(2)];
    expect(hooked).toHaveLength(1); // one wait for the partition, not one per item
    // A setImmediate passes and nothing leaves: the batch waits for its hook.
    await new Promise((r) => setImmediate(r));
    expect(c.calls).toHaveLength(0);
    hooked.shift()!();
    expect(c.calls.map((x) => x.items)).toEqual([[1, 2]]); // fired: sent at once, synchronously
    c.calls[0]!.release();
    expect(await Promise.all(first)).toEqual([2, 4]);
    // A hook that cannot take it (false): a setImmediate, as without the option.
    accept = false;
    const second = p.add(3);
    await c.untilCalls(2);
    expect(c.calls[1]!.items).toEqual([3]);
    c.calls[1]!.release();
    expect(await second).toBe(6);
    // A partition sent another way (flush) before its hook fires is not sent again by the late hook.
    accept = true;
    const third = p.add(4);
    expect(hooked).toHaveLength(1);
    void p.flush();
    expect(c.calls).toHaveLength(3);
    hooked.shift()!();
    expect(c.calls).toHaveLength(3);
    c.calls[2]!.release();
    expect(await third).toBe(8);
    await p.close();
  });

  test('sizeOf: batches hold whole items up to maxBatchSize in all; a larger item leaves alone', async () => {
    const c = controlledHandler<number[], number>((groups) => groups.map((g) => g.length));
    const p = new AsyncBatchProcessor<number[], number>({
      handler: c.handler,
      maxBatchSize: 8,
      maxWaitMs: 0,
      sizeOf: (g) => g.length,
    });
    const groups = [[1, 2, 3], [4, 5, 6], [7, 8, 9], Array.from({ length: 12 }, (_, i) => i), [10]];
    const results = groups.map((g) => p.add(g));
    await c.untilCalls(1);
    // 3 + 3 = 6 fit, the third group would make 9 > 8: it waits for the next batch, never split.
    expect(c.calls[0]!.items).toEqual([groups[0], groups[1]]);
    c.calls[0]!.release();
    await c.untilCalls(2);
    // The next is the third group alone (3 + 12 > 8), then the group of 12 alone, then [10].
    expect(c.calls[1]!.items).toEqual([groups[2]]);
    c.calls[1]!.release();
    await c.untilCalls(3);
    expect(c.calls[2]!.items).toEqual([groups[3]]);
    c.calls[2]!.release();
    await c.untilCalls(4);
    expect(c.calls[3]!.items).toEqual([groups[4]]);
    c.calls[3]!.release();
    await expect(Promise.all(results)).resolves.toEqual([3, 3, 3, 12, 1]);
    // Sizes and item counts in sizeOf units.
    expect(p.stats()).toMatchObject({ batches: 4, items: 22 });
    await p.close();
  });

  test('a full batch leaves at once, without waiting for maxWaitMs', async () => {
    const c = controlledHandler<number, number>(double);
    const p = new AsyncBatchProcessor({ handler: c.handler, maxBatchSize: 3, maxWaitMs: 60_000 });
    const results = [1, 2, 3].map((n) => p.add(n));
    await c.untilCalls(1);
    expect(c.calls[0]!.items).toEqual([1, 2, 3]);
    c.calls[0]!.release();
    await expect(Promise.all(results)).resolves.toEqual([2, 4, 6]);
    await p.close();
  });

  test('a partial batch leaves once its oldest item has waited maxWaitMs', async () => {
    // On an injected clock: with real timers the batch's setTimeout runs on the event loop's cached time,
    // which a busy host leaves more than a millisecond behind performance.now().
    jest.useFakeTimers();
    try {
      const c = controlledHandler<number, number>(double);
      const p = new AsyncBatchProcessor({ handler: c.handler, maxBatchSize: 100, maxWaitMs: 20 });
      const a = p.add(1);
      await jest.advanceTimersByTimeAsync(5);
      const b = p.add(2);
      await jest.advanceTimersByTimeAsync(14);
      expect(c.calls).toHaveLength(0); // the oldest item has waited 19 ms
      await jest.advanceTimersByTimeAsync(1);
      expect(c.calls).toHaveLength(1); // 20 ms: the batch leaves, with the younger item in it
      expect(c.calls[0]!.items).toEqual([1, 2]);
      c.calls[0]!.release();
      await expect(Promise.all([a, b])).resolves.toEqual([2, 4]);
      await p.close();
    } finally {
      jest.useRealTimers();
    }
  });

  test('maxWaitMs 0 batches the items added in the same tick', async () => {
    const c = controlledHandler<number, number>(double);
    const p = new AsyncBatchProcessor({ handler: c.handler, maxBatchSize: 100, maxWaitMs: 0 });
    const all = [1, 2, 3, 4].map((n) => p.add(n));
    await c.untilCalls(1);
    expect(c.calls[0]!.items).toEqual([1, 2, 3, 4]);
    c.calls[0]!.release();
    await Promise.all(all);
    await p.close();
  });

  test('items are partitioned by key: a batch never mixes keys', async () => {
    const seen: { key: string; items: string[] }[] = [];
    const p = new AsyncBatchProcessor<string, string>({
      handler: (items, key) => {
        seen.push({ key, items });
        return Promise.resolve(items.map((i) => i.toUpperCase()));
      },
      keyOf: (s) => s.split(':')[0]!,
      maxBatchSize: 10,
      maxWaitMs: 0,
    });
    const r = await Promise.all(['a:1', 'b:1', 'a:2', 'b:2', 'c:1'].map((s) => p.add(s)));
    expect(r).toEqual(['A:1', 'B:1', 'A:2', 'B:2', 'C:1']);
    expect(seen.map((s) => s.key).sort()).toEqual(['a', 'b', 'c']);
    for (const s of seen) expect(s.items.every((i) => i.startsWith(`${s.key}:`))).toBe(true);
    await p.close();
  });

  test('at most maxConcurrentBatches run at once; due batches grow while they wait for a slot', async () => {
    const c = controlledHandler<number, number>(double);
    const p = new AsyncBatchProcessor({
      handler: c.handler,
      maxBatchSize: 2,
      maxWaitMs: 0,
      maxConcurrentBatches: 1,
    });
    const first = [p.add(1), p.add(2)];
    await c.untilCalls(1);
    const rest = [3, 4, 5, 6, 7].map((n) => p.add(n));
    // Let the immediates that would send them run: with the one slot busy, nothing else may leave.
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    expect(c.calls).toHaveLength(1);
    expect(p.stats().inFlight).toBe(1);
    c.calls[0]!.release();
    await c.untilCalls(2);
    expect(c.calls[1]!.items).toEqual([3, 4]);
    expect(c.calls).toHaveLength(2);
    c.calls[1]!.release();
    await c.untilCalls(3);
    c.calls[2]!.release();
    await c.untilCalls(4);
    c.calls[3]!.release();
    await expect(Promise.all([...first, ...rest])).resolves.toEqual([2, 4, 6, 8, 10, 12, 14]);
    expect(c.calls.map((x) => x.items.length)).toEqual([2, 2, 2, 1]);
    await p.close();
  });

  test('one bad item fails alone; a thrown handler fails its whole batch', async () => {
    let throwNext = false;
    const p = new AsyncBatchProcessor<number, number>({
      handler: (items) => {
        if (throwNext) return Promise.reject(new Error('backend down'));
        return Promise.resolve(items.map((n) => (n < 0 ? new RangeError(`bad item ${n}`) : n + 1)));
      },
      maxBatchSize: 10,
      maxWaitMs: 0,
    });
    const r = await Promise.allSettled([p.add(1), p.add(-1), p.add(2)]);
    expect(r[0]).toEqual({ status: 'fulfilled', value: 2 });
    expect(r[1]).toMatchObject({ status: 'rejected', reason: { message: 'bad item -1' } });
    expect(r[2]).toEqual({ status: 'fulfilled', value: 3 });
    throwNext = true;
    const all = await Promise.allSettled([p.add(5), p.add(6)]);
    expect(all.map((x) => x.status)).toEqual(['rejected', 'rejected']);
    expect(all.map((x) => (x as PromiseRejectedResult).reason.message)).toEqual([
      'backend down',
      'backend down',
    ]);
    expect(p.stats().failedBatches).toBe(1);
    await p.close();
  });

  test('a handler that answers the wrong number of items fails its batch, never mis-assigns', async () => {
    const p = new AsyncBatchProcessor<number, number>({
      handler: (items) => Promise.resolve(items.slice(1)),
      maxBatchSize: 10,
      maxWaitMs: 0,
    });
    const r = await Promise.allSettled([p.add(1), p.add(2)]);
    expect(r.every((x) => x.status === 'rejected')).toBe(true);
    expect((r[0] as PromiseRejectedResult).reason).toBeInstanceOf(TypeError);
    await p.close();
  });

  test('a full queue refuses with BatchQueueFullError, and accepts again once items finish', async () => {
    const c = controlledHandler<number, number>(double);
    const p = new AsyncBatchProcessor({
      handler: c.handler,
      maxBatchSize: 2,
      maxWaitMs: 0,
      maxQueuedItems: 3,
    });
    const accepted = [p.add(1), p.add(2), p.add(3)];
    const refused = p.add(4);
    await expect(refused).rejects.toBeInstanceOf(BatchQueueFullError);
    await expect(refused).rejects.toMatchObject({ code: ErrorCode.BATCH_QUEUE_FULL });
    expect(p.stats().refused).toBe(1);
    await c.untilCalls(1);
    c.calls[0]!.release();
    await Promise.all(accepted.slice(0, 2));
    // Two finished: room again.
    const again = p.add(5);
    await c.untilCalls(2);
    c.calls[1]!.release();
    await expect(Promise.all([accepted[2], again])).resolves.toEqual([6, 10]);
    await p.close();
  });

  test('an item aborted before its batch leaves is dropped; one aborted after is answered at once', async () => {
    const c = controlledHandler<number, number>(double);
    const p = new AsyncBatchProcessor({ handler: c.handler, maxBatchSize: 10, maxWaitMs: 50 });
    const early = new AbortController();
    const dropped = p.add(1, { signal: early.signal });
    const kept = p.add(2);
    early.abort(new Error('caller gone'));
    await expect(dropped).rejects.toThrow('caller gone');
    await c.untilCalls(1);
    expect(c.calls[0]!.items).toEqual([2]);
    const late = new AbortController();
    const inFlight = p.add(3, { signal: late.signal });
    await c.untilCalls(2);
    late.abort();
    await expect(inFlight).rejects.toMatchObject({ name: 'AbortError' });
    c.calls[0]!.release();
    c.calls[1]!.release();
    await expect(kept).resolves.toBe(4);
    expect(p.stats().aborted).toBe(1);
    // An already-aborted signal is refused without queueing.
    await expect(p.add(9, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    await p.close();
    expect(p.stats().waiting).toBe(0);
  });

  test('flush() sends what waits without waiting for maxWaitMs; close() drains and then refuses', async () => {
    const batches: number[][] = [];
    const p = new AsyncBatchProcessor<number, number>({
      handler: (items) => {
        batches.push(items);
        return Promise.resolve(double(items));
      },
      maxBatchSize: 2,
      maxWaitMs: 3_600_000,
    });
    const r = [1, 2, 3].map((n) => p.add(n));
    await p.flush();
    await expect(Promise.all(r)).resolves.toEqual([2, 4, 6]);
    expect(batches).toEqual([[1, 2], [3]]);
    const last = p.add(4);
    const closing = p.close();
    expect(p.close()).toBe(closing);
    await closing;
    await expect(last).resolves.toBe(8);
    await expect(p.add(5)).rejects.toBeInstanceOf(ClosedError);
  });

  test('stats: batches, items, mean and p95 size, wait time', async () => {
    const p = new AsyncBatchProcessor<number, number>({
      handler: (items) => Promise.resolve(double(items)),
      maxBatchSize: 4,
      maxWaitMs: 0,
    });
    await Promise.all([1, 2, 3, 4].map((n) => p.add(n)));
    await Promise.all([5, 6].map((n) => p.add(n)));
    const s = p.stats();
    expect(s).toMatchObject({
      batches: 2,
      items: 6,
      meanBatchSize: 3,
      p95BatchSize: 4,
      waiting: 0,
      inFlight: 0,
    });
    expect(s.meanWaitMs).toBeGreaterThanOrEqual(0);
    expect(s.p95WaitMs).toBeGreaterThanOrEqual(0);
    // Batches by size bin (BATCH_SIZE_BOUNDS 1, 2, 4, ...): one of 2, one of 4.
    expect(p.sizeCounts()).toEqual([0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    await p.close();
  });

  test('bad options fail in the constructor naming the option', () => {
    const handler = (items: number[]) => Promise.resolve(items);
    expect(() => new AsyncBatchProcessor({ handler, maxBatchSize: 0 })).toThrow(/"maxBatchSize"/);
    expect(() => new AsyncBatchProcessor({ handler, maxWaitMs: -1 })).toThrow(/"maxWaitMs"/);
    expect(() => new AsyncBatchProcessor({ handler, maxConcurrentBatches: 1.5 })).toThrow(
      /"maxConcurrentBatches"/,
    );
    expect(() => new AsyncBatchProcessor({ handler, maxQueuedItems: 0 })).toThrow(/"maxQueuedItems"/);
    expect(() => new AsyncBatchProcessor({} as never)).toThrow(/"handler"/);
  });
});
