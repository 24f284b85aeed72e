/**
 * Several BullMQ finishes in one script call. A worker with concurrency C finishes up to C jobs in one turn
 * of the event loop (the jobs of one fetch answer run together); BullMQ sends each finish as its own
 * `moveToFinished` EVALSHA with its 14 keys and 9 arguments (~1.1 KB per job with cell0's key names). Here
 * the finishes of one tick on one connection go to Redis as one call of a script that runs BullMQ's own
 * `moveToFinished` script body once per job, in order: the keys every job shares are sent once, each job
 * adds its own key and its 9 arguments. Each job's finish does exactly what BullMQ's call does (the same
 * Lua, the same keys and arguments, the same data layout), and each caller gets its own answer: the next
 * job to run, 0, a negative code, or its own error (a job's Lua error is caught per job, its neighbours
 * are finished as usual). Part of the BullMQ internals cell0 touches (see bullmq-internals.ts).
 */
import { type RedisConnection } from '../redis/cluster.js';
import { BULLMQ_INTERNALS_VERSION } from './bullmq-internals.js';

/** BullMQ 6.7's moveToFinished: 14 keys (the 12th the job's own hash), then 9 arguments. */
const KEYS = 14;
const JOB_KEY = 11;
const ARGS = 9;
/** Most finishes in one call (Redis runs a call atomically; this bounds how long it holds the server). */
const MAX_BATCH = 64;

