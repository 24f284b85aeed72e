/*
 * Reads artillery's JSON report (`artillery run --output`) and makes what `npm run load` prints and keeps:
 * a one-screen text summary and a self-contained HTML page (inline SVG charts, no script, no network).
 */

/** A summary (histogram) as artillery writes it. */
export interface Summary {
  min: number;
  max: number;
  count: number;
  mean?: number;
  p50?: number;
  median?: number;
  p90?: number;
  p95: number;
  p99: number;
}

/** One period of artillery's report (the aggregate, or a 10 s window). */
export interface Period {
  counters: Record<string, number>;
  rates?: Record<string, number>;
  summaries: Record<string, Summary>;
  firstMetricAt?: number;
  lastMetricAt?: number;
  period?: number | string;
}

export interface ArtilleryReport {
  aggregate: Period;
  intermediate: Period[];
}

/** What the runner knows about the run besides artillery's report. */
export interface RunMeta {
  scenario: string;
  seedClass: string;
  env: string;
  target: string;
  startedAt: string;
  /** Fleet started by the runner: its shape. */
  fleet?: { workers: number; apiProcesses: number; simulator: string };
  /** CPU used per process during the run, % of one core. */
  cpuPercent?: Record<string, number>;
  /** Verdicts of the ensure checks, as artillery printed them. */
  checks: Array<{ ok: boolean; check: string }>;
  exitCode: number;
  /** `uptime` when the run started. */
  uptime?: string;
  /** Backend calls the simulator counted (when the runner started it). */
  backendCalls?: number;
  /** Stress: the thresholds the knee is judged against. */
  kneeLimits?: { p95Ms: number; errorRatePct: number };
}

