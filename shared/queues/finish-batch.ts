/**
 * Several BullMQ finishes in one script call. A worker with concurrency C finishes up to C jobs in one turn
 * of the event loop (the jobs of one fetch answer run together); BullMQ sends each finish as its own
 * `moveToFinished` EVALSHA with its 14 keys and 9 arguments (~1.1 KB per job with cell0's key names). Here
 * the finishes of one tick on one connection go to Redis as one call of a script that runs BullMQ's own
 * `moveToFinished` script body once per job, in order: the keys every job shares are sent once, each job
 * adds its own key and its 9 arguments. Each job's finish does exactly what BullMQ's call does (the same
 * Lua, its helpers defined once per call and its integer literals given to redis.call as the strings Redis
 * would make of them; the same keys and arguments, the same data layout; only the approximate trim of the event stream and
 * the count for the metrics are done once per call, see trimOncePerCall and countOncePerCall, and the event
 * stream entries of the jobs cell0's producers added are left out unless the connection keeps them, see
 * event-writes.ts), and each
 * caller gets its own answer: the next
 * job to run, 0, a negative code, or its own error (a job's Lua error is caught per job, its neighbours
 * are finished as usual). The replies to the producers waiting for those jobs can ride in the same call
 * ({@link replyWithFinish}): then a job's finish and its reply are one command, a lone finish included, and
 * the finishes of a whole turn of the event loop share the call (the jobs whose backend answers came in one
 * poll end in callbacks of their own, a tick each): it is sent as the connection's writes held over the turn
 * leave (connection.ts beforeSend), so a finish leaves no later than its own bytes would have.
 * Part of the BullMQ internals cell0 touches (see bullmq-internals.ts).
 */
import { type RedisConnection } from '../redis/cluster.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeSend } from '../redis/connection.js';
import { integerArgsAsStrings } from '../redis/lua-integer-args.js';
import { LUA_DIR } from '../redis/lua-scripts.js';
import { BULLMQ_INTERNALS_VERSION, bullmqScript } from './bullmq-internals.js';
import { eventLua, eventWritesFor } from './event-writes.js';
import { optsTokenSplit } from './lean-job-codec.js';

/** BullMQ 6.7's moveToFinished: 14 keys (the 12th the job's own hash), then 9 arguments. */
const KEYS = 14;
const JOB_KEY = 11;
/** The target set of the finish (completed or failed) among the keys (0-based). */
const FINISH_SET = 10;
const ARGS = 9;
/** Most finishes in one call (Redis runs a call atomically; this bounds how long it holds the server). */
const MAX_BATCH = 64;

/**
 * A reply to the producers waiting for a job, sent in the same script call as the job's finish (see
 * {@link replyWithFinish}): once the job's finish has moved the job to its finished set, the reply
 * goes to the inbox of the job's adder and of each producer in its waiter set, which is emptied (as
 * reply-finished.lua does, behind the finish).
 */
export interface FinishReply {
  /** The job's waiter set ({prefix}:{queue}:{jobId}:cell0-waiters). */
  waiterKey: string;
  /**
   * The reply as the producers read it (job-replies.ts encodeRawReply), or {@link REPLY_FROM_FINISH}: then
   * the script builds it from the finish's own arguments (job id, finish time, value, target) exactly as
   * encodeRawReply does, and the job's value goes to Redis once instead of twice.
   */
  reply: string;
  /**
   * The producer that added the job: '' for none, '?' when unknown (read from the job's options),
   * {@link LOCAL_ADDER} for the producer of the finishing process, whose reply is handed over in process (no
   * inbox). Unless the connection writes every event (event-writes.ts), the finish writes BullMQ's event
   * entries only for a job with no adder or an unknown one.
   */
  adder: string;
  /** The inbox key prefix ({prefix}:{queue}:cell0-reply:): the same for every reply of a connection. */
  inboxPrefix: string;
  /** Inbox lifetime after a reply, ms. */
  inboxTtlMs: number;
  /**
   * Called once the call is answered: the number of producers the reply went to, or -1 when it went to
   * none because the job was not finished (or the call failed).
   */
  done: (count: number) => void;
}

/** A finish waiting to be sent with its batch. */
interface Pending {
  args: unknown[];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  reply?: FinishReply;
}

interface Batch {
  /** The keys the batch's finishes share (all but the job's own): a finish whose keys differ starts another. */
  shared: unknown[];
  /** The arguments the batch's finishes share ({@link SHARED_ARGS}): a finish whose differ starts another. */
  sharedArgs: unknown[];
  /** What each riding reply's waiter set adds to its job's key (the first reply's; see replyWithFinish). */
  waiterSuffix?: string;
  items: Pending[];
  sent?: boolean;
  /** The inbox prefix and lifetime of the replies riding with the batch (the first one's). */
  inbox?: { prefix: string; ttlMs: number };
}

/** What {@link batchFinishes} has sent on a connection so far. */
export interface FinishBatchStats {
  /** Batched script calls (of two finishes or more). */
  calls: number;
  /** Finishes sent in those calls. */
  finishes: number;
  /** Finishes sent alone (BullMQ's own call): a batch of one finish, or a call of another shape. */
  single: number;
  /** Script calls that carried their finishes' replies too (one finish or more; see replyWithFinish). */
  withReplies: number;
}

