import { type Config } from '../shared/config/config.js';
import { FunctionEmbedder, type Embedder } from '../shared/cache/semantic/index.js';
import { OllamaClient } from '../workers/providers/ollama/ollama-client.js';
import { OpenAIClient } from '../workers/providers/openai/openai-client.js';
import { DEFAULT_OLLAMA_URL } from '../workers/providers/from-config.js';

/**
 * The semantic cache's embedder as CELL0_SEMANTIC_EMBEDDER names it: undefined for the built-in hashed
 * embedder, else one backed by the Ollama (`ollama:<model>`) or OpenAI-compatible (`openai:<model>`)
 * embeddings endpoint. Producers and workers build the same one, so their vectors agree.
 */
export function semanticEmbedder(config: Config): Embedder | undefined {
  const spec = config.cache.semanticEmbedder;
  if (spec === 'hashed') return undefined;
  const colon = spec.indexOf(':');
  const kind = spec.slice(0, colon);
  const model = spec.slice(colon + 1);
  const dims = config.cache.semanticEmbedDims!;
  const timeoutMs = 10_000;
  if (kind === 'ollama') {
    const client = new OllamaClient({ baseUrl: config.providers.ollamaUrl ?? DEFAULT_OLLAMA_URL, timeoutMs });
    return new FunctionEmbedder({
      name: `ollama/${model}`,
      dims,
      fn: async (texts, signal) => (await client.embed({ model, input: texts }, signal)).embeddings,
    });
  }
  if (config.providers.openaiUrl === undefined)
    throw new TypeError('CELL0_SEMANTIC_EMBEDDER=openai:<model> needs CELL0_OPENAI_URL');
  const client = new OpenAIClient({
    baseUrl: config.providers.openaiUrl,
    ...(config.providers.openaiApiKey !== undefined ? { apiKey: config.providers.openaiApiKey } : {}),
    timeoutMs,
  });
  return new FunctionEmbedder({
    name: `openai/${model}`,
    dims,
    fn: async (texts, signal) =>
      (await client.embeddings({ model, input: texts }, signal ? { signal } : {})).data
        .sort((a, b) => a.index - b.index)
        .map((d) => d.embedding),
  });
}
