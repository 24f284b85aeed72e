import { createHash } from 'node:crypto';
import { withLatestTag } from '../../../shared/model-name.js';

/** What a simulated model can do: produce text, or only embeddings (Ollama refuses generate for those). */
export type SimModelKind = 'completion' | 'embedding';

/** A model the simulator knows, with the metadata /api/tags and /api/ps report. */
export interface SimModel {
  /** Full name with tag, e.g. "qwen2.5:7b", "nomic-embed-text:latest". */
  name: string;
  kind: SimModelKind;
  /** Size of the weights in bytes; drives the simulated load time and /api/ps size and size_vram. */
  sizeBytes: number;
  family: string;
  /** e.g. "7.6B" */
  parameterSize: string;
  /** e.g. "Q4_K_M" */
  quantization: string;
  /** 64 hex digits: sha256 of the name, so it is stable and unique without pretending to be a real blob. */
  digest: string;
  /**
   * Length of the vectors /api/embed returns: the embedding size for embedding models, the hidden size
   * for completion models (what Ollama returns when you embed with an LLM).
   */
  embeddingDims: number;
  /** The model's maximum context, in tokens. */
  contextLength: number;
  /** ISO 8601 time stamp /api/tags reports. */
  modifiedAt: string;
}

/** A catalog entry as callers write it: digest, kind and modifiedAt may be left out. */
export type SimModelSpec = Omit<SimModel, 'digest' | 'kind' | 'modifiedAt'> &
  Partial<Pick<SimModel, 'digest' | 'kind' | 'modifiedAt'>>;

const DEFAULT_MODIFIED_AT = '2025-01-15T10:00:00.000Z';

/** Ollama treats a name without a tag as ":latest". */
export function normalizeModelName(name: string): string {
  return withLatestTag(name);
}

/** sha256 of the name, as 64 hex digits. */
export function digestOf(name: string): string {
  return createHash('sha256').update(name).digest('hex');
}

/** Fills in what a spec leaves out. */
export function toSimModel(spec: SimModelSpec): SimModel {
  const name = normalizeModelName(spec.name);
  return {
    ...spec,
    name,
    kind: spec.kind ?? 'completion',
    digest: spec.digest ?? digestOf(name),
    modifiedAt: spec.modifiedAt ?? DEFAULT_MODIFIED_AT,
  };
}

/*
 * Sizes, quantizations and parameter counts are those the Ollama library publishes for the default tags;
 * embeddingDims of completion models are the models' hidden sizes.
 */
const SPECS: readonly SimModelSpec[] = [
  {
    name: 'qwen2.5:0.5b',
    sizeBytes: 397_821_319,
    family: 'qwen2',
    parameterSize: '494.03M',
    quantization: 'Q4_K_M',
    embeddingDims: 896,
    contextLength: 32_768,
  },
  {
    name: 'qwen2.5:7b',
    sizeBytes: 4_683_087_332,
    family: 'qwen2',
    parameterSize: '7.6B',
    quantization: 'Q4_K_M',
    embeddingDims: 3584,
    contextLength: 32_768,
  },
  {
    name: 'qwen2.5:14b',
    sizeBytes: 8_988_124_069,
    family: 'qwen2',
    parameterSize: '14.8B',
    quantization: 'Q4_K_M',
    embeddingDims: 5120,
    contextLength: 32_768,
  },
  {
    name: 'llama3.2:3b',
    sizeBytes: 2_019_393_189,
    family: 'llama',
    parameterSize: '3.2B',
    quantization: 'Q4_K_M',
    embeddingDims: 3072,
    contextLength: 131_072,
  },
  {
    name: 'llama3.1:8b',
    sizeBytes: 4_920_753_328,
    family: 'llama',
    parameterSize: '8.0B',
    quantization: 'Q4_K_M',
    embeddingDims: 4096,
    contextLength: 131_072,
  },
  {
    name: 'mistral:7b',
    sizeBytes: 4_113_301_824,
    family: 'llama',
    parameterSize: '7.2B',
    quantization: 'Q4_0',
    embeddingDims: 4096,
    contextLength: 32_768,
  },
  {
    name: 'gemma2:9b',
    sizeBytes: 5_443_152_417,
    family: 'gemma2',
    parameterSize: '9.2B',
    quantization: 'Q4_0',
    embeddingDims: 3584,
    contextLength: 8192,
  },
  {
    name: 'phi3:mini',
    sizeBytes: 2_176_178_913,
    family: 'phi3',
    parameterSize: '3.8B',
    quantization: 'Q4_0',
    embeddingDims: 3072,
    contextLength: 131_072,
  },
  {
    name: 'nomic-embed-text:latest',
    kind: 'embedding',
    sizeBytes: 274_302_450,
    family: 'nomic-bert',
    parameterSize: '137M',
    quantization: 'F16',
    embeddingDims: 768,
    contextLength: 2048,
  },
  {
    name: 'all-minilm:latest',
    kind: 'embedding',
    sizeBytes: 45_960_996,
    family: 'bert',
    parameterSize: '23M',
    quantization: 'F16',
    embeddingDims: 384,
    contextLength: 512,
  },
];

/** The models the simulator knows by default. */
export const DEFAULT_CATALOG: readonly SimModel[] = SPECS.map(toSimModel);

/**
 * What the bare names resolve to in the Ollama library ("llama3.2" is "llama3.2:latest", the 3b tag), so
 * requests written the short way find a catalog model. /api/ps then shows the full tag.
 */
export const DEFAULT_ALIASES: Readonly<Record<string, string>> = {
  'qwen2.5:latest': 'qwen2.5:7b',
  'llama3.2:latest': 'llama3.2:3b',
  'llama3.1:latest': 'llama3.1:8b',
  'mistral:latest': 'mistral:7b',
  'gemma2:latest': 'gemma2:9b',
  'phi3:latest': 'phi3:mini',
};

/** The entry an unknown model gets when the simulator runs with allowAnyModel: a 4 GB 7B-class LLM. */
export function unknownModelEntry(name: string): SimModel {
  return toSimModel({
    name,
    sizeBytes: 4_000_000_000,
    family: 'llama',
    parameterSize: '7B',
    quantization: 'Q4_K_M',
    embeddingDims: 4096,
    contextLength: 8192,
  });
}

/** The default catalog with `extra` entries added, an extra entry replacing a default one of the same name. */
export function buildCatalog(extra: readonly SimModelSpec[] = []): Map<string, SimModel> {
  const catalog = new Map<string, SimModel>();
  for (const model of DEFAULT_CATALOG) catalog.set(model.name, model);
  for (const spec of extra) {
    const model = toSimModel(spec);
    catalog.set(model.name, model);
  }
  return catalog;
}