/** A {@link FinishReply.adder}: the job's adder is the finishing process's own producer (no inbox). */
export const LOCAL_ADDER = '-';

/**
 * A {@link FinishReply.reply} that asks the script to build the reply from the finish's own arguments (see
 * encodeRawReply): no JSON reply is a lone "=".
 */
export const REPLY_FROM_FINISH = '=';

/**
 * BullMQ's `moveToFinished` tests its script's answer with `result < 0` before reading it. For an answer that
 * carries the next job (an array: the job's fields, its id, its delays) that comparison converts the whole
 * array to a string, every field of the job joined (~1 KB of garbage and a copy of the job per finish),
 * only to compare NaN with 0. The answer handed back compares as NaN without that string: the same outcome,
 * since an array of two or more elements joins with a comma, and a string with a comma is never a number.
 * Anything else is returned as it is.
 */
function comparesAsNaN<T>(answer: T): T {
  if (Array.isArray(answer) && answer.length > 1)
    Object.defineProperty(answer, Symbol.toPrimitive, { value: asNumberNaN });
  return answer;
}
/** NaN where a number is asked for (as the joined string would convert), else the array's own string. */
function asNumberNaN(this: unknown[], hint: string): number | string {
  return hint === 'number' ? NaN : this.join(',');
}

/** The command name cell0 defines for the batched script on a connection. */
const COMMAND = `cell0FinishBatch:${BULLMQ_INTERNALS_VERSION}`;
/** The command name of the batched script that hands its jobs' replies over too. */
const REPLY_COMMAND = `cell0FinishReply:${BULLMQ_INTERNALS_VERSION}`;
/**
 * BullMQ's arguments that every finish of a batch shares (0-based among its 9): the property the value is
 * stored under, the target set, whether to fetch the next job, the queue's key prefix. The script with replies
 * takes them once per call; a finish whose differ starts another batch.
 */
const SHARED_ARGS = [2, 4, 5, 6] as const;
/** BullMQ's arguments each finish sends in the script with replies: job id, time, value, options, fields. */
const OWN_ARGS = [0, 1, 3, 7, 8] as const;
/** Each job's arguments in the script with replies: its own 5 of BullMQ's, its reply ('' none), its adder. */
const REPLY_ARGS = OWN_ARGS.length + 2;
/**
 * The script with replies' arguments before the jobs': inbox prefix, lifetime, marks prefix, shared, suffix,
 * shared options.
 */
const REPLY_HEAD = 3 + SHARED_ARGS.length + 2;
/** Where BullMQ's arguments carry the packed options (0-based among its 9). */
const OPTS_ARG = 7;

/** Per connection batched here: the finish just queued (a reply may ride with it until it is sent). */
const lastQueued = new WeakMap<RedisConnection, { item: Pending; batch: Batch } | undefined>();

/**
 * Token stream marks read in the finishes' own script call (see {@link readMarksWithFinishes}): the keys of
 * the queue whose jobs' marks are read, and who takes them.
 */
export interface FinishMarks {
  /** The queue's marks gate ({prefix}:{queue}:cell0-marks): absent, no job of the queue has a mark. */
  gateKey: string;
  /**
   * The queue's job key prefix ({prefix}:{queue}:): a job's marks are `<prefix><id>:cell0-tokens-wanted`
   * and `<prefix><id>:cell0-cancel`.
   */
  jobKeyPrefix: string;
  /**
   * Called, before BullMQ has the answer, for each job a finish of the call fetched, with its activation
   * (`processedOn`) and its marks ([wanted, cancel], null when absent): they hold for that activation, read
   * in the same atomic call as the fetch. Must not throw (a throw is swallowed).
   */
  onFetched: (jobId: string, processedOn: number, marks: readonly [string | null, string | null]) => void;
}

/** The connections whose finishes {@link batchFinishes} sends in the script with replies. */
const batchedWithReplies = new WeakSet<RedisConnection>();
/** Per connection batched here with replies: the marks read with its finishes, if asked for. */
const marksWith = new WeakMap<RedisConnection, FinishMarks>();
/** The marks of a job fetched while no job of the queue has a mark. */
const NO_MARKS: readonly [null, null] = Object.freeze([null, null]);
/** The inbox of a batch whose call carries no reply (it is sent with the reply script for its marks). */
const NO_INBOX = Object.freeze({ prefix: '', ttlMs: 0 });

/**
 * Whether a finish's arguments name the keys a batch's finishes share (all but the job's own hash) and
 * carry the arguments they share ({@link SHARED_ARGS}).
 */
function sameShared(b: Batch, args: readonly unknown[]): boolean {
  const shared = b.shared;
  for (let k = 0; k < JOB_KEY; k++) if (shared[k] !== args[k]) return false;
  for (let k = JOB_KEY + 1; k < KEYS; k++) if (shared[k - 1] !== args[k]) return false;
  for (let a = 0; a < SHARED_ARGS.length; a++)
    if (b.sharedArgs[a] !== args[KEYS + SHARED_ARGS[a]!]) return false;
  return true;
}

