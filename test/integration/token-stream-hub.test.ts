import { type RedisConnection } from '../../shared/redis/cluster';
import { silentLogger } from '../../shared/logger';
import { createRedisConnection, closeRedis, waitUntilReady } from '../../shared/redis/connection';
import { encodeEntry, tokenStreamKeys } from '../../shared/queues/token-stream';
import { TokenStreamHub } from '../../producers/token-stream-hub';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';

/*
 * The API's token stream hub against a real Redis: openNow() sends a job's marks without waiting for their
 * reply, so a command sent after it on the same connection (the job's add, in the API) already finds them;
 * the hub delivers what the worker writes and notes when the first text arrived.
 */

let redis: RedisConnection;
let hub: TokenStreamHub;
let prefix: string;
beforeAll(async () => {
  redis = createRedisConnection({ url: testRedisUrl(), role: 'producer' });
  await waitUntilReady(redis, 5000);
  prefix = uniquePrefix('hub');
  hub = new TokenStreamHub({ redisUrl: testRedisUrl(), prefix, redis, logger: silentLogger() });
});
afterAll(async () => {
  await hub.close();
  await closeRedis(redis);
});

describe('TokenStreamHub', () => {
  it('openNow(): the next command on the connection, sent without waiting, already sees the marks', async () => {
    const keys = tokenStreamKeys(prefix, 'inference', 'job-now');
    const reader = hub.openNow('job-now');
    // On one Redis: sent in the same tick, before the marks' reply (Redis runs the commands of one connection
    // in order). A cluster makes no such promise (the marks' script may not be in the node's script cache
    // yet, and ioredis resends it after a NOSCRIPT, behind the reads), so there the API awaits the marks
    // (open()) and so does this test.
    if (redis.isCluster) await reader.ready;
    const [wanted, readers] = await Promise.all([redis.get(keys.wanted), redis.get(keys.readers)]);
    expect([wanted, readers]).toEqual(['1', '1']);
    await reader.ready;
    await reader.close({ cancel: false });
    // On one Redis the job's add (sent later on this connection) finds the marks without waiting for them.
    expect(hub.marksPrecedeAdds).toBe(!redis.isCluster);
  });

  it('delivers the entries the worker writes, in order, and notes when the first text came', async () => {
    const keys = tokenStreamKeys(prefix, 'inference', 'job-read');
    const reader = await hub.open('job-read');
    expect(reader.firstTextAt).toBeUndefined();
    const before = performance.now();
    await redis.xadd(keys.stream, '*', ...encodeEntry({ kind: 'start', attempt: 1 }));
    await redis.xadd(keys.stream, '*', ...encodeEntry({ kind: 'text', seq: 0, text: 'Hello' }));
    expect(await reader.next()).toEqual({ kind: 'start', attempt: 1 });
    expect(await reader.next()).toEqual({ kind: 'text', seq: 0, text: 'Hello' });
    expect(reader.firstTextAt).toBeGreaterThanOrEqual(before);
    expect(reader.firstTextAt).toBeLessThanOrEqual(performance.now());
    await reader.close({ cancel: false });
  });

  it('reads a stream added while its blocking read was on the way, without waiting for the read to time out', async () => {
    // A fresh hub: the first open starts the read loop (its connection still connecting); the second one,
    // in the same tick, is not among that read's keys, and its wake-up reaches Redis before the read does.
    // The read blocks for a minute: the test passes only if the wake-up is not missed.
    const slow = new TokenStreamHub({ redisUrl: testRedisUrl(), prefix, redis, blockMs: 60_000 });
    try {
      const a = slow.openNow('job-a');
      const b = slow.openNow('job-b');
      await Promise.all([a.ready, b.ready]);
      const keys = tokenStreamKeys(prefix, 'inference', 'job-b');
      await redis.xadd(keys.stream, '*', ...encodeEntry({ kind: 'text', seq: 0, text: 'late' }));
      expect(await b.next()).toEqual({ kind: 'text', seq: 0, text: 'late' });
    } finally {
      await slow.close();
    }
  }, 30_000);

  it('keeps reading the right streams as they open, end and leave between reads', async () => {
    // Blocking reads of a minute: each step passes only if the read was made again with the new set.
    const h = new TokenStreamHub({ redisUrl: testRedisUrl(), prefix, redis, blockMs: 60_000 });
    const write = (job: string, e: Parameters<typeof encodeEntry>[0]) =>
      redis.xadd(tokenStreamKeys(prefix, 'inference', job).stream, '*', ...encodeEntry(e));
    const end = {
      kind: 'end',
      finishReason: 'stop',
      model: 'm',
      usage: { promptTokens: 1, completionTokens: 1, totalTokens: 2 },
    } as const;
    try {
      const a = await h.open('set-a');
      const b = await h.open('set-b');
      await write('set-a', { kind: 'text', seq: 0, text: 'a0' });
      expect(await a.next()).toEqual({ kind: 'text', seq: 0, text: 'a0' });
      // b's stream ends: it leaves the read set, a keeps being read.
      await write('set-b', end);
      expect(await b.next()).toEqual(end);
      await b.close({ cancel: false });
      await write('set-a', { kind: 'text', seq: 1, text: 'a1' });
      expect(await a.next()).toEqual({ kind: 'text', seq: 1, text: 'a1' });
      // A stream opened now joins the set while a's read is blocked.
      const c = await h.open('set-c');
      await write('set-c', { kind: 'text', seq: 0, text: 'c0' });
      expect(await c.next()).toEqual({ kind: 'text', seq: 0, text: 'c0' });
      // a leaves; c goes on alone, from where it was.
      await a.close({ cancel: false });
      await write('set-a', { kind: 'text', seq: 2, text: 'a2' });
      await write('set-c', { kind: 'text', seq: 1, text: 'c1' });
      expect(await c.next()).toEqual({ kind: 'text', seq: 1, text: 'c1' });
      expect(h.size).toBe(1);
      await c.close({ cancel: false });
    } finally {
      await h.close();
    }
  }, 30_000);

  it('renews the marks of a stream read for longer than their lifetime: the readers count is not lost', async () => {
    // Mark expiry is Redis's own clock, so this waits real time: three lifetimes of 600 ms.
    const ttl = 600;
    const short = new TokenStreamHub({ redisUrl: testRedisUrl(), prefix, redis, markTtlMs: ttl });
    try {
      const keys = tokenStreamKeys(prefix, 'inference', 'job-long');
      const reader = await short.open('job-long');
      await new Promise((r) => setTimeout(r, 3 * ttl));
      expect(await redis.get(keys.readers)).toBe('1');
      expect(await redis.get(keys.wanted)).toBe('1');
      // The last reader's leave counts down from 1 (not from a lost count, to -1) and cancels the job.
      await reader.close();
      expect(await redis.get(keys.readers)).toBe('0');
      expect(await redis.get(keys.cancel)).toBe('1');
    } finally {
      await short.close();
    }
  }, 30_000);
});
