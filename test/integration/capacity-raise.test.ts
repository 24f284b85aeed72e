import { Queue } from 'bullmq';
import { JobSubmitter } from '../../producers/job-submitter';
import { type SubmitResult } from '../../producers/submit-result';
import { QueueName } from '../../shared/queues/names';
import { shardPrefix } from '../../shared/queues/shards';
import { closeRedis } from '../../shared/redis/connection';
import { Cell0Worker } from '../../workers/cell0-worker';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';
import { testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';
import { HeldBackend } from '../helpers/held-backend';
import { until } from '../helpers/wait';

/*
 * A worker holds about twice its backends' capacity in jobs (CapacityFollower). When that capacity rises (an
 * adaptive limit's slow start opening on a prompt first token), the jobs waiting in the queue must reach the
 * worker then: BullMQ's fetch loop, holding `concurrency` jobs, reads a raised concurrency only when one of
 * them ends (a whole generation later), and fetches one job per round trip after that.
 */

test('a raised backend capacity fills the worker at once, in one take, while none of its jobs has ended', async () => {
  const prefix = uniquePrefix('capraise');
  const backend = new HeldBackend();
  let capacity = 1;
  const listeners = new Set<() => void>();
  const worker = new Cell0Worker({
    redisUrl: testRedisUrl(),
    prefix,
    queues: [QueueName.INFERENCE],
    inference: backend,
    concurrency: { inference: 32 },
    heartbeatMs: 0,
    backendCapacity: { [QueueName.INFERENCE]: () => capacity },
    backendCapacityRaised: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  });
  // No local take behind the adds: the jobs wait in the queue for the worker.
  const submitter = new JobSubmitter({ redisUrl: testRedisUrl(), prefix, policy: { attempts: 1 } });
  const conn = testRedisConnection('test:capraise');
  const queue = new Queue(QueueName.INFERENCE, {
    connection: conn,
    prefix: shardPrefix(prefix, QueueName.INFERENCE, 0, 1),
  });
  try {
    await Promise.all([worker.start(), submitter.start()]);
    expect(listeners.size).toBe(1);
    const all: Promise<SubmitResult>[] = Array.from({ length: 12 }, (_, i) =>
      submitter.submit(
        QueueName.INFERENCE,
        'generate',
        { model: 'noop', prompt: `r${i}` },
        { waitMs: 20_000 },
      ),
    );
    // Capacity 1: the worker holds 2 jobs; the other 10 wait in the queue.
    await until(
      async () => backend.running === 2 && (await queue.getWaitingCount()) === 10,
      10_000,
      '2 held, 10 waiting',
    );
    const before = worker.localTakeStats();

    capacity = 6;
    for (const l of listeners) l();
    // 12 jobs in the backend at once with none ended (the backend holds them all).
    await until(() => backend.running === 12, 10_000, 'the 10 waiting jobs started');
    expect(await queue.getWaitingCount()).toBe(0);
    // Taken in one call, not fetched one round trip at a time.
    const after = worker.localTakeStats();
    expect(after.calls - before.calls).toBe(1);
    expect(after.taken - before.taken).toBe(10);

    backend.release();
    const results = await Promise.all(all);
    expect(results.map((r) => r.state)).toEqual(Array(12).fill('completed'));
  } finally {
    backend.release();
    await submitter.close();
    await worker.close();
    await queue.close();
    await closeRedis(conn);
  }
});

test('closing the worker unsubscribes it from capacity rises', async () => {
  const listeners = new Set<() => void>();
  const worker = new Cell0Worker({
    redisUrl: testRedisUrl(),
    prefix: uniquePrefix('capraise'),
    queues: [QueueName.INFERENCE],
    inference: new NoopInferenceBackend(),
    heartbeatMs: 0,
    backendCapacity: { [QueueName.INFERENCE]: () => 1 },
    backendCapacityRaised: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  });
  await worker.start();
  expect(listeners.size).toBe(1);
  await worker.close();
  expect(listeners.size).toBe(0);
});
