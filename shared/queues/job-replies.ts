import { type ChainableCommander } from 'ioredis';
import { type RedisConnection } from '../redis/cluster.js';
import { defineScripts } from '../redis/lua-scripts.js';
import { decodeOutcome, type JobOutcome } from './job-outcome.js';

export { decodeOutcome } from './job-outcome.js';

/*
 * The result path: how a finished job's outcome reaches the producers waiting for it.
 *
 * A producer registers itself in the job's waiter set (register-waiter.lua, in the same round trip as the
 * add) and reads, in the same step, whether the job already finished. The worker, once the job is
 * completed or finally failed, pushes the outcome to the reply inbox of every registered producer and
 * forgets them (reply-waiters.lua). Each producer reads only its own inbox, so the cost of delivering a
 * result depends on how many producers wait for that job — not on how many producers the fleet has, as
 * reading every queue's whole event stream did.
 */

/** A finished job's outcome as a worker hands it to the producers that wait for it. */
export type JobReply =
  | { jobId: string; status: 'completed'; returnvalue: unknown; finishedOn: number }
  | { jobId: string; status: 'failed'; failedReason: string; finishedOn: number };

/** How long a waiter registration lives when no reply comes (the job never finishes, the key is lost). */
export const WAITER_TTL_MS = 3_600_000;
/** How long an inbox lives after its last reply: a producer that went away leaves nothing behind. */
export const INBOX_TTL_MS = 600_000;

const REGISTER = 'cell0RegisterWaiter';
const REGISTER_MANY = 'cell0RegisterWaiters';
const REPLY = 'cell0ReplyWaiters';
const REPLY_FINISHED = 'cell0ReplyFinished';

/** Registers the result-path scripts on a connection (idempotent). Pipelines of it get them too. */
export function defineReplyScripts(redis: RedisConnection): void {
  defineScripts(redis, 'register-waiter', 'register-waiters', 'reply-waiters', 'reply-finished');
}

/** The waiter set of a job of the queue whose keys start with `queueKey` ("{prefix}:{name}"). */
export function waiterSetKey(queueKey: string, jobId: string): string {
  return `${queueKey}:${jobId}:cell0-waiters`;
}

/** The reply inbox of a producer, per queue (so it lives in the queue's slot). */
export function inboxKey(queueKey: string, producerId: string): string {
  return `${queueKey}:cell0-reply:${producerId}`;
}

type RegisterCommand = (
  completedKey: string,
  failedKey: string,
  jobKey: string,
  waiterKey: string,
  jobId: string,
  producerId: string,
  ttlMs: number,
) => unknown;

/**
 * Queues, on a pipeline, the registration of `producerId` as a waiter of `jobId` together with the read of
 * the job's outcome. Decode the pipeline's answer with {@link decodeOutcome}.
 */
export function queueRegisterWaiter(
  pipe: ChainableCommander,
  queueKey: string,
  jobId: string,
  producerId: string,
  ttlMs = WAITER_TTL_MS,
): void {
  (pipe as unknown as Record<string, RegisterCommand>)[REGISTER]!(
    ...registerArgs(queueKey, jobId, producerId, ttlMs),
  );
}

/**
 * Sends, as one command, the registration of `producerId` as a waiter of each of `jobIds` (all of the queue
 * whose keys start with `queueKey`) with the read of each job's outcome; resolves with the outcomes in the
 * order of `jobIds`. Commands sent after it on the same connection (the adds) run after it.
 */
