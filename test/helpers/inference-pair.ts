import { JobSubmitter } from '../../producers/job-submitter';
import { QueueName } from '../../shared/queues/names';
import { type SubmitResult } from '../../producers/submit-result';
import { Cell0Worker } from '../../workers/cell0-worker';
import { type NoopInferenceBackend } from '../../workers/providers/noop-provider';
import { testRedisUrl, uniquePrefix } from './redis';

/**
 * One Cell0Worker serving the inference queue with `backend` (`concurrency` at a time, 8 unless given;
 * no heartbeat) and one JobSubmitter (one attempt per job) under a fresh prefix on the test Redis, both
 * started.
 */
export async function startInferencePair(tag: string, backend: NoopInferenceBackend, concurrency = 8) {
  const prefix = uniquePrefix(tag);
  const worker = new Cell0Worker({
    redisUrl: testRedisUrl(),
    prefix,
    queues: [QueueName.INFERENCE],
    inference: backend,
    concurrency: { inference: concurrency },
    heartbeatMs: 0,
  });
  const submitter = new JobSubmitter({ redisUrl: testRedisUrl(), prefix, policy: { attempts: 1 } });
  const close = async () => {
    await submitter.close();
    await worker.close();
  };
  try {
    await Promise.all([worker.start(), submitter.start()]);
  } catch (err) {
    await close();
    throw err;
  }
  return { prefix, worker, submitter, close };
}

/** Submits `n` distinct inference prompts at once and waits up to 10 s for each. */
export function submitPrompts(submitter: JobSubmitter, n: number): Promise<SubmitResult[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      submitter.submit(
        QueueName.INFERENCE,
        'generate',
        { model: 'noop', prompt: `p${i}` },
        { waitMs: 10_000 },
      ),
    ),
  );
}
