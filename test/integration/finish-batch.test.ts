import { Queue, Worker, type Job } from 'bullmq';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import {
  bullmqScript,
  hookMoveToFinished,
  leanJobPath,
  type FinishCall,
} from '../../shared/queues/bullmq-internals';
import {
  batchFinishes,
  readMarksWithFinishes,
  REPLY_FROM_FINISH,
  replyWithFinish,
  countOncePerCall,
  finishBatchLua,
  finishReplyLua,
  LOCAL_ADDER,
  splitHelpers,
  trimOncePerCall,
} from '../../shared/queues/finish-batch';
import { decodeReply, encodeRawReply, inboxKey, waiterSetKey } from '../../shared/queues/job-replies';
import { setQueueEvents } from '../../shared/queues/event-writes';
import { testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';
import { monitorRedis } from '../helpers/redis-monitor';
import { until } from '../helpers/wait';

/** Runs `worker` until it has completed `n` jobs, then closes it and `queue` (also when it fails). */
async function runUntilCompleted(worker: Worker, queue: Queue, n: number): Promise<void> {
  let done = 0;
  const all = new Promise<void>((r) => worker.on('completed', () => ++done === n && r()));
  void worker.run();
  try {
    await all;
  } finally {
    await worker.close();
    await queue.close();
  }
}

/*
 * The finishes a worker makes in one tick go to Redis as one script call that runs BullMQ's own
 * moveToFinished once per job (shared/queues/finish-batch.ts): each job must end exactly as with BullMQ's
 * own call, and one job's error must stay its own.
 */
describe('finishes batched into one script call', () => {
  const conns: RedisConnection[] = [];
  const conn = () => {
    const c = testRedisConnection('test:finish-batch');
    conns.push(c);
    return c;
  };
  afterAll(async () => {
    await Promise.all(conns.map((c) => closeRedis(c)));
  });

  /** A worker of `n` concurrent jobs whose processors all return once `n` of them have started. */
  async function gatedWorker(
    prefix: string,
    n: number,
    run: (job: Job) => unknown,
    before?: (job: Job) => Promise<void>,
  ): Promise<{ worker: Worker; workerConn: RedisConnection }> {
    const workerConn = conn();
    let started = 0;
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    const worker = new Worker(
      'q',
      async (job) => {
        await before?.(job);
        if (++started === n) open();
        await gate;
        return run(job);
      },
      { connection: workerConn, prefix, concurrency: n, autorun: false },
    );
    await worker.waitUntilReady();
    return { worker, workerConn };
  }

  test('jobs finished in one tick share one call; each ends as with BullMQ alone, failures apart', async () => {
    const prefix = uniquePrefix('fb');
    const queue = new Queue('q', { connection: conn(), prefix });
    const { worker, workerConn } = await gatedWorker(prefix, 8, (job) => {
      const n = (job.data as { n: number }).n;
      if (n % 4 === 3) throw new Error(`no luck ${n}`);
      return { twice: 2 * n };
    });
    const stats = await batchFinishes(workerConn);
    expect(stats).toEqual({ calls: 0, finishes: 0, single: 0, withReplies: 0 });
    expect(await batchFinishes(workerConn)).toBe(stats); // once per connection
    // A hook added afterwards still sees every finish, batched or not.
    const seen: FinishCall[] = [];
    expect(hookMoveToFinished(workerConn, (c) => seen.push(c))).toBe(true);

    const jobs = await queue.addBulk(
      Array.from({ length: 8 }, (_, n) => ({ name: 'j', data: { n }, opts: { attempts: 1 } })),
    );
    let settled = 0;
    const all = new Promise<void>((r) => {
      const one = () => ++settled === 8 && r();
      worker.on('completed', one);
      worker.on('failed', one);
    });
    void worker.run();
    await all;

    for (const added of jobs) {
      const job = (await queue.getJob(added.id!))!;
      const n = (added.data as { n: number }).n;
      if (n % 4 === 3) {
        expect({ n, state: await job.getState(), reason: job.failedReason }).toEqual({
          n,
          state: 'failed',
          reason: `no luck ${n}`,
        });
      } else {
        expect({ n, state: await job.getState(), value: job.returnvalue as unknown }).toEqual({
          n,
          state: 'completed',
          value: { twice: 2 * n },
        });
      }
      expect(job.attemptsMade).toBe(1);
      expect(job.finishedOn).toBeGreaterThan(0);
    }
    // The 6 completions went in one call, the 2 failures (other keys) in another.
    expect(stats).toEqual({ calls: 2, finishes: 8, single: 0, withReplies: 0 });
    expect(seen.map((c) => c.target).sort()).toEqual([...Array(6).fill('completed'), 'failed', 'failed']);
    expect(await queue.getJobCounts('active', 'wait', 'completed', 'failed')).toEqual({
      active: 0,
      wait: 0,
      completed: 6,
      failed: 2,
    });
    await worker.close();
    await queue.close();
  });

  test('the finishes of one loop phase share one call, each made in a callback of its own', async () => {
    // As under load, when the backend answers of one poll end their jobs: each job ends in a callback of
    // its own (here timers that fall due together), and its finish is made there. They still share a call.
    const prefix = uniquePrefix('fb');
    const queue = new Queue('q', { connection: conn(), prefix });
    const { worker, workerConn } = await gatedWorker(prefix, 8, async (job) => {
      // Set in one tick with one delay: due together, each run in a callback of its own.
      await new Promise((r) => setTimeout(r, 20));
      return (job.data as { n: number }).n;
    });
    const stats = (await batchFinishes(workerConn))!;
    await queue.addBulk(Array.from({ length: 8 }, (_, n) => ({ name: 'j', data: { n } })));
    await runUntilCompleted(worker, queue, 8);
    // One send (two if the timers straddled a millisecond and fell due in two phases: on a loaded host a
    // phase may then hold a lone finish, sent alone); a finish per send before (8 alone).
    expect(stats.finishes + stats.single).toBe(8);
    expect(stats.calls + stats.single).toBeLessThanOrEqual(2);
  });

  test("one job's error in a batch is that job's only; its neighbours complete", async () => {
    const prefix = uniquePrefix('fb');
    const queue = new Queue('q', { connection: conn(), prefix });
    const other = conn();
    let broken = '';
    const { worker, workerConn } = await gatedWorker(
      prefix,
      4,
      () => 'ok',
      async (job) => {
        if ((job.data as { n: number }).n !== 1) return;
        // The job's hash replaced by a string: BullMQ's finish script raises WRONGTYPE for this job.
        broken = `${prefix}:q:${job.id}`;
        await other.del(broken);
        await other.set(broken, 'not a hash');
      },
    );
    const stats = (await batchFinishes(workerConn))!;
    const errors: Error[] = [];
    worker.on('error', (e) => errors.push(e));
    let completed = 0;
    const three = new Promise<void>((r) => worker.on('completed', () => ++completed === 3 && r()));
    const jobs = await queue.addBulk(Array.from({ length: 4 }, (_, n) => ({ name: 'j', data: { n } })));
    void worker.run();
    await three;

    expect(stats.calls).toBe(1);
    expect(stats.finishes).toBe(4);
    for (const added of jobs) {
      if ((added.data as { n: number }).n === 1) continue;
      const job = (await queue.getJob(added.id!))!;
      expect({ state: await job.getState(), value: job.returnvalue as unknown }).toEqual({
        state: 'completed',
        value: 'ok',
      });
    }
    expect(await other.type(broken)).toBe('string');
    // Its own error reached BullMQ for that job (which reports it), as BullMQ's own call's would have.
    await until(() => errors.some((e) => /WRONGTYPE/.test(e.message)), 10_000, 'the WRONGTYPE error');
    await worker.close(true);
    await queue.close();
  });

  test('replies ride in the finish call, a lone finish too; a job its finish did not finish gets none', async () => {
    const prefix = uniquePrefix('fb');
    const queueKey = `${prefix}:q`;
    const queue = new Queue('q', { connection: conn(), prefix });
    const other = conn();
    let broken = '';
    const { worker, workerConn } = await gatedWorker(
      prefix,
      3,
      (job) => ({ n: (job.data as { n: number }).n }),
      async (job) => {
        if ((job.data as { n: number }).n !== 1) return;
        // The job's hash replaced by a string: its finish raises WRONGTYPE, the job is not finished.
        broken = `${prefix}:q:${job.id}`;
        await other.del(broken);
        await other.set(broken, 'not a hash');
      },
    );
    worker.on('error', () => undefined);
    const stats = (await batchFinishes(workerConn))!;
    const counts = new Map<string, number>();
    let answered = 0;
    const attached: boolean[] = [];
    hookMoveToFinished(workerConn, (call) =>
      attached.push(
        replyWithFinish(workerConn, call.jobId, {
          waiterKey: waiterSetKey(queueKey, call.jobId),
          reply: `reply of ${call.jobId}`,
          adder: 'adder',
          inboxPrefix: inboxKey(queueKey, ''),
          inboxTtlMs: 60_000,
          done: (n) => {
            answered++;
            counts.set(call.jobId, n);
          },
        }),
      ),
    );
    try {
      await repliesRide();
    } finally {
      await worker.close(true);
      await queue.close();
    }

    async function repliesRide(): Promise<void> {
      const jobs = await queue.addBulk(Array.from({ length: 3 }, (_, n) => ({ name: 'j', data: { n } })));
      const ids = jobs.map((j) => j.id!);
      for (const id of ids) await other.sadd(waiterSetKey(queueKey, id), 'waiter');
      void worker.run();
      // The broken job's finish fails (WRONGTYPE); BullMQ then tries to fail it, which fails alike: a fourth
      // finish, alone.
      await until(() => answered === 4, 10_000, 'the four finishes answered');

      // One call for the three finishes and their replies; the broken job's replies went nowhere.
      expect(stats).toEqual({ calls: 1, finishes: 3, single: 1, withReplies: 2 });
      expect(attached).toEqual([true, true, true, true]);
      expect(ids.map((id) => counts.get(id))).toEqual([2, -1, 2]);
      for (const inbox of ['adder', 'waiter'])
        expect(await other.lrange(inboxKey(queueKey, inbox), 0, -1)).toEqual([
          `reply of ${ids[0]}`,
          `reply of ${ids[2]}`,
        ]);
      expect(await other.pttl(inboxKey(queueKey, 'adder'))).toBeGreaterThan(50_000);
      // The job that was not finished keeps its waiters for the run that finishes it.
      expect(await other.smembers(waiterSetKey(queueKey, ids[1]!))).toEqual(['waiter']);
      expect(await other.exists(waiterSetKey(queueKey, ids[0]!))).toBe(0);
      for (const id of [ids[0]!, ids[2]!])
        expect(await (await queue.getJob(id))!.getState()).toBe('completed');

      // A job finishing alone in its tick: its finish and its reply are still one call.
      const [lone] = await queue.addBulk([{ name: 'j', data: { n: 7 } }]);
      await until(() => counts.has(lone!.id!), 10_000, 'the lone reply answered');
      expect(counts.get(lone!.id!)).toBe(1);
      expect(stats).toEqual({ calls: 1, finishes: 3, single: 2, withReplies: 3 });
      expect((await queue.getJob(lone!.id!))!.returnvalue).toEqual({ n: 7 });
      expect(await other.lrange(inboxKey(queueKey, 'adder'), -1, -1)).toEqual([`reply of ${lone!.id}`]);
    }
  });

  test.each([
    ['a job no cell0 producer added (its adder none or unknown) only', false],
    ['every job, on a connection that keeps the queue events (CELL0_QUEUE_EVENTS=1)', true],
  ])("a finish with its reply writes BullMQ's completed entry for %s", async (_, keepEvents) => {
    const prefix = uniquePrefix('fb');
    const queueKey = `${prefix}:q`;
    const queue = new Queue('q', { connection: conn(), prefix });
    const other = conn();
    const { worker, workerConn } = await gatedWorker(prefix, 4, (job) => ({
      n: (job.data as { n: number }).n,
    }));
    setQueueEvents(workerConn, keepEvents);
    expect(await batchFinishes(workerConn)).toBeDefined();
    // By the job's n: added by a producer of another process, by this process's own, by none (a plain BullMQ
    // producer, whose caller may wait for the entry with waitUntilFinished), by one the worker does not know.
    const adders = ['p1', LOCAL_ADDER, '', '?'];
    const counts = new Map<number, number>();
    hookMoveToFinished(workerConn, (call) => {
      const n = Number(call.jobId.slice(1));
      replyWithFinish(workerConn, call.jobId, {
        waiterKey: waiterSetKey(queueKey, call.jobId),
        reply: REPLY_FROM_FINISH,
        adder: adders[n]!,
        inboxPrefix: inboxKey(queueKey, ''),
        inboxTtlMs: 60_000,
        done: (count) => counts.set(n, count),
      });
    });
    await queue.addBulk(adders.map((_a, n) => ({ name: 'j', data: { n }, opts: { jobId: `j${n}` } })));
    await runUntilCompleted(worker, queue, 4);
    await until(() => counts.size === 4, 10_000, 'the four replies answered');
    const completed = (await other.xrange(`${prefix}:q:events`, '-', '+'))
      .filter(([, f]) => f[1] === 'completed')
      .map(([, f]) => f[3])
      .sort();
    expect(completed).toEqual(keepEvents ? ['j0', 'j1', 'j2', 'j3'] : ['j2', 'j3']);
    for (let n = 0; n < 4; n++)
      expect(JSON.parse((await other.hget(`${prefix}:q:j${n}`, 'returnvalue'))!)).toEqual({ n });
    // Replies as before: to p1's inbox; the local adder has no inbox (handed over in process).
    expect(counts).toEqual(
      new Map([
        [0, 1],
        [1, 0],
        [2, 0],
        [3, 0],
      ]),
    );
    expect((await other.lrange(inboxKey(queueKey, 'p1'), 0, -1)).map((r) => decodeReply(r)?.jobId)).toEqual([
      'j0',
    ]);
    expect(await other.exists(inboxKey(queueKey, LOCAL_ADDER))).toBe(0);
  });

  test('a reply built in the script from the finish reads as encodeRawReply makes it', async () => {
    const prefix = uniquePrefix('fbr');
    const queueKey = `${prefix}:q`;
    const other = conn();
    const queue = new Queue('q', { connection: other, prefix });
    // A value with quotes, a slash and non-ASCII text; no value at all; a failure; an id JSON must escape.
    const runs: Record<string, () => unknown> = {
      'j/"1"é': () => ({ text: 'a "quoted" / ünïcode \\ line\n', n: 1 }),
      j2: () => undefined,
      j3: () => {
        throw new Error('failed "here" / é');
      },
    };
    const { worker, workerConn } = await gatedWorker(prefix, 3, (job) => runs[job.id!]!());
    worker.on('error', () => undefined);
    const stats = (await batchFinishes(workerConn))!;
    const expected = new Map<string, string>();
    const counts = new Map<string, number>();
    hookMoveToFinished(workerConn, (call) => {
      expected.set(call.jobId, encodeRawReply(call.jobId, call.target, call.finishedOn, call.value));
      replyWithFinish(workerConn, call.jobId, {
        waiterKey: waiterSetKey(queueKey, call.jobId),
        reply: REPLY_FROM_FINISH,
        adder: '',
        inboxPrefix: inboxKey(queueKey, ''),
        inboxTtlMs: 60_000,
        done: (n) => counts.set(call.jobId, n),
      });
    });
    try {
      const ids = Object.keys(runs);
      await queue.addBulk(ids.map((jobId) => ({ name: 'j', data: {}, opts: { jobId, attempts: 1 } })));
      for (const id of ids) await other.sadd(waiterSetKey(queueKey, id), 'waiter');
      void worker.run();
      await until(() => counts.size === 3, 10_000, 'the three finishes answered');
      expect(stats.withReplies).toBeGreaterThanOrEqual(1);
      expect([...counts.values()]).toEqual([1, 1, 1]);
      const got = await other.lrange(inboxKey(queueKey, 'waiter'), 0, -1);
      expect(got).toHaveLength(3);
      const decoded = got.map((text) => decodeReply(text));
      expect(decoded.map((r) => r?.jobId).sort()).toEqual([...ids].sort());
      for (const r of decoded) expect(r).toEqual(decodeReply(expected.get(r!.jobId)!));
      expect(decoded.find((r) => r!.jobId === 'j2')).toMatchObject({
        status: 'completed',
        returnvalue: null,
      });
      expect(decoded.find((r) => r!.jobId === 'j3')).toMatchObject({
        status: 'failed',
        failedReason: 'failed "here" / é',
      });
    } finally {
      await worker.close(true);
      await queue.close();
    }
  });

  test("a call with replies names each job's hash and waiter set once, by its id; a waiter set of another shape rides apart", async () => {
    const prefix = uniquePrefix('fbk');
    const queueKey = `${prefix}:q`;
    const other = conn();
    const queue = new Queue('q', { connection: other, prefix });
    const { worker, workerConn } = await gatedWorker(prefix, 3, (job) => ({ id: job.id }));
    worker.on('error', () => undefined);
    const stats = (await batchFinishes(workerConn))!;
    // Every argument of every command the worker's connection sends.
    const sent: string[] = [];
    const c = workerConn as unknown as { sendCommand(cmd: { args: unknown[] }): unknown };
    const send = c.sendCommand.bind(c);
    c.sendCommand = (cmd) => {
      for (const a of cmd.args) sent.push(Buffer.isBuffer(a) ? a.toString('latin1') : String(a));
      return send(cmd);
    };
    const counts = new Map<string, number>();
    const attached = new Map<string, boolean>();
    hookMoveToFinished(workerConn, (call) => {
      // Job 'odd' names its waiter set under another key: its reply cannot ride (the script builds the name).
      const waiterKey = call.jobId === 'odd' ? `${queueKey}:elsewhere` : waiterSetKey(queueKey, call.jobId);
      attached.set(
        call.jobId,
        replyWithFinish(workerConn, call.jobId, {
          waiterKey,
          reply: REPLY_FROM_FINISH,
          adder: '',
          inboxPrefix: inboxKey(queueKey, ''),
          inboxTtlMs: 60_000,
          done: (n) => counts.set(call.jobId, n),
        }),
      );
    });
    try {
      const ids = ['a', 'b', 'odd'];
      await queue.addBulk(ids.map((jobId) => ({ name: 'j', data: {}, opts: { jobId } })));
      for (const id of ids) await other.sadd(waiterSetKey(queueKey, id), 'waiter');
      void worker.run();
      await until(() => counts.size === 2, 10_000, 'the two riding replies answered');
      await until(async () => (await queue.getCompletedCount()) === 3, 10_000, 'the three jobs completed');
      expect(stats).toMatchObject({ calls: 1, finishes: 3, withReplies: 1 });
      expect(Object.fromEntries(attached)).toEqual({ a: true, b: true, odd: false });
      expect(Object.fromEntries(counts)).toEqual({ a: 1, b: 1 });
      // The riding replies reached their waiters and emptied the waiter sets the script named.
      const got = (await other.lrange(inboxKey(queueKey, 'waiter'), 0, -1)).map((t) => decodeReply(t)?.jobId);
      expect(got.sort()).toEqual(['a', 'b']);
      expect(await other.exists(waiterSetKey(queueKey, 'a'), waiterSetKey(queueKey, 'b'))).toBe(0);
      expect(await other.smembers(waiterSetKey(queueKey, 'odd'))).toEqual(['waiter']);
      // The call sent no job's hash key nor waiter set key: the script built them from the ids.
      expect(sent).toEqual(expect.arrayContaining([...ids, inboxKey(queueKey, '')]));
      for (const id of ids) {
        expect(sent).not.toContain(`${queueKey}:${id}`);
        expect(sent).not.toContain(waiterSetKey(queueKey, id));
      }
      for (const id of ids) expect((await queue.getJob(id))!.returnvalue).toEqual({ id });
    } finally {
      await worker.close(true);
      await queue.close();
    }
  });

  test('a job removed on completion is answered in its finish call when its adder is known, else after its event', async () => {
    const prefix = uniquePrefix('fbd');
    const queueKey = `${prefix}:q`;
    const other = conn();
    const queue = new Queue('q', { connection: other, prefix });
    const { worker, workerConn } = await gatedWorker(prefix, 2, (job) => ({ id: job.id }));
    worker.on('error', () => undefined);
    await batchFinishes(workerConn);
    const counts = new Map<string, number>();
    hookMoveToFinished(workerConn, (call) => {
      replyWithFinish(workerConn, call.jobId, {
        waiterKey: waiterSetKey(queueKey, call.jobId),
        reply: REPLY_FROM_FINISH,
        // 'known' has its adder noted by the worker; 'unknown' leaves it to the job's stored options.
        adder: call.jobId === 'known' ? 'adder' : '?',
        inboxPrefix: inboxKey(queueKey, ''),
        inboxTtlMs: 60_000,
        done: (n) => counts.set(call.jobId, n),
      });
    });
    try {
      const ids = ['known', 'unknown'];
      await queue.addBulk(
        ids.map((jobId) => ({ name: 'j', data: {}, opts: { jobId, removeOnComplete: true } })),
      );
      for (const id of ids) await other.sadd(waiterSetKey(queueKey, id), 'waiter');
      void worker.run();
      await until(() => counts.size === 2, 10_000, 'the two finishes answered');
      // Both finished (and were removed): the known adder's reply rode; the other waits for the job event.
      expect(await other.exists(`${queueKey}:known`, `${queueKey}:unknown`)).toBe(0);
      expect(Object.fromEntries(counts)).toEqual({ known: 2, unknown: -1 });
      for (const inbox of ['adder', 'waiter'])
        expect((await other.lrange(inboxKey(queueKey, inbox), 0, -1)).map((t) => decodeReply(t))).toEqual([
          {
            jobId: 'known',
            status: 'completed',
            returnvalue: { id: 'known' },
            finishedOn: expect.any(Number),
          },
        ]);
      expect(await other.smembers(waiterSetKey(queueKey, 'unknown'))).toEqual(['waiter']);
    } finally {
      await worker.close(true);
      await queue.close();
    }
  });

  test("the marks of the jobs a finish fetches come with the finish's call, before the job starts", async () => {
    for (const gated of [true, false]) {
      const prefix = uniquePrefix('fbm');
      const queueKey = `${prefix}:q`;
      const other = conn();
      const queue = new Queue('q', { connection: other, prefix });
      // Marks as the token stream hub sets them: the job's own, and the queue's gate.
      await other.set(`${queueKey}:j3:cell0-tokens-wanted`, 'w3', 'PX', 60_000);
      await other.set(`${queueKey}:j4:cell0-cancel`, 'c4', 'PX', 60_000);
      if (gated) await other.set(`${queueKey}:cell0-marks`, '1', 'PX', 60_000);
      const fetched = new Map<string, { processedOn: number; marks: readonly (string | null)[] }>();
      const atStart = new Map<string, boolean>();
      const { worker, workerConn } = await gatedWorker(
        prefix,
        2,
        (job) => ({ id: job.id }),
        (job) => {
          // Handed over before BullMQ had the job: there when its processor starts, for this activation.
          atStart.set(job.id!, fetched.get(job.id!)?.processedOn === job.processedOn);
          return Promise.resolve();
        },
      );
      // Not batched with replies yet: nothing to ride with.
      expect(readMarksWithFinishes(workerConn, { gateKey: '', jobKeyPrefix: '', onFetched: () => {} })).toBe(
        false,
      );
      const stats = await batchFinishes(workerConn);
      expect(
        readMarksWithFinishes(workerConn, {
          gateKey: `${queueKey}:cell0-marks`,
          jobKeyPrefix: `${queueKey}:`,
          onFetched: (jobId, processedOn, marks) => fetched.set(jobId, { processedOn, marks }),
        }),
      ).toBe(true);
      await queue.addBulk(
        ['j1', 'j2', 'j3', 'j4'].map((id) => ({ name: 'j', data: {}, opts: { jobId: id } })),
      );
      await runUntilCompleted(worker, queue, 4);
      // j1 and j2 came with the worker's first fetches (moveToActive); j3 and j4 with the finishes of those.
      expect([...fetched.keys()].sort()).toEqual(['j3', 'j4']);
      expect(fetched.get('j3')!.marks).toEqual(gated ? ['w3', null] : [null, null]);
      expect(fetched.get('j4')!.marks).toEqual(gated ? [null, 'c4'] : [null, null]);
      expect(Object.fromEntries(atStart)).toEqual({ j1: false, j2: false, j3: true, j4: true });
      // The finishes went in the script with replies (for the marks), with no reply riding.
      expect(stats!.withReplies).toBe(0);
      expect(stats!.calls + stats!.single).toBeGreaterThan(0);
    }
  });

  test('once a finish of a call finds no next job, the later finishes of the call do not look', async () => {
    // Both shapes of the batched call: with replies (the marks ride in it, as in cell0) and without.
    for (const withMarks of [false, true]) {
      const prefix = uniquePrefix('fbs');
      const queue = new Queue('q', { connection: conn(), prefix });
      const { worker, workerConn } = await gatedWorker(prefix, 4, (job) => job.id);
      const stats = (await batchFinishes(workerConn))!;
      if (withMarks)
        readMarksWithFinishes(workerConn, {
          gateKey: `${prefix}:q:cell0-marks`,
          jobKeyPrefix: `${prefix}:q:`,
          onFetched: () => undefined,
        });
      // Each look for the next job (BullMQ's fetchNextJob) pops the wait list once: counted per finish call
      // (MONITOR shows a script call, then the commands it ran).
      const pops: number[] = [];
      const monitor = await monitorRedis(testRedisUrl(), ({ args, source }) => {
        if (source !== 'lua') {
          // The batched call (EVAL the first time on a connection): its keys include the queue's metrics.
          if (args[0]?.startsWith('eval') && args.includes(`${prefix}:q:metrics:completed`)) pops.push(0);
          else pops.push(-1);
        } else if (
          args[0]?.toLowerCase() === 'rpoplpush' &&
          args[1] === `${prefix}:q:wait` &&
          pops.at(-1)! >= 0
        )
          pops[pops.length - 1]!++;
      });
      // 4 jobs for 4 slots: all taken before any ends, so every finish finds the queue empty.
      await queue.addBulk(Array.from({ length: 4 }, (_, n) => ({ name: 'j', data: { n } })));
      await runUntilCompleted(worker, queue, 4);
      await monitor.close();
      expect(stats.calls).toBe(1);
      expect(stats.finishes).toBe(4);
      // One look for the call's 4 finishes (4 before).
      expect({ withMarks, pops: pops.filter((n) => n >= 0) }).toEqual({ withMarks, pops: [1] });
    }
  });

  test("a call's finishes built by the lean path send their lock tokens alone, the options once; each fetched job locked with its finish's token", async () => {
    const prefix = uniquePrefix('fbo');
    const queue = new Queue('q', { connection: conn(), prefix });
    const { worker, workerConn } = await gatedWorker(prefix, 3, (job) => ({
      n: (job.data as { n: number }).n,
    }));
    expect(await leanJobPath(worker)).toBe(true);
    const stats = (await batchFinishes(workerConn))!;
    // Through the script with replies (as in cell0, where the marks or the replies ride in it).
    readMarksWithFinishes(workerConn, {
      gateKey: `${prefix}:q:cell0-marks`,
      jobKeyPrefix: `${prefix}:q:`,
      onFetched: () => undefined,
    });
    // Each batched finish call's arguments after its keys, and each lock the calls set (the fetched jobs').
    const calls: string[][] = [];
    const locks = new Map<string, string>();
    const monitor = await monitorRedis(testRedisUrl(), ({ args, source }) => {
      if (source !== 'lua' && args[0]?.startsWith('eval') && args.includes(`${prefix}:q:metrics:completed`))
        calls.push(args.slice(3 + Number(args[2])));
      else if (source === 'lua' && args[0]?.toLowerCase() === 'set' && args[1]?.endsWith(':lock'))
        locks.set(args[1].slice(`${prefix}:q:`.length, -':lock'.length), args[2]!);
    });
    // 6 jobs for 3 slots: the first 3 finish in one call, each fetching one of the last 3.
    await queue.addBulk(
      Array.from({ length: 6 }, (_, n) => ({ name: 'j', data: { n }, opts: { jobId: `j${n}` } })),
    );
    const tokens = new Map<string, string>();
    worker.on('active', (job) => tokens.set(job.id!, job.token!));
    await runUntilCompleted(worker, queue, 6);
    await monitor.close();
    // Every job completed with its own value: a fetched job locked with a wrong token could not have.
    for (let n = 0; n < 6; n++) {
      const h = await workerConn.hgetall(`${prefix}:q:j${n}`);
      expect({ n, value: h.returnvalue, finished: Number(h.finishedOn) > 0 }).toEqual({
        n,
        value: JSON.stringify({ n }),
        finished: true,
      });
    }
    // The jobs a finish fetched were locked with the token BullMQ's worker holds for them (the finishing
    // job's, taken from the call's shared options with the token sent alone).
    expect(locks.size).toBeGreaterThan(0);
    for (const [id, lock] of locks) expect({ id, lock }).toEqual({ id, lock: tokens.get(id) });
    // The options went once per call (ARGV[9], packed), each finish sending its token.
    const batched = calls.filter((a) => (a.length - 9) / 7 >= 2);
    expect(batched.length).toBeGreaterThan(0);
    for (const a of batched) {
      // Packed: a map's first byte (0x8n fixmap or 0xde map16, above 0x7f), the key `token` in it.
      expect(a[8]!.charCodeAt(0)).toBeGreaterThanOrEqual(0x80);
      expect(a[8]).toContain('token');
      for (let base = 9; base < a.length; base += 7) {
        const [id, , , opts] = a.slice(base, base + 4);
        expect({ id, opts }).toEqual({ id, opts: tokens.get(id!) });
      }
    }
    expect(stats.calls).toBeGreaterThan(0);
  });

  test("a finish's answer that carries the next job compares with 0 without joining the job's fields", async () => {
    // BullMQ's moveToFinished tests its answer with `result < 0`: for an answer carrying the next job that
    // used to build a string of every field of that job. Both shapes of the batched call, with replies (the
    // marks ride in it) and without.
    for (const withMarks of [false, true]) {
      const prefix = uniquePrefix('fbn');
      const queue = new Queue('q', { connection: conn(), prefix });
      const { worker, workerConn } = await gatedWorker(prefix, 2, (job) => ({ id: job.id }));
      await batchFinishes(workerConn);
      if (withMarks)
        expect(
          readMarksWithFinishes(workerConn, {
            gateKey: `${prefix}:q:cell0-marks`,
            jobKeyPrefix: `${prefix}:q:`,
            onFetched: () => undefined,
          }),
        ).toBe(true);
      // What each finish answers BullMQ (wrapped as a hook of bullmq-internals.ts wraps it).
      const target = workerConn as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
      const name = bullmqScript(workerConn, 'moveToFinished', 14)!.name;
      const batched = target[name]!;
      const answers: unknown[] = [];
      target[name] = function (this: unknown, ...a: unknown[]) {
        const p = batched.apply(this, a);
        void p.then(
          (r) => answers.push(r),
          () => undefined,
        );
        return p;
      };
      await queue.addBulk(
        Array.from({ length: 6 }, (_, n) => ({ name: 'j', data: { n, text: 'x'.repeat(200) } })),
      );
      await runUntilCompleted(worker, queue, 6);
      const withNext = answers.filter((a): a is unknown[] => Array.isArray(a) && Array.isArray(a[0]));
      // 2 jobs fetched by the worker's own fetches, the other 4 by finishes.
      expect(withNext).toHaveLength(4);
      const compared: { below: boolean; asNumber: number; joins: number }[] = [];
      const join = jest.spyOn(Array.prototype, 'join');
      try {
        for (const a of withNext) {
          const before = join.mock.calls.length;
          const below = a < (0 as unknown as unknown[]);
          const asNumber = Number(a);
          compared.push({ below, asNumber, joins: join.mock.calls.length - before });
        }
      } finally {
        join.mockRestore();
      }
      expect(compared).toEqual(withNext.map(() => ({ below: false, asNumber: NaN, joins: 0 })));
      // Where a string is asked for, it is still the array's own.
      for (const a of withNext) expect(String(a)).toBe(a.join(','));
      expect(await queue.getJobCounts('completed')).toEqual({ completed: 6 });
    }
  });

  test("the event stream is trimmed by a batched call's first finish, and stays trimmed", async () => {
    const prefix = uniquePrefix('fbt');
    const other = conn();
    // The trim limit BullMQ reads from the queue's meta hash (streams.events.maxLen).
    const queue = new Queue('q', { connection: other, prefix, streams: { events: { maxLen: 10 } } });
    await queue.waitUntilReady();
    await until(
      async () => (await other.hget(`${prefix}:q:meta`, 'opts.maxLenEvents')) === '10',
      5000,
      'the event stream limit stored',
    );
    const { worker, workerConn } = await gatedWorker(prefix, 8, (job) => ({ n: job.id }));
    // BullMQ's own finish has the trim this relies on (else every finish trims, as before).
    const own = bullmqScript(workerConn, 'moveToFinished', 14)!;
    expect(trimOncePerCall(own.lua)).not.toBe(own.lua);
    expect(countOncePerCall(own.lua)).not.toBe(own.lua);
    const stats = (await batchFinishes(workerConn))!;
    const total = 600;
    await queue.addBulk(Array.from({ length: total }, (_, n) => ({ name: 'j', data: { n } })));
    // Only the finishes trim from here on: untrimmed, each job would add two more events (active, completed).
    const before = await other.xlen(`${prefix}:q:events`);
    await runUntilCompleted(worker, queue, total);
    expect(stats.calls).toBeGreaterThan(0);
    expect(stats.finishes).toBeGreaterThan(stats.calls);
    const after = await other.xlen(`${prefix}:q:events`);
    // MAXLEN ~ trims whole stream nodes (100 entries each): the stream ends near the limit, far below its
    // untrimmed length (at least the 1,200 events of the finishes).
    expect(after).toBeLessThan(300);
    expect(after).toBeLessThan(before + 2 * total);
  });

  test("BullMQ's trim call is guarded once per call, or the text is left alone", () => {
    const body = 'local x = 1\n    trimEvents(metaKey, eventStreamKey)\nreturn x';
    expect(trimOncePerCall(body)).toBe(
      'local x = 1\n    if not trimmed then trimmed = true; trimEvents(metaKey, eventStreamKey) end\nreturn x',
    );
    // The function's own definition is not a call; a text with no call, or with two, is used as is.
    const def = 'local function trimEvents(metaKey, eventStreamKey)\nend';
    expect(trimOncePerCall(def)).toBe(def);
    const twice = `${body}\n  trimEvents(metaKey, eventStreamKey)`;
    expect(trimOncePerCall(twice)).toBe(twice);
  });

  test("BullMQ's helpers are defined once per call, outside the function each finish runs", async () => {
    // BullMQ's own text, as it defines it on every connection it is given (a queue's as a worker's). A queue,
    // not a worker: the file's handle check found two sockets left after it under load, and a worker closed
    // without ever running (this one was the only such) may still be opening its blocking connection.
    const ownConn = conn();
    const queue = new Queue('q', { connection: ownConn, prefix: uniquePrefix('fbh') });
    await queue.waitUntilReady();
    const lua = bullmqScript(ownConn, 'moveToFinished', 14)!.lua;
    await queue.close();
    const split = splitHelpers(lua)!;
    // The installed BullMQ's text splits where its script proper begins: all 37 helpers before it.
    expect(split.rest.split('\n')[0]).toBe('local jobIdKey = KEYS[12]');
    expect(split.helpers.match(/^local function /gm)).toHaveLength(37);
    expect(`${split.helpers}\n${split.rest}`).toBe(lua);
    for (const script of [finishBatchLua(lua), finishReplyLua(lua)]) {
      const fn = script.indexOf('local function moveToFinished(KEYS, ARGV)\n');
      // The per-job function begins with the script proper; every helper is defined before it.
      expect(script.slice(fn).split('\n')[1]).toBe('local jobIdKey = KEYS[12]');
      expect(script.slice(fn).match(/^local function (removeLock|fetchNextJob)\(/gm)).toBeNull();
      expect(script.slice(0, fn).match(/^local function (removeLock|fetchNextJob)\(/gm)).toHaveLength(2);
      // Its integer literals go to redis.call as strings (see integerArgsAsStrings).
      expect(script).toContain('rcall("HINCRBY", jobIdKey, "atm", "1")');
    }
  });

  test('a text whose helpers are not plain is not split (it runs whole per finish, as before)', () => {
    const helper = 'local rcall = redis.call\nlocal function f(k)\n  return rcall("GET", k)\nend';
    const rest = 'local key = KEYS[1]\nreturn f(key)';
    expect(splitHelpers(`--[[ KEYS[1] a key ]]\n${helper}\n-- reads KEYS[1]\n${rest}`)).toEqual({
      helpers: `--[[ KEYS[1] a key ]]\n${helper}\n-- reads KEYS[1]`,
      rest,
    });
    // A helper that reads ARGV, a variable kept across calls, no alias of redis.call, or no script proper.
    expect(splitHelpers(`${helper}\nlocal function g()\n  return ARGV[1]\nend\n${rest}`)).toBeUndefined();
    expect(splitHelpers(`${helper}\nlocal seen = {}\n${rest}`)).toBeUndefined();
    expect(splitHelpers(`local function f(k)\n  return k\nend\n${rest}`)).toBeUndefined();
    expect(splitHelpers(helper)).toBeUndefined();
  });

  test("a batched call's finishes are counted for the metrics as BullMQ's own finishes count them", async () => {
    /** 8 jobs finished together (batched or not) on a queue whose metrics are due a data point. */
    async function metricsAfter(batched: boolean) {
      const prefix = uniquePrefix('fbx');
      const other = conn();
      const metaKey = `${prefix}:q:metrics:completed`;
      // 5 counted so far, 2 of them in the last data point, two minutes ago.
      await other.hset(metaKey, 'count', 5, 'prevCount', 2, 'prevTS', Date.now() - 120_000);
      const queue = new Queue('q', { connection: other, prefix });
      const workerConn = conn();
      let started = 0;
      let open: () => void = () => undefined;
      const gate = new Promise<void>((r) => (open = r));
      const worker = new Worker(
        'q',
        async () => {
          if (++started === 8) open();
          await gate;
          return 'ok';
        },
        { connection: workerConn, prefix, concurrency: 8, autorun: false, metrics: { maxDataPoints: 10 } },
      );
      await worker.waitUntilReady();
      const stats = batched ? await batchFinishes(workerConn) : undefined;
      await queue.addBulk(Array.from({ length: 8 }, (_, n) => ({ name: 'j', data: { n } })));
      await runUntilCompleted(worker, queue, 8);
      if (stats) expect(stats).toEqual({ calls: 1, finishes: 8, single: 0, withReplies: 0 });
      const meta = await other.hgetall(metaKey);
      return {
        count: meta.count,
        prevCount: meta.prevCount,
        points: await other.lrange(`${metaKey}:data`, 0, -1),
      };
    }
    const own = await metricsAfter(false);
    // The data point (3 since the last, then a minute of none) and the counts.
    expect(own).toEqual({ count: '13', prevCount: '5', points: ['0', '3'] });
    expect(await metricsAfter(true)).toEqual(own);
  });

  test("BullMQ's metrics count is replaced once, or the text is left alone", () => {
    const call = "    collectMetrics(KEYS[13], KEYS[13] .. ':data', maxMetricsSize, timestamp)";
    expect(countOncePerCall(`if x then\n${call}\nend`)).toBe(
      'if x then\n    countMetrics(KEYS[13], maxMetricsSize, timestamp)\nend',
    );
    const def = 'local function collectMetrics(metaKey, dataPointsList, maxDataPoints, timestamp)\nend';
    expect(countOncePerCall(def)).toBe(def);
    expect(countOncePerCall(`${call}\n${call}`)).toBe(`${call}\n${call}`);
  });
});
