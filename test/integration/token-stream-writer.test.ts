import { type RedisConnection } from '../../shared/redis/cluster';
import { silentLogger } from '../../shared/logger';
import { createRedisConnection, closeRedis } from '../../shared/redis/connection';
import { decodeEntry, tokenStreamKeys, type TokenStreamEntry } from '../../shared/queues/token-stream';
import { FlushPacer, TokenStreamWriter } from '../../workers/token-stream-writer';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';

/*
 * The worker's token stream writer against a real Redis: the first text goes out at once, later tokens
 * are coalesced into one XADD per flush interval, and the end goes out with the pending text at once.
 */

let redis: RedisConnection;
beforeAll(() => {
  redis = createRedisConnection({ url: testRedisUrl(), role: 'worker' });
});
afterAll(async () => {
  await closeRedis(redis);
});

async function entries(stream: string): Promise<TokenStreamEntry[]> {
  const rows = await redis.xrange(stream, '-', '+');
  return rows.map(([, fields]) => decodeEntry(fields)!);
}

/** A writer of a fresh job whose stream is wanted, plus its keys. */
async function writerFor(flushMs: number, now?: () => number) {
  const keys = tokenStreamKeys(uniquePrefix('tsw'), 'inference', 'j-1');
  await redis.set(keys.wanted, '1', 'PX', 60_000);
  const w = new TokenStreamWriter({
    redis,
    keys,
    jobId: 'j-1',
    maxLen: 1000,
    ttlMs: 60_000,
    flushMs,
    ...(now ? { now } : {}),
    logger: silentLogger(),
  });
  return { w, keys };
}

/** Counts the script calls (EVALSHA or EVAL) sent on `redis` from now until stop(). */
function countScriptCalls(): { stop: () => number } {
  const spy = jest.spyOn(redis, 'sendCommand');
  return {
    stop: () => {
      const n = spy.mock.calls.filter(([c]) => c.name === 'evalsha' || c.name === 'eval').length;
      spy.mockRestore();
      return n;
    },
  };
}

const end = {
  finishReason: 'stop',
  model: 'm',
  usage: { promptTokens: 1, completionTokens: 5, totalTokens: 6 },
};