/** Whether a finish's job key is its key prefix and job id joined, as BullMQ builds it (the script with
 * replies builds it so, instead of being sent it). */
function jobKeyDerivable(args: readonly unknown[]): boolean {
  return args[JOB_KEY] === `${String(args[KEYS + 6])}${String(args[KEYS])}`;
}

/** Hands the marks of the jobs a finish call fetched to `m.onFetched` (see FinishMarks). */
function deliverMarks(m: FinishMarks, results: unknown[], marks: unknown): void {
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (!Array.isArray(r) || !Array.isArray(r[0]) || typeof r[1] !== 'string') continue;
    const fields = r[0] as unknown[];
    let processedOn = NaN;
    for (let f = 0; f + 1 < fields.length; f += 2)
      if (fields[f] === 'processedOn') {
        processedOn = Number(fields[f + 1]);
        break;
      }
    if (!Number.isFinite(processedOn)) continue;
    let found: readonly [string | null, string | null] = NO_MARKS;
    if (Array.isArray(marks)) {
      const wanted = marks[2 * i] as string | null | undefined;
      const cancel = marks[2 * i + 1] as string | null | undefined;
      if (wanted != null || cancel != null) found = [wanted ?? null, cancel ?? null];
    }
    try {
      m.onFetched(r[1], processedOn, found);
    } catch {
      // The job then reads its marks as it starts.
    }
  }
}

/**
 * The batched script: BullMQ's moveToFinished text (`lua`) wrapped as a function of (KEYS, ARGV), called per
 * job with that job's keys and arguments rebuilt from the shared keys.
 *
 * KEYS[1..13] the keys of BullMQ's call without the job's hash (its KEYS[12]); KEYS[14..] each job's hash
 * ARGV         each job's 9 arguments, one job after the other
 * Returns, per job, what BullMQ's script returns for it (an error reply when its run raised an error). Once a
 * finish has looked for the next job and found none, the later ones do not look (see finishReplyLua).
 */
export function finishBatchLua(lua: string): string {
  return `${finishOneLua(lua)}
local out = {}
local missed = false
for i = 1, #KEYS - ${KEYS - 1} do
  local args = { unpack(ARGV, (i - 1) * ${ARGS} + 1, i * ${ARGS}) }
  -- After a finish that found no next job, the later ones do not look (as in finishReplyLua).
  if missed then args[6] = "0" end
  local res = finishOne(KEYS[${KEYS - 1} + i], args)
  out[i] = res
  if args[6] == "1" and (res == 0 or (type(res) == "table" and res.err == nil and type(res[1]) ~= "table")) then
    missed = true
  end
end
-- Outside any finish's own run: a failure here must not take the finishes' answers with it.
pcall(collectDueMetrics)
return out
`;
}

/** BullMQ's unpacking of a finish's options in moveToFinished. */
const UNPACK_OPTS = /\bcmsgpack\.unpack\(ARGV\[8\]\)/g;

/**
 * BullMQ's moveToFinished text with its unpacking of the finish's packed options (`cmsgpack.unpack(ARGV[8])`,
 * ~11,000 Redis instructions for a worker's 11 options) made through `cell0Opts(ARGV[8])`: a finish whose
 * options argument is a token (text whose first byte is below 0x80; packed options begin with a map's byte,
 * 0x80 or above) gets the call's shared options (`cell0OptsPacked`, unpacked once per call) with that token,
 * as if its own options had been packed with it. The table is shared by the call's finishes, each setting its
 * token before it runs: BullMQ's finish reads its options and never writes them, and the finishes of a call
 * run one after the other. Undefined when the unpacking is not found exactly once (another BullMQ's script):
 * then every finish sends its own options.
 */
export function optsOncePerCall(lua: string): string | undefined {
  if (lua.match(UNPACK_OPTS)?.length !== 1) return undefined;
  return lua.replace(UNPACK_OPTS, 'cell0Opts(ARGV[8])');
}

/** The Lua behind {@link optsOncePerCall}. */
const SHARED_OPTS_LUA = `local cell0OptsPacked, cell0OptsShared = nil, nil
local function cell0Opts(packed)
  local first = string.byte(packed, 1)
  if cell0OptsPacked and first and first < 128 then
    if not cell0OptsShared then cell0OptsShared = cmsgpack.unpack(cell0OptsPacked) end
    cell0OptsShared.token = packed
    return cell0OptsShared
  end
  return cmsgpack.unpack(packed)
end`;

/** BullMQ's trim of the queue's event stream in moveToFinished, a line of its own (its indentation kept). */
const TRIM_CALL = /^([ \t]*)trimEvents\(metaKey, eventStreamKey\)[ \t]*$/gm;

/**
 * BullMQ's moveToFinished text with its trim of the queue's event stream (an HGET of the length limit and an
 * approximate XTRIM) run by the first finish of a batched call only, not by each: the finishes of one call
 * share the event stream and the limit, and the trim is approximate (`MAXLEN ~`) anyway, so a call of n
 * finishes leaves the stream at most its own events longer than n calls would have, and trimmed by the next
 * call. The flag `trimmed` is the batched script's (one per call). The text is returned unchanged when the
 * call is not found exactly once (another BullMQ's script): then every finish trims, as BullMQ's own call does.
 */
