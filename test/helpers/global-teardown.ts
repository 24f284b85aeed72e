import type { PrivateRedis } from './redis-server';

export default async function globalTeardown(): Promise<void> {
  const redis = (globalThis as { __cell0Redis?: PrivateRedis }).__cell0Redis;
  if (redis) await redis.destroy();
}
