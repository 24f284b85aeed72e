import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { int } from '../schemas.js';

/*
 * Jobs: retries, and how long finished jobs are kept and reused by identical requests.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const JOBS_ENV = {
  CELL0_RESULT_TTL: {
    section: 'jobs',
    default: '3600',
    schema: int(1, 31_536_000),
    doc: 'Seconds a completed job (and its result) is kept; identical requests in that window get it without a new run',
  },
  CELL0_RESULT_MAX_JOBS: {
    section: 'jobs',
    default: '100000',
    schema: int(1, 100_000_000),
    doc: 'Most completed jobs kept per queue, checked when every 16th added job finishes (in between, up to 15 more per producer plus the jobs still running then); the oldest go first',
  },
  CELL0_FAILED_TTL: {
    section: 'jobs',
    default: '86400',
    schema: int(1, 31_536_000),
    doc: 'Seconds a failed job is kept for inspection; an identical request re-runs it',
  },
  CELL0_JOB_ATTEMPTS: {
    section: 'jobs',
    default: '3',
    schema: int(1, 100),
    doc: 'Attempts per job for retryable failures',
  },
  CELL0_JOB_BACKOFF_MS: {
    section: 'jobs',
    default: '1000',
    schema: int(0, 3_600_000),
    doc: 'First retry delay (exponential backoff)',
  },
} satisfies Record<string, EnvVar>;

export interface JobsConfig {
  resultTtlSeconds: number;
  failedTtlSeconds: number;
  maxCompletedJobs: number;
  attempts: number;
  backoffMs: number;
}

export function loadJobs(p: ParsedEnv<typeof JOBS_ENV>): JobsConfig {
  return {
    resultTtlSeconds: p.CELL0_RESULT_TTL,
    failedTtlSeconds: p.CELL0_FAILED_TTL,
    maxCompletedJobs: p.CELL0_RESULT_MAX_JOBS,
    attempts: p.CELL0_JOB_ATTEMPTS,
    backoffMs: p.CELL0_JOB_BACKOFF_MS,
  };
}
