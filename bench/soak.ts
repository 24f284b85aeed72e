/*
 * bench:soak — memory over time.
 *
 * Runs a fleet from the built CLI (dist/): `cell0 simulator` (inference backend), a fake SearXNG in this
 * process (search backend), `cell0 api` and `cell0 worker`, on a private redis-server. After the worker is
 * idle it samples the worker's idle RSS; then it sends steady mixed load to the API for --minutes
 * (inference and search, half of each from a small pool of repeated requests — cache hits and coalescing —
 * and half unique — cache misses that fill the caches). Every --sample-every seconds it takes the RSS and
 * the heap (after a full GC: what is retained) of the API and the worker. It prints the growth from the end
 * of the warm-up (the first --warmup-percent of the run) to the end, per process; the targets are growth
 * <= 5 % and idle worker RSS <= 120 MB.
 *
 *   npm run bench:soak -- [--minutes M] [--rate R] [--sample-every S] [--warmup-percent P]
 *                         [--snapshots DIR] [--json]
 *
 * --snapshots DIR writes heap snapshots (v8.writeHeapSnapshot) of both processes at the end of the warm-up
 * and at the end, to compare what is retained (Chrome DevTools → Memory → Comparison).
 * Writing a snapshot inflates the process's RSS for the rest of the run, so RSS growth is read from a run
 * without --snapshots.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';
import { startEmbeddedRedis } from '../shared/redis/embedded-redis.js';
import { sleep } from '../shared/sleep.js';
import { benchArgs } from './args.js';
import { cell0NodeFlags } from './fleet.js';

const USAGE =
  'npm run bench:soak -- [--minutes M (10)] [--rate R requests/s (20)] [--sample-every S (10)] ' +
  '[--warmup-percent P (20)] [--node-flags "FLAGS" | none] [--snapshots DIR] [--json]';
const args = benchArgs(
  process.argv.slice(2),
  { minutes: 10, rate: 20, 'sample-every': 10, 'warmup-percent': 20 },
  USAGE,
  ['snapshots', 'node-flags'],
);

/**
 * The Node flags the API and the worker run with: those the Dockerfile's entry point and `npm start` give
 * (docs/resources.md "Memory over time"), or --node-flags (none: V8's defaults, to compare).
 */
const nodeFlags = cell0NodeFlags(args.text['node-flags']);

const ROOT = resolve(__dirname, '..');
const CLI = join(ROOT, 'dist', 'bin', 'cell0.js');
const PROBE = join(ROOT, 'bench', 'soak-probe.cjs');
const MB = 1024 * 1024;

