/*
 * `npm run load:adaptive [-- --sizes 1,64] [--fixed 1,4,16,64,128] [--users 1:32,64:96] [--warmup S]
 * [--duration S] [--rounds N] [--workers N] [--out FILE]`
 *
 * The adaptive backend limit against fixed ones, on the GPU-like simulator at each size (parallel slots).
 * For every size and round it starts one fleet per setting, interleaved (fixed 1, fixed 4, …, adaptive, then
 * again): private Redis, the simulator, N workers, the API. Closed-loop users call Cell0Client.infer with
 * unique prompts (no cache, no coalescing) and 64-token answers; after a warm-up, it counts the answers
 * (goodput: answers/s that succeeded) and their end-to-end latency (p50, p95), and reads each worker's
 * backend limit at the end. A fixed setting N means what cell0 did before: N jobs per worker and N calls
 * to the backend (CELL0_INFERENCE_CONCURRENCY=N, CELL0_BACKEND_LIMIT=N); adaptive is the default.
 * Prints a table per size with each setting's median over the rounds and its ratio to the best fixed
 * setting, and writes it as JSON and Markdown.
 */
import { writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Cell0Client } from '../../producers/cell0-client.js';
import { loadConfig } from '../../shared/config/config.js';
import { silentLogger } from '../../shared/logger.js';
import { startFleet } from './fleet.js';
import { ROOT } from './load.js';

const MODEL = 'qwen2.5:7b';

interface Args {
  sizes: number[];
  fixed: number[];
  users: Record<number, number>;
  warmupSec: number;
  durationSec: number;
  rounds: number;
  workers: number;
  timeoutMs: number;
  out: string | undefined;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    sizes: [1, 64],
    fixed: [1, 4, 16, 64, 128],
    users: { 1: 32, 64: 96 },
    warmupSec: 15,
    durationSec: 30,
    rounds: 2,
    workers: 2,
    timeoutMs: 15_000,
    out: undefined,
  };
  const nums = (v: string) => v.split(',').map((x) => Number(x.trim()));
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = argv[++i];
    if (v === undefined) throw new Error(`${k}: missing value`);
    if (k === '--sizes') a.sizes = nums(v);
    else if (k === '--fixed') a.fixed = nums(v);
    else if (k === '--users')
      a.users = Object.fromEntries(v.split(',').map((p) => p.split(':').map(Number) as [number, number]));
    else if (k === '--warmup') a.warmupSec = Number(v);
    else if (k === '--duration') a.durationSec = Number(v);
    else if (k === '--rounds') a.rounds = Number(v);
    else if (k === '--workers') a.workers = Number(v);
    else if (k === '--provider-timeout-ms') a.timeoutMs = Number(v);
    else if (k === '--out') a.out = v;
    else throw new Error(`unknown option ${k}`);
  }
  for (const n of [...a.sizes, ...a.fixed, a.warmupSec, a.durationSec, a.rounds, a.workers])
    if (!(Number.isFinite(n) && n >= 0)) throw new Error(`bad number in the options: ${n}`);
  return a;
}

/** The part of GET /v1/fleet read here. */
interface FleetView {
  workers?: Array<{ backendHealth?: { backends?: Array<{ concurrency?: { limit: number } }> } }>;
}

interface RunResult {
  size: number;
  setting: string;
  round: number;
  users: number;
  goodput: number;
  p50: number;
  p95: number;
  errors: number;
  /** Each worker's backend limit at the end (adaptive) or the pinned one. */
  limits: number[];
  load: string;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function loadAverage(): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).split('load average:')[1]?.trim() ?? '?';
  } catch {
    return '?';
  }
}

