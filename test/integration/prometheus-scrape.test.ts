import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { spawnCell0, type Cell0Process } from '../helpers/cli';
import { post } from '../helpers/fleet';
import { metricNamesIn, prometheusBinary, promtool } from '../helpers/prom';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { freePort } from '../helpers/redis-server';

jest.setTimeout(240_000);

const ROOT = join(__dirname, '..', '..');

/**
 * A compose-style fleet (`cell0 simulator`, `cell0 api`, `cell0 worker` as separate processes), a known
 * workload, then: every metric the Grafana dashboard and the alert rules name exists on the live /metrics of
 * the API or the worker; promtool accepts both outputs; and a real Prometheus, started on a free port with a
 * generated config pointing at the API and the worker, scrapes them and answers PromQL with the workload's
 * figures.
 */
describe('a real Prometheus scraping a running fleet', () => {
  const procs: Cell0Process[] = [];
  let prometheus: ChildProcess | undefined;
  let dataDir: string;
  let apiUrl: string;
  let workerMetricsUrl: string;
  let apiText: string;
  let workerText: string;

  beforeAll(async () => {
    const prefix = uniquePrefix('prom-scrape');
    const common = { REDIS_URL: testRedisUrl(), CELL0_QUEUE_PREFIX: prefix, CELL0_LOG_LEVEL: 'info' };
    const sim = spawnCell0(['simulator', '--port', '0'], {
      ...common,
      // A slow first token: the three identical requests are all in before their job finishes.
      CELL0_SIM_TTFT_MS: '1500',
      CELL0_SIM_TOKENS_PER_SEC: '2000',
    });
    procs.push(sim);
    const [, simUrl] = await sim.waitFor(/simulator\s+(http:\/\/\S+)/, 120_000);
    const api = spawnCell0(['api'], { ...common, CELL0_HOST: '127.0.0.1', CELL0_PORT: '0' });
    const worker = spawnCell0(['worker', '--queues', 'inference,search'], {
      ...common,
      CELL0_HOST: '127.0.0.1',
      CELL0_METRICS_PORT: '0',
      CELL0_OLLAMA_URL: simUrl!,
    });
    procs.push(api, worker);
    apiUrl = (await api.waitFor(/api\s+(http:\/\/\S+)/, 150_000))[1]!;
    workerMetricsUrl = (await worker.waitFor(/metrics: (http:\/\/\S+)/, 150_000))[1]!;

    // 10 requests at once, 3 of them identical → 8 jobs; then one search.
    const prompts = [
      'describe the water cycle',
      'name three prime numbers',
      'what is a monad',
      'write a haiku about autumn',
      'explain TCP slow start',
      'how do bees make honey',
      'summarise Hamlet',
    ];
    const same = 'list the planets of the solar system';
    const answers = await Promise.all(
      [...prompts, same, same, same].map((prompt) =>
        post(`${apiUrl}/v1/inference`, { model: 'qwen2.5:7b', prompt }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    expect((await post(`${apiUrl}/v1/search`, { query: 'capital of France' })).status).toBe(200);

    apiText = await (await fetch(`${apiUrl}/metrics`)).text();
    workerText = await (await fetch(workerMetricsUrl)).text();
  }, 240_000);

  afterAll(async () => {
    prometheus?.kill('SIGTERM');
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(
      procs.map((p) => {
        const force = setTimeout(() => p.kill('SIGKILL'), 30_000);
        return p.exited.finally(() => clearTimeout(force));
      }),
    );
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  it('every metric a Grafana panel queries exists on the live API or worker /metrics', () => {
    const dashboard = JSON.parse(
      readFileSync(join(ROOT, 'dashboards', 'grafana', 'cell0-fleet.json'), 'utf8'),
    ) as { panels: { title: string; targets?: { expr: string }[] }[] };
    const served = new Set([...familiesIn(apiText), ...familiesIn(workerText)]);
    const missing: string[] = [];
    let queried = 0;
    for (const panel of dashboard.panels)
      for (const t of panel.targets ?? []) {
        const names = metricNamesIn(t.expr);
        expect(names.length).toBeGreaterThan(0);
        for (const n of names) {
          queried++;
          if (!served.has(n)) missing.push(`${panel.title}: ${n}`);
        }
      }
    expect(queried).toBeGreaterThan(50);
    expect(missing).toEqual([]);
  });

  it('every metric an alert rule queries exists on the live API or worker /metrics', () => {
    const rules = parse(readFileSync(join(ROOT, 'dashboards', 'prometheus', 'alerts.yml'), 'utf8')) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const served = new Set([...familiesIn(apiText), ...familiesIn(workerText)]);
    const missing = rules.groups
      .flatMap((g) => g.rules)
      .flatMap((r) => metricNamesIn(r.expr).map((n) => `${r.alert}: ${n}`))
      .filter((x) => !served.has(x.split(': ')[1]!));
    expect(missing).toEqual([]);
  });

  it('promtool check metrics accepts the API and the worker output', async () => {
    for (const text of [apiText, workerText]) {
      const r = await promtool(['check', 'metrics'], text);
      expect({ code: r.code, out: r.stdout + r.stderr }).toEqual({ code: 0, out: '' });
    }
  });

  it('Prometheus scrapes both and answers PromQL with the workload figures', async () => {
    const port = await freePort();
    dataDir = mkdtempSync(join(tmpdir(), 'cell0-prometheus-'));
    const config = join(dataDir, 'prometheus.yml');
    const api = new URL(apiUrl);
    const worker = new URL(workerMetricsUrl);
    writeFileSync(
      config,
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'rule_files:',
        `  - ${JSON.stringify(join(ROOT, 'dashboards', 'prometheus', 'alerts.yml'))}`,
        'scrape_configs:',
        '  - job_name: cell0-api',
        `    static_configs: [{ targets: ['${api.host}'] }]`,
        '  - job_name: cell0-worker',
        `    static_configs: [{ targets: ['${worker.host}'] }]`,
        '',
      ].join('\n'),
    );
    let log = '';
    prometheus = spawn(
      prometheusBinary('prometheus'),
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dataDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prometheus.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    prometheus.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const base = `http://127.0.0.1:${port}`;

    /** Polls an instant query until `ok` accepts its result, or fails with what it last saw at the deadline. */
    const until = async (
      query: string,
      ok: (v: number[]) => boolean,
      deadlineMs = 90_000,
    ): Promise<number[]> => {
      const deadline = Date.now() + deadlineMs;
      let last: unknown;
      for (;;) {
        if (prometheus!.exitCode !== null) throw new Error(`prometheus exited:\n${log}`);
        try {
          const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(query)}`);
          const body = (await res.json()) as { data?: { result?: { value: [number, string] }[] } };
          last = body;
          const values = (body.data?.result ?? []).map((r) => Number(r.value[1]));
          if (ok(values)) return values;
        } catch (err) {
          last = err; // not listening yet
        }
        if (Date.now() > deadline)
          throw new Error(
            `${query}: no acceptable answer by the deadline; last ${JSON.stringify(last)}\n${log}`,
          );
        await new Promise((r) => setTimeout(r, 250));
      }
    };

    // Both targets up.
    await until('sum(up{job=~"cell0-.*"})', (v) => v[0] === 2);
    // 10 requests, 3 identical → 8 inference jobs added; 1 search.
    expect(await until('sum(cell0_jobs_added_total)', (v) => v[0] === 9)).toEqual([9]);
    expect(await until('sum(cell0_jobs_added_total{queue="inference"})', (v) => v.length > 0)).toEqual([8]);
    expect(await until('sum(cell0_jobs_coalesced_total)', (v) => v.length > 0)).toEqual([2]);
    // The worker's view: 8 backend calls answered (one per job), and the queues the API serves agree.
    expect(
      await until('sum(cell0_backend_requests_total{outcome="ok",model="*"})', (v) => v.length > 0),
    ).toEqual([8]);
    expect(
      await until('max(bullmq_job_count{queue="inference",state="completed"})', (v) => v.length > 0),
    ).toEqual([8]);
    expect(await until('sum(cell0_fleet_workers{state="running"})', (v) => v.length > 0)).toEqual([1]);
    // The alert rules are loaded and evaluated without errors.
    const rules = (await (await fetch(`${base}/api/v1/rules`)).json()) as {
      data: { groups: { rules: { name: string; health: string }[] }[] };
    };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    expect(loaded.map((r) => r.name).sort()).toEqual([
      'Cell0AllWorkersPaused',
      'Cell0ApiP95OverThreshold',
      'Cell0BackendBreakerOpen',
      'Cell0JobFailureRatio',
      'Cell0QueueBackingUp',
      'Cell0RedisMemoryHigh',
    ]);
  });
});

/** Names of the sample series an exposition text carries (histogram/summary _bucket/_sum/_count included). */
function familiesIn(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      out.add(type[1]!);
      if (type[2] === 'histogram' || type[2] === 'summary')
        for (const s of ['_bucket', '_sum', '_count']) out.add(type[1]! + s);
    } else if (line && !line.startsWith('#')) out.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]);
  }
  return out;
}
