import { Job, Queue } from 'bullmq';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import {
  addBatchLua,
  addsBatched,
  argsUnpackedOnce,
  batchAdds,
  existsReadOnce,
  storedNumbersAsText,
  gatherAdds,
  type AddTake,
  type AddWaiter,
} from '../../shared/queues/add-batch';
import { takeArguments, takenJobs, type TakeKeys, type TakeRequest } from '../../shared/queues/take-jobs';
import { bullmqScript } from '../../shared/queues/bullmq-internals';
import { splitOpening } from '../../shared/queues/per-job-script';
import { setQueueEvents } from '../../shared/queues/event-writes';
import { testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';
import { monitorRedis } from '../helpers/redis-monitor';

/*
 * The standard adds a producer issues together go to Redis as one script call that runs BullMQ's own
 * addStandardJob once per job (shared/queues/add-batch.ts): each job must be stored exactly as BullMQ's own
 * call stores it, in order, and one job's error must stay its own.
 */
describe('adds batched into one script call', () => {
  const conns: RedisConnection[] = [];
  const conn = () => {
    const c = testRedisConnection('test:add-batch');
    conns.push(c);
    return c;
  };
  afterAll(async () => {
    await Promise.all(conns.map((c) => closeRedis(c)));
  });

  /** A queue on a connection of its own whose adds are batched (batchAdds), with its BullMQ client. */
  const batchedQueue = async () => {
    const c = conn();
    const prefix = uniquePrefix('ab');
    const queue = new Queue('q', { connection: c, prefix });
    await queue.waitUntilReady();
    expect(addsBatched(c)).toBe(false);
    const stats = (await batchAdds(c))!;
    expect(addsBatched(c)).toBe(true);
    const client = await queue.getBackend().client;
    return { c, prefix, queue, stats, client };
  };

  /**
   * A job's hash without what differs between two adds of the same job (its times), its timestamp checked for
   * the form BullMQ's add writes (the digits of an integer ms time, as Redis prints a Lua number).
   */
  async function stored(redis: RedisConnection, key: string): Promise<Record<string, string>> {
    const { timestamp, ...rest } = await redis.hgetall(key);
    expect(timestamp).toMatch(/^[1-9]\d{12}$/);
    return rest;
  }

  test.each([
    ["kept (CELL0_QUEUE_EVENTS=1): its entries are BullMQ's", true],
    ['left out (the default): the batched adds write none', false],
  ])(
    'adds gathered together share one call; each job is stored as by BullMQ alone, in order; events %s',
    async (_, keepEvents) => {
      const batchedConn = conn();
      setQueueEvents(batchedConn, keepEvents);
      const plainConn = conn();
      const [bp, pp] = [uniquePrefix('ab'), uniquePrefix('ab')];
      const batched = new Queue('q', { connection: batchedConn, prefix: bp });
      const plain = new Queue('q', { connection: plainConn, prefix: pp });
      await Promise.all([batched.waitUntilReady(), plain.waitUntilReady()]);
      const stats = await batchAdds(batchedConn);
      expect(stats).toEqual({ calls: 0, adds: 0, single: 0 });
      expect(await batchAdds(batchedConn)).toBe(stats); // once per connection

      const specs = Array.from({ length: 5 }, (_, n) => ({
        data: { n, text: `job "${n}" / é` },
        opts: { jobId: `id-${n}`, attempts: 3, removeOnComplete: { age: 60, count: 10 } },
      }));
      const client = await batched.getBackend().client;
      // Issued together inside gatherAdds; the LLEN right behind them sees every one (the order is kept).
      const ids = gatherAdds(batchedConn, () =>
        specs.map((s) => new Job(batched, 'j', s.data, s.opts, s.opts.jobId).addJob(client)),
      );
      const waitingBehind = batchedConn.llen(`${bp}:q:wait`);
      expect(await Promise.all(ids)).toEqual(specs.map((s) => s.opts.jobId));
      expect(await waitingBehind).toBe(5);
      expect(stats).toEqual({ calls: 1, adds: 5, single: 0 });

      for (const s of specs) await plain.add('j', s.data, s.opts);
      for (const s of specs)
        expect(await stored(batchedConn, `${bp}:q:${s.opts.jobId}`)).toEqual(
          await stored(plainConn, `${pp}:q:${s.opts.jobId}`),
        );
      expect(await batchedConn.lrange(`${bp}:q:wait`, 0, -1)).toEqual(
        await plainConn.lrange(`${pp}:q:wait`, 0, -1),
      );
      expect(await batchedConn.get(`${bp}:q:id`)).toBe(await plainConn.get(`${pp}:q:id`));
      const events = async (c: RedisConnection, p: string) =>
        (await c.xrange(`${p}:q:events`, '-', '+')).map(([, fields]) => fields);
      // BullMQ's own adds write `added` and `waiting` per job.
      expect((await events(plainConn, pp)).map((f) => f[1])).toEqual(
        specs.flatMap(() => ['added', 'waiting']),
      );
      if (keepEvents) expect(await events(batchedConn, bp)).toEqual(await events(plainConn, pp));
      else expect(await events(batchedConn, bp)).toEqual([]);

      // A job added again (the same id) answers as BullMQ's does: its id, nothing stored twice.
      const again = gatherAdds(batchedConn, () => [
        new Job(batched, 'j', { n: 9 }, { jobId: 'id-0' }, 'id-0').addJob(client),
        new Job(batched, 'j', { n: 9 }, { jobId: 'id-9' }, 'id-9').addJob(client),
      ]);
      expect(await Promise.all(again)).toEqual(['id-0', 'id-9']);
      expect(await batchedConn.llen(`${bp}:q:wait`)).toBe(6);
      expect(stats).toEqual({ calls: 2, adds: 7, single: 0 });

      // Outside gatherAdds, and on a transaction made from the connection, adds go as before.
      await batched.add('j', { n: 10 }, { jobId: 'id-10' });
      await batched.addBulk([{ name: 'j', data: { n: 11 }, opts: { jobId: 'id-11' } }]);
      expect(stats).toEqual({ calls: 2, adds: 7, single: 0 });
      expect(await batchedConn.llen(`${bp}:q:wait`)).toBe(8);
      await Promise.all([batched.close(), plain.close()]);
    },
  );

  test("the batched add gives redis.call BullMQ's integer literals as strings, the rest of its text as is", async () => {
    const c = conn();
    const queue = new Queue('q', { connection: c, prefix: uniquePrefix('abl') });
    await queue.waitUntilReady();
    const lua = bullmqScript(c, 'addStandardJob', 9)!.lua;
    const script = addBatchLua(lua, '');
    expect(lua).toContain('rcall("ZADD", markerKey, 0, "0")');
    expect(script).toContain('rcall("ZADD", markerKey, "0", "0")');
    const unquoted = (text: string) => text.replace(/"(-?\d+)"/g, '$1');
    // BullMQ's text with its arguments unpacked once (argsUnpackedOnce) and its helpers made once per call
    // (per-job-script.ts): its helpers and the script proper as they are, its opening locals assigned per add.
    const once = storedNumbersAsText(existsReadOnce(argsUnpackedOnce(lua)));
    expect(once).toContain('local args = ARGV.cell0Args or cmsgpack.unpack(ARGV[1])');
    // The job hash's numbers given to HMSET as their text (storedNumbersAsText).
    expect(lua).toContain('"timestamp", timestamp, "delay", delay, "priority", priority,');
    expect(once).toContain(
      '"timestamp", cell0Text(timestamp), "delay", cell0Text(delay), "priority", cell0Text(priority),',
    );
    expect(script).toContain('local function cell0Text(x)');
    expect(lua).toContain('    if rcall("EXISTS", jobIdKey) == 1 then\n');
    expect(once).toContain('    if (ARGV.cell0Exists or rcall("EXISTS", jobIdKey)) == 1 then\n');
    const parts = splitOpening(once)!;
    expect(parts).toBeDefined();
    expect(unquoted(script)).toContain(unquoted(parts.helpers));
    expect(unquoted(script)).toContain(unquoted(parts.rest));
    for (const o of parts.opening) expect(script).toContain(`\n${o.name} = ${o.value}\n`);
    await queue.close();
  });

  test("one job's error in a batch is that job's only; its neighbours are added", async () => {
    const { c, prefix, queue, stats, client } = await batchedQueue();
    const name = Object.keys(c).find((k) => k.startsWith('addStandardJob:') && !k.endsWith('Buffer'))!;
    const addRaw = (c as unknown as Record<string, (args: unknown[]) => Promise<unknown>>)[name]!;
    let bad: Promise<unknown> | undefined;
    const good = gatherAdds(c, () => {
      const first = new Job(queue, 'j', { n: 1 }, { jobId: 'a' }, 'a').addJob(client);
      // BullMQ's call with arguments its script cannot read (packed args that are not a table).
      const keys = ['wait', 'paused', 'meta', 'id', 'completed', 'delayed', 'active', 'events', 'marker'].map(
        (k) => `${prefix}:q:${k}`,
      );
      bad = addRaw.call(c, [...keys, Buffer.from([0x05]), '{}', Buffer.from([0x80])]);
      const last = new Job(queue, 'j', { n: 2 }, { jobId: 'b' }, 'b').addJob(client);
      return [first, last];
    });
    await expect(bad).rejects.toThrow();
    expect(await Promise.all(good)).toEqual(['a', 'b']);
    expect(stats).toEqual({ calls: 1, adds: 3, single: 0 });
    expect(await c.lrange(`${prefix}:q:wait`, 0, -1)).toEqual(['b', 'a']);
    await queue.close();
  });

  test('with a waiter, each add tells whether it created its job; one that met a job registers and reads it', async () => {
    const { c, prefix, queue, stats, client } = await batchedQueue();
    const waiters = (id: string) => `${prefix}:q:${id}:cell0-waiters`;
    await queue.add('j', { n: 0 }, { jobId: 'waiting' });
    await c.hset(`${prefix}:q:done`, 'opts', '{}', 'returnvalue', '{"x":1}', 'finishedOn', '42');
    await c.zadd(`${prefix}:q:completed`, 42, 'done');
    await c.hset(`${prefix}:q:lost`, 'opts', '{}', 'failedReason', 'boom', 'finishedOn', '43');
    await c.zadd(`${prefix}:q:failed`, 43, 'lost');

    const add = (id: string) => new Job(queue, 'j', { id }, { jobId: id }, id).addJob(client);
    const waiter: AddWaiter = { producerId: 'p1', ttlMs: 60_000, found: new Map() };
    // Each add's job key is looked for once (BullMQ's own look takes the batched script's answer).
    const jobKeyReads: string[] = [];
    const monitor = await monitorRedis(testRedisUrl(), ({ args }) => {
      if (args[0]?.toLowerCase() === 'exists' && args[1]?.startsWith(`${prefix}:q:`))
        jobKeyReads.push(args[1].slice(prefix.length + 3));
    });
    const ids = gatherAdds(c, () => ['new', 'waiting', 'done', 'lost', 'new'].map(add), waiter);
    expect(await Promise.all(ids)).toEqual(['new', 'waiting', 'done', 'lost', 'new']);
    expect(stats).toEqual({ calls: 1, adds: 5, single: 0 });
    await monitor.close();
    // The look for an existing job, then, for one it met, the read of where that job stands (job-status.lua);
    // BullMQ's own look is answered by the first (before existsReadOnce, each add read its key once more).
    expect(jobKeyReads).toEqual(['new', 'waiting', 'waiting', 'done', 'done', 'lost', 'lost', 'new', 'new']);
    expect(waiter.found).toEqual(
      new Map<string, true | unknown[]>([
        // The second add of 'new' met the job the first one created: it is registered.
        ['new', [0, null, null]],
        ['waiting', [0, null, null]],
        ['done', [1, '{"x":1}', '42']],
        ['lost', [2, 'boom', '43']],
      ]),
    );
    for (const id of ['new', 'waiting', 'done', 'lost']) {
      expect(await c.smembers(waiters(id))).toEqual(['p1']);
      expect(await c.pttl(waiters(id))).toBeGreaterThan(50_000);
    }

    // A lone add with a waiter goes through the batched script too; a created job registers nothing.
    const alone: AddWaiter = { producerId: 'p1', ttlMs: 60_000, found: new Map() };
    expect(await gatherAdds(c, () => add('fresh'), alone)).toBe('fresh');
    expect(alone.found).toEqual(new Map([['fresh', true]]));
    expect(stats).toEqual({ calls: 2, adds: 6, single: 0 });
    expect(await c.exists(waiters('fresh'))).toBe(0);
    expect(await c.lrange(`${prefix}:q:wait`, 0, -1)).toEqual(['fresh', 'new', 'waiting']);
    await queue.close();
  });
  test('a take rides behind the adds in their call: the oldest jobs active and locked, no wake-up left once none waits', async () => {
    const { c, prefix, queue, stats, client } = await batchedQueue();
    const add = (id: string) => new Job(queue, 'j', { id }, { jobId: id }, id).addJob(client);
    const waiter = (): AddWaiter => ({ producerId: 'p1', ttlMs: 60_000, found: new Map() });
    const request = (tokens: string[]): TakeRequest => ({
      keys: queue.keys as unknown as TakeKeys,
      marksGate: undefined,
      tokens,
      lockDuration: 30_000,
      name: undefined,
    });
    /** A take of `tokens` for gatherAdds; resolves with the ids of the jobs it took. */
    const riding = (tokens: string[]) => {
      const req = request(tokens);
      const { keys, args } = takeArguments(req);
      let alone = false;
      let answer: Promise<unknown[]> | undefined;
      const take: AddTake = { keys, args, answered: (r) => (answer = r), alone: () => (alone = true) };
      const ids = async () => takenJobs(req, await answer!).map((t) => t.raw[1]);
      return { take, ids, alone: () => alone };
    };
    const marker = () => c.zscore(`${prefix}:q:marker`, '0');

    const all = riding(['w:t0', 'w:t1', 'w:t2']);
    await Promise.all(gatherAdds(c, () => ['a', 'b', 'c'].map(add), waiter(), all.take));
    expect(stats).toEqual({ calls: 1, adds: 3, single: 0 });
    expect(all.alone()).toBe(false);
    expect(await all.ids()).toEqual(['a', 'b', 'c']);
    expect(await c.lrange(`${prefix}:q:active`, 0, -1)).toEqual(['c', 'b', 'a']);
    expect(await c.get(`${prefix}:q:a:lock`)).toBe('w:t0');
    expect(await c.get(`${prefix}:q:c:lock`)).toBe('w:t2');
    expect(await c.llen(`${prefix}:q:wait`)).toBe(0);
    // The adds' wake-up marker is gone: a worker blocked on the queue is not woken for jobs already taken.
    expect(await marker()).toBeNull();

    // A take of fewer jobs than were added leaves the rest waiting, and their wake-up in place.
    const one = riding(['w:t3']);
    await Promise.all(gatherAdds(c, () => ['d', 'e'].map(add), waiter(), one.take));
    expect(await one.ids()).toEqual(['d']);
    expect(await c.lrange(`${prefix}:q:wait`, 0, -1)).toEqual(['e']);
    expect(await marker()).toBe('0');
    await queue.close();
  });
});
