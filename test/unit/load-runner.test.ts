import { join } from 'node:path';
import { parseArgs, UsageError } from '../../artillery/lib/load';
import {
  htmlReport,
  knee,
  parseChecks,
  textSummary,
  windows,
  type ArtilleryReport,
  type RunMeta,
} from '../../artillery/lib/report';
import { bottleneck } from '../../artillery/lib/scale';
import { SCENARIOS, phaseSeconds, resolveScenario, scalePhases } from '../../artillery/lib/script';

const DIR = join(__dirname, '..', '..', 'artillery');

describe('npm run load arguments', () => {
  it('reads the options with their defaults', () => {
    expect(
      parseArgs(['--scenario', 'stress', '--env=production', '--workers', '4', '--duration', '30']),
    ).toEqual({
      scenario: 'stress',
      env: 'production',
      workers: 4,
      apiProcesses: 1,
      durationSec: 30,
    });
    expect(parseArgs([])).toMatchObject({ scenario: 'standard', env: 'development', workers: 2 });
    expect(parseArgs(['--sim-slots', '64']).simEnv).toEqual({ CELL0_SIM_NUM_PARALLEL: '64' });
    expect(parseArgs(['--target', 'http://host:3000/']).target).toBe('http://host:3000');
  });

  it.each([
    [['--scenario', 'huge'], /--scenario: expected one of standard/],
    [['--env', 'prod'], /--env: expected one of development, staging, production/],
    [['--workers', '0'], /--workers: expected an integer from 1 to 64/],
    [['--duration', '2'], /--duration: expected an integer from 5/],
    [['--target', 'ftp://x'], /--target: expected an http\(s\) URL/],
    [['--colour', 'red'], /unknown option --colour/],
    [['--workers'], /--workers needs a value/],
    [['stray'], /unexpected argument "stray"/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseArgs(argv)).toThrow(UsageError);
    expect(() => parseArgs(argv)).toThrow(message);
  });
});

describe('scenario scripts', () => {
  it.each(SCENARIOS)('%s resolves to a runnable script with ensure checks', (scenario) => {
    const r = resolveScenario({ dir: DIR, scenario, env: 'development', target: 'http://127.0.0.1:1' });
    expect(r.script.config.target).toBe('http://127.0.0.1:1');
    expect(r.script.scenarios.length).toBeGreaterThan(0);
    for (const s of r.script.scenarios) expect(Array.isArray(s.flow)).toBe(true);
    expect(r.script.config.processor).toMatch(/processors\/(http|queue)\.mjs$/);
    expect(r.checks.length).toBeGreaterThanOrEqual(2);
    expect(r.seconds).toBeGreaterThan(0);
  });

  it.each(SCENARIOS)(
    '%s pauses only as artillery reads it: whole seconds or a duration string',
    (scenario) => {
      // Artillery 2 reads `think: 0.2` as 0.2 ms, not 0.2 s: a poll loop then polls without a pause.
      const r = resolveScenario({ dir: DIR, scenario, env: 'development', target: 'http://x' });
      const thinks: unknown[] = [];
      const walk = (v: unknown): void => {
        if (Array.isArray(v)) v.forEach(walk);
        else if (v !== null && typeof v === 'object')
          for (const [k, x] of Object.entries(v)) {
            if (k === 'think') thinks.push(x);
            else walk(x);
          }
      };
      walk(r.script.scenarios);
      for (const t of thinks)
        expect(Number.isInteger(t) || (typeof t === 'string' && /^\d+(ms|s)$/.test(t))).toBe(true);
    },
  );

  it("weights the Standard flows and holds production to the seed's 800 ms chat p95", () => {
    const r = resolveScenario({ dir: DIR, scenario: 'standard', env: 'production', target: 'http://x' });
    expect(Object.fromEntries(r.script.scenarios.map((s) => [s.name, s.weight]))).toMatchObject({
      chat: 25,
      search: 20,
      poll: 10,
      health: 10,
    });
    expect(r.checks).toContain('cell0.latency.chat.p95 < 800');
    expect(r.checks).toContain('cell0.answers_per_sec >= 8');
    const ensure = r.script.config.plugins?.ensure as { conditions: Array<{ strict: boolean }> };
    expect(ensure.conditions.every((c) => c.strict)).toBe(true);
  });

  it('reports Stress checks without failing the run on them', () => {
    const r = resolveScenario({ dir: DIR, scenario: 'stress', env: 'staging', target: 'http://x' });
    const ensure = r.script.config.plugins?.ensure as { conditions: Array<{ strict: boolean }> };
    expect(ensure.conditions.every((c) => !c.strict)).toBe(true);
    expect(r.checks.every((c) => c.endsWith('(optional)'))).toBe(true);
  });

  it('scales phases to --duration, and a closed loop by its loop time', () => {
    const std = resolveScenario({
      dir: DIR,
      scenario: 'standard',
      env: 'development',
      target: 'http://x',
      durationSec: 30,
    });
    expect(phaseSeconds(std.script.config.phases)).toBe(30);
    expect(std.script.config.phases.map((p) => p.arrivalRate)).toEqual([1, 1, 5]);
    const bench = resolveScenario({
      dir: DIR,
      scenario: 'benchmark',
      env: 'development',
      target: 'http://x',
      durationSec: 20,
    });
    expect(bench.script.config.variables?.loopSeconds).toBe(20);
    expect(bench.script.config.phases[0]?.arrivalCount).toBe(16);
    expect(scalePhases([{ duration: 10 }, { duration: 1 }], 5).map((p) => p.duration)).toEqual([5, 1]);
  });
});

