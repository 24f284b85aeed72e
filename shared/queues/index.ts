export { SearchProvider, SearchType } from './enums.js';
export { QueueName, QUEUE_NAMES, JobName, isQueueName } from './names.js';
export { shardOf, shardPrefix, shardKey, MAX_QUEUE_SHARDS } from './shards.js';
export {
  inferenceRequestSchema,
  searchRequestSchema,
  inferenceParamsSchema,
  chatMessageSchema,
  parseInferenceRequest,
  parseSearchRequest,
  promptBytes,
  toFieldIssues,
  INFERENCE_PARAM_DEFAULTS,
  type InferenceRequest,
  type InferenceJobData,
  type InferenceParams,
  type ChatMessage,
  type SearchRequest,
  type SearchJobData,
  type InputLimits,
} from './schemas.js';
export { canonicalJson, jobIdFor, isJobId } from './job-id.js';
export { DEFAULT_JOB_POLICY, jobOptionsFor, type JobPolicy } from './job-policy.js';
export { encodeFailure, decodeFailure } from './failure.js';
export { readJobOutcome, defineJobOutcome, type JobOutcome } from './job-outcome.js';
export type { InferenceResult, SearchHit, SearchResult } from './results.js';
export {
  parseEmbeddingsRequest,
  embeddingJobData,
  vectorToBase64,
  DEFAULT_MAX_EMBEDDING_INPUTS,
  type EmbeddingsRequest,
  type EmbeddingsRequestData,
  type EmbeddingJobData,
  type EmbeddingResult,
  type EmbeddingLimits,
} from './embeddings.js';
