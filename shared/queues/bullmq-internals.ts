/**
 * The BullMQ internals cell0 touches, in one place. Nothing else in cell0 reaches past BullMQ's public API;
 * test/integration/bullmq-internals.test.ts pins what this module relies on to the installed version and
 * fails on an upgrade that changes it.
 */
import { raw2NextJobData, type Job, type Worker } from 'bullmq';
import { type RedisConnection } from '../redis/cluster.js';
import { shardKey } from './shards.js';

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
  /**
   * The fetch loop's queue of jobs (fetches and running jobs, as promises) while the loop runs, else null:
   * the loop fetches while `numTotal()` is below the concurrency, starts each job a promise of it resolves
   * to, and runs on (close() and pause() waiting for it) until it is empty.
   */
  mainLoopQueue?: { add(p: Promise<unknown>): void; numTotal(): number } | null;
  /** Set once close() has begun. */
  closing?: Promise<void> | null;
  paused?: boolean;
  /** The worker's options as merged by BullMQ (its rate limiter, its name). */
  opts?: { limiter?: unknown; name?: string };
  /** A Job of the worker's queue for an activation (BullMQ's fetch answer), emitting `active`. */
  nextJobFromJobData?(jobData: unknown, jobId: unknown, token: string): Promise<Job | undefined>;
  /**
   * Runs an active job the worker holds the lock of, as its fetch loop does: tracks its lock (renewed until
   * it ends), calls the processor, finishes it with the token (fetching the next job when `fetchNext()`
   * says so), and resolves with that next job, if any.
   */
  processJob?(job: Job, token: string, fetchNext: () => boolean): Promise<Job | void>;
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
export function waitingJobCount(
  conn: RedisConnection,
  prefix: string,
  queue: string,
  shard = 0,
  shards = 1,
): Promise<number> {
  return conn.llen(`${shardKey(prefix, queue, shard, shards)}:wait`);
}

/**
 * Jobs waiting on `served` shards (of `shards`) of a queue, added up; a shard whose connection is not
 * ready now counts 0.
 */
export async function waitingJobsOnShards(
  connOf: (shard: number) => RedisConnection | undefined,
  prefix: string,
  queue: string,
  served: readonly number[],
  shards: number,
): Promise<number> {
  const counts = served.map((shard) => {
    const conn = connOf(shard);
    if (!conn || conn.status !== 'ready') return 0;
    return waitingJobCount(conn, prefix, queue, shard, shards).catch(() => 0);
  });
  return (await Promise.all(counts)).reduce((a, b) => a + b, 0);
}

/** One call of BullMQ's `moveToFinished` script, as {@link hookMoveToFinished} reads it from its arguments. */
export interface FinishCall {
  jobId: string;
  /** `completed` or `failed` (a failure BullMQ will not retry: retries take another script). */
  target: 'completed' | 'failed';
  /** The set the job is moved to ({prefix}:{queue}:completed or :failed). */
  finishedSetKey: string;
  /** The finish time the script stores as the job's `finishedOn`, ms. */
  finishedOn: number;
  /** The return value as BullMQ stores it (JSON text), or the failed reason. */
  value: string;
}

/**
 * The layout of BullMQ 6.7's `moveToFinished` call (redis-queue-backend.ts `moveToFinishedArgs`): one array
 * of 14 keys, the 11th the target set, then ARGV: job id, timestamp, property name, value, target, ...
 */
const FINISH_KEYS = 14;
const FINISH_SET_KEY = 10;

/**
 * Calls `onCall` each time BullMQ's worker sends a `moveToFinished` on `conn`, right after the command was
 * handed to the connection: a command `onCall` sends on `conn` runs in Redis right after that finish. BullMQ
 * runs its scripts as commands it defines on the connection (`moveToFinished:<version>`); this wraps that
 * one. Returns false, and changes nothing, when the connection has no such command (BullMQ has not loaded
 * its scripts on it yet, or names them differently). `onCall` must not throw (a throw is swallowed).
 */
export function hookMoveToFinished(conn: RedisConnection, onCall: (call: FinishCall) => void): boolean {
  const target = conn as unknown as Record<string, unknown>;
  const name = bullmqCommand(target, 'moveToFinished');
  if (!name) return false;
  return wrapCommand(target, name, 'reply', (a) => {
    try {
      const args = (a.length === 1 && Array.isArray(a[0]) ? a[0] : a) as unknown[];
      const t = args[FINISH_KEYS + 4];
      if (t === 'completed' || t === 'failed')
        onCall({
          jobId: String(args[FINISH_KEYS]),
          target: t,
          finishedSetKey: String(args[FINISH_SET_KEY]),
          finishedOn: Number(args[FINISH_KEYS + 1]),
          value: typeof args[FINISH_KEYS + 3] === 'string' ? (args[FINISH_KEYS + 3] as string) : '',
        });
    } catch {
      // The finish itself went out; its waiters are then answered the ordinary way.
    }
  });
}

/**
 * Calls `onFetch` each time BullMQ's worker sends, on `conn`, a command that may move a job to active: its
 * `moveToActive`, and its `moveToFinished` (which fetches the next job in the same call) unless
 * `finishes` is false. `onFetch` runs right after the command was handed to the connection (a command it
 * sends on `conn` runs in Redis right after the fetch) and gets the fetch's promise (settled when its answer
 * is in). Returns false, and changes nothing, when the connection has no BullMQ `moveToActive` (its scripts
 * are not loaded yet). `onFetch` must not throw (a throw is swallowed).
 */