function period(at: number, counters: Record<string, number>, p95?: number): ArtilleryReport['aggregate'] {
  return {
    period: at,
    firstMetricAt: at,
    lastMetricAt: at + 9_999,
    counters,
    summaries:
      p95 === undefined
        ? {}
        : { 'cell0.latency.chat': { min: 1, max: p95 * 2, count: 10, p50: p95 / 2, p95, p99: p95 * 1.5 } },
  };
}

const report: ArtilleryReport = {
  aggregate: {
    ...period(
      0,
      {
        'vusers.created': 60,
        'vusers.completed': 58,
        'vusers.failed': 2,
        'cell0.ok': 150,
        'cell0.errors': 3,
        'http.requests': 153,
        'http.codes.200': 150,
        'http.codes.503': 3,
        'cell0.cached.exact': 12,
      },
      700,
    ),
    lastMetricAt: 29_999,
  },
  intermediate: [
    period(0, { 'vusers.created': 10, 'cell0.ok': 40, 'cell0.errors': 0 }, 300),
    period(10_000, { 'vusers.created': 20, 'cell0.ok': 60, 'cell0.errors': 0 }, 600),
    period(20_000, { 'vusers.created': 30, 'cell0.ok': 50, 'cell0.errors': 3 }, 1200),
  ],
};
const meta: RunMeta = {
  scenario: 'stress',
  seedClass: 'StressTestUser',
  env: 'production',
  target: 'http://127.0.0.1:3000',
  startedAt: '2026-12-02T15:00:00.000Z',
  fleet: { workers: 2, apiProcesses: 1, simulator: '4 slots' },
  cpuPercent: { api: 80, 'worker-1': 30, 'worker-2': 35, redis: 10, simulator: 20 },
  checks: [
    { ok: true, check: 'cell0.latency.chat.p95 < 800 (optional)' },
    { ok: false, check: 'cell0.errors / (cell0.ok + cell0.errors) * 100 <= 1 (optional)' },
  ],
  exitCode: 0,
  uptime: ' 15:00:00 up 1:00,  load average: 9.0, 8.0, 7.0',
  kneeLimits: { p95Ms: 800, errorRatePct: 1 },
};

describe('load reports', () => {
  it('finds the knee: the highest arrival rate whose window held, before the first that broke', () => {
    const ws = windows(report);
    expect(ws.map((w) => [w.t, w.arrivalsPerSec, w.p95])).toEqual([
      [0, 1, 300],
      [10, 2, 600],
      [20, 3, 1200],
    ]);
    expect(knee(ws, { p95Ms: 800, errorRatePct: 1 })).toEqual({
      arrivalsPerSec: 2,
      okPerSec: 6,
      brokeAtSec: 20,
    });
    expect(knee(ws, { p95Ms: 5000, errorRatePct: 10 })).toEqual({ arrivalsPerSec: 3, okPerSec: 5 });
    expect(knee(ws, { p95Ms: 100, errorRatePct: 1 })).toBeUndefined();
  });

  it('prints a one-screen summary with the verdicts and the knee', () => {
    const text = textSummary(report, meta);
    expect(text.split('\n').length).toBeLessThan(25);
    expect(text).toContain('150 ok, 3 errors; 5 ok/s');
    expect(text).toContain('HTTP codes: 200×150 503×3');
    expect(text).toContain('cache answers: exact 12, semantic 0');
    expect(text).toContain('knee: 2 sessions/s (6 ok/s) held p95 < 800 ms; broken from t=20 s');
    expect(text).toContain('FAIL cell0.errors');
    expect(text).toContain('verdict: PASS');
    expect(textSummary(report, { ...meta, exitCode: 1 })).toContain('verdict: FAIL');
  });

  it('writes a self-contained HTML page with latency and throughput charts', () => {
    const html = htmlReport(report, meta);
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html.match(/<svg /g)).toHaveLength(2);
    expect(html).toContain('Latency over time: cell0.latency.chat');
    expect(html).toContain('Throughput over time');
    expect(html).not.toMatch(/<script|src=|href=/);
    expect(html).toContain('<tr class="fail">');
  });

  it('reads the ensure verdicts artillery printed', () => {
    const out =
      'Checks:\n\u001b[32mok\u001b[39m: cell0.latency.chat.p95 < 800\n\u001b[31mfail\u001b[39m: cell0.answers_per_sec >= 8\nother line';
    expect(parseChecks(out)).toEqual([
      { ok: true, check: 'cell0.latency.chat.p95 < 800' },
      { ok: false, check: 'cell0.answers_per_sec >= 8' },
    ]);
  });

  it('names the busiest kind of process and a full machine', () => {
    expect(bottleneck({ api: 95, 'worker-1': 40, 'worker-2': 45, redis: 10 }, 2)).toBe(
      'api 95%; one process at a full core; the fleet uses 190% of 2 cores',
    );
    expect(bottleneck({ api: 20, 'worker-1': 30, 'worker-2': 30 }, 2)).toBe('worker 60%');
  });
});
