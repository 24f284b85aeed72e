import { randomBytes } from 'node:crypto';
import { isClusterUrl, scanEveryMaster, unlinkFound, type RedisConnection } from '../../shared/redis/cluster';
import { createRedisConnection } from '../../shared/redis/connection';

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
