/*
 * bench:backend-cost — what one /api/generate call costs the simulator of bench:http, by the caller's request
 * shape and by how the calls arrive.
 *
 * In bench:http the simulator spends more CPU per request when cell0 calls it than when the pass-through proxy
 * does. This bench separates the two candidate causes with the same simulator process (bench:http's settings:
 * 1 ms to first token, near-instant tokens, max_tokens 8) and one client in this process:
 *   shape    A  the proxy's call (bench/http-proxy.ts: model, prompt, stream false, options.num_predict;
 *               content-type only), sent through an undici Pool;
 *            B  cell0's call, made by a worker's whole backend stack as `cell0 start` builds it from its
 *               configuration (buildProviders: the model router, the origin's guard with its adaptive
 *               concurrency limit and breaker, OllamaBackend, OllamaClient, the pool registry; the job's params
 *               with the schema's defaults: temperature, top_p, top_k, repeat_penalty besides num_predict; an
 *               accept header), i.e. the bytes a cell0 worker sends, as many at once as its limit lets through;
 *   arrival  closed: K calls in flight at once, each answered call followed at once by the next (the
 *               simulator never waits: the proxy's regime in bench:http);
 *            R/s: calls started at a fixed rate R, evenly spaced (at most K in flight), below the simulator's
 *               capacity so it sleeps between calls (cell0's regime: it calls at a third to a half of the
 *               proxy's rate).
 * For each arrival, P pairs of N calls (A B, B A, …) and per side: calls/s, the simulator's CPU per call (from
 * /proc), its voluntary context switches per call (the times it went to sleep waiting for work, i.e. wake-ups),
 * this process's CPU per call (the caller's side), and the median pair ratios B/A of both CPU figures.
 *
 *   node --import tsx bench/backend-cost.ts [--requests N] [--concurrency K] [--pairs P] [--rates R1,R2,...]
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { benchArgs, printBenchHeader, loadText } from './args.js';
import { median } from './e2e-common.js';
import { cpuMsOf, runBench, startInstantSimulator, stopAll, wakeUpsOf } from './fleet.js';
import { loadConfig } from '../shared/config/config.js';
import { silentLogger } from '../shared/logger.js';
import { inferenceRequestSchema } from '../shared/queues/schemas.js';
import { buildProviders } from '../workers/providers/from-config.js';

const MODEL = 'qwen2.5:0.5b';
const MAX_TOKENS = 8;
const CLI = join(__dirname, '..', 'dist', 'bin', 'cell0.js');

type Call = (prompt: string) => Promise<void>;

interface Side {
  rps: number;
  cpuUs: number;
  wakeUps: number;
  /** This process's CPU per call (the caller's side: its HTTP client and, for B, cell0's backend stack). */
  clientUs: number;
}

/** N calls with unique prompts: K in flight (closed), or started `rate` per second (open, at most K in flight). */
async function run(call: Call, n: number, k: number, rate: number, pid: number, tag: string): Promise<Side> {
  let next = 0;
  const cpu0 = cpuMsOf(pid);
  const w0 = wakeUpsOf(pid);
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: k }, async () => {
      while (next < n) {
        const i = next++;
        if (rate > 0) {
          const wait = t0 + (i * 1000) / rate - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        await call(`Request ${tag}-${i}: tell me about ${randomBytes(6).toString('hex')} and ${i * 7919}`);
      }
    }),
  );
  const wall = performance.now() - t0;
  const own = process.cpuUsage(own0);
  return {
    clientUs: (own.user + own.system) / n,
    rps: (n / wall) * 1000,
    cpuUs: ((cpuMsOf(pid) - cpu0) * 1000) / n,
    wakeUps: (wakeUpsOf(pid) - w0) / n,
  };
}

