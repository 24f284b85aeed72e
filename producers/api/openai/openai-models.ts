import { backendHealthOf } from '../../../shared/fleet/backend-health.js';
import { type Cell0Client } from '../../cell0-client.js';

/**
 * The models the fleet can route, for GET /v1/models: those the live workers' backends list (each worker
 * publishes them in its status, section `backendModels`; the `models` section is the model memory
 * manager's), and every model route without a wildcard. Sorted.
 */
export async function fleetModels(client: Cell0Client): Promise<string[]> {
  const names = new Set<string>();
  for (const w of await client.fleet()) {
    for (const list of [w.backendModels, w.models])
      // `models` as a list: what workers published before the section was named `backendModels`.
      if (Array.isArray(list)) for (const m of list) if (typeof m === 'string') names.add(m);
    for (const route of backendHealthOf(w)?.inference ?? [])
      if (!route.pattern.includes('*')) names.add(route.pattern);
  }
  return [...names].sort();
}
