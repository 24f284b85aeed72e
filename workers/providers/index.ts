export { type InferenceBackend, type SearchBackend, type CallContext } from './provider.js';
export { NoopInferenceBackend } from './noop-provider.js';
export { OllamaBackend } from './ollama-backend.js';
export * from './ollama/index.js';
export { OllamaSimulator, type OllamaSimulatorOptions, type SimulatorStats } from './simulator/index.js';
export * from './local-search/index.js';
export { OpenAIBackend, type OpenAIBackendOptions } from './openai-backend.js';
export {
  OpenAIClient,
  OPENAI_PROVIDER,
  openAIErrorInfo,
  openAIHttpError,
  type OpenAIClientOptions,
  type OpenAIErrorInfo,
} from './openai/index.js';
// The OpenAI wire types under a name of their own (Ollama's have the same names).
export type * as OpenAITypes from './openai/types.js';
export * from './searxng/index.js';
export * from './brave/index.js';
export { InferenceRouter, GuardedSearch, type InferenceRoute } from './routing.js';
export { MeteredInference, MeteredSearch } from './metered.js';
export {
  BackendGuard,
  countsAgainstBackend,
  type BackendGuardOptions,
  type BackendGuardMetrics,
  type BackendGuardEvents,
  type RetryPolicy,
} from './backend-guard.js';
export {
  buildProviders,
  effectiveRoutes,
  DEFAULT_OLLAMA_URL,
  type BuildProvidersOptions,
  type ProviderSet,
} from './from-config.js';
