/*
 * bench:e2e options: what the command line can set, and its parser.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface Options {
  jobs: number;
  concurrency: number;
  window: number;
  pairs: number;
  warmup: number;
  redisUrl: string;
  json: boolean;
  /** When set, every child process runs with --cpu-prof and writes its profile here. */
  cpuProfDir: string | undefined;
  /** Producer processes per side; the jobs (and the rate) are split between them. */
  producers: number;
  /** Open loop: jobs/s over all producers (paced); 0 = closed loop (window W per producer). */
  rate: number;
  /** off: no metrics (default); on: side B counts in Cell0Metrics; ab: A = cell0 without, B = cell0 with. */
  metrics: 'off' | 'on' | 'ab';
  /** Side A runs the cell0 compiled in this `dist/` directory instead of bare BullMQ (B runs this checkout's). */
  against: string | undefined;
  /** Each producer prints where its measured jobs' time went (bench/e2e-stages.ts). */
  stages: boolean;
  /** Extra node flags for every child process, both sides (e.g. --max-semi-space-size=16). */
  nodeFlags: string[];
}

export const USAGE = `usage: npm run bench:e2e -- [--jobs N] [--concurrency C] [--window W] [--pairs P] [--warmup M]
                          [--redis URL] [--json] [--cpu-prof DIR] [--producers N] [--rate R]
                          [--metrics M] [--stages] [--node-flags F] [--against DIR]
  --jobs N         measured jobs per side per pair (default 2000)
  --concurrency C  worker concurrency, both sides (default 16)
  --window W       jobs in flight per producer (default 64)
  --pairs P        A/B pairs, order alternating (default 5)
  --warmup M       jobs per side run before measuring, not counted (default 200)
  --redis URL      Redis (default $REDIS_URL or redis://127.0.0.1:6379)
  --json           also print the summary as one JSON object
  --cpu-prof DIR   run the child processes with node --cpu-prof, profiles written to DIR
  --producers N    producer processes per side, the jobs split between them (default 1)
  --rate R         open loop: start R jobs/s over all producers whatever is in flight, latency from each
                   job's scheduled start (default: closed loop, W in flight per producer)
  --metrics M      off (default): cell0 without metrics; on: cell0 counts in its prom-client registry;
                   ab: A = cell0 without metrics, B = cell0 with them (the cost of metrics)
  --stages         each producer prints its jobs' stages (submit, added, active, finished, result seen):
                   percentiles per stage and the split of the slowest 1 %; producers and workers print
                   their event-loop delay and GC pauses over the measured jobs
  --node-flags F   extra node flags for every child process of both sides, space-separated
                   (e.g. "--max-semi-space-size=16", as npm start runs cell0)
  --against DIR    A = the cell0 compiled in DIR (the dist/ of another checkout, e.g. main's) instead of
                   bare BullMQ, B = this checkout's: measures a change of cell0 side by side`;

export function parseArgs(argv: readonly string[]): Options {
  const opts: Options = {
    jobs: 2000,
    concurrency: 16,
    window: 64,
    pairs: 5,
    warmup: 200,
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    json: false,
    cpuProfDir: undefined,
    producers: 1,
    rate: 0,
    metrics: 'off',
    against: undefined,
    stages: false,
    nodeFlags: [],
  };
  const ints = {
    '--jobs': 'jobs',
    '--concurrency': 'concurrency',
    '--window': 'window',
    '--pairs': 'pairs',
    '--warmup': 'warmup',
    '--producers': 'producers',
    '--rate': 'rate',
  } as const;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    if (flag in ints) {
      const key = ints[flag as keyof typeof ints];
      const n = Number(value());
      const min = key === 'warmup' || key === 'rate' ? 0 : 1;
      if (!Number.isInteger(n) || n < min) throw new Error(`${flag} must be an integer >= ${min}`);
      opts[key] = n;
    } else if (flag === '--redis') opts.redisUrl = value();
    else if (flag === '--json') opts.json = true;
    else if (flag === '--stages') opts.stages = true;
    else if (flag === '--node-flags') opts.nodeFlags = value().split(/\s+/).filter(Boolean);
    else if (flag === '--cpu-prof') opts.cpuProfDir = resolve(value());
    else if (flag === '--metrics') {
      const m = value();
      if (m !== 'off' && m !== 'on' && m !== 'ab') throw new Error(`--metrics must be off, on or ab`);
      opts.metrics = m;
    } else if (flag === '--against') {
      opts.against = resolve(value());
      for (const part of ['producers', 'workers'])
        if (!existsSync(join(opts.against, part, 'index.js')))
          throw new Error(
            `--against ${opts.against}: no ${part}/index.js there (give a compiled dist/ directory)`,
          );
    } else if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${arg}\n${USAGE}`);
  }
  return opts;
}
