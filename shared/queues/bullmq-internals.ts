/**
 * The BullMQ internals cell0 touches, in one place (and the two ioredis members a cut-short close needs, see
 * {@link stopCutShortWorker}). Nothing else in cell0 reaches past BullMQ's public API;
 * test/integration/bullmq-internals.test.ts pins what this module relies on to the installed version and
 * fails on an upgrade that changes it.
 */
import { type Job, type Worker } from 'bullmq';
import { type RedisConnection } from '../redis/cluster.js';
import { completedArgsOf, nextJobData } from './lean-job-codec.js';
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
  /**
   * The worker's Redis backend (RedisQueueBackend): `closing` is set by its close() and, once set, its fetch
   * watchdog no longer reconnects the blocking connection.
   */
  backend?: {
    close?(force?: boolean): Promise<void>;
    closing?: unknown;
    /** The connection of the blocking fetch (BZPOPMIN); its `client` is a promise of the ioredis client. */
    blockingConnection?: { client?: Promise<unknown> };
  };
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
 * Stops what a closing worker leaves running when its close() is cut short (Redis away, or just back):
 * BullMQ's close() stops these only after its fetch loop ends, and that loop is stuck on the blocking fetch.
 * - The lock extender and the stalled checker: their timers keep re-arming and hold the process open (the
 *   lock extender forever).
 * - The blocking fetch: ioredis strands a BZPOPMIN that was in flight when Redis went (it keeps it for a
 *   resend after a reconnect, and a disconnect while reconnecting rejects nothing). BullMQ's fetch watchdog
 *   would settle it after the block timeout plus 1 s, a timer that holds the process meanwhile, and then,
 *   unless the worker's backend is closing, reconnect and wait for Redis, for ever if Redis stays away.
 *   Here the backend is marked closing (its forced close, not waited for: it would wait on the same
 *   connection) and, when the blocking connection is not ready, the commands it holds are rejected with
 *   ioredis's own "Connection is closed." so that the fetch ends at once.
 * Call it once close() has begun, so that the woken stalled checker sees the worker closing and ends its
 * loop. Each member is looked up defensively: on a BullMQ or ioredis without them this only loses the
 * cleanup. Never throws.
 */
export async function stopCutShortWorker(worker: Worker): Promise<void> {
  const internals = workerInternals(worker);
  internals.stalledCheckStopper?.();
  internals.backend?.close?.(true).catch(() => undefined);
  await settleStrandedCommands(internals.backend?.blockingConnection?.client);
  await internals.lockManager?.close?.().catch(() => undefined);
}

/** An ioredis client's command queues as ioredis 5 keeps them (Redis.ts, redis/event_handler.ts). */
interface StrandedQueues {
  status?: string;
  /** Commands that were in flight when a ready connection closed, kept for a resend once ready again. */
  prevCommandQueue?: {
    shift(): { command?: { reject?(e: Error): void } } | undefined;
    length: number;
  } | null;
  /** Rejects the offline queue and the command queue. */
  flushQueue?(error: Error): void;
}

/**
 * Rejects every command an ioredis client that is not ready still holds (offline, sent, or kept for a
 * resend), as ioredis does on its own only for the first two. A no-op on a ready client, or when the
 * promise of the client has not settled yet.
 */
async function settleStrandedCommands(client: Promise<unknown> | undefined): Promise<void> {
  try {
    // Only a client that exists already: a worker that never ran may never get one (on a cluster its
    // promise stays pending), and a client not made yet holds nothing.
    const c = (await Promise.race([client, Promise.resolve(undefined)])) as StrandedQueues | undefined;
    if (!c || c.status === 'ready') return;
    const closed = new Error('Connection is closed.');
    for (let item = c.prevCommandQueue?.shift(); item; item = c.prevCommandQueue?.shift())
      item.command?.reject?.(closed);
    c.flushQueue?.(closed);
  } catch {
    // Defensive: the cleanup is best effort.
  }
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
          const [jobData, jobId] = nextJobData(t.raw) as [unknown, unknown];
          const job = await w.nextJobFromJobData!(jobData, jobId, t.token);
          if (!job) return undefined;
          onTaken?.(t, job);
          return w.processJob!(job, t.token, fetchNext);
        })
        .catch(failed),
    );
  }
}

/**
 * The members of BullMQ 6.7's worker (src/classes/worker.ts) and its Redis backend (redis-queue-backend.ts)
 * that {@link leanJobPath} calls: each is BullMQ's own, called as BullMQ's own path calls it.
 */
