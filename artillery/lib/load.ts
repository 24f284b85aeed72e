/*
 * `npm run load -- --scenario standard --env development [--target URL] [--workers N] [--api-processes N]
 *  [--duration S] [--out DIR]`
 *
 * Without --target it starts a fleet of its own (private Redis, the simulator with the GPU profile, N
 * workers, the API), runs the scenario with artillery (installed in artillery/ on first use, with
 * PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1), stops the fleet, and writes artillery's JSON, a self-contained HTML
 * report and a text summary. Exits non-zero when a threshold breaks (artillery's ensure checks).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { startFleet, type Fleet } from './fleet.js';
import { htmlReport, parseChecks, textSummary, type ArtilleryReport, type RunMeta } from './report.js';
import {
  ENVIRONMENTS,
  SCENARIOS,
  readThresholds,
  resolveScenario,
  type EnvironmentName,
  type ScenarioName,
} from './script.js';

export const ARTILLERY_DIR = resolve(__dirname, '..');
export const ROOT = resolve(ARTILLERY_DIR, '..');

export interface LoadArgs {
  scenario: ScenarioName;
  env: EnvironmentName;
  target?: string;
  workers: number;
  apiProcesses: number;
  durationSec?: number;
  out?: string;
  /** Extra environment for the fleet's processes (load:scale sets the simulator's size). */
  fleetEnv?: Record<string, string>;
  simEnv?: Record<string, string>;
}

export class UsageError extends Error {}

const USAGE = `usage: npm run load -- --scenario <${SCENARIOS.join('|')}> --env <${ENVIRONMENTS.join('|')}>
         [--target URL] [--workers N] [--api-processes N] [--duration S] [--sim-slots N] [--out DIR]
  --target         run against a fleet that is already up (else one is started and stopped: private Redis,
                   the simulator with its GPU profile, N workers (default 2), the API)
  --duration       scale the scenario's phases to last about S seconds (arrival rates unchanged)
  --sim-slots      the simulator's parallel requests per model (default 4, like one Ollama GPU; 64 ≈ vLLM)`;