export function trimOncePerCall(lua: string): string {
  const found = lua.match(TRIM_CALL);
  if (found?.length !== 1) return lua;
  return lua.replace(
    TRIM_CALL,
    '$1if not trimmed then trimmed = true; trimEvents(metaKey, eventStreamKey) end',
  );
}

/** BullMQ's count of a finish for its metrics in moveToFinished, a line of its own (its indentation kept). */
const METRICS_CALL =
  /^([ \t]*)collectMetrics\(KEYS\[13\], KEYS\[13\] \.\. ':data', maxMetricsSize, timestamp\)[ \t]*$/gm;

/**
 * BullMQ's moveToFinished text with its count of the finish for the queue's metrics (an HINCRBY of the
 * count and an HGET of the last data point's time, per finish) gathered for the whole batched call: each
 * finish only adds 1 to the call's tally (`countMetrics`), and the call then counts them all at once
 * (`collectDueMetrics`, BullMQ's collectMetrics with an increment of n, at the first finish's time). The
 * counts and data points are those n calls would have left, except that the finishes of a call that
 * straddles a minute's end all count in the minute it started in. The text is returned unchanged when the
 * call is not found exactly once: then each finish counts itself, as BullMQ's own call does.
 */
export function countOncePerCall(lua: string): string {
  const found = lua.match(METRICS_CALL);
  if (found?.length !== 1) return lua;
  return lua.replace(METRICS_CALL, '$1countMetrics(KEYS[13], maxMetricsSize, timestamp)');
}

/**
 * The Lua behind {@link countOncePerCall}: `countMetrics(metaKey, maxDataPoints, timestamp)` adds a finish
 * to the call's tally (a finish of other metrics first counts the tally so far), `collectDueMetrics()`
 * counts the tally (BullMQ's includes/collectMetrics.lua, 6.7, with an increment of n instead of 1).
 */
const COUNT_METRICS_LUA = `local metricsDue = nil
local function collectDueMetrics()
  local m = metricsDue
  if not m then return end
  metricsDue = nil
  local metaKey, dataPointsList, maxDataPoints, timestamp = m.key, m.key .. ':data', m.max, m.ts
  local count = redis.call("HINCRBY", metaKey, "count", m.n) - m.n
  local prevTS = redis.call("HGET", metaKey, "prevTS")
  if not prevTS then
    redis.call("HSET", metaKey, "prevTS", timestamp, "prevCount", 0)
    return
  end
  local N = math.min(math.floor(timestamp / 60000) - math.floor(prevTS / 60000), tonumber(maxDataPoints))
  if N > 0 then
    local delta = count - redis.call("HGET", metaKey, "prevCount")
    local points = { delta }
    for i = 2, N do points[i] = 0 end
    for from = 1, #points, 7000 do
      redis.call("LPUSH", dataPointsList, unpack(points, from, math.min(from + 6999, #points)))
    end
    redis.call("LTRIM", dataPointsList, 0, maxDataPoints - 1)
    redis.call("HSET", metaKey, "prevCount", count, "prevTS", timestamp)
  end
end
local function countMetrics(metaKey, maxDataPoints, timestamp)
  local m = metricsDue
  if m and m.key == metaKey and m.max == maxDataPoints then
    m.n = m.n + 1
    return
  end
  collectDueMetrics()
  metricsDue = { key = metaKey, max = maxDataPoints, ts = timestamp, n = 1 }
end`;

