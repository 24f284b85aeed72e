/**
 * A worker's fetch sent behind a producer's adds. BullMQ's worker fetches one job per `moveToActive` round
 * trip, in sequence, and starts the jobs it fetched only once its fetch loop stops (its concurrency reached,
 * or the queue empty): of 100 jobs added at once for an idle worker, the 100th starts after about 100 round
 * trips, and so does the first. When the producer and a worker of the same queue share a process
 * (`cell0 start`), the producer can send, on its own connection right behind its adds (one write, run in
 * that order), one call that fetches for that worker up to as many jobs as it added and the worker has free
 * slots: BullMQ's own `moveToActive` body run once per job, with a lock token of that worker, exactly as the
 * worker's fetch would (the oldest waiting job first, prioritized jobs, a paused or rate-limited queue, the
 * lock and its duration, the events). The jobs it takes are active and locked for that worker, durable as any
 * job the worker fetched itself: a worker that dies leaves them active, their locks expire, the stalled check
 * puts them back to wait. The call also reads each taken inference job's token stream marks (see
 * active-marks.lua), so the job starts with them at hand. The take usually rides in the batched adds' own
 * script call, after the last add (add-batch.ts AddTake), which then also removes the queue's wake-up marker
 * when nothing is left waiting: otherwise Redis would wake a worker blocked on the queue for jobs already
 * taken. Part of the BullMQ internals cell0 touches (see bullmq-internals.ts).
 */
import { type RedisConnection } from '../redis/cluster.js';
import { BULLMQ_INTERNALS_VERSION, bullmqScript } from './bullmq-internals.js';
import { integerArgsAsStrings } from '../redis/lua-integer-args.js';
import { perJobFunction } from './per-job-script.js';
import { eventLua, eventWritesFor } from './event-writes.js';

/** BullMQ 6.7's moveToActive: 11 keys, then 3 arguments (key prefix, timestamp, packed options). */
const KEYS = 11;

/** The command name cell0 defines for the take script on a connection. */
const COMMAND = `cell0TakeJobs:${BULLMQ_INTERNALS_VERSION}`;

/**
 * The take script: BullMQ's moveToActive text (its integer literals given to redis.call as strings: see
 * integerArgsAsStrings) wrapped as a function of (KEYS, ARGV) whose helpers are made once per call
 * (per-job-script.ts), called once per token until the queue has no job to give.
 *
 * KEYS[1..11] moveToActive's keys (the queue's wait, active, prioritized, events, stalled, limiter, delayed,
 *             paused, meta, pc and marker keys)
 * KEYS[12]    the queue's token stream marks gate ({prefix}:{queue}:cell0-marks), or the same as KEYS[2]
 *             when the queue's jobs have no marks to read
 * ARGV[1]     key prefix ({prefix}:{queue}:)
 * ARGV[2]     timestamp, ms
 * ARGV[3]     the lock's duration, ms
 * ARGV[4]     the worker's name ('' for none)
 * ARGV[5]     1 to read each taken job's marks, 0 not to
 * ARGV[6..]   one lock token per job to take
 * Returns, per job taken, { moveToActive's answer, wanted, cancel } (a mark absent as nil); when a call of
 * moveToActive takes no job, its answer alone ends the list.
 */
export function takeJobsLua(lua: string): string {
  return `${eventLua(false)}
${takeJobsFunction(lua)}
return cell0TakeJobs(KEYS, ARGV)
`;
}

/**
 * The take as a Lua function `cell0TakeJobs(KEYS, ARGV)` of the keys and arguments above (see
 * {@link takeJobsLua}), for a script that runs it after something else: the batched adds
 * (add-batch.ts), which run it right behind their adds in the same call.
 */
export function takeJobsFunction(lua: string): string {
  const shared = optsShared(lua);
  // With BullMQ's unpack of its options replaced, each call gets the options' table itself: no pack per job
  // here and no unpack of it there.
  const optsArg = shared === lua ? 'cmsgpack.pack(opts)' : '"", cell0Opts = opts';
  // BullMQ's integer literals given to redis.call as strings (the same arguments, without Redis's conversion).
  return `${perJobFunction('moveToActive', integerArgsAsStrings(shared))}
local function cell0TakeJobs(KEYS, ARGV)
  -- moveToActive's options as the worker packs them (a worker with a rate limiter does not take this way);
  -- the lock's duration as its text, which BullMQ's script only gives to SET ... PX: the same argument,
  -- without Redis's snprintf of a number per job taken.
  local opts = { lockDuration = ARGV[3] }
  if ARGV[4] ~= "" then opts["name"] = ARGV[4] end
  local marks = ARGV[5] == "1" and redis.call("EXISTS", KEYS[12]) == 1
  local out = {}
  for i = 6, #ARGV do
    opts["token"] = ARGV[i]
    local res = moveToActive(KEYS, { ARGV[1], ARGV[2], ${optsArg} })
    if type(res) ~= "table" or type(res[1]) ~= "table" then
      out[#out + 1] = res
      break
    end
    local wanted, cancel = false, false
    if marks then
      local base = ARGV[1] .. res[2]
      local m = redis.call("MGET", base .. ":cell0-tokens-wanted", base .. ":cell0-cancel")
      wanted, cancel = m[1], m[2]
    end
    out[#out + 1] = { res, wanted, cancel }
  end
  return out
end
`;
}

/** BullMQ's unpack of its options in moveToActive, a line of its own. */
const OPTS_UNPACK = /^local opts = cmsgpack\.unpack\(ARGV\[3\]\)[ \t]*$/gm;

