/*
 * bench:http — the unique-request hot path: cell0's POST /v1/inference against a minimal pass-through proxy.
 *
 * Starts a private redis-server, the Ollama-compatible simulator (1 ms to first token, near-instant tokens)
 * and, as separate processes,
 *   A  a pass-through proxy (bench/http-proxy.ts: express + one undici pool, no queue, no cache);
 *   B  cell0 (`cell0 start`: API and worker in one process, worker concurrency 64, 64 connections per
 *      backend host), first with every cache on, then with the semantic cache answering exact matches only
 *      (CELL0_SEMANTIC_MIN_CONFIDENCE=exact: no similarity search, no index), then with each cache off in turn.
 * Each variant starts its own simulator, proxy and cell0 on a flushed Redis (so no variant meets processes
 * warmed by an earlier one) and runs P pairs of N requests (order alternating A B, B A, …) at concurrency K, every prompt
 * unique (nothing coalesces, no cache can answer), after M warm-up requests on each side (default 20,000: the
 * proxy's side, proxy and simulator, goes on getting faster for some 15,000 requests — with the earlier 4,000
 * the proxy served 4,150–4,800 requests/s in the first pair and 7,200–9,000 from the sixth on, and the ratio
 * fell from 0.43–0.49 to 0.21–0.33 within one run; with 40,000 it is no faster than with 20,000; with 300
 * the first pairs compared a cold proxy with cell0: docs/benchmarks.md, 2026-12-05 22:30Z and 2026-12-06
 * 01:51Z). Prints
 * per side: requests/s, p50/p99 latency, CPU per
 * request of each process (from /proc; and of its main thread alone: the rest is V8's helper threads, GC and
 * background compilation, and libuv's pool), each side's whole-machine CPU per request (its processes and its
 * client together) and the ratio of the two sides' (what the throughput ratio comes to when the two sides
 * fill the machine: on a 2-core machine they share the cores with Redis, the simulator and the client), each process's wake-ups per request (voluntary context switches of its
 * main thread, /proc/PID/status), Redis commands per request (INFO commandstats delta of the private
 * Redis, commands run inside scripts included), Redis socket reads/writes (round trips) and bytes in/out per
 * request (INFO stats deltas) and the median pair ratios B/A.
 *
 *   npm run bench:http -- [--requests N] [--concurrency K] [--pairs P] [--warmup M] [--variants all|on|off]
 *                         [--cpu-prof DIR] [--cpu-prof-timed DIR] [--stages] [--against DIST] [--dist DIST]
 *                         [--cell0-node-flags "FLAGS"|none] [--json]
 * --variants on: only caches on; off: only the semantic and search caches off; all (default): every variant.
 * --cpu-prof DIR writes a CPU profile of each cell0 process (node --cpu-prof) to DIR: its whole life, start
 * and warm-up included.
 * --cpu-prof-timed DIR writes a CPU profile of each cell0 process over its timed runs only (the pairs, after
 * the warm-up; through the inspector, bench/timed-profile.ts) to DIR, named cell0-<variant>[-A].cpuprofile:
 * the steady state, without the start's module loading, lexicon read and script preparation.
 * --against DIST: side A is not the proxy but `cell0 start` from another build's compiled output DIST (its
 * dist/ directory), with the same settings as B: two builds of cell0 side by side, one run of each in turn,
 * on the same Redis and simulator (the ratios are this build's over that one's). Both workers then serve the
 * same queues (one may take the other's jobs), so each side's CPU and system calls per request are only
 * roughly its own: for counts, run each build against the proxy in turn (--dist).
 * --dist DIST: side B is `cell0 start` from DIST's compiled output instead of this checkout's dist/.
 * --cell0-node-flags: the node flags of cell0's processes (default `--max-semi-space-size=16
 * --min-semi-space-size=16`, what `npm start` and the Dockerfile run cell0 with; `none`: Node's defaults).
 * --stages: after each variant, where the last pair's cell0 requests spent their time, from each job's hash
 * (added, taken by the worker, finished) and the client's send and answer times: request→added (HTTP, cache
 * lookup, enqueue), added→active (queue wait), active→finished (backend call, cache write, completion),
 * finished→seen (result to the API and the answer to the client). Each answer's job id is then parsed by
 * the client, on the cell0 side only.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import { Pool } from 'undici';
import { benchArgs } from './args.js';
import { median, percentile } from './e2e-common.js';
import { epochNow, printStages, type StageSample } from './e2e-stages.js';
import {
  cell0NodeFlags,
  commandCalls,
  cpuMsOf,
  freePort,
  mainThreadCpuMsOf,
  hotPathCell0Env,
  runBench,
  startInstantSimulator,
  startProcess,
  startRedisServer,
  stop,
  socketIo,
  stopAll,
  syscallsOf,
  wakeUpsOf,
} from './fleet.js';
import { inspectArgs, TimedProfile } from './timed-profile.js';

const MODEL = 'qwen2.5:0.5b';
const MAX_TOKENS = 8;
const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'dist', 'bin', 'cell0.js');

interface RunResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  firstError?: string;
  /** CPU µs per request by process, and the bench's own (`client`: the load generator, this process). */
  cpuUs: Record<string, number>;
  /** Each process's main-thread CPU per request (µs): cpuUs without its other threads. */
  mainCpuUs: Record<string, number>;
  /** read(2)/write(2) system calls per request by process (/proc/PID/io; sockets included). */
  sysReads: Record<string, number>;
  sysWrites: Record<string, number>;
  /** Wake-ups (voluntary context switches of the main thread) per request by process. */
  wakeUps: Record<string, number>;
  /** Redis commands per request (all, and by command). */
  redisPerRequest: number;
  redisByCommand: Record<string, number>;
  /** Redis socket reads (client writes arriving) and reply writes per request. */
  redisReads: number;
  redisWrites: number;
  /** Bytes Redis received and sent per request. */
  redisBytesIn: number;
  redisBytesOut: number;
  /** Answers served from a cache (should be 0: every prompt is unique). */
  cached: number;
  /** Each answered job's id with its send and answer times (with --stages, on the cell0 side only). */
  samples: StageSample[];
}

