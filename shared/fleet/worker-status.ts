import { ReplyError } from 'ioredis';
import { isCluster, type RedisConnection } from '../redis/cluster.js';
import { masterFor } from '../redis/key-slot.js';

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
  /** How often the worker publishes its status, ms: a record older than about one interval is a dead worker's. */
  heartbeatMs?: number;
  /** Lifetime of the record in Redis, ms (set by publishWorkerStatus): with its PTTL it gives the record's age. */
  ttlMs?: number;
  /**
   * Redis CLIENT ID of the connection the worker publishes on: gone from CLIENT LIST = the worker is dead.
   * On a cluster, the id of its connection to the master that holds the registry's slot (`clientNode`).
   */
  clientId?: number;
  /** On a cluster: the master ("host:port") whose connection `clientId` names. Absent on one Redis. */
  clientNode?: string;
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
  redis: RedisConnection,
  prefix: string,
  status: WorkerStatus,
  ttlMs: number,
): Promise<void> {
  const keys = fleetKeys(prefix);
  await redis
    .multi()
    .set(keys.worker(status.id), JSON.stringify({ ...status, ttlMs }), 'PX', ttlMs)
    .zadd(keys.index, Date.now(), status.id)
    .pexpire(keys.index, ttlMs * 4)
    .exec();
}

/** Removes a worker from the registry (on close). */
export async function removeWorkerStatus(redis: RedisConnection, prefix: string, id: string): Promise<void> {
  const keys = fleetKeys(prefix);
  await redis.multi().del(keys.worker(id)).zrem(keys.index, id).exec();
}

/**
 * How long after its last heartbeat a worker still counts when its connection cannot be checked: one
 * interval and a grace for a late timer (half an interval, at least 1 s).
 */
export function staleAfterMs(heartbeatMs: number): number {
  return heartbeatMs + Math.max(1000, heartbeatMs / 2);
}

/** Connections on which CLIENT LIST ID was refused (Redis < 6.2, managed Redis): only record ages count there. */
const noClientList = new WeakSet<RedisConnection>();

/**
 * The connected ones among these CLIENT IDs, and the node they were checked on (its address on a cluster,
 * undefined on one Redis); undefined when the server cannot say (CLIENT LIST refused: remembered for this
 * connection) or did not answer. Client ids are per node: on a cluster the list is asked of the master that
 * holds the registry's slot (`key`), where the workers read theirs.
 */
async function connectedClients(
  redis: RedisConnection,
  key: string,
  ids: number[],
): Promise<{ ids: Set<number>; node: string | undefined } | undefined> {
  if (ids.length === 0 || noClientList.has(redis)) return undefined;
  const master = isCluster(redis) ? masterFor(redis, key) : undefined;
  if (isCluster(redis) && !master) return undefined;
  try {
    const list = (await (master?.node ?? redis).call('CLIENT', 'LIST', 'ID', ...ids.map(String))) as string;
    return {
      ids: new Set([...list.matchAll(/(?:^|\s)id=(\d+)/g)].map((m) => Number(m[1]))),
      node: master?.address,
    };
  } catch (err) {
    if (err instanceof ReplyError) noClientList.add(redis);
    return undefined;
  }
}

/**
 * The live workers, newest first. A worker counts while its status has not expired and, when it says which
 * Redis connection it publishes on, that connection is still open (CLIENT LIST ID; on a cluster, asked of
 * the master holding the registry's slot, the node the worker's id is of): a worker killed with SIGKILL
 * drops out as soon as Redis sees its connection close, not when its status expires. Where the
 * connection cannot be checked (CLIENT LIST refused, or a status without `clientId`), a status older than
 * staleAfterMs(heartbeat) — measured on Redis's clock from the key's PTTL, so host clocks do not matter — is
 * a dead worker's. Index entries of expired statuses are dropped as they are found.
 */
export async function readWorkerStatuses(redis: RedisConnection, prefix: string): Promise<WorkerStatus[]> {
  const keys = fleetKeys(prefix);
  const ids = await redis.zrevrange(keys.index, 0, 999);
  if (ids.length === 0) return [];
  const pipe = redis.pipeline();
  for (const id of ids) pipe.get(keys.worker(id)).pttl(keys.worker(id));
  const replies = (await pipe.exec()) ?? [];
  const gone: string[] = [];
  const found: { status: WorkerStatus; pttl: number }[] = [];
  ids.forEach((id, i) => {
    const [getErr, value] = replies[2 * i] ?? [];
    const [, pttl] = replies[2 * i + 1] ?? [];
    if (getErr) throw getErr;
    if (value === null || value === undefined) {
      gone.push(id);
      return;
    }
    try {
      found.push({ status: JSON.parse(value as string) as WorkerStatus, pttl: Number(pttl) });
    } catch {
      // A value that is not JSON was not written by cell0; skip it.
    }
  });
  if (gone.length > 0) await redis.zrem(keys.index, ...gone);
  const clientIds = found.map((f) => f.status.clientId).filter((c): c is number => Number.isInteger(c));
  const connected = await connectedClients(redis, keys.index, clientIds);
  return found
    .filter(({ status: w, pttl }) => {
      // An id read on another node (the registry's slot has moved since) says nothing here: age decides.
      if (connected && Number.isInteger(w.clientId) && w.clientNode === connected.node)
        return connected.ids.has(w.clientId!);
      if (!(typeof w.heartbeatMs === 'number' && w.heartbeatMs > 0 && typeof w.ttlMs === 'number'))
        return true;
      // PTTL -1/-2 (no TTL, just expired): nothing to measure; the next read settles it.
      return pttl < 0 || w.ttlMs - pttl <= staleAfterMs(w.heartbeatMs);
    })
    .map((f) => f.status);
}

/** How resource pressure weighs on a worker, from its published status. */
export type WorkerPressure = 'none' | 'saturated' | 'paused';

/**
 * `paused`: it takes no jobs because of memory, disk, heap or event-loop pressure (or says so without
 * saying why: a status from before CPU was told apart). `saturated`: its CPU is over its limit, alone; it
 * keeps taking jobs. `none` otherwise.
 */
export function workerPressure(w: WorkerStatus): WorkerPressure {
  const p = w.pressure as { underPressure?: unknown; violations?: unknown; saturated?: unknown } | undefined;
  const violations = Array.isArray(p?.violations)
    ? (p.violations as { resource?: unknown }[]).map((v) => v?.resource)
    : [];
  const cpuOnly = violations.length > 0 && violations.every((r) => r === 'cpu');
  if (w.state === 'paused') return cpuOnly ? 'saturated' : 'paused';
  if (p?.saturated === true || (p?.underPressure === true && violations.includes('cpu'))) return 'saturated';
  return 'none';
}

/** The fleet at a glance, as `GET /v1/fleet` shows it under `summary`. */
export interface FleetSummary {
  workers: number;
  running: number;
  /** Paused by resource pressure. */
  paused: number;
  /** Taking jobs with their CPU over its limit (see workerPressure). */
  saturated: number;
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
    saturated: workers.filter((w) => workerPressure(w) === 'saturated').length,
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
export async function getFleetUsage(redis: RedisConnection, prefix: string): Promise<WorkerUsage[]> {
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
