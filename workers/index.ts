export { Cell0Worker, type Cell0WorkerOptions, type Cell0WorkerEvents } from './cell0-worker.js';
export * from './providers/index.js';
