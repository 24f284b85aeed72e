/*
 * A separate producer process for the cross-process coalescing test. Reads its orders from the
 * environment, waits until GO_AT (epoch ms) so that several processes fire at the same moment, sends
 * COUNT identical inference requests at once, and prints one JSON line with what it got.
 */
import { Cell0Client } from '../../producers/cell0-client';
import { sleep } from '../../shared/sleep';

async function main(): Promise<void> {
  const client = new Cell0Client({
    redisUrl: process.env.REDIS_URL!,
    prefix: process.env.PREFIX!,
    waitMs: 20_000,
  });
  await client.start();
  const body = JSON.parse(process.env.BODY!) as { model: string; prompt: string };
  const count = Number(process.env.COUNT ?? '1');
  const delay = Number(process.env.GO_AT) - Date.now();
  await sleep(delay);
  const results = await Promise.all(Array.from({ length: count }, () => client.infer(body)));
  process.stdout.write(
    JSON.stringify({ jobIds: results.map((r) => r.jobId), texts: results.map((r) => r.result.text) }) + '\n',
  );
  await client.close();
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exit(1);
});