interface LeanWorker {
  opts: { telemetry?: unknown; runRetryDelay?: number };
  closing?: unknown;
  paused?: boolean;
  drained?: boolean;
  processorAcceptsSignal?: boolean;
  lockManager?: {
    trackJob(
      jobId: string | undefined,
      token: string,
      ts: number | undefined,
      signal?: boolean,
    ): AbortController | undefined;
    untrackJob(jobId: string | undefined): void;
  };
  backend?: {
    closing?: unknown;
    /** The backend's connection, once ready (a promise). */
    client?: Promise<unknown>;
    version?: string;
    moveToFinishedKeys?: unknown[];
    moveToCompletedArgs?(
      job: Job,
      value: string,
      removeOnComplete: unknown,
      token: string,
      fetchNext: boolean,
    ): unknown[];
    execCommand?(client: unknown, command: string, args: unknown[]): Promise<unknown>;
  };
  createJob?(jobData: unknown, jobId: unknown): Job;
  emit(event: string, ...args: unknown[]): boolean;
  callProcessJob?(job: Job, token: string, signal: AbortSignal | undefined): Promise<unknown>;
  getUnrecoverableErrorMessage?(job: Job): string | undefined;
  retryIfFailed?<T>(fn: () => Promise<T>, opts: { delayInMs?: number; onlyEmitError?: boolean }): Promise<T>;
  handleCompleted?(result: unknown, job: Job, token: string, fetchNext: () => boolean): Promise<Job | void>;
  handleFailed?(err: unknown, job: Job, token: string, fetchNext: () => boolean): Promise<Job | void>;
  updateDelays?(rateLimitDelay: unknown, delayUntil: unknown): void;
  nextJobFromJobData?(jobData: unknown, jobId: unknown, token: string): Promise<Job | undefined>;
  processJob?(job: Job, token: string, fetchNext?: () => boolean): Promise<Job | void>;
}

/** What {@link leanJobPath} has done on a worker so far. */
export interface LeanJobStats {
  /** Jobs started the lean way (all but those with a repeat key). */
  started: number;
  /** Completions finished the lean way. */
  completed: number;
  /** Completions handed to BullMQ's own (the lean finish went wrong: see leanJobPath). */
  handedOver: number;
}

/** The workers {@link leanJobPath} was installed on, with what it did there. */
const leanWorkers = new WeakMap<Worker, LeanJobStats>();

/** What {@link leanJobPath} has done on `worker` so far; undefined when it is not installed there. */
export function leanJobStats(worker: Worker): LeanJobStats | undefined {
  const s = leanWorkers.get(worker);
  return s && { ...s };
}

/**
 * Gives `worker` a lean start and finish of its jobs: BullMQ's `nextJobFromJobData` and `processJob` replaced
 * on the instance (its fetch loop, the finishes' fetch of the next job and {@link runTakenJobs} all call
 * these) by versions that do the same things with about a dozen fewer promises per job. BullMQ 6.7 runs a
 * job's start and completion through layers that each cost an async frame whatever they do: a span wrapper
 * (`trace`, a plain call without telemetry) around the job and around the completion, `retryIfFailed` around
 * the repeat check of the start and around the completion, `waitUntilReady` of the worker, its base class and
 * its backend (the connection is ready: the job came through it), `Job.moveToCompleted`,
 * `backend.moveToCompleted`, `backend.moveToFinished` and `await this.client`. Here:
 *
 * - a job without a repeat key starts as BullMQ's does (`createJob`, its token, `drained` cleared, the `active`
 *   event), without the repeat check it would skip anyway; any other start is BullMQ's own;
 * - a job is tracked by the lock manager (its lock renewed until it ends) and its processor called as BullMQ
 *   does; a failed job, or one with a deferred failure or past `maxStartedAttempts`, goes BullMQ's own way
 *   (`handleFailed`: retries, backoff, the `failed` event);
 * - a completion builds BullMQ's `moveToFinished` call with its backend's own `moveToCompletedArgs` and sends
 *   it as its backend does (`execCommand`, so cell0's hooks on that command, finish-batch.ts and the replies,
 *   see it as before), then sets the job's `returnvalue`, `finishedOn` and `attemptsMade`, emits `completed`,
 *   and starts the next job the finish fetched, as `handleCompleted` does. A completion that fails in any way
 *   (an unserialisable value, a lost lock, a connection error) is handed to BullMQ's `handleCompleted` as it
 *   stands, which sends it again and reports or retries as BullMQ does (a finish refused by the script changes
 *   nothing in Redis, so sending it again gets the same answer).
 *
 * Redis sees the same commands with the same keys and arguments. Not installed (false) with telemetry on (the
 * spans are BullMQ's), or when a member is missing (another BullMQ). Call once the worker is ready.
 */