async function runOne(a: Args, size: number, setting: string, round: number): Promise<RunResult> {
  const users = a.users[size] ?? 32;
  const settingEnv: Record<string, string> =
    setting === 'adaptive' ? {} : { CELL0_BACKEND_LIMIT: setting, CELL0_INFERENCE_CONCURRENCY: setting };
  const load = loadAverage();
  const fleet = await startFleet({
    root: ROOT,
    workers: a.workers,
    apiProcesses: 1,
    env: { CELL0_PROVIDER_TIMEOUT_MS: String(a.timeoutMs), CELL0_LOG_LEVEL: 'error', ...settingEnv },
    simEnv: { CELL0_SIM_GPU: '1', CELL0_SIM_NUM_PARALLEL: String(size) },
  });
  const client = Cell0Client.fromConfig(
    loadConfig({ ...process.env, REDIS_URL: fleet.redisUrl }),
    silentLogger(),
  );
  const done: Array<{ end: number; ms: number; ok: boolean }> = [];
  try {
    await client.start();
    const t0 = performance.now();
    const measureFrom = t0 + a.warmupSec * 1000;
    const until = measureFrom + a.durationSec * 1000;
    let seq = 0;
    const user = async (u: number) => {
      while (performance.now() < until) {
        const s = performance.now();
        let ok: boolean;
        try {
          const r = await client.infer(
            {
              model: MODEL,
              prompt: `adaptive bench ${setting} ${round} user ${u} request ${++seq} ${Math.random()}`,
              params: { max_tokens: 64, temperature: 0 },
            },
            { waitMs: 120_000 },
          );
          ok = r.result !== undefined;
        } catch {
          ok = false;
        }
        const e = performance.now();
        done.push({ end: e, ms: e - s, ok });
        // A failed request is retried by its user after a short pause (as a client would).
        if (!ok) await new Promise((r) => setTimeout(r, 200));
      }
    };
    const limitsAt = new Promise<number[]>((resolve) =>
      setTimeout(
        () => {
          fetch(fleet.apiUrl + '/v1/fleet')
            .then((r) => r.json() as Promise<FleetView>)
            .then((f) =>
              resolve(
                (f.workers ?? []).map((w) => w.backendHealth?.backends?.[0]?.concurrency?.limit ?? NaN),
              ),
            )
            .catch(() => resolve([]));
        },
        (a.warmupSec + a.durationSec) * 1000 - 1000,
      ),
    );
    await Promise.all(Array.from({ length: users }, (_, u) => user(u)));
    const window = done.filter((d) => d.end >= measureFrom && d.end <= until);
    const ok = window
      .filter((d) => d.ok)
      .map((d) => d.ms)
      .sort((x, y) => x - y);
    return {
      size,
      setting,
      round,
      users,
      goodput: ok.length / a.durationSec,
      p50: percentile(ok, 50),
      p95: percentile(ok, 95),
      errors: window.length - ok.length,
      limits: await limitsAt,
      load,
    };
  } finally {
    await client.close().catch(() => undefined);
    await fleet.close();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function table(results: RunResult[], size: number): string {
  const settings = [...new Set(results.filter((r) => r.size === size).map((r) => r.setting))];
  const rows = settings.map((setting) => {
    const rs = results.filter((r) => r.size === size && r.setting === setting);
    return {
      setting,
      goodput: median(rs.map((r) => r.goodput)),
      p50: median(rs.map((r) => r.p50)),
      p95: median(rs.map((r) => r.p95)),
      errors: rs.reduce((s, r) => s + r.errors, 0),
      limits: rs.map((r) => r.limits.join('+')).join(', '),
    };
  });
  const fixed = rows.filter((r) => r.setting !== 'adaptive');
  const best = fixed.reduce(
    (b, r) => (r.goodput > b.goodput || (r.goodput === b.goodput && r.p95 < b.p95) ? r : b),
    fixed[0]!,
  );
  const lines = [
    `| setting | goodput (answers/s) | p50 (s) | p95 (s) | errors | backend limit per worker at the end | goodput / best fixed | p95 / best fixed |`,
    `| ------- | ------------------- | ------- | ------- | ------ | ----------------------------------- | -------------------- | ---------------- |`,
  ];
  for (const r of rows)
    lines.push(
      `| ${r.setting === 'adaptive' ? '**adaptive**' : `fixed ${r.setting}`}${r === best ? ' (best fixed)' : ''} | ${r.goodput.toFixed(2)} | ${(r.p50 / 1000).toFixed(2)} | ${(r.p95 / 1000).toFixed(2)} | ${r.errors} | ${r.limits} | ${(r.goodput / best.goodput).toFixed(2)} | ${(r.p95 / best.p95).toFixed(2)} |`,
    );
  return lines.join('\n');
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const settings = [...a.fixed.map(String), 'adaptive'];
  const results: RunResult[] = [];
  const started = new Date().toISOString();
  for (const size of a.sizes)
    for (let round = 1; round <= a.rounds; round++)
      // Adaptive in the middle of each round's order alternately, so neither end of a round favours it.
      for (const setting of round % 2 ? settings : [...settings].reverse()) {
        const r = await runOne(a, size, setting, round);
        results.push(r);
        process.stdout.write(
          `${size} slot(s)  ${setting.padEnd(8)} round ${round}: ${r.goodput.toFixed(2)} answers/s, p50 ${(r.p50 / 1000).toFixed(2)} s, p95 ${(r.p95 / 1000).toFixed(2)} s, errors ${r.errors}, limits ${r.limits.join('+')}, load ${r.load}\n`,
        );
      }
  const md = [
    `Started ${started}, finished ${new Date().toISOString()}; ${a.workers} workers, warm-up ${a.warmupSec} s, measured ${a.durationSec} s, ${a.rounds} round(s), provider timeout ${a.timeoutMs} ms; median over the rounds.`,
    ...a.sizes.flatMap((s) => [
      '',
      `**${s} slot(s), ${a.users[s] ?? 32} closed-loop users**`,
      '',
      table(results, s),
    ]),
  ].join('\n');
  process.stdout.write(`\n${md}\n`);
  if (a.out) {
    writeFileSync(a.out + '.json', JSON.stringify(results, null, 2));
    writeFileSync(a.out + '.md', md + '\n');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