/** A helper's definition at the left margin of BullMQ's text, or its end, or BullMQ's alias of redis.call. */
const HELPER_LINE =
  /^(local function [A-Za-z_]\w*\s*\(|local [A-Za-z_]\w* = function\s*\(|end\b|local rcall = redis\.call\s*$)/;
/** A read of the script's KEYS or ARGV. */
const KEYS_OR_ARGV = /\b(KEYS|ARGV)\b/;

/**
 * BullMQ's script text split where the script proper begins: its helpers (the functions its includes
 * define, and its `rcall` alias of redis.call), then the rest. BullMQ's scripts put their includes first, so
 * a wrapper that runs a script once per job would define every helper again per job: moveToFinished has 37,
 * ~5 µs of Redis time per finish to make their closures (Redis 7.0, measured by a loop in Lua), for nothing,
 * since they read neither KEYS nor ARGV nor any state of their own. With the helpers defined once per call,
 * before the per-job function, each job runs the same code. The split is taken only when it is plain: the
 * rest begins at the first line at the left margin (comments aside) that reads KEYS or ARGV, and every line
 * at the left margin before it is a helper's definition, its `end` or the alias, with no KEYS or ARGV
 * anywhere before it (so a helper reads neither, and no helper keeps a variable of its own across calls).
 * Else undefined: the whole text then runs per job, as before.
 */
export function splitHelpers(lua: string): { helpers: string; rest: string } | undefined {
  const lines = lua.split('\n');
  // The text's code without its comments, line for line (block comments, then the rest of a line after --).
  const code = lua
    .replace(/--\[(=*)\[[\s\S]*?\]\1\]/g, (c) => c.replace(/[^\n]/g, ''))
    .replace(/--.*$/gm, '')
    .split('\n');
  const cut = code.findIndex((l) => /^\S/.test(l) && KEYS_OR_ARGV.test(l));
  if (cut <= 0) return undefined;
  for (let i = 0; i < cut; i++) {
    const l = code[i]!;
    if (KEYS_OR_ARGV.test(l)) return undefined;
    if (/^\S/.test(l) && !HELPER_LINE.test(l)) return undefined;
  }
  if (!code.slice(0, cut).some((l) => l.startsWith('local rcall = redis.call'))) return undefined;
  return { helpers: lines.slice(0, cut).join('\n'), rest: lines.slice(cut).join('\n') };
}

/**
 * What both batched scripts share: BullMQ's moveToFinished text (`lua`) as a function of (KEYS, ARGV), its
 * helpers defined once per call before it (see {@link splitHelpers}), and `finishOne(jobKey, args)`, which
 * runs it for one job with BullMQ's keys rebuilt from the shared ones (the job's hash put back as its
 * KEYS[12]) and returns what it returns (an error reply when its run raised an error, false for nil) and
 * the keys it ran with.
 */
function finishOneLua(lua: string): string {
  // BullMQ's integer literals given to redis.call as strings (the same arguments, without Redis's conversion).
  const trimmed = countOncePerCall(trimOncePerCall(lua));
  const text = integerArgsAsStrings(optsOncePerCall(trimmed) ?? trimmed);
  const split = splitHelpers(text);
  // The helpers after cell0's own (their names are BullMQ's, as when they were defined inside the function).
  return `local trimmed = false
${eventLua(true)}
${COUNT_METRICS_LUA}
${SHARED_OPTS_LUA}
${split?.helpers ?? ''}
local function moveToFinished(KEYS, ARGV)
${split?.rest ?? text}
end
local shared = {}
for i = 1, ${KEYS - 1} do shared[i] = KEYS[i] end
local function finishOne(jobKey, args)
  local keys = {}
  for k = 1, ${JOB_KEY} do keys[k] = shared[k] end
  keys[${JOB_KEY + 1}] = jobKey
  for k = ${JOB_KEY + 2}, ${KEYS} do keys[k] = shared[k - 1] end
  local ok, res = pcall(moveToFinished, keys, args)
  if not ok then
    if not (type(res) == "table" and res.err) then res = redis.error_reply(tostring(res)) end
  elseif res == nil then
    res = false
  end
  return res, keys
end`;
}

/**
 * The batched script that also hands each finished job's reply to its waiting producers (reply-finished.lua
 * folded in): one call per tick for the finishes and their replies, a single finish included. With a marks
 * prefix it also reads the token stream marks of the jobs its finishes fetched (what active-marks.lua does
 * behind a fetch), in the same call: a job fetched by a finish starts with its marks at hand, and the tick
 * sends no command for them.
 *
 * KEYS[1..13] the keys of BullMQ's call without the job's hash (its KEYS[12]); KEYS[14], with a marks
 *             prefix, the queue's marks gate ({prefix}:{queue}:cell0-marks). Each job's hash is not sent:
 *             it is BullMQ's key prefix and the job's id joined (as BullMQ builds it), and its waiter set
 *             that hash's key and the waiter suffix joined; all in the queue's hash slot, like the keys.
 * ARGV[1]     inbox key prefix ({prefix}:{queue}:cell0-reply:), followed by each producer id
 * ARGV[2]     inbox lifetime, ms
 * ARGV[3]     marks: the job key prefix ({prefix}:{queue}:) whose jobs' marks are read, '' for none
 * ARGV[4..7]  BullMQ's arguments every finish of the call shares: the value's property, the target, fetch
 *             next, the key prefix (its ARGV[3], [5], [6], [7])
 * ARGV[8]     the waiter suffix (':cell0-waiters'), '' when no reply rides
 * ARGV[9]     the call's shared packed options ('' none): those of its finishes whose options argument is
 *             a token, packed with an empty token (see optsOncePerCall)
 * ARGV[10..]  per job: its own 5 of BullMQ's arguments (id, time, value, options, fields to update: its
 *             ARGV[1], [2], [4], [8], [9]; its options either packed or, with ARGV[9], its lock token alone:
 *             then the shared options with that token), its reply ('' for none, '=' to build it from the job's id,
 *             finish time, value and target, as encodeRawReply does), the producer that added it ('' none,
 *             '?' unknown: read from the job's options)
 * Once a finish of the call has tried to fetch the next job and found none (BullMQ's answer 0, or its
 * {0, 0, ttl, delay} of a queue paused, maxed, rate limited or with delayed jobs only), the finishes after it
 * do not try (they run as with fetch next off, answering 0): under load, where most finishes of a worker
 * with free slots find the queue empty, this spares each ~6 reads of the same empty lists and sets. A fetch
 * by a finish is only BullMQ's saving of a round trip: a job that a later finish of the call would have
 * found (a delayed job falling due within the call, a parent its child's finish moves to wait, a slot of a
 * maxed queue that a finish frees) is taken by the worker's next fetch, as when any finish finds none.
 * A job's reply goes out when its finish moved it to its finished set, which BullMQ's answer tells (a
 * negative code or an error when it did not: job or lock gone, not active), with no read of that set; a
 * reply whose adder is unknown ('?') goes out only while the job is still in that set (its stored options
 * name the adder: a job removed on completion has none, and its reply follows its event, which knows it).
 * Returns { per job what BullMQ's script returns for it, per job the producers its reply went to (-1 when
 * the job was not finished, or has no reply), marks }: marks is 0 when none were read (none
 * asked, or the gate is absent: no job of the queue has a mark), else per job the `wanted` and `cancel`
 * marks of the job its finish fetched (nil when absent or when it fetched none).
 */
export function finishReplyLua(lua: string): string {
  return `${finishOneLua(lua)}
${inboxRepliesLua()}
-- The reply encodeRawReply (job-replies.ts) makes of a finish's job id, finish time, value and target.
local function replyOf(jobId, finishedOn, value, target)
  local v = value
  if target == "failed" then v = cjson.encode(value) elseif value == "" then v = "null" end
  return '{"j":' .. cjson.encode(jobId) .. ',"s":' .. (target == "completed" and "1" or "2") ..
    ',"t":' .. finishedOn .. ',"v":' .. v .. '}'
end
-- Whether BullMQ's moveToFinished moved its job to its finished set, by its answer: 0 or the next job when
-- it did; a negative code (job or lock gone, not active) or an error when it did not.
local function moved(res)
  if type(res) == "table" then return res.err == nil end
  return type(res) == "number" and res >= 0
end
local out = {}
local counts = {}
local acc = { lists = {}, order = {} }
local marksPrefix = ARGV[3]
local prop, target, fetchNext, keyPrefix, waiterSuffix = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if ARGV[9] ~= "" then cell0OptsPacked = ARGV[9] end
local jobs = math.floor((#ARGV - ${REPLY_HEAD}) / ${REPLY_ARGS})
for i = 1, jobs do
  local base = ${REPLY_HEAD} + (i - 1) * ${REPLY_ARGS}
  local jobId, finishedOn, value = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local jobKey = keyPrefix .. jobId
  local reply, adder = ARGV[base + 6], ARGV[base + 7]
  -- The event entries of a job no cell0 producer added ('' none, '?' not known here), for its QueueEvents
  -- listeners; a job of this process's own producer ('${LOCAL_ADDER}') has none, like a job of another's.
  cell0Events = adder == "" or adder == "?"
  if adder == "${LOCAL_ADDER}" then adder = "" end
  local res, keys = finishOne(jobKey,
    { jobId, finishedOn, prop, value, target, fetchNext, keyPrefix, ARGV[base + 4], ARGV[base + 5] })
  out[i] = res
  -- A finish that moved its job but fetched none (the queue empty, paused, maxed or rate limited): the
  -- finishes after it in this call do not try again (see finishReplyLua).
  if fetchNext == "1" and moved(res) and not (type(res) == "table" and type(res[1]) == "table") then
    fetchNext = "0"
  end
  if reply ~= "" and moved(res) and (adder ~= "?" or redis.call("ZSCORE", keys[${FINISH_SET + 1}], jobId)) then
    if reply == "${REPLY_FROM_FINISH}" then reply = replyOf(jobId, finishedOn, value, target) end
    adder = adderOf(jobKey, adder)
    counts[i] = popWaiters(acc, jobKey .. waiterSuffix, ARGV[1], reply, adder)
  else
    counts[i] = -1
  end
end
pushReplies(acc, ARGV[2])
pcall(collectDueMetrics)
local marks = 0
if marksPrefix ~= "" and redis.call("EXISTS", KEYS[#KEYS]) == 1 then
  marks = {}
  for i = 1, jobs do
    local r = out[i]
    -- A fetched job: BullMQ's answer is { its fields, its id, ... }.
    if type(r) == "table" and type(r[1]) == "table" and type(r[2]) == "string" then
      local job = marksPrefix .. r[2]
      local m = redis.call("MGET", job .. ":cell0-tokens-wanted", job .. ":cell0-cancel")
      marks[2 * i - 1] = m[1]
      marks[2 * i] = m[2]
    else
      marks[2 * i - 1] = false
      marks[2 * i] = false
    end
  end
end
return { out, counts, marks }
`;
}

/** The shared Lua of the result-path scripts (the same functions reply-finished.lua includes). */
function inboxRepliesLua(): string {
  return readFileSync(join(LUA_DIR, 'includes', 'inbox-replies.lua'), 'utf8');
}

/**
 * Makes BullMQ's `moveToFinished` calls on `conn` that are made in one tick (with the script with replies: in
 * one turn of the event loop) go to Redis as one script call (see the module comment); a call of another
 * shape is passed on unchanged. Call it once BullMQ has loaded its scripts on `conn` (the worker is ready)
 * and before any other hook on that command (hooks added later see each finish as before, and a command
 * they send on `conn` runs behind it when they send it by beforeSend (connection.ts), or at the tick's end
 * for a batch sent at the tick's end: the batch goes out first, being scheduled first). Resolves false,
 * undefined, changing nothing, when BullMQ's script is not found as expected or the batched script does not
 * compile; else the connection's counts (the same object when called again).
 */
export async function batchFinishes(conn: RedisConnection): Promise<FinishBatchStats | undefined> {
  const found = bullmqScript(conn, 'moveToFinished', KEYS);
  if (!found) return undefined;
  const target = conn as unknown as Record<string, unknown>;
  const current = target[found.name] as { cell0Batched?: FinishBatchStats; cell0Hooks?: unknown };
  if (current.cell0Batched) return current.cell0Batched;
  // Hooked already (bullmq-internals.ts): batches sent under the hook would not be seen by it.
  if (current.cell0Hooks) return undefined;
  // Without the event stream's writes unless the connection keeps them (event-writes.ts).
  const bullmqLua = eventWritesFor(conn, found.lua);
  const lua = finishBatchLua(bullmqLua);
  const replyLua = finishReplyLua(bullmqLua);
  const load = (text: string) =>
    (conn as unknown as { script(sub: 'LOAD', lua: string): Promise<unknown> }).script('LOAD', text);
  try {
    // A script that does not compile would fail every finish of a batch: checked once, here.
    await load(lua);
  } catch {
    return undefined;
  }
  // Without the script with replies, replies go behind the finishes in a command of their own.
  const withReplies = await load(replyLua).then(
    () => true,
    () => false,
  );
  const stats: FinishBatchStats = { calls: 0, finishes: 0, single: 0, withReplies: 0 };
  // Whether the script with replies takes a finish's options as its token, with the call's shared options.
  const sharesOpts = optsOncePerCall(bullmqLua) !== undefined;
  if (!(COMMAND in target)) conn.defineCommand(COMMAND, { lua });
  if (withReplies && !(REPLY_COMMAND in target)) conn.defineCommand(REPLY_COMMAND, { lua: replyLua });
  const send = target[COMMAND] as (...a: unknown[]) => Promise<unknown[]>;
  const sendWithReplies = target[REPLY_COMMAND] as (
    ...a: unknown[]
  ) => Promise<[unknown[], unknown[], unknown]>;
  const original = target[found.name] as (...a: unknown[]) => unknown;
  let batch: Batch | undefined;
  const replied = (item: Pending, count: number) => {
    try {
      item.reply?.done(count);
    } catch {
      // A reply's callback must not keep the finishes' answers from their callers.
    }
  };
  const flushWithReplies = (b: Batch, inbox: { prefix: string; ttlMs: number }) => {
    if (inbox !== NO_INBOX) stats.withReplies++;
    if (b.items.length > 1) {
      stats.calls++;
      stats.finishes += b.items.length;
    } else stats.single++;
    const marks = marksWith.get(conn);
    // The call's arguments built in one array (the key count, the keys, then ARGV), handed over with apply:
    // no spread of the keys and arguments into a copy per call.
    const args: unknown[] = [b.shared.length + (marks ? 1 : 0)];
    for (const k of b.shared) args.push(k);
    if (marks) args.push(marks.gateKey);
    args.push(inbox.prefix, inbox.ttlMs, marks?.jobKeyPrefix ?? '');
    for (const a of b.sharedArgs) args.push(a);
    args.push(b.waiterSuffix ?? '');
    // The options the call's finishes share (packed with an empty token), from the first finish built so:
    // each finish with the same ones sends its token alone (see optsOncePerCall).
    let sharedOpts: Buffer | undefined;
    if (sharesOpts)
      for (const item of b.items) {
        const split = optsTokenSplit(item.args[KEYS + OPTS_ARG]);
        if (split !== undefined && split.token !== '') {
          sharedOpts = split.shared;
          break;
        }
      }
    args.push(sharedOpts ?? '');
    for (const item of b.items) {
      for (const a of OWN_ARGS) {
        const v = item.args[KEYS + a];
        if (a === OPTS_ARG && sharedOpts !== undefined) {
          const split = optsTokenSplit(v);
          args.push(
            split !== undefined && split.shared === sharedOpts && split.token !== '' ? split.token : v,
          );
        } else args.push(v);
      }
      args.push(item.reply?.reply ?? '', item.reply?.adder ?? '');
    }
    sendWithReplies.apply(conn, args).then(
      ([results, counts, found]) => {
        // Before BullMQ has the fetched jobs: each starts with its marks at hand.
        if (marks) deliverMarks(marks, results, found);
        for (let i = 0; i < b.items.length; i++) {
          const item = b.items[i]!;
          const r = results[i];
          if (r instanceof Error) item.reject(r);
          else item.resolve(comparesAsNaN(r ?? null));
          replied(item, Number(counts[i] ?? -1));
        }
      },
      (err: unknown) => {
        for (const item of b.items) {
          item.reject(err);
          replied(item, -1);
        }
      },
    );
  };
  const flush = (b: Batch) => {
    // Sent once: early when a finish of other keys (or a full batch) came, else at its tick's end.
    if (b.sent) return;
    b.sent = true;
    if (batch === b) batch = undefined;
    if (lastQueued.get(conn)?.batch === b) lastQueued.set(conn, undefined);
    if (b.inbox) return flushWithReplies(b, b.inbox);
    // The marks of the jobs its finishes fetch ride in the script with replies, a call without one included.
    if (withReplies && marksWith.has(conn)) return flushWithReplies(b, NO_INBOX);
    if (b.items.length === 1) {
      stats.single++;
      const one = b.items[0]!;
      (original.call(conn, one.args) as Promise<unknown>).then(
        (r) => one.resolve(comparesAsNaN(r)),
        one.reject,
      );
      return;
    }
    stats.calls++;
    stats.finishes += b.items.length;
    const args: unknown[] = [b.shared.length + b.items.length];
    for (const k of b.shared) args.push(k);
    for (const item of b.items) args.push(item.args[JOB_KEY]);
    for (const item of b.items) for (let i = KEYS; i < KEYS + ARGS; i++) args.push(item.args[i]);
    send.apply(conn, args).then(
      (results) => {
        for (let i = 0; i < b.items.length; i++) {
          const r = results[i];
          if (r instanceof Error) b.items[i]!.reject(r);
          else b.items[i]!.resolve(comparesAsNaN(r ?? null));
        }
      },
      (err: unknown) => {
        for (const item of b.items) item.reject(err);
      },
    );
  };
  const batched = function (this: unknown, ...a: unknown[]): unknown {
    const args = (a.length === 1 && Array.isArray(a[0]) ? a[0] : a) as unknown[];
    // The script with replies builds each job's key (see finishReplyLua): one it could not build goes alone.
    if (args.length !== KEYS + ARGS || (withReplies && !jobKeyDerivable(args))) {
      stats.single++;
      lastQueued.set(conn, undefined);
      return original.apply(this, a);
    }
    if (batch && (batch.items.length >= MAX_BATCH || !sameShared(batch, args))) {
      const full = batch;
      batch = undefined;
      flush(full);
    }
    if (!batch) {
      const shared = [...args.slice(0, JOB_KEY), ...args.slice(JOB_KEY + 1, KEYS)];
      const b: Batch = { shared, sharedArgs: SHARED_ARGS.map((a) => args[KEYS + a]), items: [] };
      batch = b;
      // With replies, the finishes of the whole turn go in one call (the jobs whose backend answers came in
      // one poll finish in callbacks of their own), sent as the turn's held writes leave (see beforeSend):
      // no later than the finish's own bytes would have. Without, at the tick's end as before (a fetch's
      // marks are then read behind it at that tick's end, see token-streams.ts).
      if (!withReplies || !beforeSend(conn, () => flush(b))) process.nextTick(() => flush(b));
    }
    const b = batch;
    return new Promise((resolve, reject) => {
      const item: Pending = { args, resolve, reject };
      b.items.push(item);
      if (withReplies) lastQueued.set(conn, { item, batch: b });
    });
  } as ((...a: unknown[]) => unknown) & { cell0Batched?: FinishBatchStats };
  batched.cell0Batched = stats;
  if (withReplies) batchedWithReplies.add(conn);
  target[found.name] = batched;
  return stats;
}

/**
 * From now on, the script calls of {@link batchFinishes} on `conn` also read the token stream marks of the
 * jobs their finishes fetch (BullMQ's finish fetches the worker's next job in the same call), and hand them
 * to `marks.onFetched` before BullMQ has the answer: a job fetched by a finish starts with its marks, and no
 * command of its own is sent for them. Call it after batchFinishes, on a connection of one queue (its jobs'
 * marks keys are named from `marks.jobKeyPrefix`). Returns false, changing nothing, when the finishes on
 * `conn` are not batched with replies (then read the marks another way).
 */
export function readMarksWithFinishes(conn: RedisConnection, marks: FinishMarks): boolean {
  if (!batchedWithReplies.has(conn)) return false;
  marksWith.set(conn, marks);
  return true;
}

/**
 * Sends `reply` in the same script call as the finish of `jobId` that BullMQ's worker has just handed to
 * `conn` (call it right after that finish, in the same tick, e.g. from a hook of bullmq-internals.ts): the
 * call runs the finish, then, if it moved the job to its finished set, hands the reply to its producers, so
 * the reply costs no command of its own. Returns false, changing nothing, when that finish is not waiting in a
 * batch of {@link batchFinishes} on `conn` (not batched there, sent already, another job's, or a reply of
 * another inbox rides with its batch): then send the reply on its own.
 */
export function replyWithFinish(conn: RedisConnection, jobId: string, reply: FinishReply): boolean {
  const last = lastQueued.get(conn);
  if (!last || last.batch.sent || last.item.reply || String(last.item.args[KEYS]) !== jobId) return false;
  const b = last.batch;
  if (b.inbox && (b.inbox.prefix !== reply.inboxPrefix || b.inbox.ttlMs !== reply.inboxTtlMs)) return false;
  // The script names the waiter set from the job's key (see finishReplyLua): one suffix per call.
  const jobKey = String(last.item.args[JOB_KEY]);
  if (!reply.waiterKey.startsWith(jobKey)) return false;
  const suffix = reply.waiterKey.slice(jobKey.length);
  if (b.waiterSuffix !== undefined && b.waiterSuffix !== suffix) return false;
  b.waiterSuffix = suffix;
  b.inbox ??= { prefix: reply.inboxPrefix, ttlMs: reply.inboxTtlMs };
  last.item.reply = reply;
  return true;
}
