import { format } from 'node:util';
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * Field names whose values never reach a log line, at any depth: keys, passwords, tokens, Authorization and
 * X-Api-Key headers, cookies. The list is broad on purpose because log lines are built in many places.
 * Matched case-insensitively; the value is replaced by {@link REDACTED}.
 */
export const SECRET_FIELDS: readonly string[] = [
  'password',
  'apikey',
  'apikeys',
  'adminkeys',
  'tenantsecret',
  'token',
  'authorization',
  'x-api-key',
  'cookie',
];

/** What a secret field's value becomes in a log line. */
export const REDACTED = '[redacted]';

const SECRET = new Set(SECRET_FIELDS);
/** Secret field names exactly as written in code (the usual case: no lower-casing per key). */
const SECRET_AS_WRITTEN = new Set([
  ...SECRET_FIELDS,
  'apiKey',
  'apiKeys',
  'adminKeys',
  'tenantSecret',
  'Authorization',
  'X-Api-Key',
  'Cookie',
]);

/** Whether a field of this name is a secret (see {@link SECRET_FIELDS}). */
export function isSecretField(key: string): boolean {
  return SECRET_AS_WRITTEN.has(key) || SECRET.has(key.toLowerCase());
}

/** Longest string (characters) a log line carries in any field or its message; longer ones are cut. */
export const LOG_STRING_LIMIT = 2048;
/** Longest log line (characters); a longer one is replaced by a short line saying what was dropped. */
export const LOG_LINE_LIMIT = 16_384;
const MAX_DEPTH = 6;
const MAX_KEYS = 64;
const MAX_ITEMS = 32;

/** Cuts `s` to `limit` characters, saying how much was dropped. */
export function boundString(s: string, limit = LOG_STRING_LIMIT): string {
  return s.length <= limit ? s : `${s.slice(0, limit)}…[${s.length - limit} more chars]`;
}

/**
 * An error as a log line shows it: type, code, bounded message and stack, and its cause. Properties are
 * not copied wholesale: ioredis's ReplyError carries `command: { name, args }`, whose args are job data
 * and script arguments (a 30 KB prompt per failed add), so only the command's name is kept.
 */
export function serializeError(err: unknown, depth = 0): Record<string, unknown> | string {
  if (!(err instanceof Error))
    return typeof err === 'string'
      ? boundString(err)
      : (boundValue(err, depth + 1) as Record<string, unknown>);
  const e = err as Error & {
    code?: unknown;
    command?: { name?: unknown };
    errno?: unknown;
    syscall?: unknown;
  };
  const out: Record<string, unknown> = {
    type: e.name || e.constructor?.name || 'Error',
    message: boundString(String(e.message)),
  };
  if (typeof e.code === 'string' || typeof e.code === 'number') out.code = e.code;
  if (typeof e.errno === 'number') out.errno = e.errno;
  if (typeof e.syscall === 'string') out.syscall = e.syscall;
  if (e.command && typeof e.command === 'object' && typeof e.command.name === 'string')
    out.command = { name: e.command.name };
  if (typeof e.stack === 'string') out.stack = boundString(e.stack);
  if (e.cause !== undefined && depth < 3) out.cause = serializeError(e.cause, depth + 1);
  return out;
}

/** A copy of `v` safe to log: strings cut, depth, keys and array items bounded, errors serialized. */
export function boundValue(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return boundString(v);
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Error) return serializeError(v, depth);
  if (depth >= MAX_DEPTH) return '[…]';
  if (Array.isArray(v)) {
    const items = v.slice(0, MAX_ITEMS).map((x) => boundValue(x, depth + 1));
    if (v.length > MAX_ITEMS) items.push(`…[${v.length - MAX_ITEMS} more items]`);
    return items;
  }
  if (Buffer.isBuffer(v)) return `[Buffer ${v.length} bytes]`;
  // Dates, URLs and other objects with their own JSON form keep it.
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function')
    return boundValue((v as { toJSON(): unknown }).toJSON(), depth);
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const k in v) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
    if (++n > MAX_KEYS) {
      out['…'] = 'more keys dropped';
      break;
    }
    out[k] = isSecretField(k) ? REDACTED : boundValue((v as Record<string, unknown>)[k], depth + 1);
  }
  return out;
}

/**
 * A child logger's bindings as a line carries them: secret fields censored at any depth of a plain object
 * and strings bounded. Values that are not plain objects (an IncomingMessage bound for a serializer) are
 * left to their serializer, so binding one costs no walk over it.
 */
function boundBindings(b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k in b) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) continue;
    const v = b[k];
    out[k] = isSecretField(k)
      ? REDACTED
      : typeof v === 'string' || isPlainObject(v) || Array.isArray(v)
        ? boundValue(v, 1)
        : v;
  }
  return out;
}

