export {
  Cell0Metrics,
  LabelCache,
  HTTP_BUCKETS,
  JOB_BUCKETS,
  type Cell0MetricsOptions,
  type CacheResult,
  type CoalescedHow,
  type DeferReason,
} from './metrics.js';
export { httpMetrics, serveMetrics, type ServeMetricsOptions } from './http-metrics.js';
export { MetricsServer, type MetricsServerOptions } from './metrics-server.js';
export { queueMetricsText, type PrometheusQueue } from './queue-metrics.js';
