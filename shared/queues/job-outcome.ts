import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Redis } from 'ioredis';
import { packageRoot } from '../paths.js';

/** Where a job stands, read in one round trip by job-outcome.lua. */
export type JobOutcome =
  | { status: 'missing' }
  | { status: 'pending' }
  | { status: 'completed'; returnvalue: unknown; finishedOn: number }
  | { status: 'failed'; failedReason: string; finishedOn: number };

let source: string | undefined;

const COMMAND = 'cell0JobOutcome';

type WithCommand = {
  [COMMAND](
    completedKey: string,
    failedKey: string,
    jobKey: string,
    jobId: string,
  ): Promise<[number, string | null, string | null]>;
};

/** Registers the script on a connection (idempotent; ioredis loads it with EVALSHA/EVAL on first use). */
export function defineJobOutcome(redis: Redis): void {
  if (typeof (redis as unknown as Record<string, unknown>)[COMMAND] === 'function') return;
  source ??= readFileSync(join(packageRoot(), 'shared', 'queues', 'lua', 'job-outcome.lua'), 'utf8');
  redis.defineCommand(COMMAND, { numberOfKeys: 3, lua: source });
}

/** Reads the outcome of job `jobId` of the queue whose keys start with `queueKey` ("{prefix}:{name}"). */
export async function readJobOutcome(redis: Redis, queueKey: string, jobId: string): Promise<JobOutcome> {
  defineJobOutcome(redis);
  const [status, value, finishedOn] = await (redis as unknown as WithCommand)[COMMAND](
    `${queueKey}:completed`,
    `${queueKey}:failed`,
    `${queueKey}:${jobId}`,
    jobId,
  );
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
