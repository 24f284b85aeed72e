/*
 * Backend health as the fleet sees it. Each worker publishes, in its status (section `backendHealth`), the
 * state of its breaker per backend and which backend serves which model (its routes) or search provider.
 * Producers read it in the background with the rest of the fleet registry and answer at once when a
 * request's backend is down everywhere; `/readyz?backends=1` shows it per backend.
 */
import { matchesPattern } from '../config/provider-routes.js';
import { type WorkerStatus } from './worker-status.js';

/** A breaker's state. */
export type BreakerStateName = 'closed' | 'open' | 'half-open';

/** The last failure that counted against a backend. */
export interface BackendError {
  /** The error's stable code (CELL0_PROVIDER_ERROR, …). */
  code: string;
  /** http, connection, timeout or protocol. */
  kind: string;
  /** The HTTP status the backend answered, for `http`. */
  status?: number;
  /** The system error under a connection failure (ECONNREFUSED, ECONNRESET, …), when known. */
  cause?: string;
  /** ISO 8601. */
  at: string;
}

/** One backend's breaker as one worker sees it. */
export interface BackendHealth {
  /** The guard's name: kind@origin (with #tag for a per-key bucket), e.g. "ollama@http://127.0.0.1:11434". */
  name: string;
  state: BreakerStateName;
  /** When the breaker entered this state (ISO 8601). */
  since: string;
  /** While open: ms until it lets a trial call through; 0 otherwise. */
  retryAfterMs: number;
  lastError?: BackendError;
  /** Calls in flight allowed to this backend from this worker now (adaptive or pinned), in flight, waiting. */
  concurrency?: { mode: 'adaptive' | 'fixed'; limit: number; max: number; inFlight: number; waiting: number };
}

/** What a worker publishes about its backends: status section `backendHealth`. */
export interface BackendHealthReport {
  backends: BackendHealth[];
  /** Inference routes in order (first match wins): model pattern → backend name; null = in-process. */
  inference?: { pattern: string; backend: string | null }[];
  /** Search provider → backend name; null = in-process (never down). */
  search?: Record<string, string | null>;
}

/** What a request needs a backend for. */
export type BackendTarget = { queue: 'inference'; model: string } | { queue: 'search'; provider: string };

/** A request's backend is down on every worker that could run it. */
export interface BackendUnavailable {
  /** The backends concerned (one per distinct route among the workers). */
  backends: string[];
  /** Earliest trial call among the workers' breakers, ms (at least 1000). */
  retryAfterMs: number;
  /** Workers that agree. */
  workers: number;
}

/** A status's backendHealth section, when it has a usable one. */
export function backendHealthOf(w: WorkerStatus): BackendHealthReport | undefined {
  const r = w.backendHealth as BackendHealthReport | undefined;
  return r && Array.isArray(r.backends) ? r : undefined;
}

/** The backend a worker would use for the target: a name, null (in-process), or undefined (it cannot serve it). */
function backendFor(r: BackendHealthReport, target: BackendTarget): string | null | undefined {
  if (target.queue === 'inference') {
    const route = (r.inference ?? []).find((x) => matchesPattern(x.pattern, target.model));
    return route === undefined ? undefined : route.backend;
  }
  const search = r.search ?? {};
  return Object.hasOwn(search, target.provider) ? (search[target.provider] ?? null) : undefined;
}

/**
 * Whether the target's backend is down on every live worker that could run it: each such worker's breaker
 * for its route's backend is open or half-open (half-open: one trial call is allowed, and until it
 * succeeds the backend is presumed down). Undefined — go the normal way — as soon as one worker's breaker
 * is closed, a worker runs the target in-process, a worker publishes no backend health (it cannot say), or
 * no worker could run the target at all (its job fails or waits as usual). Closing workers do not count.
 */
export function unavailableBackend(
  workers: readonly WorkerStatus[],
  target: BackendTarget,
): BackendUnavailable | undefined {
  const names = new Set<string>();
  let retryAfterMs = Infinity;
  let agreeing = 0;
  for (const w of workers) {
    if (w.state === 'closing' || !w.queues.includes(target.queue)) continue;
    const report = backendHealthOf(w);
    if (!report) return undefined;
    const name = backendFor(report, target);
    if (name === undefined) continue;
    if (name === null) return undefined;
    const b = report.backends.find((x) => x.name === name);
    if (!b || b.state === 'closed') return undefined;
    names.add(name);
    retryAfterMs = Math.min(retryAfterMs, b.state === 'open' ? b.retryAfterMs : 0);
    agreeing++;
  }
  if (agreeing === 0) return undefined;
  return { backends: [...names].sort(), retryAfterMs: Math.max(1000, retryAfterMs), workers: agreeing };
}

/** One backend across the fleet, as `/readyz?backends=1` shows it. */
export interface FleetBackendHealth {
  name: string;
  /** The workers' common state, or `mixed` when they disagree. */
  state: BreakerStateName | 'mixed';
  /** When the latest worker entered its current state (ISO 8601): the common state holds since then. */
  since: string;
  /** The most recent failure any worker saw. */
  lastError?: BackendError;
  /** Workers by breaker state. */
  workers: Partial<Record<BreakerStateName, number>>;
  /** Model patterns routed to it (inference), and search providers it serves. */
  models?: string[];
  providers?: string[];
}

/** Every backend the live workers report, with their breakers' states combined; sorted by name. */
export function summarizeBackendHealth(workers: readonly WorkerStatus[]): FleetBackendHealth[] {
  const byName = new Map<string, FleetBackendHealth>();
  for (const w of workers) {
    if (w.state === 'closing') continue;
    const report = backendHealthOf(w);
    if (!report) continue;
    for (const b of report.backends) {
      let f = byName.get(b.name);
      if (!f) {
        f = { name: b.name, state: b.state, since: b.since, workers: {} };
        byName.set(b.name, f);
      } else if (f.state !== b.state) f.state = 'mixed';
      if (b.since > f.since) f.since = b.since;
      if (b.lastError && (!f.lastError || b.lastError.at > f.lastError.at)) f.lastError = b.lastError;
      f.workers[b.state] = (f.workers[b.state] ?? 0) + 1;
    }
    for (const r of report.inference ?? [])
      if (r.backend !== null) addUnique(byName.get(r.backend), 'models', r.pattern);
    for (const [provider, backend] of Object.entries(report.search ?? {}))
      if (backend !== null) addUnique(byName.get(backend), 'providers', provider);
  }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function addUnique(f: FleetBackendHealth | undefined, key: 'models' | 'providers', value: string): void {
  if (!f) return;
  const list = (f[key] ??= []);
  if (!list.includes(value)) list.push(value);
}
