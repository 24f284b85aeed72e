import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { tcpOpen } from '../../shared/net';
import { sleep } from '../../shared/sleep';

/** A private redis-server on a free port, for tests that stop and restart Redis. */
export interface PrivateRedis {
  port: number;
  url: string;
  /** Stops the server (SIGTERM, waits for exit). */
  stop(): Promise<void>;
  /** Kills the server as a crash would (SIGKILL, waits for exit). */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it and removes its folder. */
  destroy(): Promise<void>;
}

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPing(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // Probe TCP first: ioredis keeps the process alive ~2 s after a refused connect.
    if (!(await tcpOpen('127.0.0.1', port, 500))) {
      if (Date.now() > deadline)
        throw new Error(`redis-server on port ${port} did not answer within ${timeoutMs} ms`);
      await sleep(50);
      continue;
    }
    const client = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      connectTimeout: 500,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
      client.disconnect();
      return;
    } catch {
      client.disconnect();
      if (Date.now() > deadline)
        throw new Error(`redis-server on port ${port} did not answer within ${timeoutMs} ms`);
      await sleep(50);
    }
  }
}

/**
 * Starts a redis-server (from PATH) on a free port with no persistence. `args` are extra server options,
 * e.g. ['--maxmemory', '8mb', '--maxmemory-policy', 'noeviction'].
 */
export async function startPrivateRedis(
  opts: { port?: number; args?: string[] } = {},
): Promise<PrivateRedis> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'cell0-redis-'));
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        ...(opts.args ?? []),
      ],
      {
        stdio: 'ignore',
      },
    );
    child.unref();
    await waitForPing(port, 10_000);
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      // The child was unref'd so that it never holds a test process open; while we wait for it to exit it
      // must hold the loop, or a process with nothing else to do (jest's global teardown) exits under this
      // await, with code 0, before jest has set the run's exit code: a failed run would then pass.
      c.ref();
      c.kill(signal);
    });
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: () => stop(),
    kill: () => stop('SIGKILL'),
    start,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