export interface Window {
  /** Seconds since the first window started. */
  t: number;
  seconds: number;
  arrivalsPerSec: number;
  okPerSec: number;
  errorsPerSec: number;
  p50?: number;
  p95?: number;
  p99?: number;
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

/** The latency metric that best describes a run: the chat flow's, else the queue's, else HTTP's. */
export function mainLatencyMetric(p: Period): string | undefined {
  for (const name of ['cell0.latency.chat', 'cell0.queue.enqueue_to_complete', 'cell0.latency.prompt'])
    if (p.summaries[name] !== undefined) return name;
  return p.summaries['http.response_time'] !== undefined ? 'http.response_time' : undefined;
}

function errorCount(p: Period): number {
  return (p.counters['cell0.errors'] ?? 0) + (p.counters['cell0.queue.errors'] ?? 0);
}

function completedQueueJobs(p: Period): number {
  return (
    (p.counters['cell0.queue.ran'] ?? 0) +
    (p.counters['cell0.queue.coalesced'] ?? 0) +
    (p.counters['cell0.queue.cached.exact'] ?? 0) +
    (p.counters['cell0.queue.cached.semantic'] ?? 0)
  );
}

function successes(p: Period): number {
  return p.counters['cell0.ok'] ?? completedQueueJobs(p);
}

function periodSeconds(p: Period): number {
  if (p.firstMetricAt !== undefined && p.lastMetricAt !== undefined && p.lastMetricAt > p.firstMetricAt)
    return Math.max(1, (p.lastMetricAt - p.firstMetricAt) / 1000);
  return 10;
}

/** The 10 s windows of the run, with the main latency metric's percentiles. */
export function windows(report: ArtilleryReport): Window[] {
  const metric = mainLatencyMetric(report.aggregate);
  const first = Number(report.intermediate[0]?.period ?? report.intermediate[0]?.firstMetricAt ?? 0);
  return report.intermediate.map((p) => {
    // A window is 10 s from its period start; the first and last are cut by when metrics started and ended.
    const start = Math.max(Number(p.period ?? 0), p.firstMetricAt ?? 0);
    const end = Math.min(Number(p.period ?? 0) + 10_000, p.lastMetricAt ?? Number.POSITIVE_INFINITY);
    const seconds = Number.isFinite(end - start) && end > start ? Math.max(1, (end - start) / 1000) : 10;
    const s = metric === undefined ? undefined : p.summaries[metric];
    return {
      t: round((Number(p.period ?? p.firstMetricAt ?? first) - first) / 1000, 0),
      seconds,
      arrivalsPerSec: round((p.counters['vusers.created'] ?? 0) / seconds, 2),
      okPerSec: round(successes(p) / seconds, 2),
      errorsPerSec: round(errorCount(p) / seconds, 2),
      ...(s ? { p50: s.p50 ?? s.median, p95: s.p95, p99: s.p99 } : {}),
    };
  });
}

/**
 * Stress: the highest arrival rate of a window that held the thresholds, among the windows before the
 * first that broke them. Undefined when the very first window broke them (or there are none).
 */
export function knee(
  ws: readonly Window[],
  limits: { p95Ms: number; errorRatePct: number },
): { arrivalsPerSec: number; okPerSec: number; brokeAtSec?: number } | undefined {
  let best: Window | undefined;
  for (const w of ws) {
    const total = w.okPerSec + w.errorsPerSec;
    const errPct = total > 0 ? (w.errorsPerSec / total) * 100 : 0;
    const held = (w.p95 === undefined || w.p95 < limits.p95Ms) && errPct <= limits.errorRatePct;
    if (!held) {
      return best === undefined
        ? undefined
        : { arrivalsPerSec: best.arrivalsPerSec, okPerSec: best.okPerSec, brokeAtSec: w.t };
    }
    if (best === undefined || w.arrivalsPerSec >= best.arrivalsPerSec) best = w;
  }
  return best === undefined ? undefined : { arrivalsPerSec: best.arrivalsPerSec, okPerSec: best.okPerSec };
}

/** The numbers both outputs show. */
export interface Digest {
  seconds: number;
  requests: number;
  ok: number;
  errors: number;
  throughput: number;
  vusers: { created: number; completed: number; failed: number };
  codes: Record<string, number>;
  latency: Array<{ name: string; count: number; p50: number; p95: number; p99: number; max: number }>;
  cached: { exact: number; semantic: number };
  coalesced: number;
  knee?: ReturnType<typeof knee>;
}

export function digest(report: ArtilleryReport, meta: RunMeta): Digest {
  const a = report.aggregate;
  const seconds = periodSeconds(a);
  const ok = successes(a);
  const errors = errorCount(a);
  const codes: Record<string, number> = {};
  for (const [k, v] of Object.entries(a.counters)) if (k.startsWith('http.codes.')) codes[k.slice(11)] = v;
  const latency = Object.entries(a.summaries)
    .filter(([name]) => name.startsWith('cell0.') || name === 'http.response_time')
    .map(([name, s]) => ({
      name: name.replace(/^cell0\.latency\./, '').replace(/^cell0\.queue\./, 'queue.'),
      count: s.count,
      p50: s.p50 ?? s.median ?? 0,
      p95: s.p95,
      p99: s.p99,
      max: s.max,
    }));
  const requests = a.counters['http.requests'] ?? ok + errors;
  return {
    seconds: round(seconds, 0),
    requests,
    ok,
    errors,
    throughput: round(ok / seconds, 2),
    vusers: {
      created: a.counters['vusers.created'] ?? 0,
      completed: a.counters['vusers.completed'] ?? 0,
      failed: a.counters['vusers.failed'] ?? 0,
    },
    codes,
    latency,
    cached: {
      exact: (a.counters['cell0.cached.exact'] ?? 0) + (a.counters['cell0.queue.cached.exact'] ?? 0),
      semantic: (a.counters['cell0.cached.semantic'] ?? 0) + (a.counters['cell0.queue.cached.semantic'] ?? 0),
    },
    coalesced: a.counters['cell0.queue.coalesced'] ?? 0,
    ...(meta.kneeLimits ? { knee: knee(windows(report), meta.kneeLimits) } : {}),
  };
}

const ms = (n: number) => (n >= 10_000 ? `${round(n / 1000, 1)} s` : `${Math.round(n)} ms`);

/** The one-screen text summary. */
export function textSummary(report: ArtilleryReport, meta: RunMeta): string {
  const d = digest(report, meta);
  const lines: string[] = [];
  lines.push(`cell0 load: ${meta.scenario} (${meta.seedClass}), ${meta.env} thresholds, ${meta.startedAt}`);
  lines.push(
    `  target ${meta.target}` +
      (meta.fleet
        ? `  (fleet: ${meta.fleet.workers} worker(s), ${meta.fleet.apiProcesses} API process(es), ${meta.fleet.simulator})`
        : ''),
  );
  if (meta.uptime) lines.push(`  machine: ${meta.uptime.trim()}`);
  lines.push(
    `  ${d.seconds} s: ${d.requests} requests, ${d.ok} ok, ${d.errors} errors; ${d.throughput} ok/s; ` +
      `sessions ${d.vusers.created} started, ${d.vusers.completed} completed, ${d.vusers.failed} failed`,
  );
  const codes = Object.entries(d.codes)
    .map(([c, n]) => `${c}×${n}`)
    .join(' ');
  if (codes) lines.push(`  HTTP codes: ${codes}`);
  lines.push(
    `  cache answers: exact ${d.cached.exact}, semantic ${d.cached.semantic}` +
      (d.coalesced ? `; coalesced ${d.coalesced}` : '') +
      (meta.backendCalls !== undefined ? `; backend calls ${meta.backendCalls}` : ''),
  );
  lines.push('  latency                      count      p50      p95      p99      max');
  for (const l of d.latency)
    lines.push(
      `    ${l.name.padEnd(26)} ${String(l.count).padStart(6)} ${ms(l.p50).padStart(8)} ${ms(l.p95).padStart(8)} ${ms(l.p99).padStart(8)} ${ms(l.max).padStart(8)}`,
    );
  if (meta.cpuPercent) {
    const cpu = Object.entries(meta.cpuPercent)
      .map(([role, pct]) => `${role} ${Math.round(pct)}%`)
      .join(', ');
    lines.push(`  CPU (% of one core): ${cpu}`);
  }
  if (meta.kneeLimits) {
    lines.push(
      d.knee
        ? `  knee: ${d.knee.arrivalsPerSec} sessions/s (${d.knee.okPerSec} ok/s) held p95 < ${meta.kneeLimits.p95Ms} ms` +
            (d.knee.brokeAtSec !== undefined ? `; broken from t=${d.knee.brokeAtSec} s` : '; never broken')
        : `  knee: none (the first window already broke p95 < ${meta.kneeLimits.p95Ms} ms)`,
    );
  }
  lines.push('  checks:');
  for (const c of meta.checks) lines.push(`    ${c.ok ? 'ok  ' : 'FAIL'} ${c.check}`);
  const failed = meta.checks.filter((c) => !c.ok && !c.check.endsWith('(optional)')).length;
  lines.push(
    meta.exitCode === 0
      ? '  verdict: PASS'
      : `  verdict: FAIL (${failed} check(s) broken; artillery exit ${meta.exitCode})`,
  );
  return lines.join('\n') + '\n';
}

const esc = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c);

