export { OllamaClient, type OllamaClientOptions } from './ollama-client.js';
export { timingsFromOllama, type OllamaTimings } from './timings.js';
export { parseRetryAfter } from '../../../shared/http/errors.js';
export type * from './types.js';
