import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths pino blanks out wherever they appear in a log line. Keys, passwords and Authorization headers
 * must never reach a log sink; the list is broad on purpose because log lines are built in many places.
 */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'apiKey',
  '*.apiKey',
  'apiKeys',
  '*.apiKeys',
  'adminKeys',
  '*.adminKeys',
  'tenantSecret',
  '*.tenantSecret',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers["x-api-key"]',
  '*.headers["x-api-key"]',
];

/** Options of {@link createLogger}. */
export interface CreateLoggerOptions {
  /** pino level; default "info". */
  level?: LoggerOptions['level'];
  /** Value of the `name` field of every line (the process role: api, worker, …). */
  name?: string;
  /** Where lines go; default stdout. */
  destination?: pino.DestinationStream;
}

/** A pino logger with cell0's redaction rules. One per process; children carry queue / job ids. */
export function createLogger(opts: CreateLoggerOptions = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  if (opts.name !== undefined) options.name = opts.name;
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** A logger that writes nothing, for library use without a logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
