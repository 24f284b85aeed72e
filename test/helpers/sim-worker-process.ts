/*
 * A Cell0Worker in a process of its own, for the test that kills one with SIGKILL mid-batch: it serves the
 * inference queue on PREFIX (concurrency CONCURRENCY) through the simulator at SIM_URL, with a 2 s job lock
 * so that its jobs go to stalled recovery soon after it dies. Prints "ready" once it takes jobs and never
 * exits by itself: the test kills it.
 */
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';

async function main(): Promise<void> {
  const worker = new Cell0Worker({
    redisUrl: process.env.REDIS_URL!,
    prefix: process.env.PREFIX!,
    queues: ['inference'],
    inference: new OllamaBackend(new OllamaClient({ baseUrl: process.env.SIM_URL! })),
    concurrency: { inference: Number(process.env.CONCURRENCY ?? '8') },
    lockDurationMs: 2000,
    stalledIntervalMs: 1000,
    heartbeatMs: 0,
  });
  await worker.start();
  process.stdout.write('ready\n');
  setInterval(() => undefined, 60_000);
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exit(1);
});