describe('TokenStreamWriter', () => {
  test('first text at once; tokens within the flush interval wait and go out in one entry with the end', async () => {
    // An interval far longer than the test: only the end can write the held tokens.
    const { w, keys } = await writerFor(600_000);
    await w.open(1);
    expect(w.streaming).toBe(true);
    w.push('Hel');
    await until(async () => (await entries(keys.stream)).length === 2, 10_000);
    expect(await entries(keys.stream)).toEqual([
      { kind: 'start', attempt: 1 },
      { kind: 'text', seq: 0, text: 'Hel' },
    ]);
    for (const t of ['lo', ',', ' wor', 'ld']) w.push(t);
    // A later write on the same connection has been answered: anything the writer sent is in Redis.
    await redis.ping();
    expect(await entries(keys.stream)).toHaveLength(2);
    await w.end(end);
    expect(await entries(keys.stream)).toEqual([
      { kind: 'start', attempt: 1 },
      { kind: 'text', seq: 0, text: 'Hel' },
      { kind: 'text', seq: 1, text: 'lo, world' },
      { kind: 'end', ...end },
    ]);
    expect(await redis.pttl(keys.stream)).toBeGreaterThan(0);
  });

  test('the first text goes out at once, without waiting for the reply to the start entry', async () => {
    const { w, keys } = await writerFor(600_000);
    await w.open(0);
    const calls = countScriptCalls();
    // The start entry's write is given to the connection; the first text is given now, in this turn, behind
    // it: both leave in the loop's check phase in one script call, and the XRANGE sent after that phase on
    // the same connection sees both, though no reply has been read yet.
    w.push('first');
    await new Promise((resolve) => setImmediate(resolve));
    expect(await entries(keys.stream)).toEqual([
      { kind: 'start', attempt: 0 },
      { kind: 'text', seq: 0, text: 'first' },
    ]);
    expect(calls.stop()).toBe(1);
    await w.end(end);
    expect((await entries(keys.stream)).map((e) => e.kind)).toEqual(['start', 'text', 'end']);
  });

  test('the start entry and the emptying wait for the first text: one script call for both, none before', async () => {
    const { w, keys } = await writerFor(600_000);
    // A stream a retried attempt left behind: emptied by the new attempt's first write, not before.
    await redis.xadd(keys.stream, '*', 'k', 't', 'n', '0', 't', 'old');
    const calls = countScriptCalls();
    await w.open(3);
    expect(w.streaming).toBe(true);
    // Turns go by before the backend's first token: nothing is written meanwhile.
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    await redis.ping();
    expect(calls.stop()).toBe(0);
    expect(await entries(keys.stream)).toEqual([{ kind: 'text', seq: 0, text: 'old' }]);
    const first = countScriptCalls();
    w.push('new');
    await until(async () => (await entries(keys.stream)).length === 2, 10_000);
    expect(first.stop()).toBe(1);
    expect(await entries(keys.stream)).toEqual([
      { kind: 'start', attempt: 3 },
      { kind: 'text', seq: 0, text: 'new' },
    ]);
    await w.end(end);
    expect((await entries(keys.stream)).map((e) => e.kind)).toEqual(['start', 'text', 'end']);
  });

  test('an attempt that ends without text writes its start and end in one call', async () => {
    const { w, keys } = await writerFor(600_000);
    await w.open(0);
    const calls = countScriptCalls();
    await w.end(end);
    expect(calls.stop()).toBe(1);
    expect(await entries(keys.stream)).toEqual([
      { kind: 'start', attempt: 0 },
      { kind: 'end', ...end },
    ]);
  });

  test('the writes of several streams given in one turn go in one script call; a refused one fails alone', async () => {
    const prefix = uniquePrefix('tsw');
    const writers = await Promise.all(
      ['j-a', 'j-b', 'j-c'].map(async (jobId) => {
        const keys = tokenStreamKeys(prefix, 'inference', jobId);
        const w = new TokenStreamWriter({
          redis,
          keys,
          jobId,
          maxLen: 1000,
          ttlMs: 60_000,
          flushMs: 600_000,
          // Marks read without a round trip: the three attempts start in one turn, as a worker's fetched together.
          readMarks: () => Promise.resolve(['1', null]),
          logger: silentLogger(),
        });
        return { w, keys };
      }),
    );
    // The middle stream's key holds a string: Redis refuses its XADD (WRONGTYPE).
    await redis.set(writers[1]!.keys.stream, 'not a stream', 'PX', 60_000);
    const calls = countScriptCalls();
    await Promise.all(writers.map(({ w }) => w.open(0)));
    for (const { w } of writers) w.push('a');
    await Promise.all(writers.map(({ w }) => w.end(end)));
    // Starts and first texts in one call; the ends (each waits for its first text's reply, and the replies
    // come in one) in one more.
    expect(calls.stop()).toBe(2);
    for (const i of [0, 2])
      expect(await entries(writers[i]!.keys.stream)).toEqual([
        { kind: 'start', attempt: 0 },
        { kind: 'text', seq: 0, text: 'a' },
        { kind: 'end', ...end },
      ]);
    expect(await redis.get(writers[1]!.keys.stream)).toBe('not a stream');
    expect(writers.map(({ w }) => w.signal.aborted)).toEqual([false, false, false]);
  });

  test('held tokens go out once the interval has passed, without waiting for the end', async () => {
    let t = 0;
    // The interval is measured on the injected clock; the writer's timer sleeps what that clock says is left.
    const { w, keys } = await writerFor(30, () => t);
    await w.open(0);
    w.push('a');
    await until(async () => (await entries(keys.stream)).length === 2, 10_000);
    w.push('b');
    w.push('c');
    t = 10; // 20 ms of the interval left: the timer fires and the writer writes what it holds
    await until(async () => (await entries(keys.stream)).length === 3, 10_000);
    expect((await entries(keys.stream))[2]).toEqual({ kind: 'text', seq: 1, text: 'bc' });
    await w.end(end);
    expect((await entries(keys.stream)).map((e) => e.kind)).toEqual(['start', 'text', 'text', 'end']);
  });

  test('flushMs 0 writes each token whenever no write is in flight', async () => {
    const { w, keys } = await writerFor(0);
    await w.open(0);
    w.push('a');
    await until(async () => (await entries(keys.stream)).length === 2, 10_000);
    w.push('b');
    await until(async () => (await entries(keys.stream)).length === 3, 10_000);
    await w.end(end);
    expect(await entries(keys.stream)).toEqual([
      { kind: 'start', attempt: 0 },
      { kind: 'text', seq: 0, text: 'a' },
      { kind: 'text', seq: 1, text: 'b' },
      { kind: 'end', ...end },
    ]);
  });

  test("the stream's lifetime: set by the first write, kept by the next ones, set again after half of it and by the end", async () => {
    let t = 0;
    // ttlMs 60000: the writes within 30000 ms (on the writer's clock) of the last renewal keep the lifetime.
    const { w, keys } = await writerFor(0, () => t);
    const pttl = () => redis.pttl(keys.stream);
    await w.open(0);
    w.push('a');
    await until(async () => (await entries(keys.stream)).length === 2, 10_000);
    expect(await pttl()).toBeGreaterThan(50_000);
    await redis.pexpire(keys.stream, 40_000);
    t = 1000;
    w.push('b');
    await until(async () => (await entries(keys.stream)).length === 3, 10_000);
    // Not renewed: still what was left of it.
    expect(await pttl()).toBeLessThanOrEqual(40_000);
    expect(await pttl()).toBeGreaterThan(0);
    // A stream gone under the attempt (deleted, expired) is made again by the next write, with its lifetime.
    await redis.del(keys.stream);
    t = 2000;
    w.push('c');
    await until(async () => (await entries(keys.stream)).length === 1, 10_000);
    expect(await pttl()).toBeGreaterThan(50_000);
    // Half the lifetime after the first write: renewed.
    await redis.pexpire(keys.stream, 40_000);
    t = 30_000;
    w.push('d');
    await until(async () => (await entries(keys.stream)).length === 2, 10_000);
    expect(await pttl()).toBeGreaterThan(50_000);
    // The end renews it: the stream lives its whole lifetime after its last entry.
    await redis.pexpire(keys.stream, 40_000);
    t = 31_000;
    await w.end(end);
    expect((await entries(keys.stream)).map((e) => e.kind)).toEqual(['text', 'text', 'end']);
    expect(await pttl()).toBeGreaterThan(50_000);
  });

  test('a cancel mark aborts the attempt at the next write; an unwanted stream writes nothing', async () => {
    const { w, keys } = await writerFor(600_000);
    await w.open(0);
    w.push('a');
    await until(async () => (await entries(keys.stream)).length === 2, 10_000);
    await redis.set(keys.cancel, '1', 'PX', 60_000);
    w.push('b');
    await w.end(end);
    expect(w.signal.aborted).toBe(true);
    expect(await redis.exists(keys.cancel)).toBe(0);
    // The stopped attempt's text went with the mark: a caller asking again never reads it.
    expect(await redis.exists(keys.stream)).toBe(0);

    const other = tokenStreamKeys(uniquePrefix('tsw'), 'inference', 'j-2');
    const idle = new TokenStreamWriter({
      redis,
      keys: other,
      jobId: 'j-2',
      maxLen: 1000,
      ttlMs: 60_000,
      logger: silentLogger(),
    });
    await idle.open(0);
    idle.push('x');
    await idle.end(end);
    expect(idle.streaming).toBe(false);
    expect(await redis.exists(other.stream)).toBe(0);
    expect(
      () =>
        new TokenStreamWriter({
          redis,
          keys: other,
          jobId: 'j',
          maxLen: 1,
          ttlMs: 1,
          flushMs: -1,
          logger: silentLogger(),
        }),
    ).toThrow(/flushMs/);
  });

  test('a cancel set after the marks were read: nothing of the attempt stays in the stream', async () => {
    const keys = tokenStreamKeys(uniquePrefix('tsw'), 'inference', 'j-3');
    // The marks say "wanted"; the cancel comes right after they were read, before anything is written.
    const w = new TokenStreamWriter({
      redis,
      keys,
      jobId: 'j-3',
      maxLen: 1000,
      ttlMs: 60_000,
      flushMs: 600_000,
      readMarks: async () => {
        await redis.set(keys.cancel, '1', 'PX', 60_000);
        return ['1', null];
      },
      logger: silentLogger(),
    });
    await w.open(0);
    // The first text's write (with the start entry) honours the cancel.
    w.push('a');
    await until(() => w.signal.aborted, 10_000, 'the attempt to be cancelled');
    w.push('b');
    await w.end(end);
    expect(await redis.exists(keys.stream)).toBe(0);
    expect(await redis.exists(keys.cancel)).toBe(0);
  });

  test('a cancel a new reader withdrew before the attempt honoured it does not stop the attempt', async () => {
    const keys = tokenStreamKeys(uniquePrefix('tsw'), 'inference', 'j-4');
    await redis.set(keys.wanted, '1', 'PX', 60_000);
    // The marks were read with the cancel, which a reader's marks deleted just after.
    const w = new TokenStreamWriter({
      redis,
      keys,
      jobId: 'j-4',
      maxLen: 1000,
      ttlMs: 60_000,
      flushMs: 600_000,
      readMarks: async () => [null, '1'],
      logger: silentLogger(),
    });
    await w.open(0);
    expect(w.streaming).toBe(true);
    w.push('a');
    await w.end(end);
    expect(w.signal.aborted).toBe(false);
    expect((await entries(keys.stream)).map((e) => e.kind)).toEqual(['start', 'text', 'end']);
  });

  test('writers sharing a pacer count themselves while their text waits, and their interval grows with the count', async () => {
    // The base interval far longer than the test: each writer's second token waits until its end.
    const pacer = new FlushPacer({ baseMs: 600_000, streams: 1, maxMs: 1_800_000 });
    expect(pacer.intervalMs()).toBe(600_000);
    const writers = await Promise.all(
      ['j-5', 'j-6', 'j-7'].map(async (jobId) => {
        const keys = tokenStreamKeys(uniquePrefix('tsw'), 'inference', jobId);
        await redis.set(keys.wanted, '1', 'PX', 60_000);
        const w = new TokenStreamWriter({
          redis,
          keys,
          jobId,
          maxLen: 1000,
          ttlMs: 60_000,
          pacer,
          logger: silentLogger(),
        });
        await w.open(0);
        return { w, keys };
      }),
    );
    for (const { w, keys } of writers) {
      // The first text goes out at once (the pacer never holds it back)...
      w.push('a');
      await until(async () => (await entries(keys.stream)).length === 2, 10_000);
      // ...and the next waits for the interval: the writer counts as waiting meanwhile.
      w.push('b');
    }
    expect(pacer.waiting).toBe(3);
    expect(pacer.intervalMs()).toBe(1_800_000);
    await writers[0]!.w.end(end);
    expect(pacer.waiting).toBe(2);
    expect(pacer.intervalMs()).toBe(1_200_000);
    for (const { w } of writers.slice(1)) await w.end(end);
    expect(pacer.waiting).toBe(0);
    for (const { keys } of writers)
      expect(await entries(keys.stream)).toEqual([
        { kind: 'start', attempt: 0 },
        { kind: 'text', seq: 0, text: 'a' },
        { kind: 'text', seq: 1, text: 'b' },
        { kind: 'end', ...end },
      ]);
  });

  test('paced writes of several streams due within one step of the grid go out together, in one script call', async () => {
    let t = 0;
    // Steps of 200 ms on the injected clock: both writers' next writes (due at 20 and 25) fall due at 200,
    // released by one timer (about 194 ms of real time from the pushes below).
    const pacer = new FlushPacer({ baseMs: 20, gridMs: 200, now: () => t });
    // One prefix: both streams under the queue's hash tag, as a worker's streams are (on a Redis Cluster,
    // streams in different slots cannot share a script call).
    const prefix = uniquePrefix('tsw');
    const writers = await Promise.all(
      ['j-g1', 'j-g2'].map(async (jobId) => {
        const keys = tokenStreamKeys(prefix, 'inference', jobId);
        await redis.set(keys.wanted, '1', 'PX', 60_000);
        const w = new TokenStreamWriter({
          redis,
          keys,
          jobId,
          maxLen: 1000,
          ttlMs: 60_000,
          pacer,
          now: () => t,
          logger: silentLogger(),
        });
        await w.open(0);
        return { w, keys };
      }),
    );
    const lengths = async () =>
      Promise.all(writers.map(async ({ keys }) => (await entries(keys.stream)).length));
    writers[0]!.w.push('a'); // first text at t = 0: at once
    await until(async () => (await lengths())[0] === 2, 10_000);
    t = 5;
    writers[1]!.w.push('a'); // at t = 5
    await until(async () => (await lengths())[1] === 2, 10_000);
    t = 6;
    const calls = countScriptCalls();
    for (const { w } of writers) w.push('b');
    await until(async () => (await lengths()).every((n) => n === 3), 10_000);
    expect(calls.stop()).toBe(1);
    for (const { w, keys } of writers) {
      await w.end(end);
      expect(await entries(keys.stream)).toEqual([
        { kind: 'start', attempt: 0 },
        { kind: 'text', seq: 0, text: 'a' },
        { kind: 'text', seq: 1, text: 'b' },
        { kind: 'end', ...end },
      ]);
    }
  });

  test('a writer that hurries (its end) leaves the grid: the end goes out at once', async () => {
    const pacer = new FlushPacer({ baseMs: 600_000, maxMs: 600_000, gridMs: 600_000 });
    const keys = tokenStreamKeys(uniquePrefix('tsw'), 'inference', 'j-g3');
    await redis.set(keys.wanted, '1', 'PX', 60_000);
    const w = new TokenStreamWriter({
      redis,
      keys,
      jobId: 'j-g3',
      maxLen: 1000,
      ttlMs: 60_000,
      pacer,
      logger: silentLogger(),
    });
    await w.open(0);
    w.push('a');
    await until(async () => (await entries(keys.stream)).length === 2, 10_000);
    w.push('b');
    await w.end(end);
    expect((await entries(keys.stream)).map((e) => e.kind)).toEqual(['start', 'text', 'text', 'end']);
    expect(pacer.waiting).toBe(0);
  });

  test('FlushPacer: the base interval up to `streams` waiting, then in proportion up to maxMs; bad options throw', () => {
    const p = new FlushPacer();
    expect(p.intervalMs()).toBe(20);
    p.waiting = 16;
    expect(p.intervalMs()).toBe(20);
    p.waiting = 32;
    expect(p.intervalMs()).toBe(40);
    p.waiting = 1000;
    expect(p.intervalMs()).toBe(80);
    expect(() => new FlushPacer({ baseMs: -1 })).toThrow(/baseMs/);
    expect(() => new FlushPacer({ streams: 0 })).toThrow(/streams/);
    expect(() => new FlushPacer({ baseMs: 50, maxMs: 10 })).toThrow(/maxMs/);
    expect(() => new FlushPacer({ gridMs: -1 })).toThrow(/gridMs/);
  });
});
