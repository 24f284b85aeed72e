import { type Socket } from 'node:net';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { RedisUnavailableError } from '../errors.js';
import { type Logger } from '../logger.js';
import { encodeBufferCommandsInOneWrite } from './command-encoding.js';
import { connectionLogFor } from './connection-log.js';
import { settledWithin } from '../sleep.js';
import { isClusterUrl, parseClusterUrl, type RedisConnection } from './cluster.js';
import { guardClusterNodePool } from './cluster-node-pool.js';

/**
 * What a connection is for. The roles differ in what a dropped connection does to a pending command:
 * - `producer` / `client` fail fast (no offline queue, a command timeout), so an API request answers 503
 *   quickly instead of hanging while Redis is away;
 * - `worker` / `events` are BullMQ's blocking connections: `maxRetriesPerRequest: null` (BullMQ requires
 *   it) and an offline queue, so they wait out an outage and resume on their own.
 */
export type ConnectionRole = 'producer' | 'client' | 'worker' | 'events';

/** Options of {@link createRedisConnection}. */
export interface RedisConnectionOptions {
  /**
   * redis:// or rediss:// URL (password and db in the URL are honoured; rediss enables TLS), or a cluster's
   * redis-cluster://host:port,host:port,... (see ./cluster.ts): then the connection is an ioredis Cluster.
   */
  url: string;
  role: ConnectionRole;
  /** Fail-fast roles: a command that takes longer is rejected. Default 2000 ms. */
  commandTimeoutMs?: number;
  /** Shown in CLIENT LIST, handy when an operator hunts a connection. */
  connectionName?: string;
  /**
   * ioredis auto-pipelining: commands issued within one turn of the event loop go to Redis in one socket
   * write. For connections of independent commands only (no MULTI, no blocking reads). Default false.
   */
  autoPipelining?: boolean;
  /**
   * The process's logger: connection trouble is reported to its connection log (one line per outage, not
   * one per retry). Without it, errors are dropped here and callers log their own.
   */
  logger?: Logger;
}

/** Reconnect delay: quick first retries so a restarted Redis is picked up fast, capped at 2 s. */
export function reconnectDelay(times: number): number {
  return Math.min(50 * 2 ** Math.min(times, 6), 2000);
}

/**
 * A new ioredis connection configured for its role. It starts connecting at once. A cluster URL gives a
 * Cluster with the same per-role options on each node connection.
 */
export function createRedisConnection(opts: RedisConnectionOptions): RedisConnection {
  // Commands with Buffer arguments (BullMQ's scripts, cell0's batched adds and finishes) encoded cheaply.
  encodeBufferCommandsInOneWrite();
  const failFast = opts.role === 'producer' || opts.role === 'client';
  const options: RedisOptions = {
    connectionName: opts.connectionName ?? `cell0:${opts.role}`,
    retryStrategy: reconnectDelay,
    connectTimeout: failFast ? 2000 : 10_000,
    enableReadyCheck: true,
    ...(opts.autoPipelining ? { enableAutoPipelining: true } : {}),
    ...(failFast
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: opts.commandTimeoutMs ?? 2000 }
      : { enableOfflineQueue: true, maxRetriesPerRequest: null }),
  };
  const redis = isClusterUrl(opts.url) ? createCluster(opts.url, options) : new Redis(opts.url, options);
  if (redis instanceof Redis) coalesceWrites(redis);
  else redis.on('+node', (node: Redis) => coalesceWrites(node));
  // Without a listener ioredis prints every reconnect error to the console.
  if (opts.logger) connectionLogFor(opts.logger).watchConnection(redis, options.connectionName!);
  else redis.on('error', () => undefined);
  return redis;
}

/**
 * An ioredis Cluster for BullMQ and cell0's own commands: the role's options go to every node connection
 * (BullMQ's blocking connections need maxRetriesPerRequest null there); the Cluster itself retries its
 * slot map with the same back-off, checks readiness, and queues commands only for waiting roles.
 */
function createCluster(url: string, options: RedisOptions): Cluster {
  const target = parseClusterUrl(url);
  const { retryStrategy, enableOfflineQueue, enableAutoPipelining, ...nodeOptions } = options;
  const cluster = new Cluster(target.nodes, {
    clusterRetryStrategy: retryStrategy as (times: number) => number,
    enableReadyCheck: true,
    enableOfflineQueue: enableOfflineQueue ?? true,
    ...(enableAutoPipelining ? { enableAutoPipelining: true } : {}),
    // A node that answers MOVED/ASK is followed; a failed-over master is found again on the next refresh.
    slotsRefreshTimeout: options.connectTimeout ?? 2000,
    redisOptions: {
      ...nodeOptions,
      ...(target.username ? { username: target.username } : {}),
      ...(target.password !== undefined ? { password: target.password } : {}),
      ...(target.tls ? { tls: {} } : {}),
    },
  });
  // A node connection must not be lost to the pool when the cluster reconnects (see cluster-node-pool.ts).
  guardClusterNodePool(cluster);
  return cluster;
}

/**
 * Makes the commands a connection is given within one turn of the event loop leave in one socket write:
 * the socket is corked at the first write and uncorked by setImmediate, i.e. once the callbacks of the
 * loop's current I/O phase have run (as ioredis's own auto-pipelining does). The replies of one Redis read,
 * the HTTP requests that arrived together and the backend answers of one poll all issue their next
 * commands within that turn, so a busy process pays one write(2) per connection per turn instead of one
 * per callback: on a loopback connection each write also wakes Redis, and that system call was the largest
 * single cost of a busy API+worker process (issue 18). The order of commands is unchanged; a write waits at
 * most for the callbacks already due in this turn, never for new I/O or a timer (with an immediate pending
 * the loop does not block in its poll). Applied to every (re)connected socket of the connection.
 */
