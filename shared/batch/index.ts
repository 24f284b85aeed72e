export {
  AsyncBatchProcessor,
  type AsyncBatchProcessorOptions,
  type BatchHandler,
  type BatchOutcome,
  type BatchStats,
} from './async-batch-processor.js';
