import { EventEmitter } from 'node:events';
import { type RedisConnection } from './cluster.js';
import { Breaker, type BreakerEvents, type BreakerState } from '../circuit-breaker.js';
import {
  Cell0Error,
  ClosedError,
  RedisFullError,
  RedisTimeoutError,
  RedisUnavailableError,
} from '../errors.js';
import { type Logger } from '../logger.js';
import { closeRedis, createRedisConnection } from './connection.js';
import { isConnectionError } from './connection-log.js';
import { isOomError } from './redis-memory.js';
import { withDefaults } from '../with-defaults.js';

/** Options of {@link RedisClient}. Give `url` (the client owns its connection) or `connection` (borrowed). */
export interface RedisClientOptions {
  /** redis:// or rediss:// URL; the client opens a fail-fast connection and closes it on close(). */
  url?: string;
  /** An existing connection to use instead; close() leaves it open. Should be fail-fast (no offline queue). */
  connection?: RedisConnection;
  /** Prefix of every key get/set/del touch. Default "{cell0}:kv:" (one cluster slot with the queues). */
  keyPrefix?: string;
  /** TTL of set() when none is given, seconds. Default 300 (CELL0_CACHE_TTL). */
  defaultTtlSeconds?: number;
  /**
   * A command slower than this fails with RedisTimeoutError (Redis is slow, not down: it does not count
   * against the breaker). Default 2000 ms.
   */
  commandTimeoutMs?: number;
  /**
   * Timeouts count as "unreachable" (against the breaker) only once commands have kept timing out, with no
   * reply at all, for this long: a Redis that is hung, not one that is slow. Default 10000 ms.
   */
  slowOpenMs?: number;
  /** Consecutive failures that open the breaker. Default 5. */
  breakerThreshold?: number;
  /** How long the breaker stays open before a trial call. Default 5000 ms. */
  breakerResetMs?: number;
  /** Breaker name in metrics and errors. Default "redis". */
  name?: string;
  /** For an owned connection: its trouble goes to the process's connection log. */
  logger?: Logger;
  /**
   * For an owned connection: ioredis auto-pipelining (the commands of one event-loop turn in one socket
   * write; see createRedisConnection). Default false.
   */
  autoPipelining?: boolean;
}

const DEFAULTS = {
  keyPrefix: '{cell0}:kv:',
  defaultTtlSeconds: 300,
  commandTimeoutMs: 2000,
  slowOpenMs: 10_000,
  breakerThreshold: 5,
  breakerResetMs: 5000,
  name: 'redis',
};

/** Result of {@link RedisClient.healthCheck}. */
export interface RedisHealth {
  healthy: boolean;
  /** Round trip of the PING, ms (undefined when it was not sent). */
  latencyMs?: number;
  circuitState: BreakerState;
  connectionStatus: string;
  /** Why it is unhealthy. */
  error?: string;
  /** When the breaker is open: ms until it lets a trial call through. */
  retryAfterMs?: number;
}

/** Counters of {@link RedisClient.getMetrics}. */
export interface RedisMetrics {
  operations: number;
  successes: number;
  failures: number;
  timeouts: number;
  /** Calls refused by the open breaker without touching Redis. */
  rejections: number;
  latency: { meanMs: number; p50Ms: number; p95Ms: number; p99Ms: number };
  circuitState: BreakerState;
  connectionStatus: string;
}

/**
 * The seed's RedisClient: JSON get/set with TTL, health check and metrics, and every call through a
 * circuit breaker. While Redis is away, calls fail fast (the connection has no offline queue) and after
 * `breakerThreshold` consecutive failures they are refused without touching the socket, in well under 5 ms,
 * with a BreakerOpenError; they never hang.
 */
export class RedisClient extends EventEmitter<BreakerEvents> {
  readonly connection: RedisConnection;
  readonly breaker: Breaker;
  private readonly opts: typeof DEFAULTS;
  private readonly ownsConnection: boolean;
  /** Start of the current run of timeouts with no reply in between (0 = not in one). */
  private timeoutsSince = 0;
  private slowCount = 0;
  private closing: Promise<void> | undefined;

  constructor(options: RedisClientOptions) {
    super();
    const opts = withDefaults<RedisClientOptions & typeof DEFAULTS>(DEFAULTS, options);
    if (!options.url && !options.connection)
      throw new TypeError('RedisClient: give option "url" or "connection"');
    if (!(opts.defaultTtlSeconds > 0))
      throw new TypeError(
        `RedisClient: option "defaultTtlSeconds" must be > 0, got ${opts.defaultTtlSeconds}`,
      );
    this.opts = opts;
    this.ownsConnection = !options.connection;
    this.connection =
      options.connection ??
      createRedisConnection({
        url: options.url!,
        role: 'client',
        commandTimeoutMs: opts.commandTimeoutMs,
        ...(options.logger ? { logger: options.logger } : {}),
        ...(options.autoPipelining ? { autoPipelining: true } : {}),
      });
    this.breaker = new Breaker({
      name: opts.name,
      failureThreshold: opts.breakerThreshold,
      resetTimeoutMs: opts.breakerResetMs,
      // Every command already carries ioredis's commandTimeout, so the breaker needs no timer of its own
      // (one setTimeout per call is measurable at thousands of calls per second).
      timeoutMs: false,
      // Only a Redis that cannot be reached counts; a WRONGTYPE or script error, an OOM reply or a slow
      // answer all prove Redis is there.
      isIgnorable: (err) => !(err instanceof RedisUnavailableError),
    });
    this.breaker.on('breaker:open', () => this.emit('breaker:open'));
    this.breaker.on('breaker:half-open', () => this.emit('breaker:half-open'));
    this.breaker.on('breaker:close', () => this.emit('breaker:close'));
  }