export function coalesceWrites(redis: Redis): void {
  redis.on('connect', () => {
    const stream = (redis as unknown as { stream?: Socket }).stream;
    if (!stream || corkedSockets.has(stream)) return;
    corkedSockets.add(stream);
    const write = stream.write;
    let corked = false;
    /** Run (in order) right before the held writes go out: see beforeSend. */
    let due: (() => void)[] = [];
    const hold = () => {
      if (corked) return;
      corked = true;
      stream.cork();
      pendingUncorks.add(uncork);
      setImmediate(uncork);
    };
    /** A hook ran: the write waits for the microtasks it started (see uncork). */
    let draining = false;
    const runDue = (): boolean => {
      let ran = false;
      // What is due to go out with this write is issued first (and what that issues, in turn).
      while (due.length > 0) {
        const now = due;
        due = [];
        ran = true;
        for (const fn of now) {
          try {
            fn();
          } catch {
            // A caller's hook must not keep the connection's writes back.
          }
        }
      }
      return ran;
    };
    const release = () => {
      draining = false;
      runDue();
      corked = false;
      pendingUncorks.delete(uncork);
      stream.uncork();
    };
    const uncork = () => {
      if (!corked) return;
      // A hook may issue its commands after an await that needs no I/O (a batch of adds behind its breaker
      // and BullMQ's client promise): when one ran, the write leaves once the microtask queue is drained
      // (a nextTick queued from a microtask), still before the loop goes on, with those commands in it.
      if (runDue() || draining) {
        if (!draining) {
          draining = true;
          queueMicrotask(() => process.nextTick(release));
        }
        return;
      }
      release();
    };
    uncorkOf.set(redis, uncork);
    holdOf.set(redis, (fn) => {
      if (stream.destroyed) return false;
      hold();
      due.push(fn);
      return true;
    });
    stream.write = function (this: Socket, ...args: Parameters<Socket['write']>): boolean {
      hold();
      return write.apply(this, args);
    } as Socket['write'];
  });
}

const corkedSockets = new WeakSet<Socket>();
/** The uncork of every socket that holds writes now (see coalesceWrites). */
const pendingUncorks = new Set<() => void>();
/** The uncork of each connection's current socket (see coalesceWrites). */
const uncorkOf = new WeakMap<Redis, () => void>();
/** Each connection's current socket's {@link beforeSend}. */
const holdOf = new WeakMap<Redis, (fn: () => void) => boolean>();

/**
 * Runs `fn` right before the writes `redis` holds in this turn of the event loop go out (see
 * coalesceWrites): at the turn's end, or earlier when {@link flushWrites} / {@link flushWritesOf} sends
 * them; the connection then holds its writes until that moment even if nothing else is written on it. For
 * commands best gathered over the whole turn (the finishes of the jobs whose backend answers came in one
 * poll) that must still leave in the turn's one write, ahead of whatever is written behind them: `fn`
 * runs before the held writes are sent, in the order of the calls, and what it issues on `redis` goes out
 * in the same write (a `fn` given from inside another runs in that same flush); so does what it issues
 * after an await that needs no I/O: once a `fn` ran, the write leaves when the microtask queue is drained
 * (the adds of a turn's misses go behind their breaker and BullMQ's client promise). Returns false, and does
 * nothing, when the connection does not hold its writes (not connected now, or a Cluster): then send now.
 */
export function beforeSend(redis: RedisConnection, fn: () => void): boolean {
  if (!(redis instanceof Redis) || redis.status !== 'ready') return false;
  return holdOf.get(redis)?.(fn) ?? false;
}

/**
 * Sends now what coalesceWrites holds on every connection. For commands issued from a setImmediate callback
 * (the loop's check phase, where a batch gathered over the last poll is sent): there the uncork coalesceWrites
 * schedules would only run on the loop's next turn, after its timers and a whole poll phase of other I/O
 * callbacks, which on a busy process delays the batch by milliseconds. Call it once the batch's commands are
 * issued, e.g. from a process.nextTick queued by a microtask (it runs when the microtask queue is drained).
 */
export function flushWrites(): void {
  for (const uncork of [...pendingUncorks]) uncork();
}

/**
 * Like {@link flushWrites}, for one connection only: the other connections' commands of this check phase
 * still leave together when their own uncork runs. On a Cluster, every connection's.
 */
export function flushWritesOf(redis: RedisConnection): void {
  if (redis instanceof Redis) uncorkOf.get(redis)?.();
  else flushWrites();
}

/** Resolves when the connection is ready; rejects with RedisUnavailableError after `timeoutMs`. */
export function waitUntilReady(redis: RedisConnection, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onReady = () => {
      cleanup();
      resolve();
    };
    const onEnd = () => {
      cleanup();
      reject(new RedisUnavailableError('Redis connection ended before it was ready'));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new RedisUnavailableError(`Redis did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('end', onEnd);
    };
    redis.on('ready', onReady);
    redis.on('end', onEnd);
  });
}

/** Closes a connection politely (QUIT), falling back to a hard disconnect. Never throws. */
export async function closeRedis(redis: RedisConnection): Promise<void> {
  if (redis.status === 'end') return;
  try {
    if (redis.status === 'ready') {
      await settledWithin(redis.quit(), 1000);
    }
  } catch {
    // fall through to disconnect
  }
  redis.disconnect(false);
}
