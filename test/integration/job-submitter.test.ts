import { Worker } from 'bullmq';
import { JobSubmitter } from '../../producers/job-submitter';
import { QueueName, queueKey, queuePrefix } from '../../shared/queues/names';
import { attachReplyPublisher, ReplyPublisher } from '../../workers/reply-publisher';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';

describe('JobSubmitter (coalescing and retention)', () => {
  let prefix: string;
  let submitter: JobSubmitter;
  let worker: Worker | undefined;
  let publisher: ReplyPublisher | undefined;
  let calls: number;
  let failNext: boolean;
  const redis = testRedisConnection();
  let workerConn: RedisConnection | undefined;

  beforeEach(async () => {
    prefix = uniquePrefix();
    calls = 0;
    failNext = false;
    submitter = new JobSubmitter({
      redisUrl: testRedisUrl(),
      prefix,
      policy: { attempts: 1, resultTtlSeconds: 2 },
    });
    await submitter.start();
  });
  afterEach(async () => {
    await worker?.close();
    await publisher?.close();
    if (workerConn) await closeRedis(workerConn);
    workerConn = undefined;
    worker = undefined;
    publisher = undefined;
    await submitter.close();
  });
  afterAll(() => closeRedis(redis));

  function startWorker(delayMs = 50, concurrency = 8): Worker {
    // One Redis or a Cluster, whichever the run has (BullMQ takes either).
    workerConn = testRedisConnection('test:worker');
    worker = new Worker(
      QueueName.SEARCH,
      async (job) => {
        calls++;
        await new Promise((r) => setTimeout(r, delayMs));
        if (failNext) {
          failNext = false;
          throw new Error('boom');
        }
        return { echo: job.data, n: calls };
      },
      {
        connection: workerConn,
        prefix: queuePrefix(prefix, QueueName.SEARCH),
        concurrency,
      },
    );
    // A BullMQ worker of one's own hands its results to the waiting producers like Cell0Worker does.
    publisher = new ReplyPublisher({ connectionFor: () => redis });
    attachReplyPublisher(worker, queueKey(prefix, QueueName.SEARCH), publisher);
    return worker;
  }

  it('turns 50 concurrent identical submissions into one job and one run', async () => {
    startWorker(200);
    const data = { query: 'paris', limit: 5 };
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 10_000 }),
      ),
    );
    const ids = new Set(results.map((r) => r.jobId));
    expect(ids.size).toBe(1);
    expect(results.every((r) => r.state === 'completed')).toBe(true);
    expect(calls).toBe(1);
    for (const r of results) if (r.state === 'completed') expect(r.result).toEqual({ echo: data, n: 1 });
  });

  it('handles a stampede of 2,000 identical submissions in one process with one run', async () => {
    startWorker(300);
    const data = { query: 'stampede' };
    const results = await Promise.all(
      Array.from({ length: 2000 }, () =>
        submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 20_000 }),
      ),
    );
    expect(results.every((r) => r.state === 'completed')).toBe(true);
    expect(new Set(results.map((r) => r.jobId)).size).toBe(1);
    expect(calls).toBe(1);
    // Single flight inside the process: one add reached Redis, so BullMQ logged no duplicate adds.
    const events = await redis.xrange(`${queueKey(prefix, QueueName.SEARCH)}:events`, '-', '+');
    const duplicated = events.filter(([, fields]) => fields[1] === 'duplicated');
    expect(duplicated).toHaveLength(0);
  });

  it('serves a completed result within the TTL without a new run, and re-runs after it', async () => {
    startWorker(10);
    const data = { query: 'ttl' };
    const a = await submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 5000 });
    const b = await submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 5000 });
    expect(a.state).toBe('completed');
    // b is a's stored result: it joined a's job (a ran it).
    expect(a.state === 'completed' && a.joined).toBe(false);
    expect(b).toEqual(a.state === 'completed' ? { ...a, finishedOn: expect.any(Number), joined: true } : a);
    expect(calls).toBe(1);
    await new Promise((r) => setTimeout(r, 2100)); // past resultTtlSeconds = 2: the rule is about wall time
    const c = await submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 5000 });
    expect(c.state).toBe('completed');
    expect(calls).toBe(2);
    if (c.state === 'completed') expect(c.result).toEqual({ echo: data, n: 2 });
  });

  it('reports a failure to callers that were waiting, and re-runs it for a later caller', async () => {
    startWorker(10);
    failNext = true;
    const data = { query: 'flaky' };
    const first = await submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 5000 });
    expect(first).toMatchObject({ state: 'failed', message: 'boom' });
    const second = await submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 5000 });
    expect(second.state).toBe('completed');
    expect(calls).toBe(2);
  });

  it('re-adds a job whose record is gone', async () => {
    startWorker(10);
    const data = { query: 'gone' };
    const a = await submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 5000 });
    await submitter.getQueue(QueueName.SEARCH).remove(a.jobId);
    const b = await submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 5000 });
    expect(b.state).toBe('completed');
    expect(b.jobId).toBe(a.jobId);
    expect(calls).toBe(2);
  });

  it('answers pending with the job state when the wait runs out, and the job still completes', async () => {
    const data = { query: 'slow' };
    const r = await submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 100 });
    expect(r).toMatchObject({ state: 'pending', jobState: 'waiting' });
    startWorker(10);
    const later = await submitter.submit(QueueName.SEARCH, 'search', data, { waitMs: 5000 });
    expect(later.state).toBe('completed');
    expect(later.jobId).toBe(r.jobId);
    expect(calls).toBe(1);
    const view = await submitter.getJob(QueueName.SEARCH, r.jobId);
    expect(view).toMatchObject({ state: 'completed', jobId: r.jobId, result: { echo: data, n: 1 } });
    expect(await submitter.getJob(QueueName.SEARCH, 's-doesnotexist')).toBeUndefined();
  });

  it('gives different ids to different requests', async () => {
    startWorker(10);
    const [a, b] = await Promise.all([
      submitter.submit(QueueName.SEARCH, 'search', { query: 'a' }, { waitMs: 5000 }),
      submitter.submit(QueueName.SEARCH, 'search', { query: 'b' }, { waitMs: 5000 }),
    ]);
    expect(a.jobId).not.toBe(b.jobId);
    expect(calls).toBe(2);
  });

  it('asks for the completed-set trimming on one add in 16, which keeps the set within count + 15', async () => {
    await submitter.close();
    submitter = new JobSubmitter({
      redisUrl: testRedisUrl(),
      prefix,
      policy: { attempts: 1, maxCompletedJobs: 5 },
    });
    await submitter.start();
    // One job at a time, so jobs complete in the order they were added. The bound is about that order: a
    // trimming job leaves `count`, and at most the 15 adds after it complete before the next one trims.
    // (With jobs running side by side a trimming job can finish before earlier ones, which then land after
    // its trim: a busy host made that 21.)
    startWorker(0, 1);
    const sizes: number[] = [];
    for (let round = 0; round < 8; round++) {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          submitter.submit(QueueName.SEARCH, 'search', { query: `t${round}-${i}` }, { waitMs: 5000 }),
        ),
      );
      sizes.push(await redis.zcard(`${queueKey(prefix, QueueName.SEARCH)}:completed`));
    }
    expect(calls).toBe(80);
    // 80 adds: the 1st, 17th, 33rd, 49th and 65th trim when they finish.
    expect(Math.max(...sizes)).toBeLessThanOrEqual(5 + 15);
    const kept = await submitter.getQueue(QueueName.SEARCH).getJobs(['completed']);
    const trimming = kept.filter((j) => j.opts.removeOnComplete !== false);
    expect(trimming.length).toBeLessThanOrEqual(1);
  });

  it("submitMany: one request's jobs reach Redis in one round trip, one MULTI, even behind 250 other submissions", async () => {
    // The queue's one lane (one shard: the submitter is not sharded).
    const lane = (submitter as unknown as { lanes: Map<QueueName, object[]> }).lanes.get(
      QueueName.SEARCH,
    )![0]!;
    type Item = { jobId: string; add: boolean };
    const sendBatch = jest.spyOn(lane as unknown as { sendBatch: (g: Item[][]) => unknown }, 'sendBatch');
    const sendAtomic = jest.spyOn(lane as unknown as { sendAtomic: (i: Item[]) => unknown }, 'sendAtomic');
    // Two of the request's texts are already queued (joined, not added again).
    await submitter.submit(QueueName.SEARCH, 'search', { query: 'many 0' }, { waitMs: 0 });
    await submitter.submit(QueueName.SEARCH, 'search', { query: 'many 1' }, { waitMs: 0 });
    sendBatch.mockClear();
    sendAtomic.mockClear();
    // 250 single submissions first, in the same tick: a lane batch holds 256, so the request's 64 jobs
    // would straddle two round trips if they were submitted one by one.
    const others = Array.from({ length: 250 }, (_, i) =>
      submitter.submit(QueueName.SEARCH, 'search', { query: `other ${i}` }, { waitMs: 0 }),
    );
    const datas = Array.from({ length: 64 }, (_, i) => ({ query: `many ${i}` }));
    const many = submitter.submitMany(QueueName.SEARCH, 'search', datas, { waitMs: 0 });
    const [results] = await Promise.all([many, Promise.all(others)]);
    expect(results).toHaveLength(64);
    const ids = new Set(datas.map((d) => submitter.jobIdFor(QueueName.SEARCH, d)));
    results.forEach((r, i) => expect(r.jobId).toBe(submitter.jobIdFor(QueueName.SEARCH, datas[i])));
    // Exactly one round trip carries the request's jobs, as one group, and it is a MULTI.
    const carrying = sendBatch.mock.calls.filter(([groups]) => groups.flat().some((it) => ids.has(it.jobId)));
    expect(carrying).toHaveLength(1);
    const group = carrying[0]![0].find((g) => g.some((it) => ids.has(it.jobId)))!;
    expect(new Set(group.map((it) => it.jobId))).toEqual(ids);
    expect(sendAtomic).toHaveBeenCalledTimes(1);
    expect(sendAtomic.mock.calls[0]![0].filter((it) => ids.has(it.jobId))).toHaveLength(64);
    // Coalescing as before: 64 jobs for 64 texts (the two queued ones joined) plus the 250 others.
    const counts = await submitter.getQueue(QueueName.SEARCH).getJobCounts('waiting');
    expect(counts.waiting).toBe(64 + 250);
  });
});
