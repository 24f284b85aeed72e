/*
 * `cell0 start`'s producer and worker in a process of their own, for the test that kills one with SIGKILL
 * between a local take and the finish: the worker (concurrency 64, a 2 s job lock) takes the jobs its producer
 * adds right behind the adds; its backend never answers. It submits COUNT distinct prompts on PREFIX and
 * prints "ready" once every one was taken that way and is inside a backend call, then never exits by
 * itself: the test kills it. If that has not happened within 20 s it exits with status 1, saying how far it got.
 */
import { JobSubmitter } from '../../producers/job-submitter';
import { QueueName } from '../../shared/queues/names';
import { Cell0Worker } from '../../workers/cell0-worker';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';

async function main(): Promise<void> {
  const count = Number(process.env.COUNT);
  let running = 0;
  const backend = new (class extends NoopInferenceBackend {
    override run(): ReturnType<NoopInferenceBackend['run']> {
      running++;
      return new Promise(() => undefined);
    }
  })();
  const worker = new Cell0Worker({
    redisUrl: process.env.REDIS_URL!,
    prefix: process.env.PREFIX!,
    queues: [QueueName.INFERENCE],
    inference: backend,
    concurrency: { inference: 64 },
    lockDurationMs: 2000,
    stalledIntervalMs: 1000,
    heartbeatMs: 0,
  });
  const submitter = new JobSubmitter({
    redisUrl: process.env.REDIS_URL!,
    prefix: process.env.PREFIX!,
    policy: { attempts: 1 },
  });
  await Promise.all([worker.start(), submitter.start()]);
  submitter.takeLocallyWith(worker.localTaker);
  for (let i = 0; i < count; i++)
    void submitter
      .submit(QueueName.INFERENCE, 'generate', { model: 'noop', prompt: `killed ${i}` }, { waitMs: 60_000 })
      .catch(() => undefined);
  // Not all taken behind their adds within 20 s: exits, saying how far it got (the test fails on that).
  const deadline = Date.now() + 20_000;
  const poll = setInterval(() => {
    if (Date.now() > deadline) {
      process.stderr.write(`taken ${worker.localTakeStats().taken}, running ${running} of ${count}\n`);
      process.exit(1);
    }
    if (running === count && worker.localTakeStats().taken === count) {
      clearInterval(poll);
      process.stdout.write('ready\n');
    }
  }, 10);
  setInterval(() => undefined, 60_000);
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exit(1);
});
