import { startPrivateRedis } from './redis-server';
import { clusterUrl } from '../../shared/redis/cluster';

/**
 * Uses REDIS_CLUSTER_NODES (a Redis Cluster: `npm run test:cluster`) or REDIS_URL when set; else starts a
 * private redis-server for the whole run. Tests read the URL from CELL0_TEST_REDIS_URL (set here, inherited
 * by the jest workers); on a cluster it is a redis-cluster:// URL, which cell0's config and connection
 * factory take like any Redis URL.
 */
export default async function globalSetup(): Promise<void> {
  if (process.env.REDIS_CLUSTER_NODES) {
    process.env.CELL0_TEST_REDIS_URL = clusterUrl(process.env.REDIS_CLUSTER_NODES);
    return;
  }
  if (process.env.REDIS_URL) {
    process.env.CELL0_TEST_REDIS_URL = process.env.REDIS_URL;
    return;
  }
  const redis = await startPrivateRedis();
  process.env.CELL0_TEST_REDIS_URL = redis.url;
  (globalThis as { __cell0Redis?: typeof redis }).__cell0Redis = redis;
}
