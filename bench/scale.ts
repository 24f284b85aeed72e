/*
 * bench:scale — what a job costs, and how many go through, as the fleet grows.
 *
 * For each Redis (a private single redis-server, then a private 3-master Redis Cluster with
 * CELL0_QUEUE_SHARDS=3, or --shards, so the inference queue spans masters), each backend (the no-op backend, then the
 * simulator over HTTP), each number of worker processes W (1, 2, 4) and of API processes P (1, 2, 4):
 * N unique-prompt POST /v1/inference requests at concurrency K from this process, round-robin over the
 * APIs. Per point: throughput (jobs/s), p95 latency of the requests, CPU time per job of the workers and
 * of the APIs (/proc), Redis CPU per job (INFO cpu, all masters; and the busiest master's share), and Redis
 * commands per job (INFO commandstats over every master, the processes' idle rate taken out). Workers
 * and APIs are added as the point needs them (a point with P APIs sends to the first P).
 *
 * Counts are reliable on a busy machine; throughput, latency and CPU are lower bounds of what the code
 * does: every process of the fleet, Redis and the load generator share the same cores.
 *
 *   npm run bench:scale -- [--quick] [--jobs N] [--concurrency K] [--idle-ms MS]
 *     [--redis single,cluster] [--backends noop,sim] [--workers 1,2,4] [--apis 1,2,4] [--shards 3]
 *
 * On the cluster, commands per job are also given per master (raw, background in): where the load sits.
 */
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { type ChildProcess } from 'node:child_process';
import { type Redis } from 'ioredis';
import {
  commandCalls,
  cpuMsOf,
  freePort,
  killChildrenOnInterrupt,
  redisCpuMs,
  startProcess,
  startRedisCluster,
  startRedisServer,
  stop,
  stopAll,
} from './fleet.js';
import { arg, CELL0, runBench, sendUnique, startSimulator } from './scale-common.js';
import { loadText, printBenchHeader } from './args.js';
import { sleep } from '../shared/sleep.js';

const WORKER = ['--import', 'tsx', join(__dirname, 'scale-worker.ts')];

const list = (name: string, dflt: string) => arg(name, dflt).split(',');

/** One Redis (or cluster) of a run: its masters, the URL settings, and how to stop it. */
interface RedisUnderTest {
  name: string;
  masters: Redis[];
  env: Record<string, string>;
  /** What a worker is given as its redisUrl. */
  url: string;
  shards: number;
  stop: () => Promise<void>;
}

async function single(): Promise<RedisUnderTest> {
  const { url, redis, child } = await startRedisServer();
  return {
    name: 'single',
    masters: [redis],
    env: { REDIS_URL: url },
    url,
    shards: 1,
    stop: async () => {
      redis.disconnect();
      await stop(child);
    },
  };
}

async function cluster(shards: number): Promise<RedisUnderTest> {
  const c = await startRedisCluster(3);
  return {
    name: `cluster3/${shards}`,
    masters: c.masters,
    env: { REDIS_CLUSTER_NODES: c.nodes, CELL0_QUEUE_SHARDS: String(shards) },
    url: `redis-cluster://${c.nodes}`,
    shards,
    stop: c.stop,
  };
}

/** Commands run so far on each master. */
async function commandsByMaster(r: RedisUnderTest): Promise<number[]> {
  return Promise.all(
    r.masters.map(async (m) => [...(await commandCalls(m)).values()].reduce((a, b) => a + b, 0)),
  );
}

async function commandsNow(r: RedisUnderTest): Promise<number> {
  return (await commandsByMaster(r)).reduce((a, b) => a + b, 0);
}

const cpuOf = (procs: ChildProcess[]) => procs.reduce((n, p) => n + cpuMsOf(p.pid), 0);

function p95(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.95))] ?? NaN;
}