export function hookFetches(
  conn: RedisConnection,
  onFetch: (answered: Promise<unknown>) => void,
  finishes = true,
): boolean {
  const target = conn as unknown as Record<string, unknown>;
  const names = [
    bullmqCommand(target, 'moveToActive'),
    finishes ? bullmqCommand(target, 'moveToFinished') : undefined,
  ];
  if (!names[0]) return false;
  for (const name of names)
    if (name)
      wrapCommand(target, name, 'fetch', (_a, result) => {
        try {
          onFetch(Promise.resolve(result));
        } catch {
          // The fetch went out; the job's marks are then read when it starts.
        }
      });
  return true;
}

/**
 * The name and Lua text of BullMQ's script `script` as ioredis holds it on `conn`, if it is defined there
 * with `numberOfKeys` keys; undefined when it is not (its scripts not loaded yet, or a BullMQ whose script
 * has another shape).
 */
export function bullmqScript(
  conn: RedisConnection,
  script: string,
  numberOfKeys: number,
): { name: string; lua: string } | undefined {
  const target = conn as unknown as Record<string, unknown> & {
    scriptsSet?: Record<string, { lua?: unknown; numberOfKeys?: unknown }>;
  };
  const name = bullmqCommand(target, script);
  if (name === undefined) return undefined;
  const found = target.scriptsSet?.[name];
  if (!found || typeof found.lua !== 'string' || found.numberOfKeys !== numberOfKeys) return undefined;
  return { name, lua: found.lua };
}

/** The name BullMQ gives its script `script` on a connection (`<script>:<version>`), if it is defined there. */
function bullmqCommand(target: Record<string, unknown>, script: string): string | undefined {
  const name = Object.keys(target).find((k) => k.startsWith(`${script}:`) && !k.endsWith('Buffer'));
  return name !== undefined && typeof target[name] === 'function' ? name : undefined;
}

type Command = ((...a: unknown[]) => unknown) & { cell0Hooks?: ReadonlySet<string> };

/**
 * Wraps the command `name` of `target` so that `after` runs (with its arguments and result) each time it is
 * sent, once per `kind`: hooking the same kind again changes nothing, and hooks of other kinds stack.
 */
function wrapCommand(
  target: Record<string, unknown>,
  name: string,
  kind: string,
  after: (args: unknown[], result: unknown) => void,
): true {
  const original = target[name] as Command;
  const hooks = original.cell0Hooks ?? new Set<string>();
  if (hooks.has(kind)) return true;
  const hooked: Command = function (this: unknown, ...a: unknown[]): unknown {
    const result = original.apply(this, a);
    after(a, result);
    return result;
  };
  hooked.cell0Hooks = new Set([...hooks, kind]);
  target[name] = hooked;
  return true;
}

/**
 * How many more jobs `worker`'s fetch loop could hold now (its concurrency less what it fetches and runs): 0
 * when the loop does not run (not started, paused, closing), when the worker has a rate limiter (its fetch
 * honours it, a take would not), or on a BullMQ without the members {@link runTakenJobs} uses.
 */
export function freeSlots(worker: Worker): number {
  const w = workerInternals(worker);
  const loop = w.mainLoopQueue;
  if (!loop || w.closing || w.paused || w.opts?.limiter) return 0;
  if (typeof w.processJob !== 'function' || typeof w.nextJobFromJobData !== 'function') return 0;
  return Math.max(0, worker.concurrency - loop.numTotal());
}

/**
 * Wakes `worker`'s fetch loop so that it reads its concurrency again: while it holds `concurrency` jobs the
 * loop waits for one of them to end, and a raised concurrency is seen only then. Hands the loop's queue an
 * empty answer (as a fetch that found no job), after which the loop fetches up to its concurrency again.
 * Returns false, changing nothing, when the loop is not running (or the worker closing or paused).
 */
export function wakeFetchLoop(worker: Worker): boolean {
  const w = workerInternals(worker);
  const loop = w.mainLoopQueue;
  if (!loop || w.closing || w.paused) return false;
  loop.add(Promise.resolve(undefined));
  return true;
}

/**
 * Runs in `worker` the jobs a take (take-jobs.ts) moves to active for it, as if its fetch loop had fetched
 * them: holds `slots` places in the loop's queue at once (so the loop fetches that many fewer, and close()
 * and pause() wait for them), then each job taken starts (`onTaken` first, with its fetch answer and Job) and
 * keeps its place until it is finished; the places of jobs not taken are given back when the take answers.
 * A job's finish fetches the next one as the loop's own do, and the loop starts it. Call it only with
 * `slots` ≤ {@link freeSlots}. Never throws; a failed take or start is the worker's `error` event (a job taken
 * and not started stays active, locked: its lock expires and the stalled check puts it back to wait).
 */
export function runTakenJobs<T extends { raw: unknown[]; token: string }>(
  worker: Worker,
  slots: number,
  taken: Promise<T[]>,
  onTaken?: (t: T, job: Job) => void,
): void {
  const w = workerInternals(worker);
  const loop = w.mainLoopQueue;
  if (!loop) return;
  const fetchNext = () => loop.numTotal() <= worker.concurrency;
  const failed = (err: unknown): undefined => {
    worker.emit('error', err instanceof Error ? err : new Error(String(err)));
    return undefined;
  };
  // A failed take is reported once (its slots are given back); each job's start reports its own failure.
  const answered = taken.catch((err: unknown) => (failed(err), [] as T[]));
  for (let i = 0; i < slots; i++) {
    loop.add(
      answered
        .then(async (jobs) => {
          const t = jobs[i];
          if (!t) return undefined;
          const [jobData, jobId] = raw2NextJobData(t.raw) as [unknown, unknown];
          const job = await w.nextJobFromJobData!(jobData, jobId, t.token);
          if (!job) return undefined;
          onTaken?.(t, job);
          return w.processJob!(job, t.token, fetchNext);
        })
        .catch(failed),
    );
  }
}
