/*
 * A separate API process's view of the tenant ids, for the tenancy test. Connects to REDIS_URL, prints
 * "ready", waits for a line on stdin (so several processes derive their ids at the same moment, racing for
 * the fleet's secret), then prints one JSON line: the tenant id of KEY under PREFIX, no secret configured.
 */
import { createInterface } from 'node:readline';
import { AccessControl } from '../../producers/api/access-control';
import { RedisClient } from '../../shared/redis/redis-client';
import { waitUntilReady } from '../../shared/redis/connection';

async function main(): Promise<void> {
  const redis = new RedisClient({ url: process.env.REDIS_URL! });
  await waitUntilReady(redis.connection, 10_000);
  const key = process.env.KEY!;
  const access = new AccessControl({ apiKeys: [key], redis, prefix: process.env.PREFIX! });
  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => lines.once('line', () => resolve()));
  lines.close();
  const tenantId = await access.tenantIdOf(key);
  process.stdout.write(JSON.stringify({ tenantId }) + '\n');
  await redis.close();
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exit(1);
});