export async function leanJobPath(worker: Worker): Promise<boolean> {
  if (leanWorkers.has(worker)) return true;
  const stats: LeanJobStats = { started: 0, completed: 0, handedOver: 0 };
  const w = worker as unknown as LeanWorker;
  const backend = w.backend;
  const locks = w.lockManager;
  const original = { start: w.nextJobFromJobData, process: w.processJob };
  if (
    w.opts.telemetry ||
    !backend ||
    !locks ||
    !original.start ||
    !original.process ||
    typeof backend.moveToCompletedArgs !== 'function' ||
    typeof backend.execCommand !== 'function' ||
    !Array.isArray(backend.moveToFinishedKeys) ||
    typeof w.createJob !== 'function' ||
    typeof w.callProcessJob !== 'function' ||
    typeof w.getUnrecoverableErrorMessage !== 'function' ||
    typeof w.retryIfFailed !== 'function' ||
    typeof w.handleCompleted !== 'function' ||
    typeof w.handleFailed !== 'function' ||
    typeof w.updateDelays !== 'function' ||
    typeof locks.trackJob !== 'function' ||
    typeof locks.untrackJob !== 'function'
  )
    return false;
  const client = await backend.client;
  if (!client) return false;
  if (leanWorkers.has(worker)) return true; // installed meanwhile
  const finishCommand = 'moveToFinished';
  const timestampAt = backend.moveToFinishedKeys.length + 1;
  const start = original.start;
  const processJob = original.process;
  // BullMQ's completion arguments built directly (lean-job-codec.ts), else by its backend.
  const completedArgs =
    completedArgsOf(backend as unknown as Parameters<typeof completedArgsOf>[0]) ??
    backend.moveToCompletedArgs.bind(backend);

  /** BullMQ's start of a job (nextJobFromJobData) for a job without a repeat key. */
  const leanStart = function (this: LeanWorker, jobData: unknown, jobId: unknown, token: string) {
    const repeatKey = jobData && (jobData as { repeatJobKey?: unknown }).repeatJobKey;
    if (!jobData || repeatKey) return start.call(this, jobData, jobId, token);
    this.drained = false;
    stats.started++;
    const job = this.createJob!(jobData, jobId);
    job.token = token;
    this.emit('active', job, 'waiting');
    return Promise.resolve(job);
  };

  /**
   * BullMQ's finish of a completed job (Job.moveToCompleted's call): its answer and the time it stored, or
   * undefined when the worker's backend is closing (BullMQ's completion then leaves the job active too).
   * Throws, before the job is taken as finished, when the finish went wrong (then BullMQ's own completion
   * is run).
   */
  const finish = async (
    self: LeanWorker,
    result: unknown,
    job: Job,
    token: string,
    fetchNext: () => boolean,
  ): Promise<{ answer: unknown; finishedOn: number } | undefined> => {
    if (backend.closing) return undefined;
    const args = completedArgs(
      job,
      JSON.stringify(result),
      job.opts.removeOnComplete,
      token,
      fetchNext() && !(self.closing || self.paused),
    );
    const answer = await backend.execCommand!(client, finishCommand, args);
    if (typeof answer === 'number' && answer < 0) throw new Error(`finish refused (${answer})`);
    return { answer, finishedOn: args[timestampAt] as number };
  };

  /** What BullMQ's completion does once the job is finished: the job's fields, `completed`, the next job. */
  const finished = (
    self: LeanWorker,
    result: unknown,
    job: Job,
    token: string,
    done: { answer: unknown; finishedOn: number },
  ): Promise<Job | undefined> | undefined => {
    job.returnvalue = result || undefined;
    job.finishedOn = done.finishedOn;
    job.attemptsMade += 1;
    self.emit('completed', job, result, 'active');
    if (done.answer === undefined) return undefined;
    const [jobData, jobId, rateLimitDelay, delayUntil] = nextJobData(done.answer as unknown[]);
    self.updateDelays!(rateLimitDelay, delayUntil);
    return self.nextJobFromJobData!(jobData, jobId, token);
  };

  /** BullMQ's processJob without a span: the lock tracked, the processor, the lean completion. */
  const leanProcess = async function (
    this: LeanWorker,
    job: Job,
    token: string,
    fetchNext: () => boolean = () => true,
  ): Promise<Job | void> {
    if (this.getUnrecoverableErrorMessage!(job)) return processJob.call(this, job, token, fetchNext);
    const controller = locks.trackJob(job.id, token, job.processedOn, this.processorAcceptsSignal);
    const retryDelay = { delayInMs: this.opts.runRetryDelay };
    try {
      const result = await this.callProcessJob!(job, token, controller?.signal);
      locks.untrackJob(job.id);
      let done: { answer: unknown; finishedOn: number } | undefined;
      try {
        done = await finish(this, result, job, token, fetchNext);
      } catch {
        stats.handedOver++;
        return await this.retryIfFailed!(
          () => this.handleCompleted!(result, job, token, fetchNext),
          retryDelay,
        );
      }
      if (!done) return undefined;
      stats.completed++;
      try {
        return await finished(this, result, job, token, done);
      } catch (err) {
        // As BullMQ's retryIfFailed reports an error of its completion, before the job's failure.
        if (!this.paused && !this.closing) this.emit('error', err);
        throw err;
      }
    } catch (err) {
      return await this.retryIfFailed!(
        () => {
          locks.untrackJob(job.id);
          return this.handleFailed!(err, job, token, fetchNext);
        },
        { ...retryDelay, onlyEmitError: true },
      );
    } finally {
      locks.untrackJob(job.id);
    }
  };
  w.nextJobFromJobData = leanStart;
  w.processJob = leanProcess;
  leanWorkers.set(worker, stats);
  return true;
}
