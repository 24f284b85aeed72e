/**
 * BullMQ's event stream ({prefix}:{queue}:events) as cell0's own queue scripts write it. BullMQ's scripts
 * XADD an entry for each step of a job (`added` and `waiting` at its add, `active` at its fetch, `completed`
 * with its whole return value, or `failed`, at its finish, `drained` when a finish leaves the queue empty)
 * for QueueEvents listeners. Nothing in cell0 reads that stream (its producers learn of their jobs' outcomes
 * from their reply inboxes, see job-replies.ts), nor does Bull Board (it reads the job hashes and sets). So,
 * unless a deployment asks for them (CELL0_QUEUE_EVENTS), the scripts cell0 makes from BullMQ's run without
 * the entries of the jobs cell0's producers add: the batched adds (only cell0's producers add that way) and
 * the take behind the adds write none, and the batched finishes write none for a job whose adder is a cell0
 * producer; a job added by any other producer (plain BullMQ, whose caller may wait with
 * `job.waitUntilFinished(queueEvents)`) keeps its `completed` or `failed` entry, and `drained`. Per job of
 * cell0's: 4 XADDs less, its result not copied into the stream, no read of the queue's lengths at its finish
 * for `drained`. Everything else they do is BullMQ's, unchanged. BullMQ's own calls (an add sent alone, a
 * worker's own fetch, a retry, the stalled-job check) still write their entries, and the batched finishes
 * still trim the stream (once per call), so it stays bounded.
 * Part of the BullMQ internals cell0 touches (see bullmq-internals.ts).
 */
import { type RedisConnection } from '../redis/cluster.js';

/** A call of BullMQ's alias of redis.call that appends to a stream. */
const XADD = /\brcall\("XADD",\s*/g;

/**
 * The end of BullMQ 6.7's moveToFinished: with no next job fetched, it reads the queue's wait, active and
 * prioritized lengths only to add a `drained` entry when all three are 0.
 */
const DRAINED =
  /^( *)(local waitLen = rcall\("LLEN", KEYS\[1\]\)\n\1if waitLen == 0 then\n\1 {4}local activeLen = rcall\("LLEN", KEYS\[2\]\)\n\1 {4}if activeLen == 0 then\n\1 {8}local prioritizedLen = rcall\("ZCARD", KEYS\[3\]\)\n\1 {8}if prioritizedLen == 0 then\n\1 {12}rcall\("XADD", eventStreamKey, "\*", "event", "drained"\)\n\1 {8}end\n\1 {4}end\n\1end\n)/gm;

/** addStandardJob's read of the stream's length limit, used only by its XADDs. */
const MAX_EVENTS = /^local maxEvents = getOrSetMaxEvents\(metaKey\)[ \t]*$/gm;

/**
 * The Lua that {@link withoutEventWrites} text needs before it: `cell0Event(…)` appends to a stream as
 * `redis.call("XADD", …)` does while `cell0Events` is true, and does nothing while it is false. `on` is its
 * value at the start of a call; a script may set it per job.
 */
export function eventLua(on: boolean): string {
  return `local cell0Events = ${on}
local function cell0Event(...)
  if cell0Events then return redis.call("XADD", ...) end
  return false
end`;
}

/**
 * BullMQ's script text (addStandardJob, moveToActive or moveToFinished) with its writes to event streams made
 * through `cell0Event(…)` (see {@link eventLua}, which must be defined before the text): each
 * `rcall("XADD", …)` calls it instead, moveToFinished's reads for its `drained` entry run only while
 * `cell0Events` is true, and addStandardJob does not read the stream's length limit while it is false. A
 * pattern that is not found exactly once leaves that part as it is.
 */
export function withoutEventWrites(lua: string): string {
  let out = lua;
  for (const [pattern, by] of [
    [DRAINED, '$1if cell0Events then\n$1$2$1end\n'],
    [MAX_EVENTS, 'local maxEvents = cell0Events and getOrSetMaxEvents(metaKey) or "10000"'],
  ] as const) {
    const found = out.match(pattern);
    if (found?.length === 1) out = out.replace(pattern, by);
  }
  return out.replace(XADD, 'cell0Event(');
}

/** Connections whose cell0 queue scripts write BullMQ's event stream (see {@link setQueueEvents}). */
const eventsOn = new WeakSet<RedisConnection>();

/**
 * Whether the queue scripts cell0 defines on `conn` from now on write BullMQ's event stream (default: they do
 * not). Set it before the scripts are defined on the connection (add-batch.ts batchAdds, finish-batch.ts
 * batchFinishes, take-jobs.ts defineTakeJobs): a script already defined keeps the text it was made with.
 */
export function setQueueEvents(conn: RedisConnection, on: boolean): void {
  if (on) eventsOn.add(conn);
  else eventsOn.delete(conn);
}

/** Whether cell0's queue scripts on `conn` write BullMQ's event stream (see {@link setQueueEvents}). */
export function queueEventsOn(conn: RedisConnection): boolean {
  return eventsOn.has(conn);
}

/**
 * BullMQ's script text as cell0's scripts on `conn` run it: as it is when they write the event stream, else
 * {@link withoutEventWrites}.
 */
export function eventWritesFor(conn: RedisConnection, lua: string): string {
  return queueEventsOn(conn) ? lua : withoutEventWrites(lua);
}
