export { type InferenceBackend, type SearchBackend, type CallContext } from './provider.js';
export { NoopInferenceBackend } from './noop-provider.js';
export { OllamaBackend } from './ollama-backend.js';
export * from './ollama/index.js';
export { OllamaSimulator, type OllamaSimulatorOptions, type SimulatorStats } from './simulator/index.js';
export * from './local-search/index.js';
