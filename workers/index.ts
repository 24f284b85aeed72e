export { Cell0Worker, type Cell0WorkerOptions, type Cell0WorkerEvents } from './cell0-worker.js';
export { bindWorkerMetrics } from './worker-metrics.js';
export { Cell0Metrics, type Cell0MetricsOptions } from '../shared/metrics/metrics.js';
export * from './providers/index.js';
export * from '../shared/resources/index.js';
export {
  getFleetUsage,
  summarizeFleet,
  workerPressure,
  type FleetSummary,
  type WorkerPressure,
  type WorkerUsage,
} from '../shared/fleet/worker-status.js';
export {
  summarizeBackendHealth,
  unavailableBackend,
  type BackendHealth,
  type BackendHealthReport,
  type BackendUnavailable,
  type FleetBackendHealth,
} from '../shared/fleet/backend-health.js';
export { type AdmissionLimiter } from './worker/options.js';
export * from '../shared/errors.js';
export { ENV, loadConfig, loadEnvFile, redactUrl, type Config } from '../shared/config/index.js';
export { createLogger, silentLogger, type CreateLoggerOptions, type Logger } from '../shared/logger.js';