function isPlainObject(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** A whole line over LOG_LINE_LIMIT becomes a short line that keeps its level, time, name and message. */
function boundLine(line: string): string {
  if (line.length <= LOG_LINE_LIMIT) return line;
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    const keep: Record<string, unknown> = {};
    for (const k of ['level', 'time', 'pid', 'hostname', 'name', 'msg']) if (k in o) keep[k] = o[k];
    if (typeof keep.msg === 'string') keep.msg = boundString(keep.msg, 512);
    keep.truncated = { chars: line.length, keys: Object.keys(o).slice(0, MAX_KEYS) };
    return JSON.stringify(keep) + '\n';
  } catch {
    return (
      JSON.stringify({ level: 50, time: Date.now(), msg: 'log line dropped: too long', chars: line.length }) +
      '\n'
    );
  }
}

/** Options of {@link createLogger}. */
export interface CreateLoggerOptions {
  /** pino level; default "info". */
  level?: LoggerOptions['level'];
  /** Value of the `name` field of every line (the process role: api, worker, …). */
  name?: string;
  /**
   * Where lines go; default stdout, one write per line. `'batched'`: stdout through a batching destination
   * ({@link batchedStdout}: lines leave in writes of ~4 KB or every 100 ms; error and fatal lines at once;
   * flushed on exit). `'async'`, its earlier name, still selects it; any other string is refused.
   */
  destination?: pino.DestinationStream | 'batched';
}

/**
 * A pino logger with cell0's redaction rules and size bounds. One per process; children carry queue / job
 * ids. No line can be huge or carry a payload: every string field and the message are cut at
 * LOG_STRING_LIMIT, errors are serialized without their properties (no Redis command arguments), and a
 * line still over LOG_LINE_LIMIT is replaced by a short one.
 */
export function createLogger(opts: CreateLoggerOptions = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { pid: process.pid },
    // Secrets are censored in the bounded copy every line's object (and every child's bindings) is made
    // into anyway, not by pino's `redact`: its wildcard paths ran a redaction per field of every line
    // (~5 µs of ~7 per line: the one-line-per-job cost of a busy worker, issue 18).
    serializers: { err: (e: unknown) => serializeError(e) },
    formatters: {
      log: (o) => boundValue(o) as Record<string, unknown>,
      // The root's own bindings; pino applies no formatter to a child's (see withBoundChildren).
      bindings: (b) => boundBindings(b),
    },
    hooks: {
      logMethod(args, method) {
        // The message: the first string argument, or the second after a merging object.
        for (let i = 0; i < args.length && i < 2; i++)
          if (typeof args[i] === 'string') (args as unknown[])[i] = boundString(args[i] as string);
        // An Error logged alone lends its (unbounded) message as the line's message: bound it here.
        const first = args[0] as unknown;
        if (args.length === 1 && first instanceof Error)
          return method.apply(this, [first, boundString(String(first.message))] as Parameters<typeof method>);
        const inner =
          typeof first === 'object' && first !== null
            ? (first as { err?: unknown; msg?: unknown })
            : undefined;
        if (args.length === 1 && inner?.err instanceof Error && inner.msg === undefined)
          return method.apply(this, [first, boundString(String(inner.err.message))] as Parameters<
            typeof method
          >);
        return method.apply(this, args);
      },
      streamWrite: boundLine,
    },
  };
  if (opts.name !== undefined) options.name = opts.name;
  // 'async': the name of the batching destination before it wrote synchronously; still accepted. Any other
  // string would be taken by pino for a file path: refused.
  const dest = opts.destination as pino.DestinationStream | string | undefined;
  if (typeof dest === 'string') {
    if (dest !== 'batched' && dest !== 'async')
      throw new TypeError(`createLogger: option "destination" must be a stream or 'batched', got '${dest}'`);
    return withBoundChildren(pino(options, batchedStdout()));
  }
  return withBoundChildren(dest ? pino(options, dest) : pino(options));
}

/**
 * Makes every child of `root` (and their children, which inherit its `child`) bind a bounded copy of its
 * bindings with secret fields censored: pino passes a child's bindings through no formatter.
 */
function withBoundChildren(root: Logger): Logger {
  const child = root.child;
  root.child = function (this: Logger, bindings, options) {
    return child.call(this, boundBindings(bindings), options);
  } as Logger['child'];
  return root;
}

/** The destination of {@link batchedStdout}: pino's stream with its flushes. */
export interface BatchedDestination extends pino.DestinationStream {
  /** Writes what waits; `cb` once it is written. */
  flush(cb?: (err?: Error) => void): void;
  /** Writes what waits before returning. */
  flushSync(): void;
}

/** Buffered lines are written once they reach this many characters… */
const LOG_BATCH_CHARS = 4096;
/** …or this long after the first of them, whichever comes first. */
const LOG_BATCH_MS = 100;

