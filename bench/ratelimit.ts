/*
 * bench:ratelimit — accuracy of the fleet-wide token bucket.
 *
 * P processes (default 4), each with several loops, hammer one Redis bucket (default 20 req/s, burst 20)
 * for S seconds (default 30) and call the simulator once per grant. Reported:
 *   - served rate: grants after the initial burst / time between first and last grant, vs the configured
 *     rate (ratio printed; target within 5%);
 *   - burst check: over every interval between two grants, grants <= capacity + rate x interval (computed on
 *     Redis-clock grant times; the largest excess over that bound is printed and must be <= 0);
 *   - what the simulator saw: model calls received and its largest count in any 1 s window.
 *
 *   npm run bench:ratelimit -- [--processes P] [--rate R] [--capacity C] [--seconds S] [--redis URL] [--json]
 */
import { benchArgs } from './args.js';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { OllamaSimulator } from '../workers/providers/simulator/ollama-simulator.js';

interface Options {
  processes: number;
  rate: number;
  capacity: number;
  seconds: number;
  redisUrl: string;
  json: boolean;
}

function parseArgs(argv: readonly string[]): Options {
  const o = benchArgs(
    argv,
    { processes: 4, rate: 20, capacity: 20, seconds: 30 },
    'npm run bench:ratelimit -- [--processes P] [--rate R] [--capacity C] [--seconds S] [--redis URL] [--json]',
    ['redis'],
  );
  return { ...o, redisUrl: o.text.redis ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' };
}

interface HammerResult {
  grants: number[];
  done: number[];
  refused: number;
  calls: number;
  errors: number;
}

function runHammer(args: string[]): Promise<HammerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(__dirname, 'ratelimit-hammer.ts'), ...args],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`hammer exited with ${code}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as HammerResult);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

/** Largest (grants in [t_i, t_j]) - (capacity + rate x (t_j - t_i)) over all pairs i <= j; <= 0 means no burst too big. */
function worstExcess(times: number[], rate: number, capacity: number): number {
  // count(i..j) - rate*(t_j - t_i)/1000 = (j - rate*t_j/1000) - (i - rate*t_i/1000) + 1: a max-difference scan.
  let best = -Infinity;
  let minPrefix = Infinity;
  for (let j = 0; j < times.length; j++) {
    const v = j - (rate * times[j]!) / 1000;
    minPrefix = Math.min(minPrefix, v);
    best = Math.max(best, v - minPrefix + 1);
  }
  return best - capacity;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const sim = new OllamaSimulator({ ttftMs: 1, loadMsPerGb: 0 });
  const { url } = await sim.start();
  const prefix = `{bench-rl-${randomBytes(4).toString('hex')}}`;
  const startAt = Date.now() + 3000; // time for the children to load
  const args = (i: number): string[] => [
    '--redis',
    o.redisUrl,
    '--prefix',
    prefix,
    '--rate',
    String(o.rate),
    '--capacity',
    String(o.capacity),
    '--seconds',
    String(o.seconds),
    '--target',
    url,
    '--start-at',
    String(startAt),
    '--id',
    String(i),
  ];
  const results = await Promise.all(Array.from({ length: o.processes }, (_, i) => runHammer(args(i))));
  const stats = sim.stats();
  await sim.close();
  const redis = new Redis(o.redisUrl);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.unlink(...keys);
  await redis.quit();

  const grants = results.flatMap((r) => r.grants).sort((a, b) => a - b);
  const first = grants[0] ?? 0;
  const last = grants[grants.length - 1] ?? 0;
  const spanS = (last - first) / 1000;
  const steady = spanS > 0 ? (grants.length - o.capacity) / spanS : 0;
  const excess = worstExcess(grants, o.rate, o.capacity);
  // The same on the time each call was answered (this host's clock): what the backend actually served.
  const done = results.flatMap((r) => r.done).sort((a, b) => a - b);
  const doneSpanS = ((done[done.length - 1] ?? 0) - (done[0] ?? 0)) / 1000;
  const answeredRate = doneSpanS > 0 ? (done.length - o.capacity) / doneSpanS : 0;
  const summary = {
    date: new Date().toISOString(),
    host: `${os.cpus().length} cpus, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`,
    processes: o.processes,
    configured: { rate: o.rate, capacity: o.capacity, seconds: o.seconds },
    grants: grants.length,
    perProcess: results.map((r) => r.grants.length),
    refusedAcquires: results.reduce((n, r) => n + r.refused, 0),
    servedRate: Math.round(steady * 1000) / 1000,
    ratio: Math.round((steady / o.rate) * 10000) / 10000,
    worstBurstExcess: Math.round(excess * 1000) / 1000,
    answeredRate: Math.round(answeredRate * 1000) / 1000,
    answeredRatio: Math.round((answeredRate / o.rate) * 10000) / 10000,
    overallRate: Math.round((done.length / o.seconds) * 1000) / 1000,
    simulator: {
      modelCalls: stats.requests.byEndpoint['/api/embed'] ?? 0,
      maxPerSecond: stats.arrivals.maxPerSecond,
      callErrors: results.reduce((n, r) => n + r.errors, 0),
    },
  };
  console.log(`bench:ratelimit  ${summary.host}`);
  console.log(
    `  ${o.processes} processes x 4 loops on one bucket of ${o.rate}/s, burst ${o.capacity}, for ${o.seconds} s`,
  );
  console.log(
    `  grants ${summary.grants} (per process ${summary.perProcess.join(', ')}); acquires refused (wait > 2 s) ${summary.refusedAcquires}`,
  );
  console.log(
    `  served rate after the burst: ${summary.servedRate}/s  ratio to configured ${summary.ratio}  (target 0.95..1.05)`,
  );
  console.log(
    `  answered rate after the burst (calls completed, this host's clock): ${summary.answeredRate}/s  ratio ${summary.answeredRatio}`,
  );
  console.log(
    `  overall: ${done.length} calls in ${o.seconds} s = ${summary.overallRate}/s (burst ${o.capacity} + ${o.rate}/s)`,
  );
  console.log(
    `  worst burst excess over capacity + rate x interval: ${summary.worstBurstExcess} (must be <= 0)`,
  );
  console.log(
    `  simulator: ${summary.simulator.modelCalls} calls, most in any 1 s window ${summary.simulator.maxPerSecond} (rate + burst = ${o.rate + o.capacity})`,
  );
  if (o.json) console.log(JSON.stringify(summary));
  const within = (r: number): boolean => r >= 0.95 && r <= 1.05;
  const ok = within(summary.ratio) && within(summary.answeredRatio) && summary.worstBurstExcess <= 1e-9;
  process.exitCode = ok ? 0 : 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