interface MemorySample {
  rss: number;
  /** V8's young generation as reserved (it grows under sustained allocation up to its maximum). */
  newSpace: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

/** A fleet process started from dist/ with the probe loaded. */
interface Proc {
  name: string;
  child: ChildProcess;
  output(): string;
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  sample(gc: boolean): Promise<MemorySample>;
  snapshot(file: string): Promise<string>;
  stop(): Promise<void>;
}

function startProc(name: string, cliArgs: string[], env: Record<string, string>, flags: string[] = []): Proc {
  const child = fork(CLI, cliArgs, {
    cwd: ROOT,
    execArgv: [...flags, '--expose-gc', '--require', PROBE],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  // Keep only the tail of what it prints (the bench must not grow either).
  let tail = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer): void => {
    tail = (tail + d.toString()).slice(-20_000);
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let nextId = 0;
  const ask = <T>(msg: Record<string, unknown>, timeoutMs: number): Promise<T> =>
    new Promise((resolvePromise, reject) => {
      const id = ++nextId;
      const timer = setTimeout(() => {
        child.off('message', onMessage);
        reject(new Error(`${name}: no answer to ${String(msg.soak)} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onMessage = (m: unknown): void => {
        if (typeof m !== 'object' || m === null || (m as { id?: unknown }).id !== id) return;
        clearTimeout(timer);
        child.off('message', onMessage);
        resolvePromise(m as T);
      };
      child.on('message', onMessage);
      child.send({ ...msg, id });
    });
  return {
    name,
    child,
    output: () => tail,
    waitFor: (re, timeoutMs) =>
      new Promise((resolvePromise, reject) => {
        const check = (): void => {
          const m = tail.match(re);
          if (m) {
            listeners.delete(check);
            clearTimeout(timer);
            resolvePromise(m);
          } else if (child.exitCode !== null) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(new Error(`${name} exited (${child.exitCode}):\n${tail}`));
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`${name}: timed out waiting for ${re}:\n${tail}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      }),
    sample: (gc) => ask<MemorySample>({ soak: 'sample', gc }, 30_000),
    snapshot: async (file) => (await ask<{ file: string }>({ soak: 'snapshot', file }, 300_000)).file,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createNetServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => res(port));
    });
  });
}

/** A fake SearXNG: GET /search?q=&format=json → ten results in SearXNG's JSON shape, at once. */
async function startFakeSearxng(): Promise<{ url: string; requests: () => number; server: Server }> {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    const u = new URL(req.url ?? '/', 'http://fake');
    const q = u.searchParams.get('q') ?? '';
    const pageno = Number(u.searchParams.get('pageno') ?? '1');
    const slug = q.toLowerCase().replace(/[^a-z0-9]+/g, '-');
    const results =
      pageno > 3
        ? []
        : Array.from({ length: 10 }, (_, i) => {
            const n = (pageno - 1) * 10 + i + 1;
            return {
              url: `https://example.org/${slug}/${n}`,
              title: `${q} – result ${n}`,
              content: `About <span class="highlight">${q}</span>: notes &amp; details, part ${n}.`,
              engine: 'duckduckgo',
              engines: ['duckduckgo', 'google'],
              score: (40 - n) / 10,
              category: 'general',
              publishedDate: null,
            };
          });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        query: q,
        number_of_results: 0,
        results,
        answers: [],
        corrections: [],
        infoboxes: [],
        suggestions: [],
        unresponsive_engines: [],
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests: () => requests, server };
}

const TOPICS = [
  'redis streams',
  'token bucket',
  'circuit breaker',
  'heap snapshot',
  'garbage collection',
  'event loop',
  'consistent hashing',
  'bloom filter',
  'raft consensus',
  'vector clocks',
  'write ahead log',
  'lsm tree',
];

/** One request of the mix: every 4th of each kind repeats from a small pool, the rest are unique. */
function nextRequest(i: number): { path: string; body: unknown } {
  const topic = TOPICS[i % TOPICS.length]!;
  const repeat = i % 4 === 0;
  const tag = repeat ? String(i % 20) : `${i}-${Math.random().toString(36).slice(2, 8)}`;
  if (i % 2 === 0)
    return {
      path: '/v1/search',
      body: { query: `${topic} ${tag}`, provider: 'searxng', limit: 10 },
    };
  return {
    path: '/v1/inference',
    body: {
      model: 'qwen2.5:0.5b',
      prompt: `Explain ${topic} in two sentences (${tag}).`,
      params: { max_tokens: 16 },
    },
  };
}

const fmtMb = (b: number): string => (b / MB).toFixed(1);
const mbOf = (m: MemorySample): Record<keyof MemorySample, number> => ({
  rss: Number(fmtMb(m.rss)),
  newSpace: Number(fmtMb(m.newSpace)),
  heapUsed: Number(fmtMb(m.heapUsed)),
  heapTotal: Number(fmtMb(m.heapTotal)),
  external: Number(fmtMb(m.external)),
  arrayBuffers: Number(fmtMb(m.arrayBuffers)),
});
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor(s.length / 2)]!;
};

interface Row {
  t: number;
  api: MemorySample;
  worker: MemorySample;
  sent: number;
  done: number;
}

