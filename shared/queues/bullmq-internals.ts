/**
 * The BullMQ internals cell0 touches, in one place. Nothing else in cell0 reaches past BullMQ's public API;
 * test/integration/bullmq-internals.test.ts pins what this module relies on to the installed version and
 * fails on an upgrade that changes it.
 */
import { type Worker } from 'bullmq';
import { type RedisConnection } from '../redis/cluster.js';
import { queueKey } from './names.js';

/** The BullMQ version whose internals this module was written against (and its test checks). */
export const BULLMQ_INTERNALS_VERSION = '6.7.0';

/**
 * The private members read here, as BullMQ 6.7 has them (src/classes/worker.ts, lock-manager.ts):
 * `lockManager` renews the locks of active jobs on a self-re-arming timer until its close(); the stalled
 * checker sleeps between passes on a timer that `stalledCheckStopper` clears and wakes.
 */
export interface WorkerInternals {
  lockManager?: { close?(): Promise<void>; isRunning?(): boolean };
  stalledCheckStopper?: () => void;
}

/** The internals of `worker`, looked up without assuming they exist. */
export function workerInternals(worker: Worker): WorkerInternals {
  return worker as unknown as WorkerInternals;
}

/**
 * Stops a closing worker's lock extender and stalled checker. BullMQ's close() stops both only after its
 * fetch loop ends; when that loop is stuck on a connection that is being cut (Redis away, or just back),
 * their timers keep re-arming and hold the process open (the lock extender forever). Call it once close()
 * has begun, so that the woken stalled checker sees the worker closing and ends its loop. Each member is
 * looked up defensively: on a BullMQ without them this only loses the cleanup. Never throws.
 */
export async function stopLockExtenderAndStalledChecker(worker: Worker): Promise<void> {
  const internals = workerInternals(worker);
  internals.stalledCheckStopper?.();
  await internals.lockManager?.close?.().catch(() => undefined);
}

/**
 * Jobs waiting on a queue for a worker, in one LLEN of its `wait` list (BullMQ keeps waiting jobs there,
 * prioritized ones elsewhere): a cheaper read than Queue#getWaitingCount for a worker that has no Queue.
 */
export function waitingJobCount(conn: RedisConnection, prefix: string, queue: string): Promise<number> {
  return conn.llen(`${queueKey(prefix, queue)}:wait`);
}