/** An SVG line chart of some series over time. */
export function lineChart(
  title: string,
  unit: string,
  xs: readonly number[],
  series: Array<{ name: string; color: string; values: ReadonlyArray<number | undefined> }>,
): string {
  const W = 760;
  const H = 260;
  const L = 60;
  const R = 20;
  const T = 30;
  const B = 40;
  const maxX = Math.max(1, ...xs);
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== undefined));
  const maxY = Math.max(1, ...all) * 1.1;
  const x = (v: number) => L + (v / maxX) * (W - L - R);
  const y = (v: number) => T + (1 - v / maxY) * (H - T - B);
  const grid: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = (maxY / 4) * i;
    grid.push(
      `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>` +
        `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end" font-size="11">${round(v, v < 10 ? 1 : 0)}</text>`,
    );
  }
  for (let i = 0; i <= 5; i++) {
    const v = (maxX / 5) * i;
    grid.push(
      `<text x="${x(v)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${Math.round(v)} s</text>`,
    );
  }
  const lines = series.map((s) => {
    const pts = s.values
      .map((v, i) => (v === undefined ? undefined : `${round(x(xs[i] ?? 0), 1)},${round(y(v), 1)}`))
      .filter((p): p is string => p !== undefined);
    return `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.join(' ')}"/>`;
  });
  const legend = series
    .map(
      (s, i) =>
        `<rect x="${L + i * 130}" y="8" width="12" height="12" fill="${s.color}"/><text x="${L + 16 + i * 130}" y="18" font-size="12">${esc(s.name)}</text>`,
    )
    .join('');
  return `<figure><figcaption>${esc(title)} (${esc(unit)})</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">${grid.join('')}${lines.join('')}${legend}</svg></figure>`;
}

