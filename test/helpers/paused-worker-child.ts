/*
 * A worker process paused by (injected) memory pressure, for the dead-worker test: it publishes its status
 * every second and prints `paused <worker id>` once its paused status is in Redis, then waits to be killed.
 * Arguments: the Redis URL and the queue prefix.
 */
import { once } from 'node:events';
import { Cell0Worker } from '../../workers/cell0-worker';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';
import { ResourceManagement } from '../../shared/resources/resource-management';
import { resourceSample } from './resource-sample';

async function main(): Promise<void> {
  const [redisUrl, prefix] = process.argv.slice(2);
  if (!redisUrl || !prefix) throw new Error('usage: paused-worker-child <redis url> <prefix>');
  const rm = new ResourceManagement({ sampleMs: 100, sampler: () => resourceSample({ memory: 97 }) });
  const worker = new Cell0Worker({
    redisUrl,
    prefix,
    queues: ['inference'],
    inference: new NoopInferenceBackend(),
    limiter: rm.limiter,
    status: () => rm.status(),
    heartbeatMs: 1000,
  });
  const paused = once(worker, 'worker:paused');
  await rm.start();
  await worker.start();
  await paused;
  // The pause publishes the status; publish once more so the record surely says `paused`.
  await worker.publishStatus();
  process.stdout.write(`paused ${worker.id}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exitCode = 1;
});
