import { type Socket } from 'node:net';
import type { Redis } from 'ioredis';
import {
  beforeSend,
  closeRedis,
  flushWrites,
  flushWritesOf,
  waitUntilReady,
} from '../../shared/redis/connection';
import { onCluster, testRedisConnection, uniquePrefix } from '../helpers/redis';

/*
 * coalesceWrites: the commands a connection is given within one turn of the event loop leave in one socket
 * write, also when they come from different callbacks of the same phase (here: timers that fall due
 * together, as the replies of one Redis read or the HTTP requests of one poll do under load).
 */
const maybe = onCluster() ? describe.skip : describe;

/** Counts the socket writes of `redis` from now on: read the count with the function returned. */
function countWrites(redis: Redis): () => number {
  const stream = (redis as unknown as { stream: Socket & { _writeGeneric: (...a: unknown[]) => void } })
    .stream;
  let writes = 0;
  const real = stream._writeGeneric;
  stream._writeGeneric = function (this: Socket, ...args: unknown[]) {
    writes++;
    return real.apply(this, args);
  };
  return () => writes;
}

maybe('Redis write coalescing', () => {
  it('sends the commands of 50 callbacks of one loop phase in one socket write (at most two), in order', async () => {
    const conn = testRedisConnection('coalescing');
    try {
      await waitUntilReady(conn, 5000);
      const redis = conn as Redis;
      const writes = countWrites(redis);
      const key = `${uniquePrefix('coalesce')}:list`;
      const sent: Promise<unknown>[] = [];
      // 50 timers due at the same time run in one timers phase, each a callback of its own.
      await new Promise<void>((resolve) => {
        let left = 50;
        for (let i = 0; i < 50; i++)
          setTimeout(() => {
            sent.push(redis.rpush(key, String(i)));
            if (--left === 0) resolve();
          }, 1);
      });
      await Promise.all(sent);
      // One write (two if the timers straddled a millisecond and fell due in two phases); 50 without it.
      expect(writes()).toBeLessThanOrEqual(2);
      expect(await redis.lrange(key, 0, -1)).toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
      await redis.del(key);
    } finally {
      await closeRedis(conn);
    }
  });

  it('flushWrites() sends what a setImmediate callback issued before the loop turns again', async () => {
    const conn = testRedisConnection('coalescing-flush');
    try {
      await waitUntilReady(conn, 5000);
      const redis = conn as Redis;
      const writes = countWrites(redis);
      const key = `${uniquePrefix('coalesce-flush')}:list`;
      // In the check phase, as a batch gathered over a poll is sent: the commands issued by the callback and by
      // its microtasks (an await that needs no I/O) leave in one write once those microtasks are done.
      const seen = await new Promise<{ withFlush: number; without: number; sent: Promise<unknown>[] }>(
        (resolve) =>
          setImmediate(() => {
            const sent = [redis.rpush(key, 'a')];
            void Promise.resolve().then(() => sent.push(redis.rpush(key, 'b')));
            queueMicrotask(() =>
              process.nextTick(() => {
                const without = writes();
                flushWrites();
                resolve({ withFlush: writes(), without, sent });
              }),
            );
          }),
      );
      expect(seen.without).toBe(0); // held by the cork until the loop's next turn
      expect(seen.withFlush).toBe(1); // both commands, in one write
      await Promise.all(seen.sent);
      expect(await redis.lrange(key, 0, -1)).toEqual(['a', 'b']);
      // Nothing is held any more: a later write is coalesced (and sent) as before.
      flushWrites();
      expect(await redis.rpush(key, 'c')).toBe(3);
      await redis.del(key);
    } finally {
      await closeRedis(conn);
    }
  });

  it('flushWritesOf(conn) sends what that connection holds, and leaves the others corked', async () => {
    const conns = [testRedisConnection('coalescing-one'), testRedisConnection('coalescing-other')];
    try {
      await Promise.all(conns.map((c) => waitUntilReady(c, 5000)));
      const [one, other] = conns as [Redis, Redis];
      const writes = [countWrites(one), countWrites(other)];
      const key = `${uniquePrefix('coalesce-one')}:list`;
      const seen = await new Promise<{ counts: number[]; sent: Promise<unknown>[] }>((resolve) =>
        setImmediate(() => {
          const sent = [one.rpush(key, 'a'), other.rpush(key, 'b')];
          flushWritesOf(one);
          resolve({ counts: writes.map((w) => w()), sent });
        }),
      );
      expect(seen.counts).toEqual([1, 0]);
      await Promise.all(seen.sent);
      expect((await one.lrange(key, 0, -1)).sort()).toEqual(['a', 'b']);
      await one.del(key);
    } finally {
      await Promise.all(conns.map((c) => closeRedis(c)));
    }
  });
  it('beforeSend(conn, fn) runs fn as the held writes leave, in order, in the same write, within the turn', async () => {
    const conn = testRedisConnection('coalescing-before-send');
    try {
      await waitUntilReady(conn, 5000);
      const redis = conn as Redis;
      const writes = countWrites(redis);
      const key = `${uniquePrefix('coalesce-before')}:list`;
      const sent: Promise<unknown>[] = [];
      const order: string[] = [];
      // Timers due together: callbacks of one phase, as the backend answers of one poll are.
      await new Promise<void>((resolve) => {
        setTimeout(() => {
          sent.push(redis.rpush(key, 'a'));
          expect(
            beforeSend(redis, () => {
              order.push('first');
              sent.push(redis.rpush(key, 'late-1'));
              // Given while the held writes are leaving: runs in the same flush, behind this one.
              beforeSend(redis, () => {
                order.push('nested');
                sent.push(redis.rpush(key, 'late-3'));
              });
            }),
          ).toBe(true);
          beforeSend(redis, () => {
            order.push('second');
            sent.push(redis.rpush(key, 'late-2'));
          });
        }, 1);
        setTimeout(() => {
          sent.push(redis.rpush(key, 'b'));
          expect(order).toEqual([]); // not before the writes leave
          resolve();
        }, 1);
      });
      await Promise.all(sent);
      expect(order).toEqual(['first', 'second', 'nested']);
      expect(writes()).toBe(1);
      expect(await redis.lrange(key, 0, -1)).toEqual(['a', 'b', 'late-1', 'late-2', 'late-3']);

      // With nothing else written on the connection, fn still runs (and its command leaves) this turn;
      // flushWritesOf runs it at once.
      const alone = await new Promise<unknown>((resolve) => {
        beforeSend(redis, () => resolve(redis.rpush(key, 'alone')));
      });
      expect(alone).toBe(6);
      let ran = false;
      beforeSend(redis, () => (ran = true));
      flushWritesOf(redis);
      expect(ran).toBe(true);
      await redis.del(key);
    } finally {
      await closeRedis(conn);
    }
  });
  it('beforeSend: what a hook issues after an await that needs no I/O still leaves in the same write', async () => {
    const conn = testRedisConnection('coalescing-before-send-await');
    try {
      await waitUntilReady(conn, 5000);
      const redis = conn as Redis;
      const writes = countWrites(redis);
      const key = `${uniquePrefix('coalesce-await')}:list`;
      const sent: Promise<unknown>[] = [];
      const ready = Promise.resolve();
      // As a batch of adds is sent: the hook starts it, and its commands go out behind a resolved promise
      // (a breaker's wrapper, BullMQ's client promise), in microtasks after the hook returned.
      await new Promise<void>((resolve) => {
        setTimeout(() => {
          sent.push(redis.rpush(key, 'a'));
          beforeSend(redis, () => {
            void (async () => {
              await ready;
              await ready;
              sent.push(redis.rpush(key, 'after-await'));
              resolve();
            })();
          });
        }, 1);
      });
      await Promise.all(sent);
      expect(writes()).toBe(1);
      expect(await redis.lrange(key, 0, -1)).toEqual(['a', 'after-await']);
      await redis.del(key);
    } finally {
      await closeRedis(conn);
    }
  });
});
