/**
 * Several BullMQ adds in one script call. A producer that sends the submissions of one round trip adds each
 * job with BullMQ's own `addStandardJob` script: one EVALSHA per job, each with the queue's 9 keys again
 * (~0.4 KB per job with cell0's key names), each an ioredis command of its own (its object, its encoding,
 * its command timer) and a script dispatch of its own in Redis. Here the standard adds issued inside
 * {@link gatherAdds} on one connection go to Redis as one call of a script that runs BullMQ's own
 * `addStandardJob` body once per job, in order: the keys every job shares are sent once, each job adds its
 * 3 arguments. Each add does exactly what BullMQ's call does (the same Lua, its integer literals given to
 * redis.call as the strings Redis would make of them; the same keys and arguments, data layout and markers;
 * its event stream entries only on a connection that keeps them, see event-writes.ts), and each caller gets its own answer: the job id, a negative code, or
 * its own error (a job's Lua error is caught per job; its neighbours are added as usual).
 * Part of the BullMQ internals cell0 touches (see bullmq-internals.ts).
 */
import { type RedisConnection } from '../redis/cluster.js';
import { integerArgsAsStrings, NUMBER_TEXT_LUA } from '../redis/lua-integer-args.js';
import { luaInclude } from '../redis/lua-scripts.js';
import { BULLMQ_INTERNALS_VERSION, bullmqScript } from './bullmq-internals.js';
import { eventLua, eventWritesFor } from './event-writes.js';
import { perJobFunction } from './per-job-script.js';
import { takeJobsFunction } from './take-jobs.js';

/** BullMQ 6.7's addStandardJob: 9 keys, then 3 arguments (packed args, data, packed options). */
const KEYS = 9;
const ARGS = 3;
/** Most adds in one call (Redis runs a call atomically; this bounds how long it holds the server). */
const MAX_BATCH = 64;

/** The command name cell0 defines for the batched script on a connection. */
const COMMAND = `cell0AddBatch:${BULLMQ_INTERNALS_VERSION}`;

/** What {@link batchAdds} has sent on a connection so far. */
export interface AddBatchStats {
  /** Batched script calls (of two adds or more). */
  calls: number;
  /** Adds sent in those calls. */
  adds: number;
  /** Adds gathered but sent alone (BullMQ's own call): a gathering of one, or of keys unlike its batch's. */
  single: number;
}