async function main(): Promise<void> {
  const opts = benchArgs(
    process.argv.slice(2),
    { requests: 3000, concurrency: 50, pairs: 3 },
    'node --import tsx bench/backend-cost.ts [--requests N] [--concurrency K] [--pairs P] [--rates R1,R2,...]',
    ['rates'],
  );
  const rates = (opts.text.rates ?? '400,800').split(',').map(Number);
  if (rates.some((r) => !(r > 0))) throw new Error(`--rates must be numbers > 0, got ${opts.text.rates}`);
  printBenchHeader(
    'bench:backend-cost — the simulator of bench:http called as the proxy (A) and as cell0 (B)',
  );
  console.log(
    `setup    ${opts.requests} calls/side/pair, at most ${opts.concurrency} in flight, ${opts.pairs} pairs; simulator TTFT 1 ms, max_tokens ${MAX_TOKENS}`,
  );

  const { child: sim, port } = await startInstantSimulator(CLI);
  const url = `http://127.0.0.1:${port}`;
  const pid = sim.pid!;

  // A: the proxy's call, as bench/http-proxy.ts makes it.
  const pool = new Pool(url, { connections: 64, pipelining: 1 });
  const proxyCall: Call = async (prompt) => {
    const r = await pool.request({
      path: '/api/generate',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt, stream: false, options: { num_predict: MAX_TOKENS } }),
    });
    await r.body.json();
    if (r.statusCode !== 200) throw new Error(`proxy-shaped call: status ${r.statusCode}`);
  };
  // B: cell0's call, by a worker's own backend stack as `cell0 start` builds it from its configuration (the
  // model router, the backend's guard with its adaptive concurrency limit and breaker, the Ollama client and
  // the pool registry), with bench:http's settings.
  const providers = buildProviders(
    loadConfig({
      CELL0_OLLAMA_URL: url,
      CELL0_HTTP_CONNECTIONS_PER_HOST: '64',
      CELL0_INFERENCE_CONCURRENCY: '64',
    }),
    { inference: true, search: false, logger: silentLogger() },
  );
  const backend = providers.inference!;
  const signal = new AbortController().signal;
  const cell0Call: Call = async (prompt) => {
    const job = inferenceRequestSchema.parse({ model: MODEL, prompt, params: { max_tokens: MAX_TOKENS } });
    await backend.run(job, { signal });
  };

  const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const summary: Record<string, unknown>[] = [];
  try {
    const tag = randomBytes(3).toString('hex');
    // Warm both clients and the simulator (V8 optimises each path) before anything is counted.
    await run(proxyCall, 1000, opts.concurrency, 0, pid, `${tag}w`);
    await run(cell0Call, 1000, opts.concurrency, 0, pid, `${tag}w`);
    for (const rate of [0, ...rates]) {
      console.log(`\n${rate === 0 ? `closed loop, ${opts.concurrency} in flight` : `${rate} calls/s`}`);
      const pairs: { a: Side; b: Side }[] = [];
      for (let p = 0; p < opts.pairs; p++) {
        const runA = () => run(proxyCall, opts.requests, opts.concurrency, rate, pid, `${tag}a${rate}-${p}`);
        const runB = () => run(cell0Call, opts.requests, opts.concurrency, rate, pid, `${tag}b${rate}-${p}`);
        let a: Side;
        let b: Side;
        if (p % 2 === 0) {
          a = await runA();
          b = await runB();
        } else {
          b = await runB();
          a = await runA();
        }
        pairs.push({ a, b });
        console.log(
          `  pair ${p + 1} (${p % 2 === 0 ? 'A B' : 'B A'}): proxy-shaped ${f(a.rps)} calls/s, simulator ${f(a.cpuUs)} µs/call, ${f(a.wakeUps, 2)} wake-ups/call, caller ${f(a.clientUs)} µs/call` +
            ` | cell0 ${f(b.rps)} calls/s, ${f(b.cpuUs)} µs/call, ${f(b.wakeUps, 2)} wake-ups/call, caller ${f(b.clientUs)} µs/call | simulator CPU ratio ${f(b.cpuUs / a.cpuUs, 2)}`,
        );
      }
      const med = (g: (x: { a: Side; b: Side }) => number) => median(pairs.map(g));
      const row = {
        arrival: rate === 0 ? 'closed' : `${rate}/s`,
        simulatorCpuUs: { proxyShaped: med((x) => x.a.cpuUs), cell0Shaped: med((x) => x.b.cpuUs) },
        wakeUpsPerCall: { proxyShaped: med((x) => x.a.wakeUps), cell0Shaped: med((x) => x.b.wakeUps) },
        cpuRatio: med((x) => x.b.cpuUs / x.a.cpuUs),
        callerUs: { proxyShaped: med((x) => x.a.clientUs), cell0: med((x) => x.b.clientUs) },
        callerRatio: med((x) => x.b.clientUs / x.a.clientUs),
      };
      summary.push(row);
      console.log(
        `  medians: simulator µs/call proxy-shaped ${f(row.simulatorCpuUs.proxyShaped)}, cell0-shaped ${f(row.simulatorCpuUs.cell0Shaped)};` +
          ` wake-ups/call ${f(row.wakeUpsPerCall.proxyShaped, 2)} / ${f(row.wakeUpsPerCall.cell0Shaped, 2)}; median pair ratio B/A ${f(row.cpuRatio, 2)};` +
          ` caller µs/call ${f(row.callerUs.proxyShaped)} / ${f(row.callerUs.cell0)} (ratio ${f(row.callerRatio, 2)})`,
      );
    }
    console.log(`\nload     ${loadText()} at the end`);
    if (opts.json) console.log(JSON.stringify({ date: new Date().toISOString(), summary }));
  } finally {
    await pool.close();
    await providers.close();
    await stopAll();
  }
}

runBench(main);
