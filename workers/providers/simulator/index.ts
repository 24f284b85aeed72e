export { OllamaSimulator, SIMULATOR_VERSION, type OllamaSimulatorOptions } from './ollama-simulator.js';
export { type SimulatorStats } from './simulator-stats.js';
export { type EmbedCallStats } from './embed-cost.js';
export { FAULT_ENDPOINTS, validateSimFaults, type SimFaults } from './faults.js';
export {
  DEFAULT_CATALOG,
  buildCatalog,
  normalizeModelName,
  unknownModelEntry,
  type SimModel,
  type SimModelKind,
  type SimModelSpec,
} from './catalog.js';
export {
  MAX_NATURAL_TOKENS,
  MIN_NATURAL_TOKENS,
  planText,
  simulatedEmbedding,
  simulatedMarker,
  simulatedTokens,
  type PlannedText,
  type TextSeed,
} from './text.js';
export { keepAliveMs, parseGoDuration } from './keep-alive.js';
