import { once } from 'node:events';
import { Cluster, type Redis, type RedisOptions } from 'ioredis';
import { guardClusterNodePool } from '../../shared/redis/cluster-node-pool';
import { isClusterUrl, parseClusterUrl } from '../../shared/redis/cluster';
import { testRedisUrl } from '../helpers/redis';

/** ioredis's cluster connection pool, as the guard sees it (private API of ioredis 5). */
interface Pool {
  findOrCreate(node: RedisOptions, readOnly?: boolean): Redis;
  reset(nodes: RedisOptions[]): void;
  getInstanceByKey(key: string): Redis | undefined;
}

/** A Redis of the run (one node of the cluster on `npm run test:cluster`): node connections PING it. */
function aRedis(): { host: string; port: number } {
  const url = testRedisUrl();
  if (isClusterUrl(url)) return parseClusterUrl(url).nodes[0]!;
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379) };
}

describe('cluster node pool: a node connection replaced while the old one closes stays the pool’s', () => {
  it('the old connection’s end leaves the new one in the pool, and dropping the node then ends it', async () => {
    const { host, port } = aRedis();
    // Never connects as a cluster: only its node pool is used (lazy node connections to one Redis).
    const cluster = new Cluster([{ host, port }], { lazyConnect: true });
    cluster.on('error', () => undefined);
    guardClusterNodePool(cluster);
    const pool = (cluster as unknown as { connectionPool: Pool }).connectionPool;
    const key = `${host}:${port}`;
    const old = pool.findOrCreate({ host, port });
    const created: Redis[] = [old];
    try {
      expect(await old.ping()).toBe('PONG');
      const oldEnd = once(old, 'end');
      // What Cluster#disconnect then #connect do (BullMQ's reconnect of a blocking cluster connection): the
      // pool drops the node (its socket closes later) and makes a new connection under the same key.
      pool.reset([]);
      const fresh = pool.findOrCreate({ host, port });
      created.push(fresh);
      expect(fresh === old).toBe(false);
      expect(await fresh.ping()).toBe('PONG');
      await oldEnd;
      // Before the fix the old connection's end took the new one out of the pool: an orphan, connected.
      expect(pool.getInstanceByKey(key) === fresh).toBe(true);
      expect(cluster.nodes('all').length).toBe(1);
      // And what Cluster#disconnect does to the pool of a connected cluster reaches it: it is closed.
      const freshEnd = once(fresh, 'end');
      pool.reset([]);
      await freshEnd;
      expect(fresh.status).toBe('end');
      expect(pool.getInstanceByKey(key)).toBeUndefined();
    } finally {
      for (const r of created) r.disconnect();
      cluster.disconnect();
    }
  });
});
