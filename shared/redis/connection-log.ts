import { type Logger } from '../logger.js';
import { withDefaults } from '../with-defaults.js';

/** Options of {@link RedisConnectionLog}. */
export interface RedisConnectionLogOptions {
  /** While Redis stays unreachable, one summary line per this period, ms. Default 60000. */
  summaryEveryMs?: number;
  /**
   * After Redis is back, connection errors within this time are stragglers of the outage (connections
   * that have not reconnected yet) and do not start a new one, ms. Default 2000.
   */
  settleMs?: number;
}

const DEFAULTS = { summaryEveryMs: 60_000, settleMs: 2000 };

/** Something that emits `error` (a BullMQ Queue, Worker, QueueEvents, an ioredis connection). */
interface ErrorEmitter {
  on(event: 'error', listener: (err: Error) => void): unknown;
}

/** True when `err` says Redis cannot be reached (as opposed to Redis answering with an error). */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (/^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN)$/.test(code))
    return true;
  const msg = err instanceof Error ? err.message : String(err);
  return /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|MaxRetriesPerRequest|^LOADING|Socket closed|connect ETIMEDOUT|Connection in subscriber mode|Reached the max retries per request limit/i.test(
    msg,
  );
}

/**
 * The one place a process reports Redis connection trouble. Every connection and every BullMQ object of
 * the process reports its errors here (there are a dozen of them, and each retries several times a second
 * while Redis is away), and the log gets:
 *
 * - one `warn` line when Redis becomes unreachable (up → down), with the first error;
 * - one `warn` summary per `summaryEveryMs` while it stays down: for how long, how many errors were
 *   suppressed;
 * - one `info` line when it is reachable again (down → up), with the outage's length and error count;
 * - other errors (Redis answered with an error, e.g. OOM): the first of each kind is logged, repeats within
 *   a period are counted and summarised, so a worker looping on the same error writes a line per period.
 *
 * Get the process's instance with {@link connectionLogFor}: components that share a logger share it.
 */
export class RedisConnectionLog {
  private readonly opts: typeof DEFAULTS;
  private readonly log: Logger;
  private down = false;
  private downSince = 0;
  private upSince = 0;
  private suppressed = 0;
  private suppressedTotal = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Other errors by kind: when first logged this period, and repeats since. */
  private readonly others = new Map<string, { repeats: number; first: Error; source: string }>();
  /** Transitions so far (for tests and metrics). */
  readonly transitions = { down: 0, up: 0 };

  constructor(logger: Logger, options: RedisConnectionLogOptions = {}) {
    const opts = withDefaults<typeof DEFAULTS>(DEFAULTS, options);
    if (!(opts.summaryEveryMs > 0))
      throw new TypeError(
        `RedisConnectionLog: option "summaryEveryMs" must be > 0, got ${opts.summaryEveryMs}`,
      );
    this.opts = opts;
    this.log = logger;
  }

  /** True while Redis is known to be unreachable. */
  get isDown(): boolean {
    return this.down;
  }

  /** Reports an error from `source` (a connection or BullMQ object name). */
  error(source: string, err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    if (isConnectionError(e)) {
      if (this.down || Date.now() - this.upSince < this.opts.settleMs) {
        this.suppressed++;
        this.suppressedTotal++;
        return;
      }
      this.down = true;
      this.downSince = Date.now();
      this.suppressed = 0;
      this.suppressedTotal = 0;
      this.transitions.down++;
      this.log.warn({ source, err: e }, 'Redis is unreachable; retrying in the background');
      this.arm();
      return;
    }
    const kind = errorKind(e);
    const seen = this.others.get(kind);
    if (seen) {
      seen.repeats++;
      return;
    }
    this.others.set(kind, { repeats: 0, first: e, source });
    this.log.warn({ source, err: e }, 'Redis error');
    this.arm();
  }

  /** Reports that a connection is ready: ends an outage. */
  ready(source: string): void {
    if (!this.down) return;
    this.down = false;
    this.upSince = Date.now();
    this.transitions.up++;
    this.log.info(
      { source, downForMs: Date.now() - this.downSince, errorsSuppressed: this.suppressedTotal },
      'Redis is reachable again',
    );
    this.suppressed = 0;
  }

  /** Routes an ioredis connection's `error` and `ready` events here. */
  watchConnection(conn: ErrorEmitter & { on(event: 'ready', l: () => void): unknown }, source: string): void {
    conn.on('error', (err) => this.error(source, err));
    conn.on('ready', () => this.ready(source));
  }

  /** Routes a BullMQ object's (or any emitter's) `error` events here. */
  watch(emitter: ErrorEmitter, source: string): void {
    emitter.on('error', (err) => this.error(source, err));
  }

  /** Stops the summary timer. */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.summarise(), this.opts.summaryEveryMs);
    this.timer.unref();
  }

  private summarise(): void {
    if (this.down) {
      this.log.warn(
        { downForMs: Date.now() - this.downSince, errorsSuppressed: this.suppressed },
        'Redis is still unreachable',
      );
      this.suppressed = 0;
    }
    for (const [kind, o] of this.others) {
      if (o.repeats > 0)
        this.log.warn(
          {
            source: o.source,
            error: o.first.message,
            repeats: o.repeats,
            periodMs: this.opts.summaryEveryMs,
          },
          'Redis error repeated',
        );
      this.others.delete(kind);
    }
    if (!this.down && this.others.size === 0) this.close();
  }
}

/** Errors of one kind: same type and message with the variable parts (ids, numbers, hashes) folded. */
function errorKind(e: Error): string {
  return `${e.name}:${e.message.slice(0, 200).replace(/[0-9a-f]{8,}|\d+/gi, '#')}`;
}

const registry = new WeakMap<Logger, RedisConnectionLog>();

/**
 * The connection log of a process: one per root logger, made on first use. Call
 * {@link configureConnectionLog} first to set its options (the CLI does, from CELL0_LOG_OUTAGE_SUMMARY_MS).
 */
export function connectionLogFor(logger: Logger): RedisConnectionLog {
  let c = registry.get(logger);
  if (!c) registry.set(logger, (c = new RedisConnectionLog(logger)));
  return c;
}

/** Makes (or replaces) the connection log of `logger` with these options. */
export function configureConnectionLog(logger: Logger, opts: RedisConnectionLogOptions): RedisConnectionLog {
  registry.get(logger)?.close();
  const c = new RedisConnectionLog(logger, opts);
  registry.set(logger, c);
  return c;
}
