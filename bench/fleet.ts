/*
 * The processes a bench starts (a private redis-server, the simulator, cell0, a proxy), and what it reads
 * from them: free ports, readiness on a log line, CPU time from /proc, Redis command counts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Pool } from 'undici';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/**
 * The node flags `npm start` runs cell0 with (package.json's start script, the Dockerfile's entry point): the
 * young generation's size, which decides how often and how long scavenges pause the event loop. The benches
 * run cell0's processes with them unless told otherwise.
 */
export const CELL0_NODE_FLAGS = '--max-semi-space-size=16 --min-semi-space-size=16';

/** A bench's `--cell0-node-flags` value as flags: `none` for Node's defaults, else space-separated flags. */
export function cell0NodeFlags(text: string | undefined): string[] {
  const t = text ?? CELL0_NODE_FLAGS;
  return t === 'none' ? [] : t.split(/\s+/).filter((x) => x !== '');
}

/** Every process started here and still running (stopAll() ends them). */
export const children = new Set<ChildProcess>();

/** Spawns a process and resolves once `ready` matches a line of its stdout or stderr. */
export function startProcess(
  cmd: string,
  args: readonly string[],
  env: Record<string, string>,
  ready: RegExp,
  what: string,
): Promise<ChildProcess> {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`${what} not ready in 120 s:\n${seen}`)), 120_000);
    const onData = (chunk: Buffer) => {
      if (seen.length < 20_000) seen += chunk.toString();
      if (ready.test(seen)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    // Keep draining the pipes (a full pipe would block the child) without keeping the text.
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (code ${code}) before it was ready:\n${seen}`));
    });
  });
}

/** SIGTERM, then SIGKILL after 15 s; resolves when the process has exited. */
export function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** The redis-servers among {@link children}: stopped last, once the processes that use them have exited. */
const redisServers = new WeakSet<ChildProcess>();

/**
 * Stops every process started here: cell0's processes and the others first, then the redis-servers. A cell0
 * that outlived its Redis (it exits more slowly under `--cpu-prof`, writing its profile) spent its shutdown
 * waiting for a Redis that was gone, until stop()'s SIGKILL 15 s later, and left no profile.
 */
export async function stopAll(): Promise<void> {
  const all = [...children];
  await Promise.all(all.filter((c) => !redisServers.has(c)).map((c) => stop(c)));
  await Promise.all(all.filter((c) => redisServers.has(c)).map((c) => stop(c)));
}

/**
 * Runs a bench's main: kills every child at once when the bench is interrupted (Ctrl-C), and on a failure
 * prints it, stops every child and exits 1.
 */
export function runBench(main: () => Promise<void>): void {
  killChildrenOnInterrupt();
  main().catch(async (err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    await stopAll();
    process.exit(1);
  });
}

/** Kills every child at once when the bench is interrupted (Ctrl-C). */
export function killChildrenOnInterrupt(): void {
  process.once('SIGINT', () => {
    for (const c of children) c.kill('SIGKILL');
    process.exit(130);
  });
}

/** A private redis-server (free port, no persistence) and a connection to it. */
export async function startRedisServer(): Promise<{
  url: string;
  redis: Redis;
  version: string;
  child: ChildProcess;
}> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  children.add(child);
  redisServers.add(child);
  child.once('exit', () => children.delete(child));
  const url = `redis://127.0.0.1:${port}`;
  const redis = new Redis(url, { retryStrategy: (t) => (t > 100 ? null : 50) });
  redis.on('error', () => undefined);
  await redis.ping();
  const version = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? '?';
  return { url, redis, version, child };
}

/** CPU time (user + system) a process has used so far, ms (Linux /proc; NaN elsewhere). */
export function cpuMsOf(pid: number | string | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime in 1/100 s
  } catch {
    return NaN;
  }
}

/**
 * CPU time (user + system) of a process's main thread so far, ms (Linux /proc/PID/task/PID/stat; NaN
 * elsewhere): a Node process's event loop, without V8's helper threads (concurrent and parallel GC,
 * background compilation) and libuv's thread pool, which cpuMsOf counts too.
 */
export function mainThreadCpuMsOf(pid: number | undefined): number {
  return cpuMsOf(pid === undefined ? undefined : `${pid}/task/${pid}`);
}

/**
 * Read and write system calls a process has made so far (/proc/PID/io syscr, syscw: read(2)/readv(2) and
 * write(2)/writev(2), socket I/O included), or NaN when it cannot be read.
 */
export function syscallsOf(pid: number | undefined): { reads: number; writes: number } {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const num = (k: string) => Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(io)?.[1] ?? NaN);
    return { reads: num('syscr'), writes: num('syscw') };
  } catch {
    return { reads: NaN, writes: NaN };
  }
}

/**
 * Voluntary context switches of a process's main thread so far (Linux /proc/PID/status; NaN elsewhere): the
 * times its event loop went to sleep waiting for work, i.e. its wake-ups. On the reference VM a wake-up costs
 * the process far more CPU than the work of a small request (see bench:backend-cost in docs/benchmarks.md).
 */
