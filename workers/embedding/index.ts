export {
  EmbeddingBatcher,
  shareTokens,
  type EmbeddingBatcherOptions,
  type EmbeddingBatchOptions,
  type EmbeddingBatchStats,
} from './embedding-batcher.js';
