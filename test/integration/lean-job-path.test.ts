import { promiseHooks } from 'node:v8';
import { Queue, Worker, type Job, type Processor } from 'bullmq';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { leanJobPath, leanJobStats } from '../../shared/queues/bullmq-internals';
import { testRedisConnection, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';

/*
 * The lean start and finish of a worker's jobs (leanJobPath): the same Redis state, events, retries and lock
 * handling as BullMQ's own path, with fewer promises per job.
 */

const conns: RedisConnection[] = [];
const conn = () => {
  const c = testRedisConnection('test:lean');
  conns.push(c);
  return c;
};
let rawConn: RedisConnection | undefined;
/** A connection for the test's own reads and writes. */
const raw = () => (rawConn ??= conn());
afterAll(async () => {
  await Promise.all(conns.map((c) => closeRedis(c)));
});

interface Side {
  queue: Queue;
  worker: Worker;
  prefix: string;
  events: string[];
  errors: Error[];
}

/** A queue and a worker of it (not running yet), the lean path installed on the worker when `lean`. */
async function side(
  lean: boolean,
  processor: Processor,
  opts: { concurrency?: number; lockDuration?: number } = {},
): Promise<Side> {
  const prefix = uniquePrefix(lean ? 'lean' : 'plain');
  const queue = new Queue('q', { connection: conn(), prefix });
  const worker = new Worker('q', processor, {
    connection: conn(),
    prefix,
    autorun: false,
    concurrency: opts.concurrency ?? 1,
    ...(opts.lockDuration ? { lockDuration: opts.lockDuration } : {}),
  });
  await worker.waitUntilReady();
  if (lean) expect(await leanJobPath(worker)).toBe(true);
  else expect(leanJobStats(worker)).toBeUndefined();
  const events: string[] = [];
  const errors: Error[] = [];
  worker.on('active', (job) => events.push(`active ${job.id}`));
  worker.on('completed', (job, result) => events.push(`completed ${job.id} ${JSON.stringify(result)}`));
  worker.on('failed', (job, err) => events.push(`failed ${job?.id} ${err.message}`));
  worker.on('error', (err) => errors.push(err));
  return { queue, worker, prefix, events, errors };
}

async function close(...sides: Side[]): Promise<void> {
  for (const s of sides) {
    await s.worker.close();
    await s.queue.close();
  }
}

/** A job's hash, its times and stack traces made comparable across queues. */
async function jobHash(s: Side, id: string): Promise<Record<string, string>> {
  const h = await raw().hgetall(`${s.prefix}:q:${id}`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h))
    out[k] = ['timestamp', 'processedOn', 'finishedOn'].includes(k)
      ? Number(v) > 0
        ? 'time'
        : v
      : // The stack frames differ (the lean path's own); the errors' messages must not.
        k === 'stacktrace'
        ? (JSON.parse(v) as string[]).map((st) => st.split('\n')[0]).join(' | ')
        : v;
  return out;
}

/** The event stream's entries: event names and their fields but times. */
async function eventStream(s: Side): Promise<string[]> {
  const entries = await raw().xrange(`${s.prefix}:q:events`, '-', '+');
  return entries.map(([, fields]) =>
    fields.map((f, i) => (i > 0 && ['timestamp', 'prev'].includes(fields[i - 1]!) ? '*' : f)).join(' '),
  );
}

test('completed jobs leave the same hashes, sets, event stream and worker events as BullMQ’s own path', async () => {
  const processor: Processor = async (job: Job) => ({ n: (job.data as { n: number }).n * 2 });
  const plain = await side(false, processor);
  const lean = await side(true, processor);
  try {
    for (const s of [plain, lean]) {
      // Added before the worker runs: the first job comes from the fetch, each next one from the finish.
      for (let n = 1; n <= 3; n++) await s.queue.add('j', { n }, { jobId: `j${n}` });
      void s.worker.run();
    }
    for (const s of [plain, lean])
      await until(async () => (await s.queue.getCompletedCount()) === 3, 20_000, 'three completed');
    for (const id of ['j1', 'j2', 'j3']) expect(await jobHash(lean, id)).toEqual(await jobHash(plain, id));
    expect(await lean.queue.getJobCounts()).toEqual(await plain.queue.getJobCounts());
    expect(await eventStream(lean)).toEqual(await eventStream(plain));
    expect(lean.events).toEqual(plain.events);
    const j2 = await lean.queue.getJob('j2');
    expect(j2?.returnvalue).toEqual({ n: 4 });
    expect(j2?.attemptsMade).toBe(1);
    expect(lean.errors).toEqual([]);
    expect(leanJobStats(lean.worker)).toEqual({ started: 3, completed: 3, handedOver: 0 });
  } finally {
    await close(plain, lean);
  }
});

