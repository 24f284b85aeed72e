/*
 * The fleet `npm run load` starts when it has no --target: a private redis-server on a free port, the
 * simulator (GPU profile), N worker processes and one or more API processes, all from the built package
 * (dist/). Stopped with SIGTERM (SIGKILL after a grace period) when the run ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../shared/redis/embedded-redis.js';

/** Options of {@link startFleet}. */
export interface FleetOptions {
  /** The repository root (where dist/ is). */
  root: string;
  workers: number;
  apiProcesses: number;
  /** Environment of every process, on top of this one's (simulator settings, concurrency, …). */
  env?: Record<string, string>;
  /** Simulator-only settings (CELL0_SIM_*). */
  simEnv?: Record<string, string>;
  log?: (line: string) => void;
}

export interface FleetProcess {
  role: string;
  pid: number | undefined;
}

export interface Fleet {
  apiUrl: string;
  simUrl: string;
  redisUrl: string;
  processes: FleetProcess[];
  /** CPU seconds used so far by each process (user + system), by role. */
  cpuSeconds(): Record<string, number>;
  close(): Promise<void>;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** utime + stime of a Linux process, seconds (undefined elsewhere or when it is gone). */
export function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces, in parentheses): state is field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / 100 : undefined;
  } catch {
    return undefined;
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`fleet: ${what} not ready within ${timeoutMs / 1000} s`);
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.json();
}

function stop(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Starts Redis, the simulator, the workers and the API; resolves once the API sees every worker. */
export async function startFleet(o: FleetOptions): Promise<Fleet> {
  const log = o.log ?? (() => undefined);
  const dataDir = mkdtempSync(join(tmpdir(), 'cell0-load-'));
  const children: Array<{ role: string; child: ChildProcess }> = [];
  let redis: EmbeddedRedis | undefined;
  const close = async () => {
    await Promise.all(children.filter((c) => c.role !== 'simulator').map((c) => stop(c.child, 10_000)));
    await Promise.all(children.filter((c) => c.role === 'simulator').map((c) => stop(c.child, 5_000)));
    await redis?.close();
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    redis = await startEmbeddedRedis({ port: await freePort(), dataDir });
    const simPort = await freePort();
    const apiPort = await freePort();
    const simUrl = `http://127.0.0.1:${simPort}`;
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    const env = {
      ...process.env,
      REDIS_URL: redis.url,
      CELL0_OLLAMA_URL: simUrl,
      CELL0_LOG_LEVEL: process.env.CELL0_LOG_LEVEL ?? 'warn',
      CELL0_DATA_DIR: dataDir,
      ...o.env,
    };
    const cli = join(o.root, 'dist', 'bin', 'cell0.js');
    const launch = (role: string, args: string[], extra: Record<string, string> = {}) => {
      const child = spawn(process.execPath, [cli, ...args], {
        env: { ...env, ...extra },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      children.push({ role, child });
      log(`  ${role.padEnd(10)} pid ${child.pid}`);
      return child;
    };
    launch('simulator', ['simulator', '--port', String(simPort)], o.simEnv ?? {});
    await waitFor('simulator', async () => (await fetch(simUrl + '/api/version')).ok, 60_000);
    for (let i = 0; i < o.workers; i++) launch(`worker-${i + 1}`, ['worker']);
    const reuse = o.apiProcesses > 1 ? ['--reuse-port'] : [];
    for (let i = 0; i < o.apiProcesses; i++)
      launch(o.apiProcesses > 1 ? `api-${i + 1}` : 'api', ['api', '--port', String(apiPort), ...reuse]);
    await waitFor('api', async () => (await fetch(apiUrl + '/readyz')).ok, 60_000);
    await waitFor(
      `${o.workers} worker(s)`,
      async () => {
        const fleet = (await getJson(apiUrl + '/v1/fleet')) as { workers?: unknown[] };
        return (fleet.workers?.length ?? 0) >= o.workers;
      },
      90_000,
    );
    const redisPid = redis.pid;
    return {
      apiUrl,
      simUrl,
      redisUrl: redis.url,
      processes: [
        { role: 'redis', pid: redisPid },
        ...children.map((c) => ({ role: c.role, pid: c.child.pid })),
      ],
      cpuSeconds: () => {
        const out: Record<string, number> = {};
        const add = (role: string, pid: number | undefined) => {
          const s = processCpuSeconds(pid);
          if (s !== undefined) out[role] = s;
        };
        add('redis', redisPid);
        for (const c of children) add(c.role, c.child.pid);
        return out;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
