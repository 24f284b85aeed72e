import { type FieldIssue } from '../../errors.js';
import { issue, type EnvVar, type ParsedEnv } from '../env-var.js';
import { bool, int, parsedList } from '../schemas.js';
import { MAX_QUEUE_SHARDS } from '../../queues/shards.js';
import { type REDIS_ENV } from './redis.js';

/*
 * One worker process: how much it runs at once, and its deadlines.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const WORKERS_ENV = {
  CELL0_INFERENCE_CONCURRENCY: {
    section: 'workers',
    default: '64',
    schema: int(1, 1000),
    doc: "Inference jobs one worker process holds at once: a high cap; how many of them call a backend at once is the backend limit's (CELL0_BACKEND_LIMIT)",
  },
  CELL0_SEARCH_CONCURRENCY: {
    section: 'workers',
    default: '8',
    schema: int(1, 1000),
    doc: 'Search jobs one worker process runs at once',
  },
  CELL0_EMBED_CONCURRENCY: {
    section: 'workers',
    default: '256',
    schema: int(1, 10_000),
    doc: 'Embedding jobs one worker process holds at once (they wait together for their shared backend calls)',
  },
  CELL0_EMBED_BATCH_MAX: {
    section: 'workers',
    default: '64',
    schema: int(1, 2048),
    doc: 'Most embedding inputs in one backend call (1 = one call per input, no batching)',
  },
  CELL0_EMBED_BATCH_WAIT_MS: {
    section: 'workers',
    default: '10',
    schema: int(0, 10_000),
    doc: 'Longest a ready embedding job waits for others of its model to share a backend call',
  },
  CELL0_EMBED_BATCHES_IN_FLIGHT: {
    section: 'workers',
    default: '4',
    schema: int(1, 1000),
    doc: 'Embedding backend calls one worker process has in flight at once',
  },
  CELL0_WORKER_SHARDS: {
    section: 'workers',
    schema: parsedList(parseShardList),
    doc: 'Queue shards this worker serves, such as 0,2 (default all); its concurrency per queue is split over them, at least 1 each',
  },
  CELL0_LOCAL_TAKE: {
    section: 'workers',
    default: '1',
    schema: bool,
    doc: 'cell0 start: its worker takes the jobs its API adds, behind the adds, while it has free slots (0: all wait for the fetch loop)',
  },
  CELL0_PROVIDER_TIMEOUT_MS: {
    section: 'workers',
    default: '120000',
    schema: int(100, 3_600_000),
    doc: 'Longest a single provider call may take',
  },
  CELL0_SHUTDOWN_TIMEOUT_MS: {
    section: 'workers',
    default: '30000',
    schema: int(0, 3_600_000),
    doc: 'On SIGTERM, how long active jobs may run before the worker is forced down',
  },
} satisfies Record<string, EnvVar>;

export interface WorkersConfig {
  inferenceConcurrency: number;
  searchConcurrency: number;
  embeddingConcurrency: number;
  /** How a worker gathers embedding jobs into backend calls. */
  embedBatch: { maxBatchSize: number; maxWaitMs: number; maxConcurrentBatches: number };
  /** Queue shards served (CELL0_WORKER_SHARDS); undefined = all. */
  shards: number[] | undefined;
  /** In `cell0 start`, the worker takes the jobs its process's API adds right behind the adds (CELL0_LOCAL_TAKE). */
  localTake: boolean;
  providerTimeoutMs: number;
  shutdownTimeoutMs: number;
}

/** "0,2" → [0, 2]: shard numbers, each an integer from 0 to 63. */
function parseShardList(v: string): number[] {
  const parts = v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (parts.length === 0) throw new Error('expected shard numbers such as 0,2');
  return parts.map((s) => {
    if (!/^\d+$/.test(s) || Number(s) >= MAX_QUEUE_SHARDS)
      throw new Error(`expected shard numbers from 0 to ${MAX_QUEUE_SHARDS - 1}, such as 0,2`);
    return Number(s);
  });
}

/** Checks across variables: the shards served exist. */
export function checkWorkers(p: ParsedEnv<typeof WORKERS_ENV & typeof REDIS_ENV>): FieldIssue[] {
  const bad = (p.CELL0_WORKER_SHARDS ?? []).find((s) => s >= p.CELL0_QUEUE_SHARDS);
  return bad !== undefined
    ? issue(
        'CELL0_WORKER_SHARDS',
        `shard ${bad} does not exist: CELL0_QUEUE_SHARDS is ${p.CELL0_QUEUE_SHARDS} (shards 0 to ${p.CELL0_QUEUE_SHARDS - 1})`,
      )
    : [];
}

export function loadWorkers(p: ParsedEnv<typeof WORKERS_ENV>): WorkersConfig {
  return {
    inferenceConcurrency: p.CELL0_INFERENCE_CONCURRENCY,
    searchConcurrency: p.CELL0_SEARCH_CONCURRENCY,
    embeddingConcurrency: p.CELL0_EMBED_CONCURRENCY,
    embedBatch: {
      maxBatchSize: p.CELL0_EMBED_BATCH_MAX,
      maxWaitMs: p.CELL0_EMBED_BATCH_WAIT_MS,
      maxConcurrentBatches: p.CELL0_EMBED_BATCHES_IN_FLIGHT,
    },
    shards: p.CELL0_WORKER_SHARDS,
    localTake: p.CELL0_LOCAL_TAKE,
    providerTimeoutMs: p.CELL0_PROVIDER_TIMEOUT_MS,
    shutdownTimeoutMs: p.CELL0_SHUTDOWN_TIMEOUT_MS,
  };
}
