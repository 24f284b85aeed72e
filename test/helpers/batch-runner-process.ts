/*
 * A batch runner in a process of its own, for the test that kills one with SIGKILL mid-batch. It runs the
 * items of the batches queue on PREFIX (concurrency CONCURRENCY) through its own Cell0Client, prints
 * "ready" once it takes jobs, and never exits by itself: the test kills it.
 */
import { Cell0Client } from '../../producers/cell0-client';
import { Batches } from '../../producers/batches/batches';

async function main(): Promise<void> {
  const client = new Cell0Client({
    redisUrl: process.env.REDIS_URL!,
    prefix: process.env.PREFIX!,
    policy: { attempts: 1 },
  });
  await client.start();
  const batches = new Batches({
    client,
    concurrency: Number(process.env.CONCURRENCY ?? '16'),
    lockDurationMs: 2000,
    stalledIntervalMs: 1000,
  });
  client.batches = batches;
  await batches.start();
  process.stdout.write('ready\n');
  setInterval(() => undefined, 60_000);
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exit(1);
});
