import { randomBytes } from 'node:crypto';
import { isClusterUrl, scanEveryMaster, unlinkFound, type RedisConnection } from '../../shared/redis/cluster';
import { closeRedis, createRedisConnection, waitUntilReady } from '../../shared/redis/connection';
import { RedisClient } from '../../shared/redis/redis-client';

/** The Redis the test run uses (REDIS_URL, or the private server started by the global setup). */
export function testRedisUrl(): string {
  const url = process.env.CELL0_TEST_REDIS_URL;
  if (!url) throw new Error('CELL0_TEST_REDIS_URL is not set: run the tests through jest (global setup)');
  return url;
}

/** A queue prefix no other test uses: its own {hash tag}. */
export function uniquePrefix(label = 't'): string {
  return `{${label}-${randomBytes(5).toString('hex')}}`;
}

/** True when the run's Redis is a Redis Cluster (`npm run test:cluster`). */
export function onCluster(): boolean {
  return isClusterUrl(testRedisUrl());
}

/**
 * A connection to the run's Redis (one Redis, or a Cluster) from cell0's connection factory, with the
 * waiting options of a worker connection. Close it with closeRedis.
 */
export function testRedisConnection(connectionName = 'test'): RedisConnection {
  return createRedisConnection({ url: testRedisUrl(), role: 'worker', connectionName });
}

/** Every key matching `pattern`, sorted, from every master of a cluster (or the one Redis). */
export async function keysMatching(conn: RedisConnection, pattern: string): Promise<string[]> {
  const found: string[] = [];
  await scanEveryMaster(conn, pattern, 1000, (keys) => found.push(...keys));
  return found.sort();
}

/** Deletes every key matching `pattern` (keys of any slots); resolves with how many went. */
export async function deleteMatching(conn: RedisConnection, pattern: string): Promise<number> {
  let n = 0;
  await scanEveryMaster(
    conn,
    pattern,
    1000,
    async (keys, node) => (n += await unlinkFound(conn, node, keys)),
  );
  return n;
}

/** A raw connection (for the tests' own reads) and a ready RedisClient, both on the run's Redis. */
export async function openTestClients(): Promise<{ raw: RedisConnection; client: RedisClient }> {
  const raw = testRedisConnection('test:raw');
  const client = new RedisClient({ url: testRedisUrl() });
  await waitUntilReady(client.connection, 10_000);
  return { raw, client };
}

/** Deletes the keys matching `pattern`, then closes what {@link openTestClients} opened. */
export async function closeTestClients(
  c: { raw: RedisConnection; client: RedisClient },
  pattern: string,
): Promise<void> {
  await deleteMatching(c.raw, pattern);
  await c.client.close();
  await closeRedis(c.raw);
}
