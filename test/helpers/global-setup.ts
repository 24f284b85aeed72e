import { startPrivateRedis } from './redis-server';

/**
 * Uses REDIS_URL when set; else starts a private redis-server for the whole run. Tests read the URL from
 * CELL0_TEST_REDIS_URL (set here, inherited by the jest workers).
 */
export default async function globalSetup(): Promise<void> {
  if (process.env.REDIS_URL) {
    process.env.CELL0_TEST_REDIS_URL = process.env.REDIS_URL;
    return;
  }
  const redis = await startPrivateRedis();
  process.env.CELL0_TEST_REDIS_URL = redis.url;
  (globalThis as { __cell0Redis?: typeof redis }).__cell0Redis = redis;
}
