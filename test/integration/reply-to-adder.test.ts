import { Worker, type Job } from 'bullmq';
import { JobSubmitter } from '../../producers/job-submitter';
import { QueueName, queueKey, queuePrefix } from '../../shared/queues/names';
import {
  adderOf,
  ADDER_OPTION,
  defineReplyScripts,
  inboxKey,
  registerWaiters,
  waiterSetKey,
  type JobReply,
} from '../../shared/queues/job-replies';
import { attachReplyPublisher, ReplyPublisher } from '../../workers/reply-publisher';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';

/*
 * The result path without a per-job key for the producer that adds a job: its add names it in the job's
 * options and the worker replies to it directly; the waiter set serves only producers that join a job
 * someone else added. Every submitter here re-reads nothing for a minute (recheckAfterMs), so a result
 * that arrives in time came by a reply.
 */
describe('replies to the producer that added the job', () => {
  const redis = testRedisConnection();
  let prefix: string;
  let key: string;
  let worker: Worker | undefined;
  let workerConn: RedisConnection | undefined;
  let publisher: ReplyPublisher | undefined;
  const submitters: JobSubmitter[] = [];
  let calls = 0;
  /** Jobs that started, each waiting for its release. */
  let started: { job: Job; release: () => void }[] = [];

  beforeEach(() => {
    prefix = uniquePrefix('rta');
    key = queueKey(prefix, QueueName.SEARCH);
    calls = 0;
    started = [];
  });
  afterEach(async () => {
    for (const s of started) s.release();
    await worker?.close();
    await publisher?.close();
    if (workerConn) await closeRedis(workerConn);
    worker = workerConn = publisher = undefined;
    await Promise.all(submitters.splice(0).map((s) => s.close()));
  });
  afterAll(() => closeRedis(redis));

  async function submitter(): Promise<JobSubmitter> {
    const s = new JobSubmitter({
      redisUrl: testRedisUrl(),
      prefix,
      policy: { attempts: 1, resultTtlSeconds: 60 },
      recheckAfterMs: 60_000,
    });
    submitters.push(s);
    await s.start();
    return s;
  }

  /** A worker whose jobs each wait for their release; `pub` hands its results to the producers. */
  function startWorker(pub = new ReplyPublisher({ connectionFor: () => redis })): void {
    workerConn = testRedisConnection('test:worker');
    worker = new Worker(
      QueueName.SEARCH,
      async (job) => {
        calls++;
        await new Promise<void>((release) => started.push({ job, release }));
        return { echo: job.data as unknown, n: calls };
      },
      { connection: workerConn, prefix: queuePrefix(prefix, QueueName.SEARCH), concurrency: 4 },
    );
    publisher = pub;
    attachReplyPublisher(worker, key, publisher);
  }

  const search = (s: JobSubmitter, query: string) =>
    s.submit(QueueName.SEARCH, 'search', { query }, { waitMs: 10_000 });

  test('the adding producer writes no waiter set; the worker replies to the producer named in the job', async () => {
    const a = await submitter();
    startWorker();
    const pending = search(a, 'alone');
    await until(() => started.length === 1, 5000, 'the job to start');
    const job = started[0]!.job;
    expect(await redis.exists(waiterSetKey(key, job.id!))).toBe(0);
    expect(adderOf(job.opts)).toBe(a.producerId);
    expect(await redis.hget(`${key}:${job.id!}`, 'opts')).toContain(`"${ADDER_OPTION}":"${a.producerId}.`);
    started[0]!.release();
    const r = await pending;
    expect(r).toMatchObject({
      state: 'completed',
      result: { echo: { query: 'alone' }, n: 1 },
      joined: false,
    });
    expect(await redis.exists(waiterSetKey(key, job.id!))).toBe(0);
  });

  test('a producer that joins a job another process added is registered in the waiter set; both get the one run', async () => {
    const [a, b] = [await submitter(), await submitter()];
    startWorker();
    const first = search(a, 'shared');
    await until(() => started.length === 1, 5000, 'the job to start');
    const jobId = started[0]!.job.id!;
    const second = search(b, 'shared');
    await until(
      async () => (await redis.smembers(waiterSetKey(key, jobId))).includes(b.producerId),
      5000,
      'the second producer registered',
    );
    // The adder is named by the job, not in the set.
    expect(await redis.smembers(waiterSetKey(key, jobId))).toEqual([b.producerId]);
    started[0]!.release();
    const [ra, rb] = await Promise.all([first, second]);
    expect(ra).toMatchObject({ state: 'completed', result: { n: 1 }, joined: false });
    expect(rb).toMatchObject({ state: 'completed', result: { n: 1 }, joined: true });
    expect(calls).toBe(1);
    expect(await redis.exists(waiterSetKey(key, jobId))).toBe(0);
  });

  test('a join while the job finishes (stored, not yet replied) reads the stored result in its registration', async () => {
    const [a, b] = [await submitter(), await submitter()];
    // Replies wait until the join has been answered: the window between the finish and its reply.
    const held: (() => void)[] = [];
    const pub = new (class extends ReplyPublisher {
      override finished(queueKey: string, reply: JobReply): void {
        held.push(() => super.finished(queueKey, reply));
      }
    })({ connectionFor: () => redis });
    startWorker(pub);
    const first = search(a, 'finishing');
    await until(() => started.length === 1, 5000, 'the job to start');
    const jobId = started[0]!.job.id!;
    started[0]!.release();
    await until(() => held.length === 1, 5000, 'the job to finish');
    expect(await redis.zscore(`${key}:completed`, jobId)).not.toBeNull();
    const rb = await search(b, 'finishing');
    expect(rb).toMatchObject({ state: 'completed', result: { n: 1 }, joined: true });
    // Registered all the same (the reply to come finds it and empties the set).
    expect(await redis.smembers(waiterSetKey(key, jobId))).toEqual([b.producerId]);
    held[0]!();
    expect(await first).toMatchObject({ state: 'completed', result: { n: 1 }, joined: false });
    await until(async () => (await redis.exists(waiterSetKey(key, jobId))) === 0, 5000, 'the set emptied');
    expect(calls).toBe(1);
  });

  test('a producer that dies after its add: the one that joins gets the result, the dead one’s inbox expires', async () => {
    const [a, b] = [await submitter(), await submitter()];
    const gone = a.submit(QueueName.SEARCH, 'search', { query: 'orphan' }, { waitMs: 200 });
    expect(await gone).toMatchObject({ state: 'pending' });
    const jobId = (await gone).jobId;
    await a.close();
    const joined = search(b, 'orphan');
    await until(
      async () => (await redis.smembers(waiterSetKey(key, jobId))).includes(b.producerId),
      5000,
      'the joining producer registered',
    );
    startWorker();
    await until(() => started.length === 1, 5000, 'the job to start');
    started[0]!.release();
    expect(await joined).toMatchObject({ state: 'completed', result: { n: 1 }, joined: true });
    expect(calls).toBe(1);
    // The reply to the dead producer waits in its inbox, which expires.
    await until(async () => (await redis.llen(inboxKey(key, a.producerId))) === 1, 5000, 'the dead inbox');
    expect(await redis.pttl(inboxKey(key, a.producerId))).toBeGreaterThan(0);
    await redis.del(inboxKey(key, a.producerId));
  });

  test('a job added without the option (an older producer, or BullMQ directly) is answered through its waiter set', async () => {
    const b = await submitter();
    startWorker();
    const queue = b.getQueue(QueueName.SEARCH);
    const data = { query: 'old' };
    const jobId = b.jobIdFor(QueueName.SEARCH, data);
    await queue.add('search', data, { jobId });
    const r = search(b, 'old');
    await until(() => started.length === 1, 5000, 'the job to start');
    await until(
      async () => (await redis.smembers(waiterSetKey(key, jobId))).includes(b.producerId),
      5000,
      'registered',
    );
    expect(adderOf(started[0]!.job.opts)).toBe('');
    started[0]!.release();
    expect(await r).toMatchObject({ state: 'completed', result: { n: 1 } });
  });

  test('register-waiters.lua: a created job registers nothing; a foreign or vanished one is told apart', async () => {
    defineReplyScripts(redis);
    const jobKey = (id: string) => `${key}:${id}`;
    await redis.hset(jobKey('mine'), 'opts', JSON.stringify({ attempts: 1, [ADDER_OPTION]: 'p1.7' }));
    await redis.hset(jobKey('theirs'), 'opts', JSON.stringify({ [ADDER_OPTION]: 'p2.7' }));
    await redis.hset(jobKey('done'), 'opts', '{}', 'returnvalue', '{"x":1}', 'finishedOn', '42');
    await redis.zadd(`${key}:completed`, 42, 'done');
    const found = await registerWaiters(
      redis,
      key,
      [
        { jobId: 'mine', token: 'p1.7' },
        { jobId: 'theirs', token: 'p1.8' },
        { jobId: 'gone', token: 'p1.9' },
        { jobId: 'done', token: 'p1.10' },
        { jobId: 'joined', token: '' },
      ],
      'p1',
    );
    expect(found).toEqual([
      { status: 'created' },
      { status: 'pending' },
      { status: 'vanished' },
      { status: 'completed', returnvalue: { x: 1 }, finishedOn: 42 },
      { status: 'missing' },
    ]);
    expect(await redis.exists(waiterSetKey(key, 'mine'), waiterSetKey(key, 'gone'))).toBe(0);
    for (const id of ['theirs', 'done', 'joined'])
      expect(await redis.smembers(waiterSetKey(key, id))).toEqual(['p1']);
    await redis.del(
      ...['mine', 'theirs', 'done'].map(jobKey),
      `${key}:completed`,
      ...['theirs', 'done', 'joined'].map((id) => waiterSetKey(key, id)),
    );
  });

  test('adderOf reads the producer id from the token, and nothing else', () => {
    expect(adderOf({ [ADDER_OPTION]: 'ab12.3z' })).toBe('ab12');
    expect(adderOf({ [ADDER_OPTION]: 'ab12' })).toBe('ab12');
    expect(adderOf({})).toBe('');
    expect(adderOf(undefined)).toBe('');
    expect(adderOf({ [ADDER_OPTION]: 'a:b.1' })).toBe('');
    expect(adderOf({ [ADDER_OPTION]: 7 })).toBe('');
  });
});
