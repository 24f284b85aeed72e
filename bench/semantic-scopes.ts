/**
 * bench:semantic-scopes — the semantic cache when lookups go round many scopes (a scope per tenant, system
 * prompt or conversation history): two builds side by side, in fresh processes, interleaved pairs (A B,
 * B A, …), each side against its own private redis-server. Per side, per request (one lookup and one
 * store; every lookup a miss): the CPU of the process running the cache, redis-server's CPU, the wall time.
 *
 *   npm run bench:semantic-scopes -- --against DIST [--dist DIST] [--scopes N] [--entries E] [--rounds R] [--pairs P]
 *
 * A is the build in --against, B the build in --dist (default: this tree's dist/, `npm run build` first).
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { resolve } from 'node:path';
import { startRedisServer, stopAll } from './fleet.js';

interface Side {
  requests: number;
  hits: number;
  cpuUs: number;
  wallUs: number;
  /** redis-server's CPU per request (INFO cpu). */
  redisUs: number;
}

function parseArgs(argv: string[]) {
  const a = { against: '', dist: resolve('dist'), scopes: 400, entries: 1, rounds: 5, pairs: 3 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--against') a.against = resolve(v);
    else if (k === '--dist') a.dist = resolve(v);
    else if (k === '--scopes' || k === '--entries' || k === '--rounds' || k === '--pairs') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${k} must be an integer >= 1, got ${v}`);
      a[k.slice(2) as 'scopes' | 'entries' | 'rounds' | 'pairs'] = n;
    } else throw new Error(`bad argument ${k}`);
  }
  if (!a.against) throw new Error('--against DIST is required (the build to compare with)');
  return a;
}

async function runSide(dist: string, args: ReturnType<typeof parseArgs>, tag: string): Promise<Side> {
  const redis = await startRedisServer();
  try {
    const out = execFileSync(
      process.execPath,
      [
        resolve('bench/semantic-scopes-child.mjs'),
        dist,
        redis.url,
        `bench-scopes-${tag}`,
        String(args.scopes),
        String(args.rounds),
        String(args.entries),
      ],
      { encoding: 'utf8' },
    );
    return JSON.parse(out.trim().split('\n').pop()!) as Side;
  } finally {
    redis.redis.disconnect();
    await stopAll();
  }
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  console.log(
    'bench:semantic-scopes — lookups and stores going round many scopes: B (--dist) vs A (--against)',
  );
  console.log(`date     ${new Date().toISOString()}`);
  console.log(`machine  ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} cores, node ${process.version}`);
  console.log(
    `load     ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    `setup    ${args.scopes} scopes of ${args.entries} entries, ${args.rounds} rounds, ${args.pairs} pairs`,
  );
  console.log(`A        ${args.against}\nB        ${args.dist}`);
  const cpu: number[] = [];
  const wall: number[] = [];
  const total: number[] = [];
  for (let p = 0; p < args.pairs; p++) {
    const order: ['A' | 'B', string][] = [
      ['A', args.against],
      ['B', args.dist],
    ];
    if (p % 2 === 1) order.reverse();
    const got: Partial<Record<'A' | 'B', Side>> = {};
    for (const [name, dist] of order) got[name] = await runSide(dist, args, `${p}${name}`);
    const a = got.A!;
    const b = got.B!;
    cpu.push(b.cpuUs / a.cpuUs);
    wall.push(b.wallUs / a.wallUs);
    total.push((b.cpuUs + b.redisUs) / (a.cpuUs + a.redisUs));
    console.log(
      `  pair ${p + 1} (${order.map(([n]) => n).join(' ')}): A cpu ${a.cpuUs.toFixed(0)} redis ${a.redisUs.toFixed(0)} wall ${a.wallUs.toFixed(0)} µs/request | ` +
        `B cpu ${b.cpuUs.toFixed(0)} redis ${b.redisUs.toFixed(0)} wall ${b.wallUs.toFixed(0)} µs/request | hits ${a.hits}/${b.hits}`,
    );
  }
  console.log(
    `  median pair ratios B/A: process cpu ${median(cpu).toFixed(2)}, process + redis cpu ${median(total).toFixed(2)}, wall ${median(wall).toFixed(2)}`,
  );
  console.log(
    `load     ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} at the end`,
  );
}

main().catch(async (err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  await stopAll();
  process.exit(1);
});