/** An add waiting to be sent with its batch. */
interface Pending {
  args: unknown[];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/**
 * The waiter registration that rides in a gathering's adds (see {@link gatherAdds}): an add that meets a job
 * that already exists registers `producerId` in the job's waiter set (`<job key>:cell0-waiters`, kept
 * `ttlMs`) and reads where the job stands, in the same script call, atomically with the add.
 */
export interface AddWaiter {
  /** The producer to register as a waiter of a job an add meets. */
  producerId: string;
  /** How long the waiter set lives, ms. */
  ttlMs: number;
  /**
   * Filled by the gathering's script call, by job id, before each add's promise settles: `true` for an add
   * that created its job; for one that met an existing job, where that job stood (the reply of
   * `jobStatus`, shared/lua/includes/job-status.lua: `[status, value, finishedOn]`). A job id absent after
   * its add settled was not added by the script (not a standard add): nothing was registered for it.
   */
  found: Map<string, true | unknown[]>;
}

/** A connection's gathering under way (see gatherAdds). */
interface Gathering {
  items: Pending[];
  waiter: AddWaiter | undefined;
  take: AddTake | undefined;
}

/**
 * A take (take-jobs.ts) that rides in a gathering's script call, right behind its adds (see {@link gatherAdds}):
 * run after the last add, in the same step, and when it leaves no job waiting it removes the wait marker the
 * adds set, so that no worker blocked on the queue is woken for jobs already taken.
 */
export interface AddTake {
  /** The take's 12 keys and its arguments (take-jobs.ts takeArguments). */
  keys: string[];
  args: (string | number)[];
  /** Called once with the take's answer, when it rode with the adds. */
  answered: (res: Promise<unknown[]>) => void;
  /** Called instead when it could not ride (the adds went some other way): send it on its own, now. */
  alone: () => void;
}

interface Batched {
  stats: AddBatchStats;
  /** Whether a take can ride in the batched script (BullMQ's fetch was found). */
  takes: boolean;
  /** Set while gatherAdds runs on the connection. */
  gathering: Gathering | undefined;
  /** Sends what was gathered (see gatherAdds). */
  send: (g: Gathering) => void;
}

/** Whether an add's first KEYS arguments are `keys` (compared in place: no copy, no joined string per add). */
function sameKeys(args: unknown[], keys: unknown[]): boolean {
  for (let i = 0; i < KEYS; i++) if (args[i] !== keys[i]) return false;
  return true;
}

/** The connections whose adds {@link batchAdds} can batch. */
const batchedOn = new WeakMap<RedisConnection, Batched>();

/**
 * The batched script: BullMQ's addStandardJob text (`lua`, its integer literals given to redis.call as strings:
 * see integerArgsAsStrings) wrapped as a function of (KEYS, ARGV) whose helpers are made once per call
 * (per-job-script.ts), called per job with the shared keys and that job's 3 arguments. With a producer id,
 * it also tells per job whether the add created the job or met one that exists (a custom id whose hash is
 * there before the add): an add that met one registers the producer as the job's waiter and reads where the
 * job stands, in the same step, so that no outcome can slip between the two (as register-waiters.lua does
 * for an add sent alone).
 *
 * KEYS[1..9]  the keys of BullMQ's call (the same for every job of the batch)
 * KEYS[10..21] with a take behind the adds (`take`, see {@link AddTake}): the take's keys
 * ARGV[1]     the producer to register for a job an add meets ('' for none: nothing is read or written)
 * ARGV[2]     the waiter set's lifetime, ms
 * ARGV[3]     T, the take's argument count (0 without a take), then its T arguments
 * ARGV[4+T..] each job's 3 arguments, one job after the other
 * Returns, per job, what BullMQ's script returns for it (an error reply when its run raised an error), or,
 * for an add that met an existing job (with a producer id), { that, status, value, finishedOn } (jobStatus);
 * with a take, then the take's answer (take-jobs.ts).
 */
export function addBatchLua(lua: string, jobStatus: string, take = ''): string {
  return `${eventLua(false)}
${NUMBER_TEXT_LUA}
${perJobFunction('addStandardJob', storedNumbersAsText(existsReadOnce(argsUnpackedOnce(integerArgsAsStrings(lua)))))}
${jobStatus}
${take}
local producer = ARGV[1]
local takeArgs = tonumber(ARGV[3])
local first = 3 + takeArgs
local out = {}
for i = 1, (#ARGV - first) / ${ARGS} do
  local b = first + (i - 1) * ${ARGS}
  local met
  local unpacked
  local exists
  if producer ~= "" then
    local ok, args = pcall(cmsgpack.unpack, ARGV[b + 1])
    if ok and type(args) == "table" then
      -- BullMQ's add reads these instead of unpacking the same bytes again (see argsUnpackedOnce).
      unpacked = args
      if type(args[1]) == "string" and type(args[2]) == "string" and args[2] ~= "" then
        -- BullMQ's add reads this instead of asking again (see existsReadOnce).
        exists = redis.call("EXISTS", args[1] .. args[2])
        if exists == 1 then met = args end
      end
    end
  end
  local ok, res = pcall(addStandardJob, KEYS,
    { ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], cell0Args = unpacked, cell0Exists = exists })
  if not ok then
    if not (type(res) == "table" and res.err) then res = redis.error_reply(tostring(res)) end
  elseif res == nil then
    res = false
  elseif met then
    local jobKey = met[1] .. met[2]
    local waiterKey = jobKey .. ":cell0-waiters"
    redis.call("SADD", waiterKey, producer)
    redis.call("PEXPIRE", waiterKey, ARGV[2])
    local st = jobStatus(KEYS[5], met[1] .. "failed", jobKey, met[2])
    res = { res, st[1], st[2], st[3] }
  end
  out[i] = res
end
if #KEYS > ${KEYS} then
  local tk = {}
  for i = 1, 12 do tk[i] = KEYS[${KEYS} + i] end
  local ta = {}
  for i = 1, takeArgs do ta[i] = ARGV[3 + i] end
  out[#out + 1] = cell0TakeJobs(tk, ta)
  -- Nothing left waiting: the adds' wake-up marker would only wake a worker for jobs already taken.
  if redis.call("LLEN", tk[1]) == 0 and redis.call("ZCARD", tk[3]) == 0 then
    redis.call("ZREM", tk[11], "0")
  end
end
return out
`;
}

/** BullMQ's unpack of its packed arguments in addStandardJob, a line of its own. */
const ARGS_UNPACK = /^local args = cmsgpack\.unpack\(ARGV\[1\]\)[ \t]*$/gm;

/**
 * BullMQ's addStandardJob text reading its packed arguments from `ARGV.cell0Args` when the batched script
 * has unpacked them already (the look for an existing job, with a producer id, unpacks them first), instead
 * of unpacking the same bytes again: one `cmsgpack.unpack` less per add. The table is the one the same
 * bytes unpack to, and BullMQ's script only reads it. Returned unchanged when the line is not found exactly
 * once (another BullMQ's script): then each add unpacks its arguments itself, as BullMQ's own call does.
 */
export function argsUnpackedOnce(lua: string): string {
  if (lua.match(ARGS_UNPACK)?.length !== 1) return lua;
  return lua.replace(ARGS_UNPACK, 'local args = ARGV.cell0Args or cmsgpack.unpack(ARGV[1])');
}

/** BullMQ's numbers in the job hash that storeJob writes (addStandardJob's include), in its HMSET. */
const STORED_NUMBERS = /"timestamp", timestamp, "delay", delay, "priority", priority,/g;

/**
 * BullMQ's addStandardJob text with the job's timestamp, delay and priority (Lua numbers, unpacked from its
 * arguments and options) given to its HMSET as the text Redis would make of them (`cell0Text`, see
 * NUMBER_TEXT_LUA, which must be defined before the text): the same hash, without Redis's snprintf("%.17g")
 * of three numbers per add (~11,000 instructions; ~2,000 now, the delay and priority being 0). Returned
 * unchanged when the arguments are not found exactly once (another BullMQ's script).
 */
export function storedNumbersAsText(lua: string): string {
  if (lua.match(STORED_NUMBERS)?.length !== 1) return lua;
  return lua.replace(
    STORED_NUMBERS,
    '"timestamp", cell0Text(timestamp), "delay", cell0Text(delay), "priority", cell0Text(priority),',
  );
}

/** BullMQ's look for an existing job of a custom id in addStandardJob, a line of its own. */
const EXISTS_CHECK = /^([ \t]*)if rcall\("EXISTS", jobIdKey\) == 1 then[ \t]*$/gm;

/**
 * BullMQ's addStandardJob text reading whether the job's hash exists from `ARGV.cell0Exists` when the batched
 * script has asked already (the look for an existing job, with a producer id, runs EXISTS on the same key,
 * `args[1] .. args[2]`, right before the add, in the same script call: nothing writes the key in between),
 * instead of asking Redis again: one EXISTS less per add of a custom id. Without it (no producer id) BullMQ's
 * own EXISTS runs. Returned unchanged when the line is not found exactly once (another BullMQ's script).
 */
export function existsReadOnce(lua: string): string {
  if (lua.match(EXISTS_CHECK)?.length !== 1) return lua;
  return lua.replace(EXISTS_CHECK, '$1if (ARGV.cell0Exists or rcall("EXISTS", jobIdKey)) == 1 then');
}

/**
 * Lets {@link gatherAdds} send BullMQ's standard adds on `conn` as one script call. Call it once BullMQ has
 * loaded its scripts on `conn` (a Queue on it is ready). Outside gatherAdds every add goes as before, and
 * so do adds on pipelines and transactions made from `conn`. Resolves undefined, changing nothing, when
 * BullMQ's script is not found as expected or the batched script does not compile; else the connection's
 * counts (the same object when called again).
 */
export async function batchAdds(conn: RedisConnection): Promise<AddBatchStats | undefined> {
  const done = batchedOn.get(conn);
  if (done) return done.stats;
  const found = bullmqScript(conn, 'addStandardJob', KEYS);
  if (!found) return undefined;
  // BullMQ's fetch, for the takes that ride behind the adds (none when it is not found as expected).
  const fetch = bullmqScript(conn, 'moveToActive', 11);
  // Without the event stream's writes unless the connection keeps them (event-writes.ts).
  const lua = addBatchLua(
    eventWritesFor(conn, found.lua),
    luaInclude('job-status'),
    fetch ? takeJobsFunction(eventWritesFor(conn, fetch.lua)) : '',
  );
  try {
    // A script that does not compile would fail every add of a batch: checked once, here.
    await (conn as unknown as { script(sub: 'LOAD', lua: string): Promise<unknown> }).script('LOAD', lua);
  } catch {
    return undefined;
  }
  const again = batchedOn.get(conn);
  if (again) return again.stats;
  const target = conn as unknown as Record<string, unknown>;
  if (!(COMMAND in target)) conn.defineCommand(COMMAND, { lua });
  const sendBatch = target[COMMAND] as (...a: unknown[]) => Promise<unknown[]>;
  const original = target[found.name] as (...a: unknown[]) => Promise<unknown>;
  const stats: AddBatchStats = { calls: 0, adds: 0, single: 0 };
  const alone = (item: Pending) => {
    stats.single++;
    original.call(conn, item.args).then(item.resolve, item.reject);
  };
  const sendGroup = (
    items: Pending[],
    shared: unknown[],
    waiter: AddWaiter | undefined,
    take: AddTake | undefined,
  ): boolean => {
    // With a registration, even a lone add goes through the batched script (it tells created from met).
    if (items.length === 1 && !waiter && !take) {
      alone(items[0]!);
      return false;
    }
    stats.calls++;
    stats.adds += items.length;
    // The call's arguments built in one array (the key count, the keys, then ARGV), handed over with apply:
    // no spread of the keys and arguments into a copy per call.
    const args: unknown[] = [take ? KEYS + take.keys.length : KEYS];
    for (const k of shared) args.push(k);
    if (take) for (const k of take.keys) args.push(k);
    args.push(waiter?.producerId ?? '', waiter?.ttlMs ?? 0, take ? take.args.length : 0);
    if (take) for (const a of take.args) args.push(a);
    for (const item of items) for (let i = KEYS; i < KEYS + ARGS; i++) args.push(item.args[i]);
    const sent = sendBatch.apply(conn, args);
    take?.answered(sent.then((results) => results[items.length] as unknown[]));
    sent.then(
      (results) => {
        for (let i = 0; i < items.length; i++) {
          const r = results[i];
          if (r instanceof Error) items[i]!.reject(r);
          else if (Array.isArray(r)) {
            // An add that met an existing job: its registration's read rides behind BullMQ's answer.
            waiter?.found.set(String(r[0]), r.slice(1));
            items[i]!.resolve(r[0] ?? null);
          } else {
            // The same id met later in the batch keeps its registration (the wider answer).
            if (waiter && typeof r === 'string' && !waiter.found.has(r)) waiter.found.set(r, true);
            items[i]!.resolve(r ?? null);
          }
        }
      },
      (err: unknown) => {
        for (const item of items) item.reject(err);
      },
    );
    return true;
  };
  const batched: Batched = {
    stats,
    takes: fetch !== undefined,
    gathering: undefined,
    send: (g) => {
      // In order: a run of adds with the same keys (and at most MAX_BATCH) per call; a take rides in the last.
      let run: Pending[] = [];
      let shared: unknown[] = [];
      for (const item of g.items) {
        if (run.length > 0 && (run.length >= MAX_BATCH || !sameKeys(item.args, shared))) {
          sendGroup(run, shared, g.waiter, undefined);
          run = [];
        }
        if (run.length === 0) shared = item.args.slice(0, KEYS);
        run.push(item);
      }
      const rode = run.length > 0 && sendGroup(run, shared, g.waiter, g.take);
      if (g.take && !rode) g.take.alone();
    },
  };
  const wrapped = function (this: unknown, ...a: unknown[]): unknown {
    const g = batched.gathering;
    const args = (a.length === 1 && Array.isArray(a[0]) ? a[0] : a) as unknown[];
    // Only BullMQ's call on the connection itself, inside gatherAdds (a pipeline made from the connection
    // copies this function and calls it on itself).
    if (!g || this !== conn || args.length !== KEYS + ARGS) return original.apply(this, a);
    return new Promise((resolve, reject) => g.items.push({ args, resolve, reject }));
  };
  target[found.name] = wrapped;
  batchedOn.set(conn, batched);
  return stats;
}

/** Whether {@link gatherAdds} on `conn` batches its adds (and so fills an {@link AddWaiter}'s `found`). */
export function addsBatched(conn: RedisConnection): boolean {
  return batchedOn.has(conn);
}

/**
 * Runs `fn`, and sends the standard adds it issued on `conn` (synchronously) as one script call when it
 * returns, before any command issued after gatherAdds: the order of commands on the connection is kept
 * (the adds in their own order, then what follows). Without {@link batchAdds} on `conn` (or when it
 * changed nothing) it only runs `fn`. Adds issued after an await inside `fn` go as usual. With `waiter`
 * (and batched adds, see {@link addsBatched}), each add also tells whether it created its job, and one that
 * met an existing job registers `waiter.producerId` as its waiter (see {@link AddWaiter}). With `take`, the
 * take runs in the last script call, behind the adds (see {@link AddTake}); when it cannot ride there, its
 * `alone` is called once the adds were issued.
 */
export function gatherAdds<T>(conn: RedisConnection, fn: () => T, waiter?: AddWaiter, take?: AddTake): T {
  const b = batchedOn.get(conn);
  if (b?.gathering) {
    // Inside another gathering the adds leave later, with it: a take sent now would run before them.
    take?.answered(Promise.resolve([]));
    return fn();
  }
  if (!b || (take && !b.takes)) {
    try {
      return b ? gatherAdds(conn, fn, waiter) : fn();
    } finally {
      take?.alone();
    }
  }
  const g: Gathering = { items: [], waiter, take };
  b.gathering = g;
  try {
    return fn();
  } finally {
    b.gathering = undefined;
    if (g.items.length > 0) b.send(g);
    else take?.alone();
  }
}
