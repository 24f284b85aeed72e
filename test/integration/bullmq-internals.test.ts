import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { closeRedis, createRedisConnection } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import {
  BULLMQ_INTERNALS_VERSION,
  freeSlots,
  hookMoveToFinished,
  stopCutShortWorker,
  type FinishCall,
  wakeFetchLoop,
  workerInternals,
} from '../../shared/queues/bullmq-internals';
import { testRedisConnection, uniquePrefix } from '../helpers/redis';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server';
import { until } from '../helpers/wait';

/*
 * cell0 reaches into BullMQ in one place (shared/queues/bullmq-internals.ts). These tests pin what it relies
 * on, so that a BullMQ upgrade that renames or reshapes those members fails here, loudly, instead of
 * quietly turning the shutdown cleanup into a no-op.
 */

const installed = (
  JSON.parse(readFileSync(join(__dirname, '..', '..', 'node_modules', 'bullmq', 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

test(`the installed BullMQ is the version the internals were checked against (${BULLMQ_INTERNALS_VERSION})`, () => {
  // On an upgrade: re-read bullmq's worker.ts and lock-manager.ts, check the members named in
  // WorkerInternals, run this file, then bump BULLMQ_INTERNALS_VERSION.
  expect({ installed }).toEqual({ installed: BULLMQ_INTERNALS_VERSION });
});

describe(`BullMQ ${installed} Worker internals`, () => {
  const conns: RedisConnection[] = [];
  const conn = () => {
    const c = testRedisConnection('test:bmi');
    conns.push(c);
    return c;
  };
  afterAll(async () => {
    await Promise.all(conns.map((c) => closeRedis(c)));
  });

  test('lockManager and stalledCheckStopper exist with the expected shape; the adapter stops both', async () => {
    const prefix = uniquePrefix('bmi');
    const queue = new Queue('q', { connection: conn(), prefix });
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    const worker = new Worker('q', () => held, {
      connection: conn(),
      prefix,
      stalledInterval: 60_000,
      lockDuration: 30_000,
    });
    const active = new Promise<void>((r) => worker.once('active', () => r()));
    await queue.add('j', {});
    await active;

    const internals = workerInternals(worker);
    expect(typeof internals.lockManager).toBe('object');
    expect(typeof internals.lockManager?.close).toBe('function');
    expect(typeof internals.lockManager?.isRunning).toBe('function');
    // The lock extender's timer is armed while the worker runs.
    expect(internals.lockManager?.isRunning?.()).toBe(true);
    // The stalled checker sets its stopper when it first sleeps between passes.
    await until(() => typeof internals.stalledCheckStopper === 'function', 10_000, 'the stalled checker');

    // As in a close cut short: close() has begun (waiting for the active job) when the adapter runs.
    const closing = worker.close();
    await stopCutShortWorker(worker);
    expect(internals.lockManager?.isRunning?.()).toBe(false);

    release();
    await closing;
    await queue.close();
  });

  test('the adapter is harmless on a worker that never ran, and never throws', async () => {
    const worker = new Worker('idle', null, {
      connection: conn(),
      prefix: uniquePrefix('bmi'),
      autorun: false,
    });
    await expect(stopCutShortWorker(worker)).resolves.toBeUndefined();
    await worker.close();
  });

  test('moveToFinished is a command on the worker connection; the hook reads each finish from its arguments', async () => {
    const prefix = uniquePrefix('bmi');
    const queue = new Queue('q', { connection: conn(), prefix });
    const workerConn = conn();
    expect(hookMoveToFinished(workerConn, () => undefined)).toBe(false); // no scripts loaded yet
    const worker = new Worker(
      'q',
      async (job) => {
        if ((job.data as { fail?: boolean }).fail) throw new Error('no "luck"');
        return { n: (job.data as { n: number }).n };
      },
      { connection: workerConn, prefix, autorun: false },
    );
    await worker.waitUntilReady();
    const calls: FinishCall[] = [];
    expect(hookMoveToFinished(workerConn, (c) => calls.push(c))).toBe(true);
    expect(hookMoveToFinished(workerConn, () => undefined)).toBe(true); // hooked once, not twice
    const done = new Promise<void>((r) => {
      let n = 0;
      const one = () => ++n === 2 && r();
      worker.on('completed', one);
      worker.on('failed', one);
    });
    const ok = await queue.add('j', { n: 7 });
    const bad = await queue.add('j', { fail: true }, { attempts: 1 });
    void worker.run();
    await done;
    const okJob = await queue.getJob(ok.id!);
    const badJob = await queue.getJob(bad.id!);
    expect(calls.sort((a, b) => a.jobId.localeCompare(b.jobId))).toEqual(
      [
        {
          jobId: ok.id,
          target: 'completed',
          finishedSetKey: `${prefix}:q:completed`,
          finishedOn: okJob!.finishedOn,
          value: '{"n":7}',
        },
        {
          jobId: bad.id,
          target: 'failed',
          finishedSetKey: `${prefix}:q:failed`,
          finishedOn: badJob!.finishedOn,
          value: 'no "luck"',
        },
      ].sort((a, b) => a.jobId!.localeCompare(b.jobId!)),
    );
    await worker.close();
    await queue.close();
  });
  test("the fetch loop's members a local take uses exist; freeSlots follows the loop", async () => {
    const prefix = uniquePrefix('bmi');
    const worker = new Worker('q', async () => undefined, { connection: conn(), prefix, concurrency: 5 });
    const limited = new Worker('q', async () => undefined, {
      connection: conn(),
      prefix,
      concurrency: 5,
      limiter: { max: 10, duration: 1000 },
    });
    const idle = new Worker('q', async () => undefined, { connection: conn(), prefix, autorun: false });
    const internals = workerInternals(worker);
    await until(() => !!internals.mainLoopQueue, 5000, 'the fetch loop');
    expect(typeof internals.processJob).toBe('function');
    expect(typeof internals.nextJobFromJobData).toBe('function');
    expect(typeof internals.mainLoopQueue?.add).toBe('function');
    // Idle, the loop holds one blocking fetch: the other slots are free.
    await until(() => internals.mainLoopQueue?.numTotal() === 1, 5000, 'the blocking fetch');
    expect(freeSlots(worker)).toBe(4);
    // A worker with a rate limiter, or whose loop does not run, takes nothing this way.
    await until(() => !!workerInternals(limited).mainLoopQueue, 5000, 'the limited loop');
    expect(freeSlots(limited)).toBe(0);
    expect(freeSlots(idle)).toBe(0);
    await worker.pause(true);
    expect(freeSlots(worker)).toBe(0);
    await Promise.all([worker.close(), limited.close(), idle.close()]);
    expect(freeSlots(worker)).toBe(0);
  });

  test('a raised concurrency is read when the loop is woken, not only when one of its jobs ends', async () => {
    const prefix = uniquePrefix('bmi');
    const queue = new Queue('q', { connection: conn(), prefix });
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    let running = 0;
    const worker = new Worker(
      'q',
      async () => {
        running++;
        await held;
      },
      { connection: conn(), prefix, concurrency: 1 },
    );
    try {
      await queue.addBulk(Array.from({ length: 4 }, (_, i) => ({ name: 'j', data: { i } })));
      await until(async () => running === 1 && (await queue.getWaitingCount()) === 3, 10_000, '1 running');
      worker.concurrency = 4;
      expect(wakeFetchLoop(worker)).toBe(true);
      // The three waiting jobs start while the first still runs.
      await until(() => running === 4, 10_000, '4 running');
    } finally {
      release();
      await worker.close();
      await queue.close();
    }
    expect(wakeFetchLoop(worker)).toBe(false);
  });
});

describe('a worker whose close is cut short with Redis gone', () => {
  let redis: PrivateRedis;
  beforeAll(async () => {
    redis = await startPrivateRedis();
  });
  afterAll(async () => {
    await redis.destroy();
  });

  // BullMQ's fetch watchdog would end the stranded BZPOPMIN only after the block timeout plus 1 s: with a
  // 30 s drain delay, 31 s. The adapter ends it at once; the 10 s bound is far from both.
  test('the adapter ends its stranded blocking fetch at once, and nothing reconnects', async () => {
    const workerConn = createRedisConnection({
      url: redis.url,
      role: 'worker',
      connectionName: 'test:cut-short',
    });
    const worker = new Worker('cut', async () => undefined, {
      connection: workerConn,
      prefix: uniquePrefix('bmi'),
      drainDelay: 30,
      stalledInterval: 60_000,
    });
    worker.on('error', () => undefined); // connection refused while Redis is away: expected here
    await worker.waitUntilReady();
    // Blocked in its fetch: the blocking connection's last command is the BZPOPMIN.
    const probe = createRedisConnection({ url: redis.url, role: 'worker', connectionName: 'test:probe' });
    await until(
      async () => /cmd=bzpopmin/.test(await probe.client('LIST').then(String)),
      10_000,
      'the worker to block in BZPOPMIN',
    );
    await closeRedis(probe);
    await redis.kill();
    const internals = workerInternals(worker);
    type Held = { length: number } | null | undefined;
    const blocking = (await internals.backend?.blockingConnection?.client) as {
      status: string;
      prevCommandQueue?: Held;
      offlineQueue?: Held;
      commandQueue?: Held;
    };
    // The commands the client holds (right after a close, the kept queue is the command queue itself).
    const held = () =>
      [...new Set([blocking.prevCommandQueue, blocking.offlineQueue, blocking.commandQueue])].reduce(
        (n, q) => n + (q?.length ?? 0),
        0,
      );
    await until(() => blocking.status !== 'ready', 10_000, 'the blocking connection to see Redis gone');
    expect(held()).toBe(1); // the BZPOPMIN, kept by ioredis for a resend

    void worker.close().catch(() => undefined); // never settles: BullMQ waits for the blocking connection's end
    const t0 = performance.now();
    await stopCutShortWorker(worker);
    expect(held()).toBe(0);
    await until(() => !worker.isRunning(), 10_000, 'the fetch loop to end');
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(internals.backend?.closing).toBeInstanceOf(Promise); // set by its close(), undefined before
    // The blocking connection does not come back for a Redis that does.
    await redis.start();
    await closeRedis(workerConn);
    await new Promise((r) => setTimeout(r, 300));
    expect(blocking.status).not.toBe('ready');
  }, 40_000);
});
