import { QueueName } from '../../shared/queues/names';
import {
  decodeReply,
  defineReplyScripts,
  encodeRawReply,
  inboxKey,
  sendFinishedReplies,
  waiterSetKey,
} from '../../shared/queues/job-replies';
import { ReplyPublisher } from '../../workers/reply-publisher';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';
import { closeRedis, createRedisConnection } from '../../shared/redis/connection';
import { testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';
import { startInferencePair, submitPrompts } from '../helpers/inference-pair';
import { until } from '../helpers/wait';

/*
 * The result path's last hop: a Cell0Worker sends each job's reply on its connection right behind BullMQ's
 * moveToFinished of the job (reply-finished.lua), not after the finish has returned to it.
 */
describe('replies sent behind the finish', () => {
  const redis = testRedisConnection();
  afterAll(() => closeRedis(redis));

  test('a Cell0Worker answers every waiting producer in the round trip of the finish', async () => {
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
    const { worker, submitter, close } = await startInferencePair('rbf', backend);
    try {
      const results = await submitPrompts(submitter, 30);
      expect(results.map((r) => r.state)).toEqual(Array(30).fill('completed'));
      // A final failure goes the same way.
      failNext = 1;
      const failed = await submitter.submit(
        QueueName.INFERENCE,
        'generate',
        { model: 'noop', prompt: 'fails' },
        { waitMs: 10_000 },
      );
      expect(failed.state).toBe('failed');
      // The worker counts a reply once the script's answer is back, which may be after the producer's.
      await until(() => worker.replyStats().withFinish === 31, 5000, 'the last reply counted');
      expect(worker.replyStats()).toEqual({ withFinish: 31, afterEvent: 0, handedOver: 0 });
    } finally {
      await close();
    }
  });

  test('a job that is not in its finished set gets no reply, and keeps its waiters', async () => {
    const queueKey = `${uniquePrefix('rbf')}:search`;
    defineReplyScripts(redis);
    await redis.sadd(waiterSetKey(queueKey, 'j1'), 'p1', 'p2');
    await redis.sadd(waiterSetKey(queueKey, 'j2'), 'p1');
    await redis.zadd(`${queueKey}:completed`, 5, 'j2');
    const counts = await sendFinishedReplies(redis, queueKey, [
      {
        jobId: 'j1',
        finishedSetKey: `${queueKey}:completed`,
        reply: encodeRawReply('j1', 'completed', 7, '1'),
      },
      {
        jobId: 'j2',
        finishedSetKey: `${queueKey}:completed`,
        reply: encodeRawReply('j2', 'completed', 5, ''),
      },
    ]);
    expect(counts).toEqual([-1, 1]);
    expect((await redis.smembers(waiterSetKey(queueKey, 'j1'))).sort()).toEqual(['p1', 'p2']);
    expect(await redis.exists(waiterSetKey(queueKey, 'j2'))).toBe(0);
    const inbox = await redis.lrange(inboxKey(queueKey, 'p1'), 0, -1);
    expect(inbox.map(decodeReply)).toEqual([
      { jobId: 'j2', status: 'completed', returnvalue: null, finishedOn: 5 },
    ]);
    expect(await redis.exists(inboxKey(queueKey, 'p2'))).toBe(0);
    await redis.del(`${queueKey}:completed`, waiterSetKey(queueKey, 'j1'), inboxKey(queueKey, 'p1'));
  });

  test('a reply behind a finish that did not happen goes out once the job event comes, before or after its answer', async () => {
    const queueKey = `${uniquePrefix('rbf')}:inference`;
    const conn = createRedisConnection({ url: testRedisUrl(), role: 'worker' });
    // A stand-in for BullMQ's moveToFinished that finishes nothing (as when the job's lock was lost).
    conn.defineCommand('moveToFinished:test', { numberOfKeys: 14, lua: 'return 0' });
    const finish = (jobId: string) =>
      (conn as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)['moveToFinished:test']!(
        ...Array.from({ length: 14 }, (_, i) => (i === 10 ? `${queueKey}:completed` : `${queueKey}:k${i}`)),
        jobId,
        1234,
        'returnvalue',
        '"v"',
        'completed',
      );
    const publisher = new ReplyPublisher({ connectionFor: () => conn });
    const reply = (jobId: string) =>
      ({ jobId, status: 'completed', returnvalue: 'v', finishedOn: 1234 }) as const;
    try {
      await redis.sadd(waiterSetKey(queueKey, 'j1'), 'p1');
      await redis.sadd(waiterSetKey(queueKey, 'j2'), 'p1');
      expect(publisher.replyBehindFinish(conn, queueKey)).toBe(true);
      // The event comes while the reply behind the finish is still in flight.
      const first = finish('j1');
      publisher.finished(queueKey, reply('j1'));
      await first;
      // The event comes after the answer: a command sent once the reply has gone out is answered after it.
      const second = finish('j2');
      await new Promise<void>((resolve) => setImmediate(resolve));
      await conn.ping();
      publisher.finished(queueKey, reply('j2'));
      await second;
      await until(
        async () => (await redis.llen(inboxKey(queueKey, 'p1'))) === 2,
        5000,
        'both replies in the inbox',
      );
      const inbox = (await redis.lrange(inboxKey(queueKey, 'p1'), 0, -1)).map(decodeReply);
      expect(inbox.map((r) => r?.jobId).sort()).toEqual(['j1', 'j2']);
      expect(publisher.stats()).toEqual({ withFinish: 0, afterEvent: 2, handedOver: 0 });
      expect(await redis.exists(waiterSetKey(queueKey, 'j1'), waiterSetKey(queueKey, 'j2'))).toBe(0);
    } finally {
      await publisher.close();
      await closeRedis(conn);
      await redis.del(inboxKey(queueKey, 'p1'));
    }
  });

  test('raw replies decode to what the job stored', () => {
    expect(decodeReply(encodeRawReply('a"b', 'completed', 12, '{"text":"hi","n":[1,2]}'))).toEqual({
      jobId: 'a"b',
      status: 'completed',
      returnvalue: { text: 'hi', n: [1, 2] },
      finishedOn: 12,
    });
    expect(decodeReply(encodeRawReply('x', 'failed', 3, 'CELL0 "quoted" reason'))).toEqual({
      jobId: 'x',
      status: 'failed',
      failedReason: 'CELL0 "quoted" reason',
      finishedOn: 3,
    });
  });
});