async function main(): Promise<void> {
  const durationMs = args.minutes * 60_000;
  const sampleEveryMs = args['sample-every'] * 1000;
  const warmupMs = (durationMs * args['warmup-percent']) / 100;
  const snapDir = args.text.snapshots ? resolve(args.text.snapshots) : undefined;
  if (snapDir) mkdirSync(snapDir, { recursive: true });

  const dataDir = mkdtempSync(join(os.tmpdir(), 'cell0-soak-'));
  const redis = await startEmbeddedRedis({ port: await freePort(), dataDir });
  const searx = await startFakeSearxng();
  const procs: Proc[] = [];
  const agent = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
  try {
    const common = {
      REDIS_URL: redis.url,
      CELL0_LOG_LEVEL: 'warn',
      CELL0_QUEUE_PREFIX: '{soak}',
      CELL0_RATE_LIMITS: '',
    };
    const sim = startProc('simulator', ['simulator', '--port', '0'], {
      ...common,
      CELL0_SIM_TTFT_MS: '5',
      CELL0_SIM_TOKENS_PER_SEC: '2000',
      CELL0_SIM_LOAD_MS_PER_GB: '0',
    });
    procs.push(sim);
    const [, simUrl] = (await sim.waitFor(/simulator\s+(http:\/\/\S+)/, 120_000)) as [string, string];
    const fleetEnv = { ...common, CELL0_OLLAMA_URL: simUrl, CELL0_SEARXNG_URL: searx.url };
    const api = startProc('api', ['api', '--port', '0'], fleetEnv, nodeFlags);
    const worker = startProc('worker', ['worker'], fleetEnv, nodeFlags);
    procs.push(api, worker);
    const [, apiUrl] = (await api.waitFor(/api\s+(http:\/\/\S+)/, 120_000)) as [string, string];
    await worker.waitFor(/cell0 worker .* ready/, 120_000);

    // Idle: started, connected, nothing done yet; let start-up settle, then a GC'd sample.
    await sleep(10_000);
    const idle = { worker: await worker.sample(true), api: await api.sample(true) };
    console.log(
      `idle: worker RSS ${fmtMb(idle.worker.rss)} MB (heap ${fmtMb(idle.worker.heapUsed)} MB), ` +
        `api RSS ${fmtMb(idle.api.rss)} MB (heap ${fmtMb(idle.api.heapUsed)} MB)`,
    );

    // Steady load: `rate` requests a second, at most 256 in flight (beyond that the tick is skipped and
    // counted: the fleet is behind).
    const statuses = new Map<number | string, number>();
    let sent = 0;
    let done = 0;
    let skipped = 0;
    let inFlight = 0;
    const send = (i: number): void => {
      const { path, body } = nextRequest(i);
      inFlight++;
      sent++;
      request(`${apiUrl}${path}`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
        .then(async (r) => {
          await r.body.dump();
          statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1);
        })
        .catch((err: unknown) => {
          const code = (err as { code?: string }).code ?? 'error';
          statuses.set(code, (statuses.get(code) ?? 0) + 1);
        })
        .finally(() => {
          inFlight--;
          done++;
        });
    };
    const started = Date.now();
    const rows: Row[] = [];
    let snapWarm: string[] = [];
    let nextSample = started + sampleEveryMs;
    let i = 0;
    const tickMs = 50;
    while (Date.now() - started < durationMs) {
      const due = Math.floor(((Date.now() - started) / 1000) * args.rate);
      while (i < due) {
        if (inFlight < 256) send(i);
        else skipped++;
        i++;
      }
      if (Date.now() >= nextSample) {
        nextSample += sampleEveryMs;
        const [a, w] = await Promise.all([api.sample(true), worker.sample(true)]);
        const t = (Date.now() - started) / 1000;
        rows.push({ t, api: a, worker: w, sent, done });
        console.log(
          `t=${t.toFixed(0).padStart(4)}s  sent ${sent}  done ${done}  ` +
            `api RSS ${fmtMb(a.rss)} heap ${fmtMb(a.heapUsed)}  worker RSS ${fmtMb(w.rss)} heap ${fmtMb(w.heapUsed)} MB`,
        );
        if (snapDir && snapWarm.length === 0 && t * 1000 >= warmupMs)
          snapWarm = await Promise.all([
            api.snapshot(join(snapDir, 'api-warm.heapsnapshot')),
            worker.snapshot(join(snapDir, 'worker-warm.heapsnapshot')),
          ]);
      }
      await sleep(tickMs);
    }
    // Let the last requests finish, then a last sample.
    const drainBy = Date.now() + 60_000;
    while (inFlight > 0 && Date.now() < drainBy) await sleep(100);
    await sleep(2000);
    const end = { api: await api.sample(true), worker: await worker.sample(true) };
    const snapEnd = snapDir
      ? await Promise.all([
          api.snapshot(join(snapDir, 'api-end.heapsnapshot')),
          worker.snapshot(join(snapDir, 'worker-end.heapsnapshot')),
        ])
      : [];

    // Growth: the median of the first window of samples after the warm-up against the last window. A window
    // is a quarter of those samples (at least three): the heap after a full GC is a bounded sawtooth (about
    // 3 MB with a period near 100 s at 20 req/s, docs/benchmarks.md), and
    // windows shorter than its period would measure where on a tooth they fall, not growth. The three-sample
    // figures are kept in the report (growthAfterWarmup3).
    const after = rows.filter((r) => r.t * 1000 >= warmupMs);
    const win = Math.max(3, Math.floor(after.length / 4));
    const growthOver = (
      n: number,
      pick: (r: Row) => number,
    ): { from: number; to: number; percent: number } => {
      const from = median(after.slice(0, n).map(pick));
      const to = median(after.slice(-n).map(pick));
      return { from, to, percent: ((to - from) / from) * 100 };
    };
    const growth = (pick: (r: Row) => number) => growthOver(win, pick);
    const report = {
      date: new Date().toISOString(),
      host: `${os.cpus().length} cores, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB`,
      loadavg: os.loadavg().map((x) => Number(x.toFixed(2))),
      minutes: args.minutes,
      rate: args.rate,
      nodeFlags: nodeFlags.join(' ') || 'none',
      requests: { sent, done, skipped, statuses: Object.fromEntries(statuses) },
      searxngRequests: searx.requests(),
      idle: {
        workerRssMb: Number(fmtMb(idle.worker.rss)),
        workerHeapMb: Number(fmtMb(idle.worker.heapUsed)),
        apiRssMb: Number(fmtMb(idle.api.rss)),
        apiHeapMb: Number(fmtMb(idle.api.heapUsed)),
      },
      afterLoad: {
        workerRssMb: Number(fmtMb(end.worker.rss)),
        workerHeapMb: Number(fmtMb(end.worker.heapUsed)),
        apiRssMb: Number(fmtMb(end.api.rss)),
        apiHeapMb: Number(fmtMb(end.api.heapUsed)),
      },
      growthAfterWarmup: {
        apiRss: growth((r) => r.api.rss),
        apiHeap: growth((r) => r.api.heapUsed),
        workerRss: growth((r) => r.worker.rss),
        workerHeap: growth((r) => r.worker.heapUsed),
      },
      growthWindowSamples: win,
      growthAfterWarmup3: {
        apiRss: growthOver(3, (r) => r.api.rss),
        apiHeap: growthOver(3, (r) => r.api.heapUsed),
        workerRss: growthOver(3, (r) => r.worker.rss),
        workerHeap: growthOver(3, (r) => r.worker.heapUsed),
      },
      // Where RSS is: V8's heap as reserved (heapTotal), Buffers and other memory V8 knows of (external),
      // and the rest (native: the allocator's arenas, code, thread stacks).
      breakdownAfterWarmup: Object.fromEntries(
        (['api', 'worker'] as const).map((p) => [
          p,
          {
            heapTotal: growth((r) => r[p].heapTotal),
            newSpace: growth((r) => r[p].newSpace),
            external: growth((r) => r[p].external),
            arrayBuffers: growth((r) => r[p].arrayBuffers),
            native: growth((r) => r[p].rss - r[p].heapTotal - r[p].external),
          },
        ]),
      ),
      samples: rows.map((r) => ({
        t: Math.round(r.t),
        api: mbOf(r.api),
        worker: mbOf(r.worker),
      })),
      ...(snapDir ? { snapshots: [...snapWarm, ...snapEnd], rssGrowthComparable: false } : {}),
    };
    const g = report.growthAfterWarmup;
    const line = (name: string, x: { from: number; to: number; percent: number }): string =>
      `  ${name.padEnd(12)} ${fmtMb(x.from).padStart(7)} → ${fmtMb(x.to).padStart(7)} MB  ${x.percent >= 0 ? '+' : ''}${x.percent.toFixed(1)} %`;
    console.log(
      [
        '',
        `bench:soak  ${report.date}  ${report.host}  load average ${report.loadavg.join(' ')}`,
        `api and worker run with node ${report.nodeFlags}`,
        `${args.minutes} min at ${args.rate} req/s: sent ${sent}, answered ${done}, skipped ${skipped}; statuses ${JSON.stringify(report.requests.statuses)}`,
        `growth after warm-up (${args['warmup-percent']} %; medians of the first and last ${win} samples), target <= 5 %:`,
        line('api RSS', g.apiRss),
        line('api heap', g.apiHeap),
        line('worker RSS', g.workerRss),
        line('worker heap', g.workerHeap),
        ...(['api', 'worker'] as const).flatMap((p) => {
          const b = report.breakdownAfterWarmup[p]!;
          return [
            line(`${p} heapTotal`, b.heapTotal),
            line(`${p} new space`, b.newSpace),
            line(`${p} external`, b.external),
            line(`${p} native`, b.native),
          ];
        }),
        `idle worker RSS ${report.idle.workerRssMb} MB (target <= 120 MB); after the load: ${report.afterLoad.workerRssMb} MB`,
        ...(snapDir
          ? [
              `heap snapshots: ${report.snapshots?.join(', ')}`,
              "note: writing the warm-up snapshot raises both processes' RSS by hundreds of MB (memory the " +
                'allocator keeps), so the RSS growth of a run with --snapshots says nothing: take RSS growth ' +
                'from a run without it; the heap growth (after a full GC) stands',
            ]
          : []),
      ].join('\n'),
    );
    if (args.json) console.log(JSON.stringify(report));
  } finally {
    await Promise.allSettled(procs.reverse().map((p) => p.stop()));
    await agent.close();
    await new Promise<void>((r) => searx.server.close(() => r()));
    await redis.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
