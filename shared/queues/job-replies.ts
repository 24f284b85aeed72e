import { type ChainableCommander } from 'ioredis';
import { type RedisConnection } from '../redis/cluster.js';
import { defineScripts } from '../redis/lua-scripts.js';
import { decodeOutcome, type JobOutcome } from './job-outcome.js';

export { decodeOutcome } from './job-outcome.js';

/*
 * The result path: how a finished job's outcome reaches the producers waiting for it.
 *
 * The producer whose add creates a job names itself in the job: the add's options carry a token,
 * `cell0Reply: "<producer id>.<n>"` ({@link ADDER_OPTION}), stored by BullMQ with the job. The script call
 * of its batched adds (add-batch.ts) tells, per job, whether the add created the job: then nothing more is
 * written. An add that met an existing job registers the producer in the job's waiter set and reads, in the
 * same step, whether the job already finished; a plain join (and an add sent some other way) does the same
 * with one script right behind the adds, on the same connection (register-waiters.lua, which tells created
 * from met by the stored token). The worker, once the job is completed or finally
 * failed, pushes the outcome to the reply inbox of the job's adder (from the job's options, which it read
 * when it took the job) and of every registered producer, and forgets them (reply-finished.lua,
 * reply-waiters.lua). Each producer reads only its own inbox, so the cost of delivering a result depends on
 * how many producers wait for that job — not on how many producers the fleet has, as reading every queue's
 * whole event stream did — and the common case, a job nobody else asked for, writes no per-job key for it.
 */

/** A finished job's outcome as a worker hands it to the producers that wait for it. */
export type JobReply = (
  | { jobId: string; status: 'completed'; returnvalue: unknown; finishedOn: number }
  | { jobId: string; status: 'failed'; failedReason: string; finishedOn: number }
) & {
  /**
   * The producer that added the job (besides its waiters), as the worker sends it: {@link adderOf} of the
   * job's options. Not part of the reply's wire form.
   */
  adder?: string;
};

/** The job option that names the producer whose add created the job: `"<producer id>.<n>"`. */
export const ADDER_OPTION = 'cell0Reply';

/**
 * The producer id in a job's options ({@link ADDER_OPTION}), '' when there is none (a job added by a
 * producer of an older release, or by BullMQ directly).
 */
export function adderOf(opts: object | undefined): string {
  const token = (opts as Record<string, unknown> | undefined)?.[ADDER_OPTION];
  if (typeof token !== 'string') return '';
  const dot = token.indexOf('.');
  const id = dot < 0 ? token : token.slice(0, dot);
  // Only what the scripts read back from the options (%w+) names an inbox.
  return /^[0-9A-Za-z]+$/.test(id) ? id : '';
}

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

/** One job of {@link registerWaiters}: its id, and the token of the add just sent for it ('' for a join). */
export interface AddedJob {
  jobId: string;
  token: string;
}

/**
 * What {@link registerWaiters} found for one job: the add created it (`created`), met a job that is gone
 * already (`vanished`: add again), or met (or joined) one, whose outcome is given.
 */
export type AfterAdd = JobOutcome | { status: 'created' } | { status: 'vanished' };

/**
 * Sends, as one command, right behind the adds of `jobs` (all of the queue whose keys start with
 * `queueKey`) on the same connection: per job, whether the add created it (nothing more is written then),
 * or else the registration of `producerId` as a waiter of the job with the read of its outcome. Resolves
 * in the order of `jobs`.
 */
export async function registerWaiters(
  redis: RedisConnection,
  queueKey: string,
  jobs: readonly AddedJob[],
  producerId: string,
  ttlMs = WAITER_TTL_MS,
): Promise<AfterAdd[]> {
  // Each job's hash and waiter set are named in the script from the queue's job key prefix (the same names
  // as waiterSetKey and the job's own key): per job only its id and token are sent.
  const args: (string | number)[] = [
    `${queueKey}:completed`,
    `${queueKey}:failed`,
    producerId,
    ttlMs,
    `${queueKey}:`,
  ];
  for (const j of jobs) args.push(j.jobId, j.token);
  const raw = (await (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[
    REGISTER_MANY
  ]!(...args)) as unknown[];
  return raw.map(decodeAfterAdd);
}

/** One answer of register-waiters.lua. */
export function decodeAfterAdd(raw: unknown): AfterAdd {
  const status = (raw as unknown[])[0];
  if (status === 3) return { status: 'created' };
  if (status === -2) return { status: 'vanished' };
  return decodeOutcome(raw);
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
  const args: (string | number)[] = [replies.length * 2];
  for (const r of replies) args.push(waiterSetKey(queueKey, r.jobId), `${queueKey}:${r.jobId}`);
  args.push(`${queueKey}:cell0-reply:`, INBOX_TTL_MS);
  for (const r of replies) args.push(encodeReply(r), r.adder ?? '?');
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
  /**
   * The producer that added the job ({@link adderOf} of its options): '' for none; '?' (the default) when
   * the worker does not know, and the script reads it from the job's options (one more read).
   */
  adder?: string;
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
  const args: (string | number)[] = [replies.length * 3];
  for (const r of replies)
    args.push(r.finishedSetKey, waiterSetKey(queueKey, r.jobId), `${queueKey}:${r.jobId}`);
  args.push(`${queueKey}:cell0-reply:`, INBOX_TTL_MS);
  for (const r of replies) args.push(r.jobId, r.reply, r.adder ?? '?');
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

/**
 * The reply {@link decodeReply} reads from {@link encodeRawReply}'s text, made without that text: a completed
 * job's value (JSON text) parsed on its own, a failed job's reason as it is. Undefined where that decode is
 * (a value that is not JSON text, a finish time that is not a finite number); for a value that is JSON text
 * only within the reply's object (`1,"s":2`), undefined as well (a worker's return value is always JSON).
 */
export function rawReply(
  jobId: string,
  status: 'completed' | 'failed',
  finishedOn: number,
  value: string,
): JobReply | undefined {
  if (!Number.isFinite(finishedOn)) return undefined;
  // + 0: -0 reads back as 0 from the text.
  const t = finishedOn + 0;
  if (status === 'failed') return { jobId, status, failedReason: value, finishedOn: t };
  let returnvalue: unknown;
  try {
    returnvalue = JSON.parse(value === '' ? 'null' : value);
  } catch {
    return undefined;
  }
  return { jobId, status, returnvalue, finishedOn: t };
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