/** N requests, K at a time, each with a prompt never sent before. */
async function load(
  url: string,
  n: number,
  k: number,
  tag: string,
  pids: Record<string, number | undefined>,
  redis: Redis,
  stages = false,
): Promise<RunResult> {
  const pool = new Pool(url, { connections: k });
  const samples: StageSample[] = [];
  const lat: number[] = [];
  let errors = 0;
  let cached = 0;
  let firstError: string | undefined;
  let next = 0;
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMsOf(pid)]));
  const main0 = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, mainThreadCpuMsOf(pid)]));
  const sys0 = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, syscallsOf(pid)]));
  const wake0 = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, wakeUpsOf(pid)]));
  const calls0 = await commandCalls(redis);
  const io0 = await socketIo(redis);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: k }, async () => {
      while (next < n) {
        const i = next++;
        const body = JSON.stringify({
          model: MODEL,
          prompt: `Request ${tag}-${i}: tell me about ${randomBytes(6).toString('hex')} and ${i * 7919}`,
          params: { max_tokens: MAX_TOKENS },
        });
        const s = performance.now();
        const due = stages ? epochNow() : 0;
        try {
          const r = await pool.request({
            path: '/v1/inference',
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
          });
          const text = await r.body.text();
          lat.push(performance.now() - s);
          if (r.statusCode !== 200) {
            errors++;
            firstError ??= `${r.statusCode} ${text.slice(0, 200)}`;
          } else if (/"cached":true/.test(text)) cached++;
          else if (stages)
            samples.push({ jobId: (JSON.parse(text) as { jobId: string }).jobId, due, seen: epochNow() });
        } catch (err) {
          errors++;
          firstError ??= String(err);
        }
      }
    }),
  );
  const wall = performance.now() - t0;
  const clientCpu = process.cpuUsage(client0);
  const calls1 = await commandCalls(redis);
  const io1 = await socketIo(redis);
  const cpuUs: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) cpuUs[name] = ((cpuMsOf(pid) - cpu0[name]!) * 1000) / n;
  cpuUs.client = (clientCpu.user + clientCpu.system) / n;
  const mainCpuUs: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids))
    mainCpuUs[name] = ((mainThreadCpuMsOf(pid) - main0[name]!) * 1000) / n;
  const sysReads: Record<string, number> = {};
  const sysWrites: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    const s1 = syscallsOf(pid);
    sysReads[name] = (s1.reads - sys0[name]!.reads) / n;
    sysWrites[name] = (s1.writes - sys0[name]!.writes) / n;
  }
  const wakeUps: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) wakeUps[name] = (wakeUpsOf(pid) - wake0[name]!) / n;
  await pool.close();
  const redisByCommand: Record<string, number> = {};
  let total = 0;
  for (const [cmd, c] of calls1) {
    if (cmd === 'info') continue;
    const d = (c - (calls0.get(cmd) ?? 0)) / n;
    total += d;
    if (d >= 0.05) redisByCommand[cmd] = Math.round(d * 10) / 10;
  }
  lat.sort((a, b) => a - b);
  return {
    rps: (n / wall) * 1000,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    errors,
    ...(firstError ? { firstError } : {}),
    cpuUs,
    mainCpuUs,
    sysReads,
    sysWrites,
    wakeUps,
    redisPerRequest: total,
    redisByCommand,
    // Less the INFO calls of this measurement (one read and one write each).
    redisReads: (io1.reads - io0.reads - 2) / n,
    redisWrites: (io1.writes - io0.writes - 2) / n,
    redisBytesIn: (io1.bytesIn - io0.bytesIn) / n,
    redisBytesOut: (io1.bytesOut - io0.bytesOut) / n,
    cached,
    samples,
  };
}

