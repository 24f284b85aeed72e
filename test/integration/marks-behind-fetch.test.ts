import { ErrorCode } from '../../shared/errors';
import { QueueName } from '../../shared/queues/names';
import { decodeEntry, tokenStreamKeys } from '../../shared/queues/token-stream';
import { closeRedis } from '../../shared/redis/connection';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';
import { testRedisConnection } from '../helpers/redis';
import { startInferencePair, submitPrompts } from '../helpers/inference-pair';

/*
 * A Cell0Worker reads each inference job's token stream marks (wanted, cancel) right behind the fetch that
 * activated it (active-marks.lua, on BullMQ's connection), so a job starts without a round trip of its own
 * for them; what the marks do is unchanged.
 */
describe('token stream marks read behind the fetch', () => {
  const redis = testRedisConnection();
  afterAll(() => closeRedis(redis));

  class CountingBackend extends NoopInferenceBackend {
    calls = 0;
    override run(job: Parameters<NoopInferenceBackend['run']>[0]) {
      this.calls++;
      return super.run(job);
    }
  }

  async function fleet() {
    const backend = new CountingBackend();
    return { backend, ...(await startInferencePair('mbf', backend)) };
  }

  // No mark in the queue (no gate): the read behind the fetches is one EXISTS, and each job takes "unmarked"
  // from its fetch's answer.
  test('every job of a worker starts with the marks read behind its fetch', async () => {
    const f = await fleet();
    try {
      const results = await submitPrompts(f.submitter, 40);
      expect(results.map((r) => r.state)).toEqual(Array(40).fill('completed'));
      expect(f.worker.marksStats()).toEqual({ behindFetch: 40, atStart: 0 });
    } finally {
      await f.close();
    }
  });

  test('marks read behind the fetch still start a wanted stream and stop a cancelled job before its call', async () => {
    const f = await fleet();
    try {
      const wantedData = { model: 'noop', prompt: 'streamed' };
      const wantedKeys = tokenStreamKeys(
        f.prefix,
        QueueName.INFERENCE,
        f.submitter.jobIdFor(QueueName.INFERENCE, wantedData),
      );
      await redis.set(wantedKeys.wanted, '1', 'PX', 60_000);
      const cancelledData = { model: 'noop', prompt: 'cancelled' };
      const cancelledKeys = tokenStreamKeys(
        f.prefix,
        QueueName.INFERENCE,
        f.submitter.jobIdFor(QueueName.INFERENCE, cancelledData),
      );
      await redis.set(cancelledKeys.cancel, '1', 'PX', 60_000);
      // Marks come with the queue's marks gate (as the token stream hub sets them).
      await redis.set(wantedKeys.gate, '1', 'PX', 60_000);

      const streamed = await f.submitter.submit(QueueName.INFERENCE, 'generate', wantedData, {
        waitMs: 10_000,
      });
      expect(streamed.state).toBe('completed');
      const entries = (await redis.xrange(wantedKeys.stream, '-', '+')).map(([, fields]) =>
        decodeEntry(fields),
      );
      expect(entries.map((e) => e?.kind)).toEqual(['start', 'end']);

      const calls = f.backend.calls;
      const cancelled = await f.submitter.submit(QueueName.INFERENCE, 'generate', cancelledData, {
        waitMs: 10_000,
      });
      expect(cancelled.state === 'failed' && cancelled.code).toBe(ErrorCode.JOB_CANCELLED);
      expect(f.backend.calls).toBe(calls);
      // The cancel mark is used up by the attempt that honoured it.
      expect(await redis.exists(cancelledKeys.cancel)).toBe(0);
      expect(f.worker.marksStats()).toEqual({ behindFetch: 2, atStart: 0 });
    } finally {
      await f.close();
    }
  });
});
