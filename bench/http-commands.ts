/*
 * bench:http-commands — where the Redis commands of one unique inference request go, by component.
 *
 * Starts a private redis-server, the simulator and `cell0 start` (as bench:http does), sends N unique-prompt
 * POST /v1/inference requests at concurrency K with MONITOR on the private Redis, and groups every command by
 * the script call (or plain command) it belongs to: a script's own commands follow its EVALSHA in MONITOR's
 * output, so they are attributed to it, named by the script's first key. Prints commands per request per
 * group and per command name. A count, not a timing: it does not depend on the machine's load (MONITOR
 * slows Redis, so no throughput is printed). Never run MONITOR on a shared Redis.
 *
 *   npm run bench:http-commands -- [--requests N] [--concurrency K] [--warmup M] [--caches on|off] [--dist DIR]
 *
 * --dist DIR runs `cell0 start` of another build's compiled output (its dist/ directory; default this build's).
 * A warm-up above the semantic cache's bound per scope (10,000) measures a full scope, whose stores evict.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Pool } from 'undici';
import { benchArgs } from './args.js';
import {
  freePort,
  hotPathCell0Env,
  runBench,
  startInstantSimulator,
  startProcess,
  startRedisServer,
  stopAll,
  uniqueInferenceLoad as load,
} from './fleet.js';

/** A key with its variable parts (hashes, numbers) blanked, to name a group. */
const shape = (key: string) =>
  key
    .replace(/[0-9a-f]{16,}/g, '…')
    .replace(/\d+/g, 'N')
    .slice(0, 60);

async function main(): Promise<void> {
  const opts = benchArgs(
    process.argv.slice(2),
    { requests: 300, concurrency: 50, warmup: 100 },
    'npm run bench:http-commands -- [--requests N] [--concurrency K] [--warmup M] [--caches on|off] [--dist DIR]',
    ['caches', 'dist'],
  );
  const cli = join(opts.text.dist ?? join(__dirname, '..', 'dist'), 'bin', 'cell0.js');
  const cachesOff = opts.text.caches === 'off';
  const { url: redisUrl, redis } = await startRedisServer();
  const { port: simPort } = await startInstantSimulator(cli);
  const apiPort = await freePort();
  await startProcess(
    process.execPath,
    [cli, 'start', '--port', String(apiPort)],
    {
      ...(await hotPathCell0Env(redisUrl, `http://127.0.0.1:${simPort}`)),
      ...(cachesOff ? { CELL0_CACHE_ENABLED: '0' } : {}),
    },
    /cell0 start .* ready/,
    'cell0',
  );
  const pool = new Pool(`http://127.0.0.1:${apiPort}`, { connections: opts.concurrency });
  const tag = randomBytes(3).toString('hex');
  try {
    await load(pool, opts.warmup, opts.concurrency, `${tag}w`);
    const monitor = await redis.monitor();
    const groups = new Map<string, Map<string, number>>();
    let group = '?';
    let total = 0;
    // per script group: the keys of each call (a store call's entries are its keys beyond the scope's nine)
    const keysPerCall = new Map<string, number[]>();
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      const cmd = String(args[0]).toLowerCase();
      if (cmd === 'info' || cmd === 'monitor') return;
      total++;
      if (!source.includes('lua')) {
        const script = cmd === 'evalsha' || cmd === 'eval';
        group = script ? `script ${shape(String(args[3] ?? ''))}` : `${cmd} ${shape(String(args[1] ?? ''))}`;
        if (script) {
          const calls = keysPerCall.get(group) ?? [];
          keysPerCall.set(group, calls);
          calls.push(Number(args[2]));
        }
      }
      const g = groups.get(group) ?? new Map<string, number>();
      groups.set(group, g);
      g.set(cmd, (g.get(cmd) ?? 0) + 1);
    });
    const errors = await load(pool, opts.requests, opts.concurrency, tag);
    // replies and cache stores that finish just after the last answer
    await new Promise((r) => setTimeout(r, 1000));
    monitor.disconnect();
    const n = opts.requests;
    console.log(
      `bench:http-commands — ${n} unique requests at concurrency ${opts.concurrency}` +
        `${cachesOff ? ', semantic/search caches off' : ''}; ${errors} errors`,
    );
    console.log(`Redis commands per request: ${(total / n).toFixed(1)} (scripts' own commands included)`);
    const rows = [...groups].map(([name, m]) => ({
      name,
      m,
      sum: [...m.values()].reduce((a, b) => a + b, 0),
    }));
    for (const { name, m, sum } of rows.sort((a, b) => b.sum - a.sum)) {
      if (sum / n < 0.05) continue;
      const detail = [...m]
        .sort((a, b) => b[1] - a[1])
        .filter(([, v]) => v / n >= 0.05)
        .map(([c, v]) => `${c} ${(v / n).toFixed(2)}`)
        .join(', ');
      console.log(`${(sum / n).toFixed(2).padStart(7)}  ${name}  (${detail})`);
    }
    console.log('Keys per script call (mean; p50 / p90 / max):');
    for (const [name, calls] of keysPerCall) {
      if (calls.length / n < 0.05) continue;
      const sorted = [...calls].sort((a, b) => a - b);
      const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
      const mean = calls.reduce((a, b) => a + b, 0) / calls.length;
      console.log(
        `${mean.toFixed(2).padStart(7)}  ${name}  (${at(0.5)} / ${at(0.9)} / ${sorted[sorted.length - 1]}; ${calls.length} calls)`,
      );
    }
  } finally {
    await pool.close();
    redis.disconnect();
    await stopAll();
  }
}

runBench(main);
