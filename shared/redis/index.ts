export {
  createRedisConnection,
  waitUntilReady,
  closeRedis,
  reconnectDelay,
  type ConnectionRole,
  type RedisConnectionOptions,
} from './connection.js';
export {
  RedisClient,
  toRedisError,
  type RedisClientOptions,
  type RedisHealth,
  type RedisMetrics,
} from './redis-client.js';
