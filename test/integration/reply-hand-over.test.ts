import { JobSubmitter } from '../../producers/job-submitter';
import { QueueName } from '../../shared/queues/names';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';
import { closeRedis } from '../../shared/redis/connection';
import { keysMatching, testRedisConnection, testRedisUrl } from '../helpers/redis';
import { startInferencePair, submitPrompts } from '../helpers/inference-pair';
import { until } from '../helpers/wait';

/*
 * `cell0 start` runs the API's producer and a worker in one process: the replies of the jobs that producer
 * added go to it from the worker directly once the finish has stored them, not through its inbox in Redis;
 * producers elsewhere (and the same producer for jobs it joined) still get theirs through Redis.
 */
describe('replies handed over to the producer of the same process', () => {
  const redis = testRedisConnection();
  afterAll(() => closeRedis(redis));

  test("the producer's own jobs are answered without its inbox, failures too", async () => {
    let failNext = 0;
    const backend = new (class extends NoopInferenceBackend {
      override run(job: Parameters<NoopInferenceBackend['run']>[0]) {
        if (failNext > 0) {
          failNext--;
          return Promise.reject(new Error('backend says no'));
        }
        return super.run(job);
      }
    })();
    const { worker, submitter, close } = await startInferencePair('rho', backend);
    worker.handRepliesTo(submitter.localReplies);
    try {
      const results = await submitPrompts(submitter, 30);
      expect(results.map((r) => r.state)).toEqual(Array(30).fill('completed'));
      // The result the job stored (read back from Redis by a later identical request).
      const stored = await submitPrompts(submitter, 1);
      expect(stored[0]).toMatchObject({ state: 'completed', jobId: results[0]!.jobId });
      expect((stored[0] as { result?: unknown }).result).toEqual((results[0] as { result?: unknown }).result);
      failNext = 1;
      const failed = await submitter.submit(
        QueueName.INFERENCE,
        'generate',
        { model: 'noop', prompt: 'fails' },
        { waitMs: 10_000 },
      );
      expect(failed).toMatchObject({ state: 'failed', message: expect.stringContaining('backend says no') });
      await until(() => worker.replyStats().withFinish === 31, 5000, 'the last reply counted');
      expect(worker.replyStats()).toEqual({ withFinish: 31, afterEvent: 0, handedOver: 31 });
      expect(submitter.replyStats()).toEqual({ inbox: 0, handedOver: 31 });
    } finally {
      await close();
    }
  });

  test('a producer of another process waiting on the same job still gets its reply through Redis', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started = 0;
    const backend = new (class extends NoopInferenceBackend {
      override async run(job: Parameters<NoopInferenceBackend['run']>[0]) {
        started++;
        await gate;
        return super.run(job);
      }
    })();
    const { prefix, worker, submitter, close } = await startInferencePair('rho', backend);
    worker.handRepliesTo(submitter.localReplies);
    const other = new JobSubmitter({ redisUrl: testRedisUrl(), prefix, policy: { attempts: 1 } });
    try {
      await other.start();
      const data = { model: 'noop', prompt: 'shared' };
      const mine = submitter.submit(QueueName.INFERENCE, 'generate', data, { waitMs: 10_000 });
      await until(() => started === 1, 5000, 'the job started');
      // The other producer joins the job the local one added (same request, same job id).
      const theirs = other.submit(QueueName.INFERENCE, 'generate', data, { waitMs: 10_000 });
      // Released once it is registered in the job's waiter set (what the worker's reply goes to).
      await until(
        async () => {
          // Queue keys carry a hash tag of their own ("{<prefix>:inference}:inference:...").
          const sets = await keysMatching(redis, `*${prefix.slice(1, -1)}*:cell0-waiters`);
          return sets.length === 1 && (await redis.sismember(sets[0]!, other.producerId)) === 1;
        },
        5000,
        'the other producer registered',
      );
      release();
      const [a, b] = await Promise.all([mine, theirs]);
      expect(a.state).toBe('completed');
      expect(b).toEqual({ ...a, joined: true });
      expect(started).toBe(1);
      expect(submitter.replyStats()).toEqual({ inbox: 0, handedOver: 1 });
      expect(other.replyStats()).toEqual({ inbox: 1, handedOver: 0 });
    } finally {
      release();
      await other.close();
      await close();
    }
  });
});
