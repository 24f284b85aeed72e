import { withLatestTag } from '../../shared/model-name.js';
import { type ModelDriver } from '../../shared/resources/types.js';
import { type InferenceBackend } from './provider.js';

/** How long a management call (load, unload, list) may take when the caller gives no signal, ms. */
const MANAGEMENT_TIMEOUT_MS = 120_000;

/**
 * The model memory manager's view of a backend that can load and unload models (Ollama: load = a request
 * with only `model`, unload = `keep_alive: 0`, listLoaded = /api/ps, sizes from /api/tags). Undefined for a
 * backend that cannot (an OpenAI-compatible server manages its own memory).
 */
export function modelDriverFor(backend: InferenceBackend): ModelDriver | undefined {
  const load = backend.load?.bind(backend);
  const unload = backend.unload?.bind(backend);
  if (!load || !unload) return undefined;
  const listLoaded = backend.listLoaded?.bind(backend);
  const modelSizes = backend.modelSizes?.bind(backend);
  const ctx = (signal?: AbortSignal) => ({ signal: signal ?? AbortSignal.timeout(MANAGEMENT_TIMEOUT_MS) });
  // Sizes rarely change: read the tag list once per minute at most.
  let sizes: { at: number; value: Record<string, number> } | undefined;
  return {
    load: (name, signal) => load(name, ctx(signal)),
    unload: (name, signal) => unload(name, ctx(signal)),
    ...(listLoaded
      ? {
          listLoaded: async (signal?: AbortSignal) =>
            (await listLoaded(ctx(signal))).map((m) => ({
              name: m.name,
              ...(m.sizeBytes !== undefined ? { sizeBytes: m.sizeBytes } : {}),
            })),
        }
      : {}),
    ...(modelSizes
      ? {
          sizeOf: async (name: string, signal?: AbortSignal) => {
            if (!sizes || Date.now() - sizes.at > 60_000)
              sizes = { at: Date.now(), value: await modelSizes(ctx(signal)) };
            return sizes.value[name] ?? sizes.value[withLatestTag(name)];
          },
        }
      : {}),
  };
}