/** The batched destinations still open, written out when the process exits. */
const flushAtExit = new Set<{ flush(): void }>();
let exitHooked = false;

/**
 * stdout as a pino destination that writes in batches: lines are buffered and leave in one write once
 * LOG_BATCH_CHARS are waiting, or within LOG_BATCH_MS (an unref'd timer), so a busy process pays one system
 * call per ~20 lines instead of one per line (at one line per job, the writes were ~2% of a busy
 * API+worker process's CPU). The batch is one string kept here (~50 ns per line added). An error or fatal
 * line is written at once, with what waits before it;
 * everything left is written when the process exits (pino's exit hook on its destination). Only lines of
 * the last LOG_BATCH_MS can be lost, and only to a SIGKILL or a crash of the runtime itself.
 *
 * The batch writes are synchronous (one write(2) per ~4 KB, as pino's default stdout destination writes
 * per line): with an asynchronous write in flight when the process exits, the lines written at exit could
 * land before that write's lines (seen as an exit's error line arriving before the info lines logged ahead
 * of it once a line cost ~1 µs).
 */
export function batchedStdout(fd = 1): BatchedDestination {
  // The batch is kept here, as one string, and sonic-boom writes each string it is given at once
  // (minLength 0): with sonic-boom batching (minLength 4096) each line cost ~580 ns instead of ~50, its
  // write taking the byte length of the whole buffered string (flattening it) for every line added.
  const sonic = pino.destination({ dest: fd, sync: true, minLength: 0 });
  let buffered = '';
  const out = (): void => {
    if (buffered === '') return;
    const batch = buffered;
    buffered = '';
    sonic.write(batch);
  };
  const timer = setInterval(out, LOG_BATCH_MS);
  timer.unref();
  // pino's destination flushes itself at exit only when its writes are asynchronous.
  const atExit = { flush: out };
  flushAtExit.add(atExit);
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => {
      for (const d of flushAtExit) {
        try {
          d.flush();
        } catch {
          // A destroyed or closed stdout: nothing more can be written.
        }
      }
    });
  }
  sonic.on('close', () => {
    clearInterval(timer);
    flushAtExit.delete(atExit);
  });
  return {
    write(line: string): boolean {
      buffered += line;
      // pino's lines start with their level: `{"level":50` is error, `{"level":60` fatal.
      if (
        buffered.length >= LOG_BATCH_CHARS ||
        line.startsWith('{"level":5') ||
        line.startsWith('{"level":6')
      )
        out();
      return true;
    },
    flush(cb?: (err?: Error) => void): void {
      out();
      sonic.flush(cb);
    },
    flushSync(): void {
      out();
      sonic.flushSync();
    },
  };
}

/**
 * Decides which of the hot path's success lines (one per request or job) are written: a fraction `rate`
 * of them, evenly spread (1 = all, 0 = none, 0.01 = every hundredth). Warnings and errors are never passed
 * through a sampler. Cheap: one addition per call.
 */
export class LogSampler {
  private credit = 0;
  constructor(readonly rate: number) {
    if (!(rate >= 0 && rate <= 1)) throw new RangeError(`LogSampler: rate must be in [0, 1], got ${rate}`);
  }

  /** True when this line is to be written. */
  take(): boolean {
    if (this.rate >= 1) return true;
    this.credit += this.rate;
    if (this.credit < 1) return false;
    this.credit -= 1;
    return true;
  }
}

let hotPath = new LogSampler(1);

/** Sets the process's sampling of hot-path success lines (CELL0_LOG_SAMPLE); see {@link LogSampler}. */
export function setHotPathLogSample(rate: number): void {
  hotPath = new LogSampler(rate);
}

/** Whether the next hot-path success line (a request, a completed job) is written. */
export function sampleHotPathLine(): boolean {
  return hotPath.take();
}

/** A logger that writes nothing, for library use without a logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * Sends what libraries print to the console (BullMQ's warnings, such as "IMPORTANT! Eviction policy is …",
 * and the errors it prints when an event has no listener) through `log`, as bounded JSON lines, so a
 * process's output stays structured. Process-wide: only the CLI calls it. Returns a function that undoes it.
 */
export function routeConsoleToLogger(log: Logger): () => void {
  const saved = { ...console };
  const to =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (...args: unknown[]): void => {
      const err = args.find((a): a is Error => a instanceof Error);
      const text = args.filter((a) => a !== err).map((a) => (typeof a === 'string' ? a : format('%o', a)));
      log[level]({ source: 'console', ...(err ? { err } : {}) }, text.join(' ') || err?.message || '');
    };
  console.log = to('info');
  console.info = to('info');
  console.debug = to('debug');
  console.trace = to('debug');
  console.warn = to('warn');
  console.error = to('error');
  return () => Object.assign(console, saved);
}