export function wakeUpsOf(pid: number | undefined): number {
  try {
    const m = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Calls per command so far (INFO commandstats; commands run inside scripts included). */
export async function commandCalls(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/**
 * Redis's socket reads and writes so far (INFO stats total_reads_processed / total_writes_processed): each
 * read is one arrival of a client's write (its commands of one tick), each write one reply sent, so their
 * deltas per request count the round trips; and the bytes received and sent (total_net_input_bytes,
 * total_net_output_bytes).
 */
export async function socketIo(
  redis: Redis,
): Promise<{ reads: number; writes: number; bytesIn: number; bytesOut: number }> {
  const info = await redis.info('stats');
  const num = (k: string) => Number(new RegExp(`^${k}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
  return {
    reads: num('total_reads_processed'),
    writes: num('total_writes_processed'),
    bytesIn: num('total_net_input_bytes'),
    bytesOut: num('total_net_output_bytes'),
  };
}

/**
 * A private Redis Cluster of `masters` masters (redis-server --cluster-enabled on free ports, joined by
 * `redis-cli --cluster create`), once every node reports cluster_state:ok; a connection to each master.
 */
export async function startRedisCluster(masters = 3): Promise<{
  nodes: string;
  masters: Redis[];
  stop: () => Promise<void>;
}> {
  const dir = mkdtempSync(join(tmpdir(), 'cell0-bench-cluster-'));
  const ports: number[] = [];
  const procs: ChildProcess[] = [];
  for (let i = 0; i < masters; i++) {
    const port = await freePort();
    const child = spawn(
      'redis-server',
      [
        ...['--port', String(port), '--save', '', '--appendonly', 'no'],
        ...['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`],
      ],
      { stdio: 'ignore', cwd: dir },
    );
    children.add(child);
    redisServers.add(child);
    child.once('exit', () => children.delete(child));
    ports.push(port);
    procs.push(child);
  }
  const clients = ports.map((port) => {
    const c = new Redis({ port, host: '127.0.0.1', retryStrategy: (t) => (t > 100 ? null : 50) });
    c.on('error', () => undefined);
    return c;
  });
  await Promise.all(clients.map((c) => c.ping()));
  const addrs = ports.map((p) => `127.0.0.1:${p}`);
  await new Promise<void>((resolve, reject) => {
    const create = spawn(
      'redis-cli',
      ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'],
      {
        stdio: 'ignore',
      },
    );
    create.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`redis-cli --cluster create: ${code}`)),
    );
  });
  for (const deadline = Date.now() + 30_000; ;) {
    const infos = await Promise.all(clients.map((c) => c.cluster('INFO') as Promise<string>));
    if (
      infos.every(
        (i) => /cluster_state:ok/.test(i) && new RegExp(`cluster_known_nodes:${masters}\\b`).test(i),
      )
    )
      break;
    if (Date.now() > deadline) throw new Error('cluster not ok in 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    nodes: addrs.join(','),
    masters: clients,
    stop: async () => {
      for (const c of clients) c.disconnect();
      await Promise.all(procs.map((p) => stop(p)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** CPU time Redis has used so far (INFO cpu, user + system), ms. */
export async function redisCpuMs(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const n = (k: string) => Number(new RegExp(`^${k}:([0-9.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return (n('used_cpu_sys') + n('used_cpu_user')) * 1000;
}

/**
 * N `POST /v1/inference` requests on `pool`, K at a time, each with a prompt never sent before (bench:http's
 * shape); resolves with the count of non-200 answers.
 */
export async function uniqueInferenceLoad(pool: Pool, n: number, k: number, tag: string): Promise<number> {
  let next = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: k }, async () => {
      while (next < n) {
        const i = next++;
        const r = await pool.request({
          path: '/v1/inference',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'qwen2.5:0.5b',
            prompt: `Request ${tag}-${i}: tell me about ${randomBytes(6).toString('hex')} and ${i * 7919}`,
            params: { max_tokens: 8 },
          }),
        });
        await r.body.text();
        if (r.statusCode !== 200) errors++;
      }
    }),
  );
  return errors;
}

/**
 * The environment of bench:http's `cell0 start` (API and worker in one process), which the benches that take
 * its requests apart (bench:redis-cost, bench:http-commands) run too: Redis at `redisUrl`, the simulator at
 * `simUrl`, worker concurrency 64, 64 connections per backend host, and no CPU gate (the machine's load is
 * not cell0's: a worker must not stop taking jobs because the benchmark's other processes use the CPU).
 */
export async function hotPathCell0Env(redisUrl: string, simUrl: string): Promise<Record<string, string>> {
  return {
    REDIS_URL: redisUrl,
    CELL0_OLLAMA_URL: simUrl,
    CELL0_DASHBOARD_PORT: String(await freePort()),
    CELL0_INFERENCE_CONCURRENCY: '64',
    CELL0_HTTP_CONNECTIONS_PER_HOST: '64',
    CELL0_MAX_CPU_PERCENT: '0',
  };
}

/**
 * bench:http's backend: `cell0 simulator` from `cli` (a build's bin/cell0.js) on a free port, 1 ms to first
 * token, near-instant tokens and model loads, warnings-only logs.
 */
export async function startInstantSimulator(cli: string): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const child = await startProcess(
    process.execPath,
    [cli, 'simulator', '--port', String(port)],
    {
      CELL0_SIM_TTFT_MS: '1',
      CELL0_SIM_TOKENS_PER_SEC: '1000000',
      CELL0_SIM_LOAD_MS_PER_GB: '1',
      CELL0_LOG_LEVEL: 'warn',
    },
    /ready/,
    'simulator',
  );
  return { child, port };
}
