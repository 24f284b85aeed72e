import { z } from 'zod';
import { EvictionPolicy } from '../../resources/types.js';
import {
  parseModelBudget,
  parseModelPriorities,
  type ModelBudgetSetting,
  type ModelPriorityRule,
} from '../resource-settings.js';
import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { int, parsedList } from '../schemas.js';

/*
 * Model memory: which models stay resident in a worker's Ollama-compatible backend, and which go first.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const MODELS_ENV = {
  CELL0_MODEL_MEMORY_BUDGET: {
    section: 'models',
    default: 'auto',
    schema: parsedList(parseModelBudget),
    doc: "Memory for models resident in a worker's Ollama backend: a size (16GB, 12GiB), auto (half of the host's memory) or off (no model management)",
  },
  CELL0_EVICTION_POLICY: {
    section: 'models',
    default: 'LRU',
    schema: z
      .string()
      .trim()
      .toUpperCase()
      .pipe(z.enum(EvictionPolicy, 'expected LRU, LFU, FIFO, TTL or COST_BASED')),
    doc: 'Which resident model goes first when another must be loaded: LRU, LFU (decaying), FIFO, TTL or COST_BASED (GreedyDual-Size)',
  },
  CELL0_MODEL_PRIORITIES: {
    section: 'models',
    schema: parsedList(parseModelPriorities),
    doc: 'Model priorities and pins: pattern=priority or pattern=pin, e.g. nomic-embed-text*=pin,qwen2.5:7b=10 (lower priorities are evicted first; default 0)',
  },
  CELL0_MODEL_KEEP_ALIVE_MS: {
    section: 'models',
    default: '300000',
    schema: int(1000, 604_800_000),
    doc: 'Idle time after which a resident model may be unloaded (the TTL policy, and the periodic sweep), ms',
  },
} satisfies Record<string, EnvVar>;

/** The model-memory settings of Config.resources. */
export interface ModelsConfig {
  modelBudget: ModelBudgetSetting;
  evictionPolicy: EvictionPolicy;
  modelPriorities: ModelPriorityRule[];
  modelKeepAliveMs: number;
}

export function loadModels(p: ParsedEnv<typeof MODELS_ENV>): ModelsConfig {
  return {
    modelBudget: p.CELL0_MODEL_MEMORY_BUDGET,
    evictionPolicy: p.CELL0_EVICTION_POLICY,
    modelPriorities: p.CELL0_MODEL_PRIORITIES ?? [],
    modelKeepAliveMs: p.CELL0_MODEL_KEEP_ALIVE_MS,
  };
}