interface Variant {
  name: string;
  env: Record<string, string>;
}

const VARIANTS: Variant[] = [
  { name: 'caches on', env: {} },
  // the semantic cache answering exact matches only (no similarity search, and its stores skip the embedding
  // and the index): what similarity matching costs on top of the exact cache
  { name: 'semantic exact only', env: { CELL0_SEMANTIC_MIN_CONFIDENCE: 'exact' } },
  { name: 'semantic+search cache off', env: { CELL0_CACHE_ENABLED: '0' } },
  { name: 'HTTP cache off', env: { CELL0_HTTP_CACHE: '0' } },
];

/**
 * The simulator and the pass-through proxy, started afresh for each variant (as cell0 is): a proxy kept from
 * the first variant had served ~10,000 more requests by the third (its CPU per request about halved as V8
 * optimised it), so later variants compared a warm proxy with a fresh cell0.
 */
async function startBackends(withProxy = true): Promise<{
  sim: Awaited<ReturnType<typeof startProcess>>;
  simUrl: string;
  proxy: Awaited<ReturnType<typeof startProcess>> | undefined;
  proxyUrl: string;
}> {
  const { child: sim, port: simPort } = await startInstantSimulator(CLI);
  const simUrl = `http://127.0.0.1:${simPort}`;
  if (!withProxy) return { sim, simUrl, proxy: undefined, proxyUrl: '' };
  const proxyPort = await freePort();
  const proxy = await startProcess(
    process.execPath,
    ['--import', 'tsx', join(__dirname, 'http-proxy.ts'), String(proxyPort), simUrl, '64'],
    {},
    /proxy ready/,
    'proxy',
  );
  const proxyUrl = `http://127.0.0.1:${proxyPort}`;
  return { sim, simUrl, proxy, proxyUrl };
}

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
/** The sum of a side's CPU per request over its processes and its client (µs). */
const sumOf = (cpuUs: Record<string, number>): number => Object.values(cpuUs).reduce((t, v) => t + v, 0);

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const stages = argv.includes('--stages');
  const opts = benchArgs(
    argv.filter((a) => a !== '--stages'),
    { requests: 2000, concurrency: 50, pairs: 3, warmup: 20000 },
    'npm run bench:http -- [--requests N] [--concurrency K] [--pairs P] [--warmup M] [--variants all|on|off] [--cpu-prof DIR] [--cpu-prof-timed DIR] [--stages] [--against DIST] [--dist DIST] [--cell0-node-flags "FLAGS"|none] [--json]',
    ['variants', 'cpu-prof', 'cpu-prof-timed', 'against', 'dist', 'cell0-node-flags'],
  );
  // cell0 runs with the node flags `npm start` gives it, as deployed (before 2026-12-06, with Node's defaults)
  const cell0Flags = cell0NodeFlags(opts.text['cell0-node-flags']);
  const profDir = opts.text['cpu-prof'];
  const timedDir = opts.text['cpu-prof-timed'];
  // Side A: the pass-through proxy, or (--against) cell0 built elsewhere.
  const against = opts.text.against;
  const aName = against ? 'cell0 A' : 'proxy';
  const v = opts.text.variants ?? 'all';
  if (!['all', 'on', 'off'].includes(v)) throw new Error(`--variants must be all, on or off, got ${v}`);
  // off: only the run with the semantic and search caches off (the queue and HTTP path alone).
  const variants =
    v === 'on'
      ? VARIANTS.filter((x) => x.name === 'caches on')
      : v === 'off'
        ? VARIANTS.filter((x) => x.name === 'semantic+search cache off')
        : VARIANTS;
  const { url: redisUrl, redis, version: redisVersion, child: redisServer } = await startRedisServer();

  const load0 = os.loadavg();
  console.log(
    against
      ? `bench:http — POST /v1/inference, unique prompts: cell0 of this build (B) vs cell0 built in ${against} (A)`
      : 'bench:http — POST /v1/inference, unique prompts: cell0 (B) vs a pass-through proxy (A)',
  );
  console.log(`date     ${new Date().toISOString()}`);
  console.log(
    `machine  ${os.cpus()[0]?.model.trim()}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, redis ${redisVersion}`,
  );
  console.log(`load     ${load0.map((l) => l.toFixed(2)).join(' ')} (1/5/15-minute load average at start)`);
  console.log(
    `setup    ${opts.requests} requests/side/pair, concurrency ${opts.concurrency}, ${opts.pairs} pairs, warm-up ${opts.warmup}; ` +
      `simulator TTFT 1 ms, max_tokens ${MAX_TOKENS}; cell0 node flags ${cell0Flags.join(' ') || 'none'}`,
  );
  const summary: Record<string, unknown>[] = [];
  try {
    for (const variant of variants) {
      await redis.flushall();
      const backends = await startBackends(!against);
      const { sim, simUrl } = backends;
      const startCell0 = async (cli: string, label: string) => {
        const apiPort = await freePort();
        const inspectPort = timedDir ? await freePort() : 0;
        const child = await startProcess(
          process.execPath,
          [
            ...cell0Flags,
            ...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []),
            ...(timedDir ? inspectArgs(inspectPort) : []),
            cli,
            'start',
            '--port',
            String(apiPort),
          ],
          { ...(await hotPathCell0Env(redisUrl, simUrl)), ...variant.env },
          /cell0 start .* ready/,
          label,
        );
        return {
          child,
          url: `http://127.0.0.1:${apiPort}`,
          profile: timedDir ? new TimedProfile(inspectPort) : undefined,
        };
      };
      const {
        child: cell0,
        url: cell0Url,
        profile: profileB,
      } = await startCell0(opts.text.dist ? join(opts.text.dist, 'bin', 'cell0.js') : CLI, 'cell0');
      const sideA = against
        ? await startCell0(join(against, 'bin', 'cell0.js'), 'cell0 A')
        : { child: backends.proxy!, url: backends.proxyUrl, profile: undefined };
      const proxy = sideA.child;
      const proxyUrl = sideA.url;
      const pids = { cell0: cell0.pid, simulator: sim.pid, redis: redisServer.pid };
      const proxyPids = {
        [against ? 'cell0 A' : 'proxy']: proxy.pid,
        simulator: sim.pid,
        redis: redisServer.pid,
      };
      const tag = randomBytes(3).toString('hex');
      await load(proxyUrl, opts.warmup, opts.concurrency, `${tag}w`, proxyPids, redis);
      await load(cell0Url, opts.warmup, opts.concurrency, `${tag}w`, pids, redis);
      console.log(`\n${variant.name}`);
      await profileB?.start();
      await sideA.profile?.start();
      const pairs: { a: RunResult; b: RunResult }[] = [];
      for (let p = 0; p < opts.pairs; p++) {
        const runA = () => load(proxyUrl, opts.requests, opts.concurrency, `${tag}a${p}`, proxyPids, redis);
        const runB = () =>
          load(
            cell0Url,
            opts.requests,
            opts.concurrency,
            `${tag}b${p}`,
            pids,
            redis,
            stages && p === opts.pairs - 1,
          );
        let a: RunResult;
        let b: RunResult;
        if (p % 2 === 0) {
          a = await runA();
          b = await runB();
        } else {
          b = await runB();
          a = await runA();
        }
        pairs.push({ a, b });
        console.log(
          `  pair ${p + 1} (${p % 2 === 0 ? 'A B' : 'B A'}): ${aName} ${f(a.rps, 0)} req/s p50 ${f(a.p50)} p99 ${f(a.p99)} ms` +
            ` | cell0 ${f(b.rps, 0)} req/s p50 ${f(b.p50)} p99 ${f(b.p99)} ms | ratio ${f(b.rps / a.rps, 2)}` +
            (a.errors + b.errors > 0
              ? ` | errors A ${a.errors} B ${b.errors} (${b.firstError ?? a.firstError})`
              : '') +
            (b.cached > 0 ? ` | cached ${b.cached}` : ''),
        );
      }
      if (timedDir) {
        const slug = variant.name.replace(/[^a-z0-9]+/gi, '-');
        const written = [await profileB?.stop(timedDir, `cell0-${slug}`)];
        written.push(await sideA.profile?.stop(timedDir, `cell0-${slug}-A`));
        console.log(`  timed CPU profiles: ${written.filter(Boolean).join(', ')}`);
      }
      const med = (g: (x: { a: RunResult; b: RunResult }) => number) => median(pairs.map(g));
      const last = pairs[pairs.length - 1]!;
      const row = {
        variant: variant.name,
        throughputRatio: med((x) => x.b.rps / x.a.rps),
        p50Ratio: med((x) => x.b.p50 / x.a.p50),
        p99Ratio: med((x) => x.b.p99 / x.a.p99),
        proxy: { rps: med((x) => x.a.rps), p50: med((x) => x.a.p50), p99: med((x) => x.a.p99) },
        cell0: { rps: med((x) => x.b.rps), p50: med((x) => x.b.p50), p99: med((x) => x.b.p99) },
        cpuUsPerRequest: {
          proxy: Object.fromEntries(
            [...Object.keys(proxyPids), 'client'].map((k) => [k, Math.round(med((x) => x.a.cpuUs[k]!))]),
          ),
          cell0: Object.fromEntries(
            [...Object.keys(pids), 'client'].map((k) => [k, Math.round(med((x) => x.b.cpuUs[k]!))]),
          ),
        },
        // The whole machine's CPU per request on each side (every process of the side, and its client) and
        // their ratio, median over the pairs: on a machine the two sides fill, throughput goes as this ratio.
        machineCpuUsPerRequest: {
          proxy: Math.round(med((x) => sumOf(x.a.cpuUs))),
          cell0: Math.round(med((x) => sumOf(x.b.cpuUs))),
        },
        machineCpuRatio: med((x) => sumOf(x.a.cpuUs) / sumOf(x.b.cpuUs)),
        mainThreadCpuUsPerRequest: {
          proxy: Object.fromEntries(
            Object.keys(proxyPids).map((k) => [k, Math.round(med((x) => x.a.mainCpuUs[k]!))]),
          ),
          cell0: Object.fromEntries(
            Object.keys(pids).map((k) => [k, Math.round(med((x) => x.b.mainCpuUs[k]!))]),
          ),
        },
        syscallsPerRequest: {
          proxy: Object.fromEntries(
            Object.keys(proxyPids).map((k) => [
              k,
              [med((x) => x.a.sysReads[k]!), med((x) => x.a.sysWrites[k]!)],
            ]),
          ),
          cell0: Object.fromEntries(
            Object.keys(pids).map((k) => [k, [med((x) => x.b.sysReads[k]!), med((x) => x.b.sysWrites[k]!)]]),
          ),
        },
        wakeUpsPerRequest: {
          proxy: Object.fromEntries(Object.keys(proxyPids).map((k) => [k, med((x) => x.a.wakeUps[k]!)])),
          cell0: Object.fromEntries(Object.keys(pids).map((k) => [k, med((x) => x.b.wakeUps[k]!)])),
        },
        redisCommandsPerRequest: {
          proxy: med((x) => x.a.redisPerRequest),
          cell0: med((x) => x.b.redisPerRequest),
        },
        redisByCommandLastPair: last.b.redisByCommand,
        redisSocketReadsPerRequest: med((x) => x.b.redisReads),
        redisSocketWritesPerRequest: med((x) => x.b.redisWrites),
        redisBytesPerRequest: { in: med((x) => x.b.redisBytesIn), out: med((x) => x.b.redisBytesOut) },
        // side A's too when it is cell0 (--against): the two builds' traffic side by side
        redisBytesPerRequestA: { in: med((x) => x.a.redisBytesIn), out: med((x) => x.a.redisBytesOut) },
        redisSocketReadsPerRequestA: med((x) => x.a.redisReads),
        errors: pairs.reduce((s, x) => s + x.a.errors + x.b.errors, 0),
        cachedAnswers: pairs.reduce((s, x) => s + x.b.cached, 0),
      };
      summary.push(row);
      console.log(
        `  median ratios cell0/${aName}: throughput ${f(row.throughputRatio, 2)}, p50 ${f(row.p50Ratio, 2)}, p99 ${f(row.p99Ratio, 2)}`,
      );
      console.log(
        `  CPU µs/request: ${aName} ${JSON.stringify(row.cpuUsPerRequest.proxy)}; cell0 ${JSON.stringify(row.cpuUsPerRequest.cell0)}`,
      );
      console.log(
        `  whole machine CPU µs/request: ${aName} side ${row.machineCpuUsPerRequest.proxy}, cell0 side ${row.machineCpuUsPerRequest.cell0}; ${aName} side / cell0 side ${f(row.machineCpuRatio, 2)} (the throughput ratio when the two sides fill the machine)`,
      );
      console.log(
        `  of which main thread: ${aName} ${JSON.stringify(row.mainThreadCpuUsPerRequest.proxy)}; cell0 ${JSON.stringify(row.mainThreadCpuUsPerRequest.cell0)}`,
      );
      const sysText = (m: Record<string, number[]>) =>
        Object.entries(m)
          .map(([k, [r, w]]) => `${k} ${f(r!, 2)}/${f(w!, 2)}`)
          .join(', ');
      console.log(
        `  read/write system calls per request: ${aName} ${sysText(row.syscallsPerRequest.proxy)}; cell0 ${sysText(row.syscallsPerRequest.cell0)}`,
      );
      const wakeText = (m: Record<string, number>) =>
        Object.entries(m)
          .map(([k, w]) => `${k} ${f(w, 2)}`)
          .join(', ');
      console.log(
        `  wake-ups (voluntary context switches) per request: ${aName} ${wakeText(row.wakeUpsPerRequest.proxy)}; cell0 ${wakeText(row.wakeUpsPerRequest.cell0)}`,
      );
      console.log(
        `  Redis commands/request: ${against ? `cell0 A ${f(row.redisCommandsPerRequest.proxy)}, ` : ''}cell0 ${f(row.redisCommandsPerRequest.cell0)} (${Object.entries(
          row.redisByCommandLastPair,
        )
          .sort((x, y) => y[1] - x[1])
          .map(([c, v]) => `${c} ${v}`)
          .join(', ')})`,
      );
      console.log(
        `  Redis socket reads/writes per request (round trips): cell0 ${f(row.redisSocketReadsPerRequest, 2)} / ${f(row.redisSocketWritesPerRequest, 2)}; ` +
          `bytes in/out per request ${f(row.redisBytesPerRequest.in, 0)} / ${f(row.redisBytesPerRequest.out, 0)}` +
          (against
            ? `; cell0 A ${f(row.redisSocketReadsPerRequestA, 2)} reads, bytes ${f(row.redisBytesPerRequestA.in, 0)} / ${f(row.redisBytesPerRequestA.out, 0)}`
            : ''),
      );
      if (stages)
        await printStages(
          redis,
          '{cell0:inference}:inference',
          last.b.samples,
          `cell0, ${variant.name}, last pair`,
        );
      await stop(cell0);
      await stop(proxy);
      await stop(sim);
    }
    console.log(
      `\nload     ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} at the end`,
    );
    if (opts.json) console.log(JSON.stringify({ date: new Date().toISOString(), load: load0, summary }));
  } finally {
    redis.disconnect();
    await stopAll();
  }
}

runBench(main);
