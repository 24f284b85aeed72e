import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { int } from '../schemas.js';

/*
 * Batch jobs (POST /v1/batches): size, items run at once, how long a batch is kept.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const BATCHES_ENV = {
  CELL0_BATCH_MAX_ITEMS: {
    section: 'batches',
    default: '50000',
    schema: int(1, 1_000_000),
    doc: 'Most requests in one batch (POST /v1/batches); more get 413',
  },
  CELL0_BATCH_MAX_BODY_BYTES: {
    section: 'batches',
    default: '67108864',
    schema: int(1024, 1_073_741_824),
    doc: 'Largest body of POST /v1/batches and of a POST /v1/files upload (the others keep CELL0_MAX_BODY_BYTES); larger bodies get 413',
  },
  CELL0_BATCH_CONCURRENCY: {
    section: 'batches',
    default: '256',
    schema: int(1, 10_000),
    doc: 'Batch items each API process runs at once (each waits for its job); also the most jobs one process puts on the work queues for batches',
  },
  CELL0_BATCH_TTL: {
    section: 'batches',
    default: '86400',
    schema: int(1, 31_536_000),
    doc: 'Seconds a finished batch (status and results), and a batch input file (POST /v1/files), is kept',
  },
} satisfies Record<string, EnvVar>;

export interface BatchesConfig {
  maxItems: number;
  maxBodyBytes: number;
  concurrency: number;
  ttlSeconds: number;
}

export function loadBatches(p: ParsedEnv<typeof BATCHES_ENV>): BatchesConfig {
  return {
    maxItems: p.CELL0_BATCH_MAX_ITEMS,
    maxBodyBytes: p.CELL0_BATCH_MAX_BODY_BYTES,
    concurrency: p.CELL0_BATCH_CONCURRENCY,
    ttlSeconds: p.CELL0_BATCH_TTL,
  };
}
