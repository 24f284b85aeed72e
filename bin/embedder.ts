import { type Config } from '../shared/config/config.js';
import {
  batchedEmbed,
  FunctionEmbedder,
  HashedNgramEmbedder,
  LexicalEmbedder,
  type Embedder,
} from '../shared/cache/semantic/index.js';
import { OllamaClient } from '../workers/providers/ollama/ollama-client.js';
import { OpenAIClient } from '../workers/providers/openai/openai-client.js';
import { DEFAULT_OLLAMA_URL } from '../workers/providers/from-config.js';

/** The built-in embedders: stateless and deterministic, so one of each serves every cache of the process. */
const builtIn: { lexical?: Embedder; hashed?: Embedder } = {};

/**
 * The semantic cache's embedder as CELL0_SEMANTIC_EMBEDDER names it (or `spec`, in the same syntax):
 * `lexical` (the default) and `hashed` are built in; `ollama:<model>` and `openai:<model>` call the
 * Ollama / OpenAI-compatible embeddings endpoint, with concurrent calls batched into one. Producers and workers build the same one, so their
 * vectors agree. `dims` overrides CELL0_SEMANTIC_EMBED_DIMS for a remote embedder. The built-in ones are
 * one object per process: a process that runs the API and a worker (`cell0 start`) gives both caches the
 * same embedder, so they share what a prompt's lookup computed (the store reuses it: PromptMemo.of).
 */
export function semanticEmbedder(config: Config, spec?: string, dims?: number): Embedder {
  const name = spec ?? config.cache.semanticEmbedder;
  if (name === 'lexical') return (builtIn.lexical ??= new LexicalEmbedder());
  if (name === 'hashed') return (builtIn.hashed ??= new HashedNgramEmbedder());
  const m = /^(ollama|openai):([A-Za-z0-9._:/@+-]+)$/.exec(name);
  if (!m)
    throw new TypeError(
      `unknown embedder "${name}": expected lexical, hashed, ollama:<model> or openai:<model>`,
    );
  const [, kind, model] = m as unknown as [string, 'ollama' | 'openai', string];
  const length = dims ?? config.cache.semanticEmbedDims;
  if (length === undefined)
    throw new TypeError(`the length of the vectors of ${name} is needed (CELL0_SEMANTIC_EMBED_DIMS)`);
  // Concurrent lookups and stores share provider calls (one /api/embed or /embeddings call for many texts).
  const fn = batchedEmbed(remoteEmbed(config, kind, model));
  return new FunctionEmbedder({ name: `${kind}/${model}`, dims: length, fn });
}

/** The raw call of a remote embedder: one vector per text. */
export function remoteEmbed(
  config: Config,
  kind: 'ollama' | 'openai',
  model: string,
): (texts: string[], signal?: AbortSignal) => Promise<number[][]> {
  const timeoutMs = 10_000;
  if (kind === 'ollama') {
    const client = new OllamaClient({ baseUrl: config.providers.ollamaUrl ?? DEFAULT_OLLAMA_URL, timeoutMs });
    return async (texts, signal) => (await client.embed({ model, input: texts }, signal)).embeddings;
  }
  if (config.providers.openaiUrl === undefined)
    throw new TypeError('CELL0_SEMANTIC_EMBEDDER=openai:<model> needs CELL0_OPENAI_URL');
  const client = new OpenAIClient({
    baseUrl: config.providers.openaiUrl,
    ...(config.providers.openaiApiKey !== undefined ? { apiKey: config.providers.openaiApiKey } : {}),
    timeoutMs,
  });
  return async (texts, signal) =>
    (await client.embeddings({ model, input: texts }, signal ? { signal } : {})).data
      .sort((a, b) => a.index - b.index)
      .map((d) => d.embedding);
}

/**
 * The embedder a command names (`spec`, else CELL0_SEMANTIC_EMBEDDER); for a remote one without a known
 * vector length (`dims`, CELL0_SEMANTIC_EMBED_DIMS) the model is asked for one vector to learn it.
 */
export async function resolveEmbedder(
  cfg: Config,
  spec: string | undefined,
  dims: number | undefined,
): Promise<Embedder> {
  const name = spec ?? cfg.cache.semanticEmbedder;
  const m = /^(ollama|openai):(.+)$/.exec(name);
  if (m && dims === undefined && cfg.cache.semanticEmbedDims === undefined) {
    // The vector length is whatever the model answers with: ask it once.
    const [probe] = await remoteEmbed(cfg, m[1] as 'ollama' | 'openai', m[2]!)(['calibration probe']);
    if (!Array.isArray(probe) || probe.length === 0)
      throw new Error(`${name} returned no vector for a probe`);
    dims = probe.length;
  }
  return semanticEmbedder(cfg, name, dims);
}
