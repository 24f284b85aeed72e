/*
 * A worker process that publishes its status every <heartbeat ms>, for the liveness test: prints
 * `ready <worker id>` once started (its first status is in Redis), then waits to be killed.
 * Arguments: the Redis URL, the queue prefix and the heartbeat interval in ms.
 */
import { Cell0Worker } from '../../workers/cell0-worker';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';

async function main(): Promise<void> {
  const [redisUrl, prefix, heartbeat] = process.argv.slice(2);
  if (!redisUrl || !prefix || !heartbeat)
    throw new Error('usage: heartbeat-worker-child <redis url> <prefix> <heartbeat ms>');
  const worker = new Cell0Worker({
    redisUrl,
    prefix,
    queues: ['inference'],
    inference: new NoopInferenceBackend(),
    heartbeatMs: Number(heartbeat),
  });
  await worker.start();
  process.stdout.write(`ready ${worker.id}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exitCode = 1;
});
