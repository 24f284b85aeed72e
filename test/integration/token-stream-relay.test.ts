import { type RedisConnection } from '../../shared/redis/cluster';
import { silentLogger } from '../../shared/logger';
import { createRedisConnection, closeRedis, waitUntilReady } from '../../shared/redis/connection';
import {
  decodeEntry,
  isRemoteReaderEntry,
  tokenStreamKeys,
  type TokenStreamEntry,
} from '../../shared/queues/token-stream';
import { TokenStreamHub, type TokenStreamReader } from '../../producers/token-stream-hub';
import { TokenStreamWriter } from '../../workers/token-stream-writer';
import { JobCancelledError } from '../../shared/errors';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';

/*
 * A worker and an API in one process (`cell0 start`): the worker's token stream writers hand each write's
 * entries to the API's hub as they send the write, and still write them to the job's Redis Stream. The hub's
 * readers get every entry once and in order, whichever way it came first; a hub of another process (one
 * the writer does not know) reads everything from Redis as before.
 */

let producer: RedisConnection;
let worker: RedisConnection;
const hubs: TokenStreamHub[] = [];
beforeAll(async () => {
  producer = createRedisConnection({ url: testRedisUrl(), role: 'producer' });
  worker = createRedisConnection({ url: testRedisUrl(), role: 'worker' });
  await Promise.all([waitUntilReady(producer, 5000), waitUntilReady(worker, 5000)]);
});
afterEach(async () => {
  await Promise.all(hubs.splice(0).map((h) => h.close()));
});
afterAll(async () => {
  await Promise.all([closeRedis(producer), closeRedis(worker)]);
});

const end = {
  finishReason: 'stop',
  model: 'm',
  usage: { promptTokens: 1, completionTokens: 3, totalTokens: 4 },
};

function hub(prefix: string): TokenStreamHub {
  const h = new TokenStreamHub({ redisUrl: testRedisUrl(), prefix, redis: producer, logger: silentLogger() });
  hubs.push(h);
  return h;
}

function writer(prefix: string, jobId: string, local: TokenStreamHub | undefined): TokenStreamWriter {
  return new TokenStreamWriter({
    redis: worker,
    keys: tokenStreamKeys(prefix, 'inference', jobId),
    jobId,
    maxLen: 10_000,
    ttlMs: 60_000,
    flushMs: 0,
    ...(local ? { relay: local.local } : {}),
    logger: silentLogger(),
  });
}

/** The entries the job's Redis Stream holds (the remote-reader entries of readers' marks left out). */
async function stored(prefix: string, jobId: string): Promise<TokenStreamEntry[]> {
  const rows = await producer.xrange(tokenStreamKeys(prefix, 'inference', jobId).stream, '-', '+');
  return rows.flatMap(([, fields]) => (isRemoteReaderEntry(fields) ? [] : [decodeEntry(fields)!]));
}

/** Every entry a reader gets up to and including the end entry. */
async function readAll(r: TokenStreamReader): Promise<TokenStreamEntry[]> {
  const out: TokenStreamEntry[] = [];
  for (;;) {
    const e = await r.next();
    if (!e) throw new Error(`reader closed after ${JSON.stringify(out)}`);
    out.push(e);
    if (e.kind === 'end') return out;
  }
}

/** Takes the entries a reader holds now (never waits). */
function taken(r: TokenStreamReader): TokenStreamEntry[] {
  const out: TokenStreamEntry[] = [];
  for (let e = r.take(); e !== undefined; e = r.take()) out.push(e);
  return out;
}