/**
 * BullMQ's moveToActive text reading its options from `ARGV.cell0Opts` when the take hands it the table
 * (the options it would pack and BullMQ's script unpack again: one `cmsgpack.pack` and one
 * `cmsgpack.unpack` less per job taken). BullMQ's script only reads it. Returned unchanged when the line is
 * not found exactly once (another BullMQ's script): then the take packs the options for each job, as
 * BullMQ's worker does.
 */
export function optsShared(lua: string): string {
  if (lua.match(OPTS_UNPACK)?.length !== 1) return lua;
  return lua.replace(OPTS_UNPACK, 'local opts = ARGV.cell0Opts or cmsgpack.unpack(ARGV[3])');
}

/** The queue keys a take needs (BullMQ's QueueKeys of the worker's queue). */
export interface TakeKeys {
  wait: string;
  active: string;
  prioritized: string;
  events: string;
  stalled: string;
  limiter: string;
  delayed: string;
  paused: string;
  meta: string;
  pc: string;
  marker: string;
  /** The key prefix ({prefix}:{queue}:). */
  '': string;
}

/** One job a take moved to active. */
export interface TakenJob {
  /** BullMQ's moveToActive answer for it ([job fields, job id, rate-limit delay, next delayed]). */
  raw: unknown[];
  /** The lock token it was taken with. */
  token: string;
  /** Its `wanted` and `cancel` marks, when they were read (else undefined). */
  marks: readonly (string | null)[] | undefined;
}

/** What a take sends (besides its keys). */
export interface TakeRequest {
  keys: TakeKeys;
  /** The queue's marks gate, to read each taken job's marks; undefined when it has none. */
  marksGate: string | undefined;
  /** One lock token per job to take (the worker's id and a suffix of its own). */
  tokens: string[];
  /** The lock's duration, ms (the worker's). */
  lockDuration: number;
  /** The worker's name option, if any. */
  name: string | undefined;
}

type TakeCommand = (...a: unknown[]) => Promise<unknown>;

/** The connections on which the take script is defined (a WeakSet: no strong reference). */
const definedOn = new WeakSet<RedisConnection>();

/**
 * Defines the take script on `conn` (once). Call it once BullMQ has loaded its scripts on `conn` (a Queue on
 * it is ready). Returns false, changing nothing, when BullMQ's moveToActive is not found as expected.
 */
export function defineTakeJobs(conn: RedisConnection): boolean {
  if (definedOn.has(conn)) return true;
  const found = bullmqScript(conn, 'moveToActive', KEYS);
  if (!found) return false;
  const target = conn as unknown as Record<string, unknown>;
  if (!(COMMAND in target))
    conn.defineCommand(COMMAND, {
      numberOfKeys: KEYS + 1,
      lua: takeJobsLua(eventWritesFor(conn, found.lua)),
    });
  definedOn.add(conn);
  return true;
}

/** The take's 12 keys and its arguments (see {@link takeJobsLua}). */
export function takeArguments(req: TakeRequest): { keys: string[]; args: (string | number)[] } {
  const k = req.keys;
  return {
    keys: [
      k.wait,
      k.active,
      k.prioritized,
      k.events,
      k.stalled,
      k.limiter,
      k.delayed,
      k.paused,
      k.meta,
      k.pc,
      k.marker,
      req.marksGate ?? k.active,
    ],
    args: [k[''], Date.now(), req.lockDuration, req.name ?? '', req.marksGate ? 1 : 0, ...req.tokens],
  };
}

/** The jobs a take's answer names, in token order. */
export function takenJobs(req: TakeRequest, res: unknown[]): TakenJob[] {
  const out: TakenJob[] = [];
  for (let i = 0; i < res.length; i++) {
    const r = res[i];
    if (!Array.isArray(r) || !Array.isArray(r[0])) break;
    out.push({
      raw: r[0] as unknown[],
      token: req.tokens[i]!,
      marks: req.marksGate ? [(r[1] as string | null) ?? null, (r[2] as string | null) ?? null] : undefined,
    });
  }
  return out;
}

/**
 * A take of jobs for a worker, its slots held in the worker (see {@link LocalTaker.reserve}): send it once,
 * behind the adds, and hand its answer over with `answered` (exactly once).
 */
export interface PendingTake {
  request: TakeRequest;
  answered(res: Promise<unknown[]>): void;
}

/**
 * A worker in the producer's own process (`cell0 start`) that takes the jobs the producer adds right behind
 * its adds, when it has free slots (see the top of this file), instead of waiting for its fetch loop.
 */
export interface LocalTaker {
  /**
   * A take of up to `count` jobs of the queue `queueKey` ({prefix}:{queue}) for the worker, with as many of
   * its slots held; undefined when it has none free (or does not serve the queue). Must not throw.
   */
  reserve(queueKey: string, count: number): PendingTake | undefined;
}

/**
 * Sends `take` on `conn` now, on its own (one call of the take script: it runs in Redis behind every command
 * issued on `conn` before it), and hands its answer over.
 */
export function sendTake(conn: RedisConnection, take: PendingTake): void {
  if (!defineTakeJobs(conn)) {
    take.answered(Promise.resolve([]));
    return;
  }
  const send = (conn as unknown as Record<string, TakeCommand>)[COMMAND]!;
  const { keys, args } = takeArguments(take.request);
  take.answered(send.call(conn, ...keys, ...args) as Promise<unknown[]>);
}
