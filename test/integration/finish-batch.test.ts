import { Queue, Worker, type Job } from 'bullmq';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { hookMoveToFinished, type FinishCall } from '../../shared/queues/bullmq-internals';
import { batchFinishes } from '../../shared/queues/finish-batch';
import { testRedisConnection, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';

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
    expect(stats).toEqual({ calls: 0, finishes: 0, single: 0 });
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
    expect(stats).toEqual({ calls: 2, finishes: 8, single: 0 });
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
});