/** The self-contained HTML report. */
export function htmlReport(report: ArtilleryReport, meta: RunMeta): string {
  const d = digest(report, meta);
  const ws = windows(report);
  const xs = ws.map((w) => w.t);
  const metric = mainLatencyMetric(report.aggregate) ?? 'latency';
  const latencyChart = lineChart(`Latency over time: ${metric}`, 'ms', xs, [
    { name: 'p50', color: '#2b8a3e', values: ws.map((w) => w.p50) },
    { name: 'p95', color: '#e67700', values: ws.map((w) => w.p95) },
    { name: 'p99', color: '#c92a2a', values: ws.map((w) => w.p99) },
  ]);
  const throughputChart = lineChart('Throughput over time', 'per second', xs, [
    { name: 'sessions started', color: '#1971c2', values: ws.map((w) => w.arrivalsPerSec) },
    { name: 'ok answers', color: '#2b8a3e', values: ws.map((w) => w.okPerSec) },
    { name: 'errors', color: '#c92a2a', values: ws.map((w) => w.errorsPerSec) },
  ]);
  const row = (cells: Array<string | number>) =>
    `<tr>${cells.map((c) => `<td>${esc(String(c))}</td>`).join('')}</tr>`;
  const latencyRows = d.latency
    .map((l) => row([l.name, l.count, ms(l.p50), ms(l.p95), ms(l.p99), ms(l.max)]))
    .join('');
  const checkRows = meta.checks
    .map(
      (c) =>
        `<tr class="${c.ok ? 'ok' : 'fail'}"><td>${c.ok ? 'ok' : 'FAIL'}</td><td><code>${esc(c.check)}</code></td></tr>`,
    )
    .join('');
  const cpuRows = Object.entries(meta.cpuPercent ?? {})
    .map(([role, pct]) => row([role, `${Math.round(pct)} %`]))
    .join('');
  const windowRows = ws
    .map((w) =>
      row([w.t, w.arrivalsPerSec, w.okPerSec, w.errorsPerSec, w.p95 === undefined ? '' : ms(w.p95)]),
    )
    .join('');
  const verdict = meta.exitCode === 0 ? 'PASS' : 'FAIL';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cell0 load: ${esc(meta.scenario)} (${esc(meta.env)}) ${verdict}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:820px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child,#checks td{text-align:left}tr.ok td:first-child{color:#2b8a3e}tr.fail td:first-child{color:#c92a2a;font-weight:bold}
.verdict{font-weight:bold;color:${verdict === 'PASS' ? '#2b8a3e' : '#c92a2a'}}figure{margin:1em 0}figcaption{font-weight:600}
</style></head><body>
<h1>cell0 load test: ${esc(meta.scenario)} <small>(${esc(meta.seedClass)})</small> — <span class="verdict" id="verdict">${verdict}</span></h1>
<p>${esc(meta.env)} thresholds · ${esc(meta.startedAt)} · target ${esc(meta.target)}${
    meta.fleet
      ? ` · fleet: ${meta.fleet.workers} worker(s), ${meta.fleet.apiProcesses} API process(es), ${esc(meta.fleet.simulator)}`
      : ''
  }${meta.uptime ? `<br>machine: ${esc(meta.uptime.trim())}` : ''}</p>
<p>${d.seconds} s · ${d.requests} requests · ${d.ok} ok · ${d.errors} errors · <b>${d.throughput} ok/s</b> · sessions ${d.vusers.created} started, ${d.vusers.completed} completed, ${d.vusers.failed} failed · cache answers: exact ${d.cached.exact}, semantic ${d.cached.semantic}${d.coalesced ? ` · coalesced ${d.coalesced}` : ''}${meta.backendCalls !== undefined ? ` · backend calls ${meta.backendCalls}` : ''}</p>
${d.knee !== undefined || meta.kneeLimits ? `<p id="knee">Knee: ${d.knee ? `${d.knee.arrivalsPerSec} sessions/s (${d.knee.okPerSec} ok/s) held the thresholds${d.knee.brokeAtSec !== undefined ? `; broken from t=${d.knee.brokeAtSec} s` : ''}` : 'none'}</p>` : ''}
<h2>Checks</h2><table id="checks">${checkRows}</table>
<h2>Latency</h2><table id="latency"><tr><th>flow</th><th>count</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>${latencyRows}</table>
${latencyChart}
${throughputChart}
${cpuRows ? `<h2>CPU during the run (% of one core)</h2><table id="cpu">${cpuRows}</table>` : ''}
<h2>Per 10 s window</h2><table id="windows"><tr><th>t (s)</th><th>sessions/s</th><th>ok/s</th><th>errors/s</th><th>p95</th></tr>${windowRows}</table>
</body></html>
`;
}

/** The ok/FAIL lines artillery's ensure plugin prints ("ok: expr", "fail: expr"), colours removed. */
export function parseChecks(output: string): Array<{ ok: boolean; check: string }> {
  // eslint-disable-next-line no-control-regex -- ANSI colour codes start with ESC
  const plain = output.replace(/\u001b\[[0-9;]*m/g, '');
  const out: Array<{ ok: boolean; check: string }> = [];
  for (const line of plain.split('\n')) {
    const m = /^\s*(ok|fail): (.+)$/.exec(line);
    if (m) out.push({ ok: m[1] === 'ok', check: (m[2] ?? '').trim() });
  }
  return out;
}
