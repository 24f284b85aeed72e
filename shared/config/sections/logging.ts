import { z } from 'zod';
import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { int, rate } from '../schemas.js';

/*
 * Logging: structured JSON logs (pino) on stdout.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const LOGGING_ENV = {
  CELL0_LOG_LEVEL: {
    section: 'logging',
    default: 'info',
    schema: z.enum(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      'expected one of fatal, error, warn, info, debug, trace, silent',
    ),
    doc: 'pino log level',
  },
  CELL0_LOG_OUTAGE_SUMMARY_MS: {
    section: 'logging',
    default: '60000',
    schema: int(100, 86_400_000),
    doc: 'While Redis is unreachable, one summary log line per this period (how long, errors suppressed); the down and up transitions are logged once each, ms',
  },
  CELL0_LOG_SAMPLE: {
    section: 'logging',
    default: '1',
    schema: rate(0, 1),
    doc: 'Fraction of the per-request and per-job success lines (request, job completed) that are written, e.g. 0.01 for one in a hundred; warnings and errors are always written. Lines go to stdout in batches, in writes of ~4 KB or every 100 ms (error lines at once, the rest on exit)',
  },
} satisfies Record<string, EnvVar>;

export interface LoggingConfig {
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Period of the "Redis still unreachable" summary line, ms. */
  logOutageSummaryMs: number;
  /** Fraction of per-request / per-job success lines written (CELL0_LOG_SAMPLE). */
  logSample: number;
}

export function loadLogging(p: ParsedEnv<typeof LOGGING_ENV>): LoggingConfig {
  return {
    logLevel: p.CELL0_LOG_LEVEL,
    logOutageSummaryMs: p.CELL0_LOG_OUTAGE_SUMMARY_MS,
    logSample: p.CELL0_LOG_SAMPLE,
  };
}