/** A finish waiting to be sent with its batch. */
interface Pending {
  args: unknown[];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

interface Batch {
  /** The keys the batch's finishes share (all but the job's own), joined: a finish that differs starts another. */
  sharedKey: string;
  shared: unknown[];
  items: Pending[];
  sent?: boolean;
}

/** What {@link batchFinishes} has sent on a connection so far. */
export interface FinishBatchStats {
  /** Batched script calls (of two finishes or more). */
  calls: number;
  /** Finishes sent in those calls. */
  finishes: number;
  /** Finishes sent alone (BullMQ's own call): a tick with one finish, or a call of another shape. */
  single: number;
}

/** The command name cell0 defines for the batched script on a connection. */
const COMMAND = `cell0FinishBatch:${BULLMQ_INTERNALS_VERSION}`;

/**
 * The batched script: BullMQ's moveToFinished text (`lua`) wrapped as a function of (KEYS, ARGV), called per
 * job with that job's keys and arguments rebuilt from the shared keys.
 *
 * KEYS[1..13] the keys of BullMQ's call without the job's hash (its KEYS[12]); KEYS[14..] each job's hash
 * ARGV         each job's 9 arguments, one job after the other
 * Returns, per job, what BullMQ's script returns for it (an error reply when its run raised an error).
 */
export function finishBatchLua(lua: string): string {
  return `local function moveToFinished(KEYS, ARGV)
${lua}
end
local out = {}
local shared = {}
for i = 1, ${KEYS - 1} do shared[i] = KEYS[i] end
for i = 1, #KEYS - ${KEYS - 1} do
  local keys = {}
  for k = 1, ${JOB_KEY} do keys[k] = shared[k] end
  keys[${JOB_KEY + 1}] = KEYS[${KEYS - 1} + i]
  for k = ${JOB_KEY + 2}, ${KEYS} do keys[k] = shared[k - 1] end
  local ok, res = pcall(moveToFinished, keys, { unpack(ARGV, (i - 1) * ${ARGS} + 1, i * ${ARGS}) })
  if not ok then
    if type(res) == "table" and res.err then
      res = res
    else
      res = redis.error_reply(tostring(res))
    end
  elseif res == nil then
    res = false
  end
  out[i] = res
end
return out
`;
}

/** The text of BullMQ's moveToFinished script as ioredis holds it on `conn`, if it is defined there. */
function bullmqFinishScript(conn: RedisConnection): { name: string; lua: string } | undefined {
  const target = conn as unknown as Record<string, unknown> & {
    scriptsSet?: Record<string, { lua?: unknown; numberOfKeys?: unknown }>;
  };
  const name = Object.keys(target).find((k) => k.startsWith('moveToFinished:') && !k.endsWith('Buffer'));
  if (name === undefined || typeof target[name] !== 'function') return undefined;
  const script = target.scriptsSet?.[name];
  if (!script || typeof script.lua !== 'string' || script.numberOfKeys !== KEYS) return undefined;
  return { name, lua: script.lua };
}

/**
 * Makes BullMQ's `moveToFinished` calls on `conn` that are made in one tick go to Redis as one script call
 * (see the module comment); a call of another shape is passed on unchanged. Call it once BullMQ has loaded
 * its scripts on `conn` (the worker is ready) and before any other hook on that command (hooks added later
 * see each finish as before, and a command they send on `conn` still runs behind it, since the batch goes
 * out at the first process.nextTick after the finish and hooks schedule theirs after it). Resolves false,
 * undefined, changing nothing, when BullMQ's script is not found as expected or the batched script does not
 * compile; else the connection's counts (the same object when called again).
 */
export async function batchFinishes(conn: RedisConnection): Promise<FinishBatchStats | undefined> {
  const found = bullmqFinishScript(conn);
  if (!found) return undefined;
  const target = conn as unknown as Record<string, unknown>;
  const current = target[found.name] as { cell0Batched?: FinishBatchStats; cell0Hooks?: unknown };
  if (current.cell0Batched) return current.cell0Batched;
  // Hooked already (bullmq-internals.ts): batches sent under the hook would not be seen by it.
  if (current.cell0Hooks) return undefined;
  const lua = finishBatchLua(found.lua);
  try {
    // A script that does not compile would fail every finish of a batch: checked once, here.
    await (conn as unknown as { script(sub: 'LOAD', lua: string): Promise<unknown> }).script('LOAD', lua);
  } catch {
    return undefined;
  }
  const stats: FinishBatchStats = { calls: 0, finishes: 0, single: 0 };
  if (!(COMMAND in target)) conn.defineCommand(COMMAND, { lua });
  const send = target[COMMAND] as (...a: unknown[]) => Promise<unknown[]>;
  const original = target[found.name] as (...a: unknown[]) => unknown;
  let batch: Batch | undefined;
  const flush = (b: Batch) => {
    // Sent once: early when a finish of other keys (or a full batch) came, else at its tick's end.
    if (b.sent) return;
    b.sent = true;
    if (batch === b) batch = undefined;
    if (b.items.length === 1) {
      stats.single++;
      const one = b.items[0]!;
      (original.call(conn, one.args) as Promise<unknown>).then(one.resolve, one.reject);
      return;
    }
    stats.calls++;
    stats.finishes += b.items.length;
    const keys: unknown[] = [...b.shared];
    const argv: unknown[] = [];
    for (const item of b.items) {
      keys.push(item.args[JOB_KEY]);
      for (let i = KEYS; i < KEYS + ARGS; i++) argv.push(item.args[i]);
    }
    send.call(conn, keys.length, ...keys, ...argv).then(
      (results) => {
        for (let i = 0; i < b.items.length; i++) {
          const r = results[i];
          if (r instanceof Error) b.items[i]!.reject(r);
          else b.items[i]!.resolve(r ?? null);
        }
      },
      (err: unknown) => {
        for (const item of b.items) item.reject(err);
      },
    );
  };
  const batched = function (this: unknown, ...a: unknown[]): unknown {
    const args = (a.length === 1 && Array.isArray(a[0]) ? a[0] : a) as unknown[];
    if (args.length !== KEYS + ARGS) {
      stats.single++;
      return original.apply(this, a);
    }
    const shared = [...args.slice(0, JOB_KEY), ...args.slice(JOB_KEY + 1, KEYS)];
    const sharedKey = shared.join('\n');
    if (batch && (batch.sharedKey !== sharedKey || batch.items.length >= MAX_BATCH)) {
      const full = batch;
      batch = undefined;
      flush(full);
    }
    if (!batch) {
      const b: Batch = { sharedKey, shared, items: [] };
      batch = b;
      process.nextTick(() => flush(b));
    }
    const b = batch;
    return new Promise((resolve, reject) => b.items.push({ args, resolve, reject }));
  } as ((...a: unknown[]) => unknown) & { cell0Batched?: FinishBatchStats };
  batched.cell0Batched = stats;
  target[found.name] = batched;
  return stats;
}
