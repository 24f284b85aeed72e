import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { RedisTimeoutError, RedisUnavailableError } from '../../shared/errors';
import { type RedisConnection } from '../../shared/redis/cluster';
import { RedisClient } from '../../shared/redis/redis-client';
import { Cell0Client } from '../../producers/cell0-client';
import { post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server';
import { uniquePrefix } from '../helpers/redis';
import { rejectionOf, until } from '../helpers/wait';

/** Two busy loops, one per core of the test machine: the host is loaded, Redis is healthy. */
function busyLoops(n = 2): ChildProcess[] {
  return Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
}

function killAll(procs: ChildProcess[]): void {
  for (const p of procs) if (p.pid !== undefined && p.exitCode === null) process.kill(p.pid, 'SIGKILL');
}

/**
 * Makes Redis busy for `seconds` with a DEBUG SLEEP sent on `conn`, the connection under test: every command
 * sent on it afterwards waits behind the sleep (a connection's commands are answered in order), so no guess
 * of when the sleep has started is needed, however slow the host. The sleep's own reply comes late too (it
 * has the connection's command timeout): ignored.
 */
function sleepAhead(conn: RedisConnection, seconds: number): void {
  conn.call('DEBUG', 'SLEEP', String(seconds)).catch(() => undefined);
}

/** Polls with GET until Redis answers `client` again (timeouts meanwhile); returns the answer. */
async function answerWhenFree(client: RedisClient): Promise<unknown> {
  let answer: unknown = 'no answer';
  await until(
    async () => {
      try {
        answer = await client.get('k');
        return true;
      } catch (err) {
        if (!(err instanceof RedisTimeoutError)) throw err;
        return false;
      }
    },
    30_000,
    'Redis to answer again',
  );
  return answer;
}

describe('slow is not down (private redis-server)', () => {
  let redis: PrivateRedis;
  let blocker: Redis;
  beforeAll(async () => {
    redis = await startPrivateRedis({ args: ['--enable-debug-command', 'yes'] });
    blocker = new Redis(redis.url);
  });
  afterAll(async () => {
    blocker.disconnect();
    await redis.destroy();
  });

  it('a Redis that answers late gives RedisTimeoutError and never opens the breaker', async () => {
    const client = new RedisClient({ url: redis.url, commandTimeoutMs: 50, breakerThreshold: 3 });
    let opened = 0;
    client.on('breaker:open', () => opened++);
    try {
      await until(() => client.connection.status === 'ready', 10_000);
      // Redis is busy for 300 ms at a time (DEBUG SLEEP blocks it), six times: every command sent then
      // times out, yet Redis is up and answers each time it is free.
      for (let round = 0; round < 6; round++) {
        sleepAhead(client.connection, 0.3);
        const errs = await Promise.all([1, 2, 3, 4].map(() => rejectionOf(client.get('k'))));
        for (const e of errs) {
          expect(e).toBeInstanceOf(RedisTimeoutError);
          expect(e).toMatchObject({ code: 'CELL0_REDIS_TIMEOUT' });
        }
        expect(await answerWhenFree(client)).toBeUndefined();
      }
      expect(opened).toBe(0);
      expect(client.breaker.state).toBe('closed');
      expect(client.getMetrics().timeouts).toBeGreaterThanOrEqual(24);
    } finally {
      await client.close();
    }
  });

  it('a job submission Redis answers late gets RedisTimeoutError (slow), not RedisUnavailableError (down)', async () => {
    const client = new Cell0Client({
      redisUrl: redis.url,
      prefix: uniquePrefix('slow-submit'),
      commandTimeoutMs: 50,
      policy: { attempts: 1 },
    });
    let opened = 0;
    client.submitter.redis.on('breaker:open', () => opened++);
    try {
      await client.start();
      // The submission's pipeline (waiter registration and BullMQ's add) times out while Redis sleeps. The
      // sleep is long (2 s: timeouts come after 50 ms, the breaker would open only after 10 s of nothing but
      // timeouts) so that the submissions' commands reach Redis while it still sleeps, however late a busy
      // host sends them (with 0.3 s a loaded host once sent them after the sleep, and they succeeded).
      sleepAhead(client.submitter.redis.connection, 2);
      const errs = await Promise.all(
        [1, 2, 3].map((i) => rejectionOf(client.enqueueInference({ model: 'm', prompt: `late ${i}` }))),
      );
      await answerWhenFree(client.submitter.redis);
      for (const e of errs) expect(e).toMatchObject({ code: 'CELL0_REDIS_TIMEOUT' });
      expect(opened).toBe(0);
      expect(client.submitter.redis.breaker.state).toBe('closed');
    } finally {
      await client.close();
    }
  });

  it('a Redis that answers nothing for longer than slowOpenMs (hung) opens the breaker', async () => {
    const client = new RedisClient({
      url: redis.url,
      commandTimeoutMs: 50,
      breakerThreshold: 3,
      slowOpenMs: 300,
    });
    try {
      await until(() => client.connection.status === 'ready', 10_000);
      sleepAhead(client.connection, 2);
      const errs: unknown[] = [];
      while (client.breaker.state === 'closed') errs.push(await rejectionOf(client.get('k')));
      expect(errs[0]).toBeInstanceOf(RedisTimeoutError);
      expect(errs.at(-1)).toBeInstanceOf(RedisUnavailableError);
      expect(client.breaker.state).toBe('open');
      await blocker.ping(); // answered once the sleep is over: the next test starts on a free Redis
    } finally {
      await client.close();
    }
  });

  describe('the API on a host whose cores are both busy', () => {
    let fleet: TestFleet;
    let loops: ChildProcess[] = [];
    beforeAll(async () => {
      fleet = await startTestFleet({ redisUrl: redis.url });
      await fleet.client.start();
    });
    afterAll(async () => {
      killAll(loops);
      await fleet.close();
    });

    it('answers every request and never trips the Redis breaker', async () => {
      const breaker = fleet.client.submitter.redis;
      let opened = 0;
      breaker.on('breaker:open', () => opened++);
      loops = busyLoops(2);
      try {
        const statuses: number[] = [];
        const codes: string[] = [];
        let n = 0;
        // 16 callers, 25 requests each: the producer's Redis commands queue behind two spinning cores.
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            for (let i = 0; i < 25; i++) {
              const body = { model: 'qwen2.5:0.5b', prompt: `loaded host ${n++}`, wait: 5000 };
              const r = await post(`${fleet.url}/v1/inference`, body);
              statuses.push(r.status);
              const code = (r.body.error as { code?: string } | undefined)?.code;
              if (code) codes.push(code);
            }
          }),
        );
        expect(statuses).toHaveLength(400);
        expect(codes.filter((c) => c === 'CELL0_REDIS_UNAVAILABLE' || c === 'CELL0_BREAKER_OPEN')).toEqual(
          [],
        );
        expect(opened).toBe(0);
        expect(breaker.breaker.state).toBe('closed');
        expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
      } finally {
        killAll(loops);
      }
    }, 180_000);
  });
});