describe('token stream entries handed from a writer to the hub of its own process', () => {
  it('a reader of this process has each write as it is sent, before Redis; another process reads them from Redis', async () => {
    const prefix = uniquePrefix('relay');
    const here = hub(prefix);
    const there = hub(prefix);
    const mine = await here.open('j');
    const theirs = await there.open('j');
    const w = writer(prefix, 'j', here);
    await w.open(1);
    expect(w.streaming).toBe(true);
    w.push('Hello');
    // Synchronously, in the tick of the push: no round trip through Redis could have brought it.
    expect(taken(mine)).toEqual([
      { kind: 'start', attempt: 1 },
      { kind: 'text', seq: 0, text: 'Hello' },
    ]);
    expect(taken(theirs)).toEqual([]);
    await until(() => mine.firstTextAt !== undefined && theirs.firstTextAt !== undefined, 5000);
    w.push(', world');
    await w.end(end);
    const all = [
      { kind: 'start', attempt: 1 },
      { kind: 'text', seq: 0, text: 'Hello' },
      { kind: 'text', seq: 1, text: ', world' },
      { kind: 'end', ...end },
    ];
    expect([...(await stored(prefix, 'j'))]).toEqual(all);
    expect(await readAll(theirs)).toEqual(all);
    // `mine` was drained of the first two above; the rest came the same way.
    expect(await readAll(mine)).toEqual(all.slice(2));
    expect(here.deliveries()).toEqual({ local: 4, redis: 0 });
    expect(there.deliveries()).toEqual({ local: 0, redis: 4 });
    w.release();
    await Promise.all([mine.close(), theirs.close()]);
  });

  it('a reader that opens mid-stream replays the start from Redis, then takes the writes as they are sent', async () => {
    const prefix = uniquePrefix('relay');
    const here = hub(prefix);
    const there = hub(prefix);
    const theirs = await there.open('j');
    const w = writer(prefix, 'j', here);
    await w.open(1);
    w.push('a');
    await until(async () => (await stored(prefix, 'j')).length === 2, 5000, 'the first write');
    w.push('b');
    await until(async () => (await stored(prefix, 'j')).length === 3, 5000, 'the second write');
    // Joins late (as a second request for a running job): the writes so far come from Redis.
    const late = await here.open('j');
    const head: TokenStreamEntry[] = [];
    while (head.length < 3) head.push((await late.next())!);
    expect(head).toEqual([
      { kind: 'start', attempt: 1 },
      { kind: 'text', seq: 0, text: 'a' },
      { kind: 'text', seq: 1, text: 'b' },
    ]);
    // Caught up with the writer's last stored entry: the next write is handed over as it is sent.
    w.push('c');
    expect(taken(late)).toEqual([{ kind: 'text', seq: 2, text: 'c' }]);
    await w.end(end);
    expect(await readAll(late)).toEqual([{ kind: 'end', ...end }]);
    expect(here.deliveries()).toEqual({ local: 2, redis: 3 });
    expect(await readAll(theirs)).toEqual(await stored(prefix, 'j'));
    w.release();
    await Promise.all([late.close(), theirs.close()]);
  });

  it('readers opening at any moment of many writes get every entry once, in order, whichever way it came', async () => {
    const prefix = uniquePrefix('relay');
    const here = hub(prefix);
    const there = hub(prefix);
    const jobs = Array.from({ length: 24 }, (_, i) => `j${i}`);
    const run = async (jobId: string, joinAt: number) => {
      const first = await there.open(jobId);
      const w = writer(prefix, jobId, here);
      await w.open(1);
      const pushed: string[] = [];
      const push = (t: string) => {
        pushed.push(t);
        w.push(t);
      };
      let late: TokenStreamReader | undefined;
      const got: TokenStreamEntry[] = [];
      const drain = () => {
        for (let e = late?.take(); e !== undefined; e = late!.take()) got.push(e);
      };
      for (let t = 0; t < 60; t++) {
        // Opened while the writes go on: its marks, its reads from Redis and the writes race.
        if (t === joinAt) late = await here.open(jobId);
        push(`<${t}>`);
        drain();
        if (t % 3 === 0) await new Promise<void>((r) => setImmediate(r));
        else await Promise.resolve();
      }
      // Once the reader has caught up with what Redis holds, a write is handed over as it is sent (the
      // writes above may all have outrun its reads): the late reader ends up fed both ways.
      for (let k = 0; ; k++) {
        if (k > 100) throw new Error(`${jobId}: no write was handed over`);
        await until(async () => (drain(), got.length === (await stored(prefix, jobId)).length), 5000);
        await new Promise<void>((r) => setImmediate(r));
        drain();
        push(`[${k}]`);
        const e = late!.take();
        if (e) {
          got.push(e);
          break;
        }
      }
      await w.end(end);
      w.release();
      got.push(...(await readAll(late!)));
      const all = await stored(prefix, jobId);
      expect(all[0]).toEqual({ kind: 'start', attempt: 1 });
      expect(all[all.length - 1]).toEqual({ kind: 'end', ...end });
      // The texts are the writer's tokens, each once, in order.
      const text = all.flatMap((e) => (e.kind === 'text' ? [e.text] : [])).join('');
      expect(text).toBe(pushed.join(''));
      expect(got).toEqual(all);
      expect(await readAll(first)).toEqual(all);
      await Promise.all([first.close(), late!.close()]);
    };
    await Promise.all(jobs.map((j, i) => run(j, (i * 5) % 60)));
    // Both ways were used, and the other process's hub read everything from Redis.
    const d = here.deliveries();
    expect(d.local).toBeGreaterThanOrEqual(jobs.length * 2);
    expect(d.redis).toBeGreaterThan(0);
    expect(there.deliveries().local).toBe(0);
  });

  it('a writer whose attempt ends without its end hands its readers back to Redis, where a retry elsewhere is read', async () => {
    const prefix = uniquePrefix('relay');
    const here = hub(prefix);
    const r = await here.open('j');
    const w1 = writer(prefix, 'j', here);
    await w1.open(1);
    w1.push('x');
    expect(taken(r)).toEqual([
      { kind: 'start', attempt: 1 },
      { kind: 'text', seq: 0, text: 'x' },
    ]);
    // Read by this process alone: nothing of the attempt went to Redis.
    expect(await producer.exists(tokenStreamKeys(prefix, 'inference', 'j').stream)).toBe(0);
    // The backend call failed: the attempt is over without an end.
    w1.release();
    // The retry runs on a worker of another process (no hand-over): its entries come through Redis.
    const w2 = writer(prefix, 'j', undefined);
    await w2.open(2);
    w2.push('y');
    await w2.end(end);
    expect(await readAll(r)).toEqual([
      { kind: 'start', attempt: 2 },
      { kind: 'text', seq: 0, text: 'y' },
      { kind: 'end', ...end },
    ]);
    expect(here.deliveries()).toEqual({ local: 2, redis: 3 });
    await r.close();
  });
  it('a stream read only by this process stays out of Redis: one attempt, every entry handed over, none written', async () => {
    const prefix = uniquePrefix('relay');
    const here = hub(prefix);
    const mine = await here.open('j');
    const w = writer(prefix, 'j', here);
    await w.open(1);
    w.push('one');
    w.push(' two');
    await new Promise<void>((r) => setImmediate(r));
    w.push(' three');
    await w.end(end);
    w.release();
    const got = await readAll(mine);
    expect(got[0]).toEqual({ kind: 'start', attempt: 1 });
    expect(got[got.length - 1]).toEqual({ kind: 'end', ...end });
    expect(got.flatMap((e) => (e.kind === 'text' ? [e.text] : [])).join('')).toBe('one two three');
    expect(here.deliveries().redis).toBe(0);
    // No script call wrote an entry: the job has no token stream in Redis at all.
    expect(await producer.exists(tokenStreamKeys(prefix, 'inference', 'j').stream)).toBe(0);
    expect(w.signal.aborted).toBe(false);
    await mine.close();
  });

  it('a reader of another process that opens mid-stream gets the whole stream from its start, then each write', async () => {
    const prefix = uniquePrefix('relay');
    const here = hub(prefix);
    const there = hub(prefix);
    const mine = await here.open('j');
    const w = writer(prefix, 'j', here);
    await w.open(1);
    w.push('a');
    await new Promise<void>((r) => setImmediate(r));
    w.push('b');
    await new Promise<void>((r) => setImmediate(r));
    expect(await producer.exists(tokenStreamKeys(prefix, 'inference', 'j').stream)).toBe(0);
    // Another process joins the running job: its marks add a remote-reader entry, which this process's hub
    // reads and tells the writer of; the writer then writes the stream from its first entry.
    const theirs = await there.open('j');
    const head: TokenStreamEntry[] = [];
    while (head.length < 3) head.push((await theirs.next())!);
    expect(head).toEqual([
      { kind: 'start', attempt: 1 },
      { kind: 'text', seq: 0, text: 'a' },
      { kind: 'text', seq: 1, text: 'b' },
    ]);
    w.push('c');
    await w.end(end);
    w.release();
    const all = [...head, { kind: 'text', seq: 2, text: 'c' }, { kind: 'end', ...end }];
    expect(await stored(prefix, 'j')).toEqual(all);
    expect(await readAll(theirs)).toEqual(all.slice(3));
    // This process's reader had every entry once, handed over, none read back from Redis.
    expect(await readAll(mine)).toEqual(all);
    expect(here.deliveries()).toEqual({ local: 5, redis: 0 });
    await Promise.all([mine.close(), theirs.close()]);
  });

  it('the last reader of a stream kept out of Redis leaves: the next write checks the cancel and stops the attempt', async () => {
    const prefix = uniquePrefix('relay');
    const here = hub(prefix);
    const mine = await here.open('j');
    const w = writer(prefix, 'j', here);
    await w.open(1);
    w.push('a');
    expect(taken(mine)).toEqual([
      { kind: 'start', attempt: 1 },
      { kind: 'text', seq: 0, text: 'a' },
    ]);
    await mine.close();
    w.push('b');
    await until(() => w.signal.aborted, 5000, 'the attempt to be cancelled');
    expect(w.signal.reason).toBeInstanceOf(JobCancelledError);
    // The cancel took the stream (and the mark) with it: a caller that asks again never reads this text.
    const keys = tokenStreamKeys(prefix, 'inference', 'j');
    expect(await producer.exists(keys.stream, keys.cancel)).toBe(0);
    w.release();
  });
  it('a caller that comes after a stream kept out of Redis ended and its readers left is handed it whole from memory', async () => {
    const prefix = uniquePrefix('relay');
    const here = hub(prefix);
    const first = await here.open('j');
    const w = writer(prefix, 'j', here);
    await w.open(1);
    w.push('x');
    await new Promise<void>((r) => setImmediate(r));
    w.push('y');
    await w.end(end);
    w.release();
    const all = await readAll(first);
    await first.close();
    // The job's result may not be out yet: a second request for it still gets the stream, as it would have
    // read it from Redis had it been written there.
    const again = await here.open('j');
    expect(await readAll(again)).toEqual(all);
    expect(await producer.exists(tokenStreamKeys(prefix, 'inference', 'j').stream)).toBe(0);
    await again.close();
  });
});
