export { Cell0Worker, type Cell0WorkerOptions, type Cell0WorkerEvents } from './cell0-worker.js';
export * from './providers/index.js';
export * from '../shared/resources/index.js';
export {
  getFleetUsage,
  summarizeFleet,
  type FleetSummary,
  type WorkerUsage,
} from '../shared/fleet/worker-status.js';
export { type AdmissionLimiter } from './cell0-worker.js';
export * from '../shared/errors.js';
export { ENV, loadConfig, loadEnvFile, redactUrl, type Config } from '../shared/config/index.js';
export { createLogger, silentLogger, type CreateLoggerOptions, type Logger } from '../shared/logger.js';
