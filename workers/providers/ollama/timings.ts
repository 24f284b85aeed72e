import { type GenerationStats } from './types.js';

/** Ollama's final-chunk timings converted to milliseconds; undefined where Ollama sent nothing. */
export interface OllamaTimings {
  loadMs: number | undefined;
  promptEvalMs: number | undefined;
  evalMs: number | undefined;
  totalMs: number | undefined;
  promptTokens: number | undefined;
  completionTokens: number | undefined;
  /** Generation speed: eval_count / eval_duration; undefined when either is missing or the duration is 0. */
  tokensPerSec: number | undefined;
}

const NS_PER_MS = 1e6;

function nsToMs(ns: number | undefined): number | undefined {
  return typeof ns === 'number' && Number.isFinite(ns) ? ns / NS_PER_MS : undefined;
}

/** Reads the nanosecond fields of a final chunk (generate or chat) as milliseconds and a token rate. */
export function timingsFromOllama(final: GenerationStats): OllamaTimings {
  const evalCount = final.eval_count;
  const evalNs = final.eval_duration;
  return {
    loadMs: nsToMs(final.load_duration),
    promptEvalMs: nsToMs(final.prompt_eval_duration),
    evalMs: nsToMs(evalNs),
    totalMs: nsToMs(final.total_duration),
    promptTokens: final.prompt_eval_count,
    completionTokens: evalCount,
    tokensPerSec:
      typeof evalCount === 'number' && typeof evalNs === 'number' && evalNs > 0
        ? (evalCount / evalNs) * 1e9
        : undefined,
  };
}
