/*
 * A process that runs a Cell0Worker, loses Redis, gets it back and closes the worker at once — the moment
 * its connections are reconnecting. It must then exit on its own: it calls nothing like process.exit, so a
 * leftover timer or socket keeps it alive. Prints "closed" when worker.close() has resolved.
 */
import { Cell0Worker } from '../../workers/cell0-worker';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';
import { startPrivateRedis } from './redis-server';
import { sleep } from '../../shared/sleep';

async function main(): Promise<void> {
  const redis = await startPrivateRedis();
  const worker = new Cell0Worker({
    redisUrl: redis.url,
    prefix: '{exit-test}',
    queues: ['inference'],
    inference: new NoopInferenceBackend(),
    shutdownTimeoutMs: 3000,
    heartbeatMs: 0,
  });
  await worker.start();
  await redis.stop();
  await sleep(1500);
  await redis.start();
  await worker.close();
  process.stdout.write('closed\n');
  await redis.destroy();
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exitCode = 1;
});