export async function registerWaiters(
  redis: RedisConnection,
  queueKey: string,
  jobIds: readonly string[],
  producerId: string,
  ttlMs = WAITER_TTL_MS,
): Promise<JobOutcome[]> {
  const keys: string[] = [`${queueKey}:completed`, `${queueKey}:failed`];
  for (const id of jobIds) keys.push(`${queueKey}:${id}`, waiterSetKey(queueKey, id));
  const raw = (await (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[
    REGISTER_MANY
  ]!(keys.length, ...keys, producerId, ttlMs, ...jobIds)) as unknown[];
  return raw.map(decodeOutcome);
}

/** Registers a waiter and reads the outcome in one round trip (no add). */
export async function registerWaiter(
  redis: RedisConnection,
  queueKey: string,
  jobId: string,
  producerId: string,
  ttlMs = WAITER_TTL_MS,
): Promise<JobOutcome> {
  defineReplyScripts(redis);
  const r = await (redis as unknown as Record<string, RegisterCommand>)[REGISTER]!(
    ...registerArgs(queueKey, jobId, producerId, ttlMs),
  );
  return decodeOutcome(r);
}

/** The KEYS and ARGV of register-waiter.lua. */
function registerArgs(
  queueKey: string,
  jobId: string,
  producerId: string,
  ttlMs: number,
): [string, string, string, string, string, string, number] {
  return [
    `${queueKey}:completed`,
    `${queueKey}:failed`,
    `${queueKey}:${jobId}`,
    waiterSetKey(queueKey, jobId),
    jobId,
    producerId,
    ttlMs,
  ];
}

/**
 * Hands finished jobs' outcomes (all of the queue whose keys start with `queueKey`) to their waiters, as one
 * command; resolves with, per reply, the number of producers it went to.
 */
export async function sendReplies(
  redis: RedisConnection,
  queueKey: string,
  replies: readonly JobReply[],
): Promise<number[]> {
  const args: (string | number)[] = [replies.length];
  for (const r of replies) args.push(waiterSetKey(queueKey, r.jobId));
  args.push(`${queueKey}:cell0-reply:`, INBOX_TTL_MS);
  for (const r of replies) args.push(encodeReply(r));
  const raw = (await (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[REPLY]!(
    ...args,
  )) as unknown[];
  return raw.map(Number);
}

/** A job whose finish was just sent, with its encoded reply (see {@link sendFinishedReplies}). */
export interface FinishedReply {
  jobId: string;
  /** The set the finish moves the job to ({prefix}:{queue}:completed or :failed). */
  finishedSetKey: string;
  /** The reply as {@link encodeReply} or {@link encodeRawReply} made it. */
  reply: string;
}

/**
 * Hands the outcomes of jobs whose finish was just sent on `redis` to their waiters, as one command sent
 * behind those finishes (reply-finished.lua): a job that is not in its finished set when it runs gets no
 * reply. Resolves with, per job, the number of producers its reply went to, or -1 when it was not finished.
 */
export async function sendFinishedReplies(
  redis: RedisConnection,
  queueKey: string,
  replies: readonly FinishedReply[],
): Promise<number[]> {
  const args: (string | number)[] = [replies.length * 2];
  for (const r of replies) args.push(r.finishedSetKey, waiterSetKey(queueKey, r.jobId));
  args.push(`${queueKey}:cell0-reply:`, INBOX_TTL_MS);
  for (const r of replies) args.push(r.jobId, r.reply);
  const raw = (await (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[
    REPLY_FINISHED
  ]!(...args)) as unknown[];
  return raw.map(Number);
}

/**
 * The wire form of a reply built from what BullMQ stores: a completed job's return value is already JSON
 * text (it goes in as it is, without a parse and a re-encode); a failed job's reason is a string.
 */
export function encodeRawReply(
  jobId: string,
  status: 'completed' | 'failed',
  finishedOn: number,
  value: string,
): string {
  const v = status === 'failed' ? JSON.stringify(value) : value === '' ? 'null' : value;
  return `{"j":${JSON.stringify(jobId)},"s":${status === 'completed' ? 1 : 2},"t":${finishedOn},"v":${v}}`;
}

/** The wire form of a reply: compact JSON (`j` id, `s` 1 completed / 2 failed, `v` value, `t` finished). */
export function encodeReply(r: JobReply): string {
  return r.status === 'completed'
    ? JSON.stringify({ j: r.jobId, s: 1, t: r.finishedOn, v: r.returnvalue ?? null })
    : JSON.stringify({ j: r.jobId, s: 2, t: r.finishedOn, v: r.failedReason });
}

/** Decodes a reply read from an inbox; undefined for anything that is not one (never throws). */
export function decodeReply(text: string): JobReply | undefined {
  let o: { j?: unknown; s?: unknown; t?: unknown; v?: unknown };
  try {
    o = JSON.parse(text) as typeof o;
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null || typeof o.j !== 'string') return undefined;
  const finishedOn = typeof o.t === 'number' ? o.t : 0;
  if (o.s === 1) return { jobId: o.j, status: 'completed', returnvalue: o.v, finishedOn };
  if (o.s === 2)
    return {
      jobId: o.j,
      status: 'failed',
      failedReason: typeof o.v === 'string' ? o.v : 'unknown failure',
      finishedOn,
    };
  return undefined;
}