  /**
   * Runs `fn` on the connection through the breaker. Connection errors become RedisUnavailableError; an
   * open breaker gives BreakerOpenError.
   */
  async run<T>(fn: (redis: RedisConnection) => Promise<T>): Promise<T> {
    if (this.closing) throw new ClosedError('RedisClient');
    return this.breaker.fire(async () => {
      try {
        const r = await fn(this.connection);
        this.timeoutsSince = 0;
        return r;
      } catch (err) {
        throw this.classify(err);
      }
    });
  }

  /**
   * Slow is not down. A command timeout on a connection that is up is RedisTimeoutError, which the breaker
   * ignores; only a run of nothing but timeouts for `slowOpenMs` (a hung Redis) counts as unreachable. A
   * closed, refused or reset connection counts at once, so a real outage still opens the breaker fast.
   */
  private classify(err: unknown): unknown {
    const mapped = toRedisError(err, {
      connectionUp: this.connection.status === 'ready',
      timeoutMs: this.opts.commandTimeoutMs,
    });
    if (mapped instanceof RedisTimeoutError) {
      this.slowCount++;
      const now = Date.now();
      if (this.timeoutsSince === 0) this.timeoutsSince = now;
      if (now - this.timeoutsSince >= this.opts.slowOpenMs)
        return new RedisUnavailableError(
          `Redis has not answered any command for ${now - this.timeoutsSince} ms`,
          { cause: err },
        );
    } else if (!(mapped instanceof RedisUnavailableError)) {
      // Redis answered (with an error): it is neither down nor hung.
      this.timeoutsSince = 0;
    }
    return mapped;
  }

  /** The JSON value stored at `key`, or undefined. */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    const raw = await this.run((r) => r.get(this.opts.keyPrefix + key));
    if (raw === null) return undefined;
    return JSON.parse(raw) as T;
  }

  /** Stores `value` as JSON at `key` for `ttlSeconds` (default: defaultTtlSeconds). */
  async set(key: string, value: unknown, ttlSeconds: number = this.opts.defaultTtlSeconds): Promise<void> {
    if (!(ttlSeconds > 0)) throw new TypeError(`RedisClient.set: ttlSeconds must be > 0, got ${ttlSeconds}`);
    const json = JSON.stringify(value);
    if (json === undefined) throw new TypeError('RedisClient.set: value is not JSON-serialisable');
    await this.run((r) => r.set(this.opts.keyPrefix + key, json, 'PX', Math.round(ttlSeconds * 1000)));
  }

  /** Deletes `key`; true when it existed. */
  async del(key: string): Promise<boolean> {
    return (await this.run((r) => r.del(this.opts.keyPrefix + key))) > 0;
  }

  /**
   * PINGs Redis through the breaker (so a half-open breaker is closed by a successful probe); while the
   * breaker is open it reports unhealthy without touching Redis.
   */
  async healthCheck(): Promise<RedisHealth> {
    const state = this.breaker.state;
    const connectionStatus = this.connection.status;
    if (state === 'open') {
      return {
        healthy: false,
        circuitState: state,
        connectionStatus,
        error: 'circuit breaker open',
        retryAfterMs: this.breaker.retryAfterMs(),
      };
    }
    const t0 = performance.now();
    try {
      await this.run((r) => r.ping());
      return {
        healthy: this.breaker.state === 'closed',
        latencyMs: performance.now() - t0,
        circuitState: this.breaker.state,
        connectionStatus: this.connection.status,
      };
    } catch (err) {
      return {
        healthy: false,
        circuitState: this.breaker.state,
        connectionStatus: this.connection.status,
        error: err instanceof Error ? err.message : String(err),
      };
    }
  }

  getMetrics(): RedisMetrics {
    const m = this.breaker.getMetrics();
    return {
      operations: m.calls,
      successes: m.successes,
      failures: m.failures,
      timeouts: m.timeouts + this.slowCount,
      rejections: m.rejections,
      latency: {
        meanMs: m.meanLatencyMs,
        p50Ms: m.p50LatencyMs,
        p95Ms: m.p95LatencyMs,
        p99Ms: m.p99LatencyMs,
      },
      circuitState: m.state,
      connectionStatus: this.connection.status,
    };
  }

  /** Stops the breaker and closes the connection if this client opened it. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.breaker.close();
      if (this.ownsConnection) await closeRedis(this.connection);
    })();
    return this.closing;
  }
}

/**
 * Maps ioredis failures to cell0's errors: an OOM reply → RedisFullError; a command timeout on a connection
 * that is up → RedisTimeoutError (slow); a closed, refused or reset connection, or a timeout while it is not
 * up → RedisUnavailableError. Other replies (WRONGTYPE, script errors) pass unchanged.
 */
export function toRedisError(
  err: unknown,
  ctx: { connectionUp?: boolean; timeoutMs?: number } = {},
): unknown {
  if (err instanceof Cell0Error) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (isOomError(err))
    return new RedisFullError(
      'oom',
      'the queue store (Redis) is full (maxmemory reached); retry later',
      5000,
      {
        cause: err,
      },
    );
  if (/Command timed out/i.test(msg)) {
    return ctx.connectionUp
      ? new RedisTimeoutError(ctx.timeoutMs, { cause: err })
      : new RedisUnavailableError(`Redis is unavailable: ${msg}`, { cause: err });
  }
  if (isConnectionError(err))
    return new RedisUnavailableError(`Redis is unavailable: ${msg}`, { cause: err });
  return err;
}
