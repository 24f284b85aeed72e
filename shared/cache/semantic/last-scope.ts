import { type ScopeKeys, type SemanticScope } from './scope.js';

/** A scope's fields as they were when its keys were made: a copy, so a caller's later change is seen. */
interface Snapshot {
  model: string;
  system: string | undefined;
  tenant: string | undefined;
  /** The params' own keys and values (every value a primitive), or undefined for none. */
  params: Record<string, unknown> | undefined;
  paramCount: number;
}

/**
 * The keys of the scope met last, kept with a copy of its fields: a request's lookup and its store, and
 * most requests of a process, are in one scope, and telling a scope equal to the last one field by field
 * costs ~0.1 µs where its canonical JSON and the map lookup (scopeKeysOf) cost ~1–2 µs, twice per miss.
 * Only plain scopes are kept (no `context`, params whose values are all primitives): anything else goes
 * to scopeKeysOf every time, and so does a scope that differs in any field. A field left out and one set to
 * undefined are the same scope, as in the canonical form.
 */
export class LastScope {
  private last: Snapshot | undefined;
  private keys: ScopeKeys | undefined;

  /** The keys kept for `scope` when it is the plain scope met last, else undefined. */
  get(scope: SemanticScope): ScopeKeys | undefined {
    const last = this.last;
    if (last === undefined || scope === null || typeof scope !== 'object') return undefined;
    if (scope.model !== last.model || scope.system !== last.system || scope.tenant !== last.tenant)
      return undefined;
    if (scope.context !== undefined && scope.context !== null) return undefined;
    const params = scope.params;
    if (params === undefined) return last.params === undefined ? this.keys : undefined;
    if (last.params === undefined || params === null || typeof params !== 'object') return undefined;
    let n = 0;
    for (const k in params) {
      if (!Object.prototype.hasOwnProperty.call(params, k)) continue;
      const v = params[k];
      if (v === undefined) continue;
      if (!Object.prototype.hasOwnProperty.call(last.params, k) || last.params[k] !== v) return undefined;
      n++;
    }
    return n === last.paramCount ? this.keys : undefined;
  }

  /** Keeps `keys` as those of `scope` (made by scopeKeysOf), when the scope is plain. */
  set(scope: SemanticScope, keys: ScopeKeys): void {
    this.last = undefined;
    if (scope.context !== undefined && scope.context !== null) return;
    if (typeof scope.model !== 'string') return;
    let params: Record<string, unknown> | undefined;
    let n = 0;
    if (scope.params !== undefined) {
      if (scope.params === null || typeof scope.params !== 'object') return;
      params = Object.create(null) as Record<string, unknown>;
      for (const k in scope.params) {
        if (!Object.prototype.hasOwnProperty.call(scope.params, k)) continue;
        const v = scope.params[k];
        if (v === undefined) continue;
        if (v !== null && (typeof v === 'object' || typeof v === 'function')) return;
        params[k] = v;
        n++;
      }
    }
    this.last = { model: scope.model, system: scope.system, tenant: scope.tenant, params, paramCount: n };
    this.keys = keys;
  }
}
