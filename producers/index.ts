export {
  Cell0Client,
  type Cell0ClientOptions,
  type CallOptions,
  type JobHandle,
  type JobResult,
} from './cell0-client.js';
export { JobSubmitter, type JobSubmitterOptions, type SubmitResult, type JobView } from './job-submitter.js';
export * from '../shared/queues/index.js';
export * from '../shared/errors.js';
export { createApi, type ApiOptions, type ErrorBody } from './api/create-api.js';
export { Cell0Metrics, type Cell0MetricsOptions } from '../shared/metrics/metrics.js';
export { LoadShedder, type LoadShedderOptions, type QueueLoad } from './load-shedder.js';
export { ENV, loadConfig, loadEnvFile, redactUrl, type Config } from '../shared/config/index.js';
export { createLogger, silentLogger, type CreateLoggerOptions, type Logger } from '../shared/logger.js';
export {
  RedisClient,
  type RedisClientOptions,
  type RedisHealth,
  type RedisMetrics,
} from '../shared/redis/redis-client.js';