test('a job’s start and completion make at least 8 fewer promises than BullMQ’s own', async () => {
  const N = 40;
  const perJob = async (lean: boolean): Promise<number> => {
    const s = await side(lean, async () => 'ok');
    try {
      await s.queue.addBulk(Array.from({ length: N }, (_, i) => ({ name: 'j', data: { i } })));
      let count = 0;
      const stop = promiseHooks.onInit(() => count++);
      try {
        void s.worker.run();
        await until(
          async () => s.events.filter((e) => e.startsWith('completed')).length === N,
          20_000,
          'done',
        );
      } finally {
        stop();
      }
      // The polls of `until` above make a few promises of their own, on both sides alike.
      return count / N;
    } finally {
      await close(s);
    }
  };
  const plain = await perJob(false);
  const lean = await perJob(true);
  expect(lean).toBeLessThanOrEqual(plain - 8);
});

test('a failing job is retried as configured and fails as on BullMQ’s own path', async () => {
  const tries = new Map<string, number>();
  const processor: Processor = async (job: Job) => {
    const n = (tries.get(`${job.prefix}:${job.id}`) ?? 0) + 1;
    tries.set(`${job.prefix}:${job.id}`, n);
    if (job.id === 'always' || n < 3) throw new Error(`try ${n}`);
    return n;
  };
  const plain = await side(false, processor);
  const lean = await side(true, processor);
  try {
    for (const s of [plain, lean]) {
      await s.queue.add('j', {}, { jobId: 'third', attempts: 3, backoff: { type: 'fixed', delay: 20 } });
      await s.queue.add('j', {}, { jobId: 'always', attempts: 2, backoff: { type: 'fixed', delay: 20 } });
      void s.worker.run();
    }
    for (const s of [plain, lean])
      await until(
        async () => (await s.queue.getCompletedCount()) === 1 && (await s.queue.getFailedCount()) === 1,
        20_000,
        'one completed, one failed',
      );
    for (const id of ['third', 'always']) expect(await jobHash(lean, id)).toEqual(await jobHash(plain, id));
    const third = await lean.queue.getJob('third');
    expect({ value: third?.returnvalue, attempts: third?.attemptsMade }).toEqual({ value: 3, attempts: 3 });
    const always = await lean.queue.getJob('always');
    expect({ reason: always?.failedReason, attempts: always?.attemptsMade }).toEqual({
      reason: 'try 2',
      attempts: 2,
    });
    expect([...lean.events].sort()).toEqual([...plain.events].sort());
    expect(lean.errors).toEqual([]);
  } finally {
    await close(plain, lean);
  }
});

test('a long job keeps its lock; a job whose lock was lost is not completed, as on BullMQ’s own path', async () => {
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => (release = r));
  const processor: Processor = async (job: Job) => {
    if (job.id === 'lost') await held;
    else await new Promise((r) => setTimeout(r, 2500));
    return 'done';
  };
  const plain = await side(false, processor, { concurrency: 2, lockDuration: 1000 });
  const lean = await side(true, processor, { concurrency: 2, lockDuration: 1000 });
  try {
    for (const s of [plain, lean]) {
      await s.queue.add('j', {}, { jobId: 'long' });
      await s.queue.add('j', {}, { jobId: 'lost' });
      void s.worker.run();
    }
    const lockKey = (s: Side) => `${s.prefix}:q:lost:lock`;
    for (const s of [plain, lean])
      await until(async () => (await raw().exists(lockKey(s))) === 1, 20_000, 'locked');
    for (const s of [plain, lean]) await raw().del(lockKey(s));
    release();
    for (const s of [plain, lean]) {
      // The long job (2.5 s, lock 1 s) completes: its lock was renewed, it never stalled.
      await until(async () => (await s.queue.getCompletedCount()) === 1, 20_000, 'the long job');
      await until(() => s.errors.length > 0, 20_000, 'the lost lock reported');
    }
    expect(await lean.queue.getJobState('long')).toBe('completed');
    expect(await lean.queue.getJobState('lost')).toBe(await plain.queue.getJobState('lost'));
    expect(lean.errors.map((e) => e.message)).toEqual(plain.errors.map((e) => e.message));
    expect(lean.errors[0]?.message).toMatch(/Missing lock for job lost/);
    expect(leanJobStats(lean.worker)).toMatchObject({ completed: 1, handedOver: 1 });
  } finally {
    release();
    await close(plain, lean);
  }
});
