import { type Redis } from 'ioredis';

/**
 * What each worker process publishes about itself every few seconds (a heartbeat with a TTL), so any
 * process can list the live fleet: `GET /v1/fleet`.
 */
export interface WorkerStatus {
  /** host:pid */
  id: string;
  host: string;
  pid: number;
  queues: string[];
  /** ISO 8601 */
  startedAt: string;
  /** ISO 8601: when this status was published. */
  updatedAt: string;
  /** Jobs running in the process now. */
  active: number;
  /**
   * running; paused while resource pressure keeps it from taking jobs (see `pressure`); closing once
   * shutdown has begun.
   */
  state: 'running' | 'paused' | 'closing';
  /** Extra sections (backends: pools, breakers, rate limits). */
  [section: string]: unknown;
}

/** Keys of the fleet registry under a queue prefix. */
export function fleetKeys(prefix: string): { index: string; worker: (id: string) => string } {
  return {
    index: `${prefix}:fleet:workers`,
    worker: (id: string) => `${prefix}:fleet:worker:${id}`,
  };
}

/** Writes one worker's status with a TTL and indexes it by time. */
export async function publishWorkerStatus(
  redis: Redis,
  prefix: string,
  status: WorkerStatus,
  ttlMs: number,
): Promise<void> {
  const keys = fleetKeys(prefix);
  await redis
    .multi()
    .set(keys.worker(status.id), JSON.stringify(status), 'PX', ttlMs)
    .zadd(keys.index, Date.now(), status.id)
    .pexpire(keys.index, ttlMs * 4)
    .exec();
}

/** Removes a worker from the registry (on close). */
export async function removeWorkerStatus(redis: Redis, prefix: string, id: string): Promise<void> {
  const keys = fleetKeys(prefix);
  await redis.multi().del(keys.worker(id)).zrem(keys.index, id).exec();
}

/**
 * The live workers: those whose status has not expired, newest first. Index entries of workers that
 * stopped without removing themselves are dropped as they are found.
 */
export async function readWorkerStatuses(redis: Redis, prefix: string): Promise<WorkerStatus[]> {
  const keys = fleetKeys(prefix);
  const ids = await redis.zrevrange(keys.index, 0, 999);
  if (ids.length === 0) return [];
  const values = await redis.mget(ids.map((id) => keys.worker(id)));
  const gone = ids.filter((_, i) => values[i] === null);
  if (gone.length > 0) await redis.zrem(keys.index, ...gone);
  const out: WorkerStatus[] = [];
  for (const v of values) {
    if (v === null) continue;
    try {
      out.push(JSON.parse(v) as WorkerStatus);
    } catch {
      // A value that is not JSON was not written by cell0; skip it.
    }
  }
  return out;
}

/** The fleet at a glance, as `GET /v1/fleet` shows it under `summary`. */
export interface FleetSummary {
  workers: number;
  running: number;
  /** Paused by resource pressure. */
  paused: number;
  closing: number;
  /** Jobs running across the fleet. */
  active: number;
  /** Where each model is resident (warm): model → worker ids. */
  warmModels: Record<string, string[]>;
}

/** Counts of the fleet by state, and where each model is warm (from the workers' `models` sections). */
export function summarizeFleet(workers: readonly WorkerStatus[]): FleetSummary {
  const warmModels: Record<string, string[]> = {};
  for (const w of workers) {
    for (const m of residentModelsOf(w)) (warmModels[m] ??= []).push(w.id);
  }
  return {
    workers: workers.length,
    running: workers.filter((w) => w.state === 'running').length,
    paused: workers.filter((w) => w.state === 'paused').length,
    closing: workers.filter((w) => w.state === 'closing').length,
    active: workers.reduce((n, w) => n + (typeof w.active === 'number' ? w.active : 0), 0),
    warmModels,
  };
}

/** One worker's latest resource usage, state and resident models (`getFleetUsage`). */
export interface WorkerUsage {
  id: string;
  state: WorkerStatus['state'];
  updatedAt: string;
  /** The latest sample (see ResourceSample), when the worker runs a resource monitor. */
  usage: unknown;
  residentModels: string[];
}

/** The latest usage of every live worker, readable from any process. */
export async function getFleetUsage(redis: Redis, prefix: string): Promise<WorkerUsage[]> {
  return (await readWorkerStatuses(redis, prefix)).map((w) => ({
    id: w.id,
    state: w.state,
    updatedAt: w.updatedAt,
    usage: (w.resources as { usage?: unknown } | undefined)?.usage,
    residentModels: residentModelsOf(w),
  }));
}

function residentModelsOf(w: WorkerStatus): string[] {
  const models = w.models as { managers?: { resident?: { modelId?: unknown }[] }[] } | undefined;
  const out: string[] = [];
  for (const m of models?.managers ?? [])
    for (const r of m.resident ?? []) if (typeof r.modelId === 'string') out.push(r.modelId);
  return out;
}
