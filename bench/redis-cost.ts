/*
 * bench:redis-cost — where Redis's CPU goes per unique inference request (issue 18).
 *
 * Starts a private redis-server, the simulator and `cell0 start` (as bench:http does, caches on unless
 * --caches off), warms up, then for each of R rounds: CONFIG RESETSTAT, N unique-prompt requests at
 * concurrency K, and reads Redis's CPU (INFO cpu: user + sys of the main thread) and INFO commandstats (usec
 * per command, a script's EVALSHA including the commands it runs). With --slowlog on, also SLOWLOG with a
 * zero threshold for the last round: Redis's time per script call, grouped by the script (named by its SHA's
 * first keys). Prints µs of Redis per request by command and by script.
 *
 *   node --import tsx bench/redis-cost.ts [--requests N] [--concurrency K] [--pairs R] [--warmup M]
 *        [--dist DIST] [--against DIST] [--caches on|off] [--slowlog on]
 *
 * --against DIST: rounds alternate between this build (B) and DIST's (A), each with its own cell0 process,
 * fresh Redis and simulator per side; prints the median of the pair ratios of Redis CPU per request.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import type { Redis } from 'ioredis';
import { benchArgs } from './args.js';
import { median } from './e2e-common.js';
import {
  cpuMsOf,
  freePort,
  hotPathCell0Env,
  runBench,
  redisCpuMs,
  startInstantSimulator,
  startProcess,
  startRedisServer,
  stop,
  stopAll,
  uniqueInferenceLoad,
} from './fleet.js';

const ROOT = join(__dirname, '..');

async function load(url: string, n: number, k: number, tag: string): Promise<number> {
  const pool = new Pool(url, { connections: k });
  try {
    return await uniqueInferenceLoad(pool, n, k, tag);
  } finally {
    await pool.close();
  }
}

interface Side {
  redis: Redis;
  redisPid: number;
  url: string;
  stopAll: () => Promise<void>;
}

async function startSide(dist: string, cachesOff: boolean): Promise<Side> {
  const cli = join(dist, 'bin', 'cell0.js');
  const { url: redisUrl, redis, child: redisServer } = await startRedisServer();
  const { child: sim, port: simPort } = await startInstantSimulator(cli);
  const apiPort = await freePort();
  const cell0 = await startProcess(
    process.execPath,
    [cli, 'start', '--port', String(apiPort)],
    {
      ...(await hotPathCell0Env(redisUrl, `http://127.0.0.1:${simPort}`)),
      ...(cachesOff ? { CELL0_CACHE_ENABLED: '0' } : {}),
    },
    /cell0 start .* ready/,
    'cell0',
  );
  return {
    redis,
    redisPid: redisServer.pid!,
    url: `http://127.0.0.1:${apiPort}`,
    stopAll: async () => {
      await stop(cell0);
      await stop(sim);
      redis.disconnect();
      await stop(redisServer);
    },
  };
}

interface Round {
  cpuUs: number;
  procCpuUs: number;
  byCommand: Map<string, { calls: number; usec: number }>;
  errors: number;
}

async function round(side: Side, n: number, k: number, tag: string): Promise<Round> {
  await side.redis.config('RESETSTAT');
  const c0 = await redisCpuMs(side.redis);
  const p0 = cpuMsOf(side.redisPid);
  const errors = await load(side.url, n, k, tag);
  const c1 = await redisCpuMs(side.redis);
  const p1 = cpuMsOf(side.redisPid);
  const info = await side.redis.info('commandstats');
  const byCommand = new Map<string, { calls: number; usec: number }>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm))
    if (m[1] !== 'info' && m[1] !== 'config')
      byCommand.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  return { cpuUs: ((c1 - c0) * 1000) / n, procCpuUs: ((p1 - p0) * 1000) / n, byCommand, errors };
}

/** SLOWLOG entries grouped by script: a name from its SHA and first key, calls, median and total µs. */
async function slowlogByScript(redis: Redis, n: number): Promise<void> {
  const entries = (await redis.call('SLOWLOG', 'GET', '-1')) as [number, number, number, string[]][];
  const groups = new Map<string, number[]>();
  for (const [, , us, args] of entries) {
    const cmd = args[0]!.toLowerCase();
    let name = cmd;
    if (cmd === 'evalsha') {
      const keys = Number(args[2]);
      const key = keys > 0 ? (args[3] ?? '').replace(/[0-9a-f]{16,}|\d{3,}/g, '#') : '-';
      name = `evalsha ${args[1]!.slice(0, 8)} keys=${keys} ${key}`;
    }
    const g = groups.get(name) ?? [];
    g.push(us);
    groups.set(name, g);
  }
  const rows = [...groups].map(([name, us]) => ({
    name,
    calls: us.length,
    p50: median(us),
    total: us.reduce((s, x) => s + x, 0),
  }));
  rows.sort((a, b) => b.total - a.total);
  console.log('  SLOWLOG (threshold 0), by script: calls/request, median µs/call, µs/request');
  for (const r of rows.slice(0, 25))
    console.log(
      `    ${r.name.padEnd(90)} ${(r.calls / n).toFixed(3).padStart(6)} ${String(r.p50).padStart(6)} ${(r.total / n).toFixed(1).padStart(7)}`,
    );
}

