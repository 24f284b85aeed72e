import { type RedisConnection } from '../redis/cluster.js';
import { defineScripts } from '../redis/lua-scripts.js';

/** Where a job stands, read in one round trip by job-outcome.lua. */
export type JobOutcome =
  | { status: 'missing' }
  | { status: 'pending' }
  | { status: 'completed'; returnvalue: unknown; finishedOn: number }
  | { status: 'failed'; failedReason: string; finishedOn: number };

interface JobOutcomeCommand {
  cell0JobOutcome(
    completedKey: string,
    failedKey: string,
    jobKey: string,
    jobId: string,
  ): Promise<[number, string | null, string | null]>;
}

/** Registers the script on a connection (idempotent; ioredis loads it with EVALSHA/EVAL on first use). */
export function defineJobOutcome(redis: RedisConnection): void {
  defineScripts(redis, 'job-outcome');
}

/** Reads the outcome of job `jobId` of the queue whose keys start with `queueKey` ("{prefix}:{name}"). */
export async function readJobOutcome(
  redis: RedisConnection,
  queueKey: string,
  jobId: string,
): Promise<JobOutcome> {
  return decodeOutcome(
    await defineScripts<JobOutcomeCommand>(redis, 'job-outcome').cell0JobOutcome(
      `${queueKey}:completed`,
      `${queueKey}:failed`,
      `${queueKey}:${jobId}`,
      jobId,
    ),
  );
}

/** The outcome in the answer of job-outcome.lua (and of register-waiter.lua, which answers the same shape). */
export function decodeOutcome(raw: unknown): JobOutcome {
  const [status, value, finishedOn] = raw as [number, string | null, string | null];
  switch (status) {
    case 1:
      return {
        status: 'completed',
        returnvalue: value == null ? null : JSON.parse(value),
        finishedOn: Number(finishedOn ?? 0),
      };
    case 2:
      return {
        status: 'failed',
        failedReason: value ?? 'unknown failure',
        finishedOn: Number(finishedOn ?? 0),
      };
    case 0:
      return { status: 'pending' };
    default:
      return { status: 'missing' };
  }
}
