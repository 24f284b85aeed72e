/*
 * `npm run load:scale [-- --duration S] [--env E] [--sim-slots N]`: the Benchmark scenario against 1, 2 and
 * 4 worker processes with one API process, then 2 workers behind 2 API processes (one port, SO_REUSEPORT).
 * The simulator gets 64 slots by default (a vLLM-sized backend) so the fleet, not the backend, is measured.
 * Prints throughput, latency and CPU per process for each, names the busiest process, and writes
 * scale.md and scale.svg (throughput and p95 against the configuration).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { ARTILLERY_DIR, UsageError, parseArgs, runLoad, type LoadArgs } from './load.js';
import { digest } from './report.js';
import { lineChart } from './report.js';

interface Point {
  label: string;
  workers: number;
  apiProcesses: number;
  okPerSec: number;
  p50: number;
  p95: number;
  errors: number;
  cpu: Record<string, number>;
  bottleneck: string;
  uptime: string;
  verdict: string;
}

/** The busiest role (workers and API processes summed per kind) and whether the machine's cores are full. */
export function bottleneck(cpu: Record<string, number>, cores: number): string {
  const byKind: Record<string, number> = {};
  for (const [role, pct] of Object.entries(cpu)) {
    const kind = role.replace(/-\d+$/, '');
    byKind[kind] = (byKind[kind] ?? 0) + pct;
  }
  const total = Object.values(byKind).reduce((s, v) => s + v, 0);
  const [top, pct] = Object.entries(byKind).sort((a, b) => b[1] - a[1])[0] ?? ['none', 0];
  const perProcessMax = Math.max(0, ...Object.values(cpu));
  const parts = [`${top} ${Math.round(pct)}%`];
  if (perProcessMax >= 90) parts.push('one process at a full core');
  if (total >= cores * 100 * 0.85) parts.push(`the fleet uses ${Math.round(total)}% of ${cores} cores`);
  return parts.join('; ');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let base: LoadArgs;
  try {
    base = parseArgs(['--scenario', 'benchmark', ...argv]);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  if (base.target !== undefined)
    throw new UsageError('load:scale starts its own fleets; --target is not for it');
  const durationSec = base.durationSec ?? 60;
  const simEnv = { CELL0_SIM_NUM_PARALLEL: '64', ...base.simEnv };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = base.out ?? join(ARTILLERY_DIR, 'reports', `scale-${stamp}`);
  mkdirSync(outDir, { recursive: true });
  const configs = [
    { workers: 1, apiProcesses: 1 },
    { workers: 2, apiProcesses: 1 },
    { workers: 4, apiProcesses: 1 },
    { workers: 2, apiProcesses: 2 },
  ];
  const cores = cpus().length;
  const points: Point[] = [];
  for (const c of configs) {
    const label = `${c.workers}w/${c.apiProcesses}api`;
    const r = await runLoad({
      ...base,
      ...c,
      durationSec,
      simEnv,
      out: join(outDir, label.replace('/', '-')),
    });
    const d = digest(r.report, r.meta);
    const chat = d.latency.find((l) => l.name === 'chat');
    const cpu = r.meta.cpuPercent ?? {};
    points.push({
      label,
      ...c,
      okPerSec: d.throughput,
      p50: chat?.p50 ?? 0,
      p95: chat?.p95 ?? 0,
      errors: d.errors,
      cpu,
      bottleneck: bottleneck(cpu, cores),
      uptime: r.meta.uptime ?? '',
      verdict: r.exitCode === 0 ? 'pass' : 'FAIL',
    });
  }
  const lines = [
    `Benchmark (${base.env} thresholds), ${durationSec} s per configuration, simulator ${simEnv.CELL0_SIM_NUM_PARALLEL} slots, ${new Date().toISOString()}`,
    '',
    '| configuration | ok/s | chat p50 | chat p95 | errors | CPU % of one core (per process) | busiest | checks | uptime at start |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...points.map(
      (p) =>
        `| ${p.label} | ${p.okPerSec} | ${Math.round(p.p50)} ms | ${Math.round(p.p95)} ms | ${p.errors} | ${Object.entries(
          p.cpu,
        )
          .map(([k, v]) => `${k} ${Math.round(v)}`)
          .join(
            ', ',
          )} | ${p.bottleneck} | ${p.verdict} | ${p.uptime.replace(/^.*load average/, 'load average')} |`,
    ),
  ];
  const md = lines.join('\n') + '\n';
  writeFileSync(join(outDir, 'scale.md'), md);
  const xs = points.map((_, i) => i * 10);
  const svg = lineChart(
    'Benchmark: ok answers/s and chat p95 (÷100 ms) by configuration: ' +
      points.map((p) => p.label).join(' → '),
    'per second',
    xs,
    [
      { name: 'ok/s', color: '#2b8a3e', values: points.map((p) => p.okPerSec) },
      { name: 'p95 / 100 ms', color: '#e67700', values: points.map((p) => p.p95 / 100) },
    ],
  );
  writeFileSync(
    join(outDir, 'scale.html'),
    `<!doctype html><meta charset="utf-8"><title>cell0 load:scale</title><body style="font-family:sans-serif">${svg}<pre>${md.replace(/</g, '&lt;')}</pre></body>`,
  );
  console.log('\n' + md);
  console.log(`scale reports: ${outDir}`);
}

if (require.main === module)
  main().catch((err: unknown) => {
    process.stderr.write(`load:scale: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  });
