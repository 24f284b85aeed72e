export {
  CacheMatchConfidence,
  DEFAULT_THRESHOLDS,
  HASHED_NGRAM_THRESHOLDS,
  confidenceOf,
  type SemanticThresholds,
} from './confidence.js';
export {
  FunctionEmbedder,
  HashedNgramEmbedder,
  type Embedder,
  type FunctionEmbedderOptions,
  type HashedNgramEmbedderOptions,
} from './embedder.js';
export { guardRejects, analyzePrompt, compareAnalyses, type PromptAnalysis } from './guard.js';
export { LexicalEmbedder, type LexicalEmbedderOptions } from './lexical-embedder.js';
export { canonicalize, type AskClass, type CanonicalPrompt, type CanonicalWord } from './canonical.js';
export { LSH_BANDS, LSH_ROWS, LshHasher, lshCandidateProbability } from './lsh.js';
export { scopeHash, type SemanticScope } from './scope.js';
export { SemanticLocalState } from './local-state.js';
export {
  SemanticCache,
  type SemanticCacheOptions,
  type SemanticCacheStats,
  type SemanticHit,
} from './semantic-cache.js';
export { normalizePrompt } from './text.js';
export { withModelCache, type ModelCacheResult, type WithModelCacheOptions } from './with-model-cache.js';
export { batchedEmbed, type BatchedEmbedOptions, type EmbedFn } from './batched-embed.js';
