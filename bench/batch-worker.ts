/*
 * bench:batch worker process: a Cell0Worker serving the inference queue with the no-op backend (so the
 * benchmark measures cell0's own cost per item, not a model's), concurrency from argv. Sends
 * { type: 'ready' } once it takes jobs and closes on SIGTERM.
 */
import { Cell0Worker } from '../workers/cell0-worker.js';
import { NoopInferenceBackend } from '../workers/providers/noop-provider.js';

const [redisUrl, prefix, concurrency] = process.argv.slice(2);
process.on('disconnect', () => process.exit(1));

async function main(): Promise<void> {
  const worker = new Cell0Worker({
    redisUrl: redisUrl!,
    prefix: prefix!,
    queues: ['inference'],
    inference: new NoopInferenceBackend(),
    concurrency: { inference: Number(concurrency) },
    heartbeatMs: 0,
  });
  await worker.start();
  process.on('SIGTERM', () => {
    worker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  process.send?.({ type: 'ready' });
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exit(1);
});