async function main(): Promise<void> {
  killChildrenOnInterrupt();
  const quick = process.argv.includes('--quick');
  const jobs = Number(arg('jobs', quick ? '100' : '300'));
  const concurrency = Number(arg('concurrency', '32'));
  const idleMs = Number(arg('idle-ms', quick ? '1000' : '2000'));
  const redisKinds = list('redis', 'single,cluster');
  const clusterShards = Number(arg('shards', '3'));
  const backends = list('backends', 'noop,sim');
  const workerCounts = list('workers', quick ? '1,4' : '1,2,4').map(Number);
  const apiCounts = list('apis', quick ? '1,4' : '1,2,4').map(Number);
  const simUrl = await startSimulator();
  printBenchHeader('bench:scale — throughput, latency, CPU and Redis commands per job as the fleet grows');
  console.log(
    `setup    ${jobs} unique inference jobs per point, concurrency ${concurrency}, worker concurrency 64, idle window ${idleMs} ms${quick ? ' (--quick)' : ''}`,
  );
  console.log(
    'redis        backend  W  P  failed  jobs/s   p95 ms  worker ms/job  api ms/job  redis ms/job  busiest master  cmds/job  by master (raw)',
  );
  try {
    for (const kind of redisKinds) {
      const r = kind === 'cluster' ? await cluster(clusterShards) : await single();
      const common = { ...r.env, CELL0_LOG_LEVEL: 'info', CELL0_MAX_CPU_PERCENT: '0' };
      const apis: { child: ChildProcess; url: string }[] = [];
      for (const backend of backends) {
        const workers: ChildProcess[] = [];
        for (const w of workerCounts) {
          while (workers.length < w)
            workers.push(
              await startProcess(
                process.execPath,
                [...WORKER, r.url, String(r.shards), '64', ...(backend === 'sim' ? [simUrl] : [])],
                {},
                /scale worker ready/,
                'worker',
              ),
            );
          for (const p of apiCounts) {
            while (apis.length < p) {
              const port = await freePort();
              const child = await startProcess(
                process.execPath,
                [...CELL0, 'api', '--port', String(port)],
                common,
                /api listening/,
                'api',
              );
              apis.push({ child, url: `http://127.0.0.1:${port}` });
            }
            const urls = apis.slice(0, p).map((a) => a.url);
            const tag = randomBytes(4).toString('hex');
            await sendUnique(urls, 20, concurrency, `${tag}w`);
            // The fleet's background (heartbeats, memory watch, maintenance) over an idle window.
            const i0 = await commandsNow(r);
            await sleep(idleMs);
            const idlePerMs = ((await commandsNow(r)) - i0 - r.masters.length) / idleMs;
            const api = apis.slice(0, p).map((a) => a.child);
            const [c0, w0, a0, r0] = [
              await commandsByMaster(r),
              cpuOf(workers),
              cpuOf(api),
              await Promise.all(r.masters.map(redisCpuMs)),
            ];
            const t0 = performance.now();
            const { latencies, failed } = await sendUnique(urls, jobs, concurrency, tag);
            const ms = performance.now() - t0;
            const [c1, w1, a1, r1] = [
              await commandsByMaster(r),
              cpuOf(workers),
              cpuOf(api),
              await Promise.all(r.masters.map(redisCpuMs)),
            ];
            const redisMs = r1.map((v, i) => v - r0[i]!);
            const redisTotal = redisMs.reduce((a, b) => a + b, 0);
            const byMaster = c1.map((v, i) => v - c0[i]! - 1);
            const cmds = byMaster.reduce((a, b) => a + b, 0) - idlePerMs * ms;
            console.log(
              [
                r.name.padEnd(11),
                backend.padStart(8),
                String(w).padStart(2),
                String(p).padStart(2),
                String(failed).padStart(7),
                ((jobs / ms) * 1000).toFixed(0).padStart(7),
                p95(latencies).toFixed(1).padStart(8),
                ((w1 - w0) / jobs).toFixed(2).padStart(14),
                ((a1 - a0) / jobs).toFixed(2).padStart(11),
                (redisTotal / jobs).toFixed(3).padStart(13),
                `${((Math.max(...redisMs) / Math.max(1, redisTotal)) * 100).toFixed(0)}%`.padStart(15),
                (cmds / jobs).toFixed(1).padStart(9),
                r.masters.length > 1 ? `  ${byMaster.map((n) => (n / jobs).toFixed(1)).join('/')}` : '',
              ].join(' '),
            );
          }
        }
        await Promise.all(workers.map((c) => stop(c)));
      }
      await Promise.all(apis.map((a) => stop(a.child)));
      await r.stop();
    }
    console.log(`load     ${loadText()} (at end)`);
  } finally {
    await stopAll();
  }
}

runBench(main);