export function parseArgs(argv: readonly string[]): LoadArgs {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--help' || a === '-h') throw new UsageError(USAGE);
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new UsageError(`unexpected argument "${a}"\n${USAGE}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new UsageError(`--${m[1]} needs a value\n${USAGE}`);
    o[m[1] ?? ''] = value;
  }
  const known = ['scenario', 'env', 'target', 'workers', 'api-processes', 'duration', 'out', 'sim-slots'];
  const unknown = Object.keys(o).filter((k) => !known.includes(k));
  if (unknown.length > 0) throw new UsageError(`unknown option --${unknown[0]}\n${USAGE}`);
  const scenario = (o.scenario ?? 'standard') as ScenarioName;
  if (!SCENARIOS.includes(scenario))
    throw new UsageError(`--scenario: expected one of ${SCENARIOS.join(', ')}, got "${o.scenario}"`);
  const env = (o.env ?? 'development') as EnvironmentName;
  if (!ENVIRONMENTS.includes(env))
    throw new UsageError(`--env: expected one of ${ENVIRONMENTS.join(', ')}, got "${o.env}"`);
  const int = (name: string, min: number, max: number, dflt: number | undefined) => {
    const v = o[name];
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max)
      throw new UsageError(`--${name}: expected an integer from ${min} to ${max}, got "${v}"`);
    return n;
  };
  if (o.target !== undefined && !/^https?:\/\/[^\s]+$/.test(o.target))
    throw new UsageError(`--target: expected an http(s) URL, got "${o.target}"`);
  const durationSec = int('duration', 5, 86_400, undefined);
  const simSlots = int('sim-slots', 1, 4096, undefined);
  return {
    scenario,
    env,
    ...(o.target !== undefined ? { target: o.target.replace(/\/+$/, '') } : {}),
    workers: int('workers', 1, 64, 2) ?? 2,
    apiProcesses: int('api-processes', 1, 16, 1) ?? 1,
    ...(durationSec !== undefined ? { durationSec } : {}),
    ...(o.out !== undefined ? { out: resolve(o.out) } : {}),
    ...(simSlots !== undefined ? { simEnv: { CELL0_SIM_NUM_PARALLEL: String(simSlots) } } : {}),
  };
}

/** The artillery binary of artillery/, installed from its lockfile when missing. */
export function ensureArtillery(log: (s: string) => void): string {
  const major = Number(process.versions.node.split('.')[0]);
  const minor = Number(process.versions.node.split('.')[1]);
  if (major < 22 || (major === 22 && minor < 18))
    throw new UsageError(`artillery 2 needs Node >= 22.18; this is ${process.version}`);
  const bin = join(ARTILLERY_DIR, 'node_modules', '.bin', 'artillery');
  if (existsSync(bin)) return bin;
  log('installing artillery into artillery/ (npm ci, no browser download) …');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--prefix', ARTILLERY_DIR], {
    stdio: 'inherit',
    env: { ...process.env, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1' },
  });
  if (r.status !== 0 || !existsSync(bin)) throw new Error('npm ci in artillery/ failed');
  return bin;
}

function uptime(): string {
  const r = spawnSync('uptime', { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '';
}

async function simulatorCalls(simUrl: string): Promise<number | undefined> {
  try {
    const res = await fetch(simUrl + '/_sim/stats', { signal: AbortSignal.timeout(2000) });
    const stats = (await res.json()) as { requests?: { byEndpoint?: Record<string, number> } };
    const by = stats.requests?.byEndpoint ?? {};
    return (by['/api/generate'] ?? 0) + (by['/api/chat'] ?? 0);
  } catch {
    return undefined;
  }
}

/** Runs artillery, echoing its output; resolves with its exit code and output. */
function runArtillery(
  bin: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; output: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const onData = (stream: NodeJS.WriteStream) => (chunk: Buffer) => {
      output += chunk.toString();
      stream.write(chunk);
    };
    child.stdout.on('data', onData(process.stdout));
    child.stderr.on('data', onData(process.stderr));
    child.once('error', reject);
    child.once('exit', (code, signal) => resolvePromise({ code: code ?? (signal ? 128 : 1), output }));
  });
}

export interface LoadResult {
  exitCode: number;
  outDir: string;
  report: ArtilleryReport;
  meta: RunMeta;
  summary: string;
}

/** One load run: fleet (unless a target is given), artillery, reports. */
export async function runLoad(
  args: LoadArgs,
  log: (s: string) => void = (s) => console.log(s),
): Promise<LoadResult> {
  const bin = ensureArtillery(log);
  const startedAt = new Date().toISOString();
  const stamp = startedAt.replace(/[:.]/g, '-');
  const outDir = args.out ?? join(ARTILLERY_DIR, 'reports', `${args.scenario}-${args.env}-${stamp}`);
  mkdirSync(outDir, { recursive: true });
  const machine = uptime();
  let fleet: Fleet | undefined;
  // The scenario's own backend size, unless --sim-slots (or load:scale) says otherwise.
  const scenarioFile = resolveScenario({
    dir: ARTILLERY_DIR,
    scenario: args.scenario,
    env: args.env,
    target: '',
  });
  const simEnv = {
    CELL0_SIM_GPU: '1',
    CELL0_SIM_NUM_PARALLEL: String(scenarioFile.cell0.simSlots ?? 4),
    ...args.simEnv,
  };
  const simulator = `simulator: GPU profile, ${simEnv.CELL0_SIM_NUM_PARALLEL} slot(s) per model`;
  if (args.target === undefined) {
    if (!existsSync(join(ROOT, 'dist', 'bin', 'cell0.js')))
      throw new UsageError('dist/ is missing: run `npm run build` (npm run load does it for you)');
    log(
      `starting a fleet: private Redis, simulator, ${args.workers} worker(s), ${args.apiProcesses} API process(es)`,
    );
    fleet = await startFleet({
      root: ROOT,
      workers: args.workers,
      apiProcesses: args.apiProcesses,
      simEnv,
      ...(args.fleetEnv ? { env: args.fleetEnv } : {}),
      log,
    });
  }
  try {
    const target = args.target ?? fleet?.apiUrl ?? '';
    const resolved = resolveScenario({
      dir: ARTILLERY_DIR,
      scenario: args.scenario,
      env: args.env,
      target,
      ...(args.durationSec !== undefined ? { durationSec: args.durationSec } : {}),
    });
    const scriptPath = join(outDir, 'script.yml');
    writeFileSync(scriptPath, stringify(resolved.script));
    const jsonPath = join(outDir, 'report.json');
    log(`running ${args.scenario} (${resolved.cell0.class}) for ~${resolved.seconds} s against ${target}`);
    const cpuBefore = fleet?.cpuSeconds();
    const t0 = Date.now();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1',
      ARTILLERY_DISABLE_TELEMETRY: 'true',
    };
    if (fleet) env.CELL0_LOAD_REDIS_URL = fleet.redisUrl;
    if (resolved.cell0.maxTokens !== undefined && env.CELL0_LOAD_MAX_TOKENS === undefined)
      env.CELL0_LOAD_MAX_TOKENS = String(resolved.cell0.maxTokens);
    const { code, output } = await runArtillery(bin, ['run', '--output', jsonPath, scriptPath], env);
    const elapsed = (Date.now() - t0) / 1000;
    const cpuAfter = fleet?.cpuSeconds();
    let cpuPercent: Record<string, number> | undefined;
    if (cpuBefore && cpuAfter) {
      cpuPercent = {};
      for (const [role, s] of Object.entries(cpuAfter))
        cpuPercent[role] = ((s - (cpuBefore[role] ?? 0)) / elapsed) * 100;
    }
    if (!existsSync(jsonPath)) throw new Error(`artillery wrote no report (exit ${code})`);
    const report = JSON.parse(readFileSync(jsonPath, 'utf8')) as ArtilleryReport;
    const thresholds = readThresholds(ARTILLERY_DIR, args.env);
    const backendCalls = fleet ? await simulatorCalls(fleet.simUrl) : undefined;
    const meta: RunMeta = {
      scenario: args.scenario,
      seedClass: resolved.cell0.class,
      env: args.env,
      target,
      startedAt,
      ...(fleet ? { fleet: { workers: args.workers, apiProcesses: args.apiProcesses, simulator } } : {}),
      ...(cpuPercent ? { cpuPercent } : {}),
      checks: parseChecks(output),
      exitCode: code,
      uptime: machine,
      ...(backendCalls !== undefined ? { backendCalls } : {}),
      ...(resolved.cell0.stress
        ? { kneeLimits: { p95Ms: thresholds.chatP95Ms, errorRatePct: thresholds.errorRatePct } }
        : {}),
    };
    const summary = textSummary(report, meta);
    writeFileSync(join(outDir, 'summary.txt'), summary);
    writeFileSync(join(outDir, 'report.html'), htmlReport(report, meta));
    writeFileSync(join(outDir, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
    log('\n' + summary);
    log(`reports: ${outDir}/{report.json,report.html,summary.txt,script.yml}`);
    return { exitCode: code, outDir, report, meta, summary };
  } finally {
    if (fleet) {
      log('stopping the fleet');
      await fleet.close();
    }
  }
}

async function main(): Promise<void> {
  let args: LoadArgs;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  try {
    const r = await runLoad(args);
    process.exitCode = r.exitCode;
  } catch (err) {
    process.stderr.write(`load: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}

if (require.main === module) void main();
