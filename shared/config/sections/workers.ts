import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { int } from '../schemas.js';

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
  providerTimeoutMs: number;
  shutdownTimeoutMs: number;
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
    providerTimeoutMs: p.CELL0_PROVIDER_TIMEOUT_MS,
    shutdownTimeoutMs: p.CELL0_SHUTDOWN_TIMEOUT_MS,
  };
}
