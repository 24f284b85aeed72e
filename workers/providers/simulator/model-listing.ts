import { type SimModel } from './catalog.js';
import { type ResidentModels } from './resident-models.js';

/** What "forever" (negative keep_alive) shows as in /api/ps: Go's max time.Duration, as Ollama shows it. */
const FOREVER_MS = 9_223_372_036_854;

/** The `details` object of a model in /api/ps and /api/tags. */
function details(model: SimModel): Record<string, unknown> {
  return {
    parent_model: '',
    format: 'gguf',
    family: model.family,
    families: [model.family],
    parameter_size: model.parameterSize,
    quantization_level: model.quantization,
  };
}

/** GET /api/ps: the resident models, with when each expires. */
export function runningModels(residency: ResidentModels): Array<Record<string, unknown>> {
  const now = residency.now();
  return residency.list().map((r) => ({
    name: r.model.name,
    model: r.model.name,
    size: r.model.sizeBytes,
    digest: r.model.digest,
    details: details(r.model),
    expires_at: new Date(Number.isFinite(r.expiresAt) ? r.expiresAt : now + FOREVER_MS).toISOString(),
    size_vram: r.model.sizeBytes,
    context_length: r.contextLength,
  }));
}

/** GET /api/tags: the catalog. */
export function localModels(catalog: Map<string, SimModel>): Array<Record<string, unknown>> {
  return [...catalog.values()].map((m) => ({
    name: m.name,
    model: m.name,
    modified_at: m.modifiedAt,
    size: m.sizeBytes,
    digest: m.digest,
    details: details(m),
  }));
}