function printRound(label: string, r: Round, n: number): void {
  let total = 0;
  for (const v of r.byCommand.values()) total += v.usec;
  console.log(
    `  ${label}: Redis CPU ${r.cpuUs.toFixed(1)} µs/request (/proc ${r.procCpuUs.toFixed(0)}), command time ${(total / n).toFixed(1)} µs/request (a script's commands counted in its EVALSHA and again by name; wall time)${r.errors ? `, errors ${r.errors}` : ''}`,
  );
  const rows = [...r.byCommand].sort((a, b) => b[1].usec - a[1].usec);
  for (const [cmd, v] of rows.slice(0, 20))
    console.log(
      `    ${cmd.padEnd(28)} calls/req ${(v.calls / n).toFixed(2).padStart(6)}  µs/call ${(v.usec / v.calls).toFixed(1).padStart(6)}  µs/req ${(v.usec / n).toFixed(1).padStart(6)}`,
    );
}

async function main(): Promise<void> {
  const opts = benchArgs(
    process.argv.slice(2),
    { requests: 3000, concurrency: 50, pairs: 3, warmup: 1000 },
    'node --import tsx bench/redis-cost.ts [--requests N] [--concurrency K] [--pairs R] [--warmup M] [--dist DIST] [--against DIST] [--caches on|off] [--slowlog on]',
    ['dist', 'against', 'caches', 'slowlog'],
  );
  const cachesOff = opts.text.caches === 'off';
  const distB = opts.text.dist ?? join(ROOT, 'dist');
  const distA = opts.text.against;
  console.log(
    `bench:redis-cost  ${new Date().toISOString()}  load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    `  ${opts.requests} requests/round, concurrency ${opts.concurrency}, ${opts.pairs} rounds, warm-up ${opts.warmup}, caches ${cachesOff ? 'off' : 'on'}`,
  );
  const sides: { name: string; side: Side }[] = [];
  try {
    if (distA) sides.push({ name: 'A', side: await startSide(distA, cachesOff) });
    sides.push({ name: 'B', side: await startSide(distB, cachesOff) });
    for (const s of sides)
      await load(s.side.url, opts.warmup, opts.concurrency, `w${randomBytes(3).toString('hex')}`);
    const ratios: number[] = [];
    const results: Record<string, number[]> = { A: [], B: [] };
    for (let p = 0; p < opts.pairs; p++) {
      const order = p % 2 === 0 ? sides : [...sides].reverse();
      const got: Record<string, Round> = {};
      for (const s of order) {
        const last = p === opts.pairs - 1 && opts.text.slowlog === 'on';
        if (last) {
          await s.side.redis.config('SET', 'slowlog-max-len', '1000000');
          await s.side.redis.config('SET', 'slowlog-log-slower-than', '0');
          await s.side.redis.call('SLOWLOG', 'RESET');
        }
        const r = await round(
          s.side,
          opts.requests,
          opts.concurrency,
          `${s.name}${p}${randomBytes(3).toString('hex')}`,
        );
        if (last) {
          await s.side.redis.config('SET', 'slowlog-log-slower-than', '10000');
        }
        got[s.name] = r;
        results[s.name]!.push(r.cpuUs);
        printRound(`round ${p + 1} ${s.name}`, r, opts.requests);
        if (last) await slowlogByScript(s.side.redis, opts.requests);
      }
      if (got.A && got.B) ratios.push(got.B.cpuUs / got.A.cpuUs);
    }
    console.log(
      `\nRedis CPU µs/request: B ${results.B!.map((x) => x.toFixed(0)).join(', ')}` +
        (distA ? `; A ${results.A!.map((x) => x.toFixed(0)).join(', ')}` : ''),
    );
    if (ratios.length)
      console.log(
        `pair ratios B/A ${ratios.map((r) => r.toFixed(3)).join(', ')}; median ${median(ratios).toFixed(3)}`,
      );
    console.log(
      `load at end ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    for (const s of sides) await s.side.stopAll();
    await stopAll();
  }
}

runBench(main);
