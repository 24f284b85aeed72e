import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { Cell0Error, ErrorCode } from '../errors.js';
import { tcpOpen } from '../net.js';
import { sleep } from '../sleep.js';
import { nodeUrls } from './cluster.js';

/** Says how to get Redis when cell0 cannot find or start one. */
export const HOW_TO_GET_REDIS = [
  'cell0 needs Redis >= 6.2. Either point REDIS_URL at one, or install redis-server so `cell0 start` can launch a private one:',
  '  Debian/Ubuntu:  sudo apt-get install redis-server',
  '  macOS:          brew install redis',
  '  Docker:         docker compose up -d redis   (from the cell0 folder)',
].join('\n');

/** No Redis answers and none can be started. */
export class RedisNotInstalledError extends Cell0Error {
  constructor(detail: string) {
    super(ErrorCode.REDIS_NOT_INSTALLED, `${detail}\n${HOW_TO_GET_REDIS}`);
  }
}

/** True when something at host:port answers PING like Redis, within timeoutMs. */
export async function redisAnswers(url: string, timeoutMs = 800): Promise<boolean> {
  const nodes = nodeUrls(url);
  if (nodes.length > 1 || nodes[0] !== url)
    return (await Promise.all(nodes.map((u) => redisAnswers(u, timeoutMs)))).includes(true);
  // A refused connection is answered here: ioredis keeps a timer alive for ~2 s after a refused connect,
  // which would hold up the exit of short-lived processes (and test runs).
  const u = new URL(url);
  if (
    u.protocol === 'redis:' &&
    !(await tcpOpen(u.hostname.replace(/^\[|\]$/g, ''), Number(u.port || 6379), timeoutMs))
  )
    return false;
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** A redis-server child process. */
export interface EmbeddedRedis {
  url: string;
  dataDir: string;
  pid: number | undefined;
  /** Stops the server (SIGTERM, SIGKILL after 5 s). Idempotent: every call returns the same promise. */
  close(): Promise<void>;
}

/**
 * Starts redis-server (from PATH) on 127.0.0.1:`port`, with AOF persistence in `<dataDir>/redis` and its
 * log in `<dataDir>/redis/redis.log`. Throws RedisNotInstalledError when there is no redis-server, or
 * when it does not answer within 10 s.
 */
export async function startEmbeddedRedis(opts: { port: number; dataDir: string }): Promise<EmbeddedRedis> {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new RedisNotInstalledError(
      `No Redis answers on 127.0.0.1:${opts.port} and there is no redis-server on PATH.`,
    );
  }
  const dir = resolve(opts.dataDir, 'redis');
  mkdirSync(dir, { recursive: true });
  const logFd = openSync(join(dir, 'redis.log'), 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(opts.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
        '--protected-mode',
        'yes',
      ],
      { stdio: ['ignore', logFd, logFd], detached: false },
    );
  } finally {
    closeSync(logFd);
  }
  const url = `redis://127.0.0.1:${opts.port}`;
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + 10_000;
  while (!(await redisAnswers(url, 300))) {
    if (exited || Date.now() > deadline) {
      if (!exited) child.kill('SIGKILL');
      throw new RedisNotInstalledError(
        `redis-server did not start on 127.0.0.1:${opts.port}; see ${join(dir, 'redis.log')}.`,
      );
    }
    await sleep(100);
  }
  let stopping: Promise<void> | undefined;
  return {
    url,
    dataDir: dir,
    pid: child.pid,
    close: () =>
      (stopping ??= new Promise<void>((done) => {
        if (exited) return done();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(timer);
          done();
        });
        child.kill('SIGTERM');
      })),
  };
}
