/*
 * bench:stream — token streaming as a client sees it: cell0's POST /v1/chat/completions with stream: true
 * (API → queue → worker → backend; tokens back through a Redis Stream per job → API → SSE) against the
 * same simulator called directly (POST /api/chat, Ollama NDJSON streaming).
 *
 * Starts a private redis-server, the simulator (dist CLI; TTFT and tokens/s below) and `cell0 start` (API
 * and worker in one process), all as separate processes. For each concurrency K in 1, 10, 100 it runs P
 * pairs; a pair is one run on each side (direct, cell0; the next pair cell0, direct), every prompt unique
 * (nothing coalesces, no cache answers). What "K concurrent streams" means is the mode (bench/stream-run.ts):
 *   --mode burst (the default): K streams started at once, W waves (20, 4, 1 at K = 1, 10, 100): a cold
 *     burst, where the K-th request waits for the other K-1 requests' setup CPU;
 *   --mode closed: K clients, each starting its next stream as soon as its previous one ended (K in
 *     flight, like wrk / autocannon -c / artillery), --warmup S seconds not timed, then --duration S seconds
 *     whose streams are timed;
 *   --mode both: the burst runs, then the closed-loop runs.
 * Per stream:
 *   - TTFT: from sending the request to the first chunk that carries text;
 *   - tokens/s: the answer's tokens (the backend's eval_count / the usage chunk) over the time from the
 *     first to the last text chunk, after the first token.
 * Prints per K the p50/p99 TTFT of each side, cell0's added TTFT (median over pairs of the per-pair p50
 * and p99 differences) and tokens/s. Targets: added TTFT <= 20 ms at p50 and <= 50 ms at p99 at every K.
 *
 * Then P pairs of 100 identical concurrent streams through cell0 (bench/stream-identical.ts): one backend
 * generation each, every reader with the whole text, and the added TTFT against single direct streams. Also
 * printed per run: CPU ms per stream of each process. Exit code 1 when a target or a check fails.
 *
 *   npm run bench:stream -- [--mode burst|closed|both] [--duration S] [--warmup S] [--pairs P] [--tokens N]
 *                           [--ttft-ms T] [--tokens-per-sec R] [--levels 1,10,100] [--cpu-prof DIR]
 *                           [--stages R] [--api-processes N] [--backend-limit adaptive|N]
 *                           [--backend-limit-max N] [--cell0-warmup on|off] [--warmup-bursts N] [--dist DIR]
 *                           [--cpu-prof-timed DIR] [--cpu-prof-interval US] [--backend-probe on|off] [--json]
 * --levels runs only those concurrencies (--levels none: only the identical streams); --cpu-prof DIR writes
 * a CPU profile of cell0 (node --cpu-prof); --cpu-prof-timed DIR writes a profile of each cell0 process
 * over the pairs of the --levels runs only (after the warm-up, before the identical streams; through the
 * inspector, bench/timed-profile.ts), named stream-<process>.cpuprofile (bench/profile-summary.ts reads it),
 * sampled every --cpu-prof-interval US µs (default 1000, --cpu-prof's; 100 resolves a burst's first 50 ms).
 * --backend-probe on: each cell0 process loads bench/backend-call-probe.mjs, and each burst level prints the
 * process's event-loop CPU from a burst's first request to its backend calls 1, K/4, K/2, 3K/4 and K: the
 * work each call waited behind (off by default: it reads the thread's CPU time a few times per request).
 * --stages R: instead of the pairs, R traced burst runs of cell0 per concurrency and the time of each stage
 * of the first token (bench/stream-stages.ts); tracing costs time of its own, so these are shares.
 * --api-processes N: cell0 as one `cell0 worker` and N `cell0 api --reuse-port` processes instead of one
 * `cell0 start` (API and worker in one process).
 * --backend-limit adaptive|N: cell0's calls in flight to the simulator (CELL0_BACKEND_LIMIT; default
 * adaptive, cell0's own default); --backend-limit-max N: the adaptive limit's cap (CELL0_BACKEND_LIMIT_MAX,
 * default 128 here, so that 100 streams can all reach the backend). Each level prints the most calls the
 * simulator served at once on each side.
 * Warm-up (not timed): 2 waves of 10 streams on each side, then --warmup-bursts N (default 6) bursts of the
 * largest level (at least 100 streams) on each side, so that the timed pairs measure a warm service. With the
 * 20 streams alone the first timed burst of 100 met code V8 had not optimised yet: cell0's event-loop CPU per
 * stream in pair 1 was 1.70-2.31 ms against ~1.0-1.2 ms in pairs 3-4, and pair 1's TTFT p50 2-3x theirs; after
 * 3 bursts pair 1 was at 1.10-1.23 ms but pairs 1-2 still ~0.2 ms above pairs 3-4; after 6 or 10 they were
 * level (docs/benchmarks.md, bench:stream, 2026-12-05 11:33-11:41Z). --warmup-bursts 0: the 20 streams only
 * (the warm-up before 2026-12-05 11:45Z).
 * --cell0-warmup off: no warm-up streams through cell0 (the simulator's side is still warmed), so the first
 * cell0 run meets a cold worker: its adaptive backend limit at its start (4) and no connection open to the
 * simulator — the cold burst of a worker that has just started. --dist DIR: the cell0 build to run (default
 * this checkout's dist), e.g. an older build's, to compare builds with the same bench code.
 * --cell0-node-flags: the node flags of cell0's processes (default `--max-semi-space-size=16
 * --min-semi-space-size=16`, what `npm start` and the Dockerfile run cell0 with; `none`: Node's defaults, whose
 * young generation grows to 128 MB here).
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { Pool } from 'undici';
import { benchArgs } from './args.js';
import { stageRuns, startSpanReceiver } from './stream-stages.js';
import { median } from './e2e-common.js';
import {
  cell0NodeFlags,
  freePort,
  killChildrenOnInterrupt,
  startProcess,
  startRedisServer,
  stopAll,
} from './fleet.js';
import { KEY, direct, simMaxInFlight, simReset, viaCell0, type Side } from './stream-clients.js';
import { identicalPairs } from './stream-identical.js';
import { inspectArgs, TimedProfile } from './timed-profile.js';
import { run, type RunPlan, type RunStats } from './stream-run.js';

const ROOT = join(__dirname, '..');
const DIST = join(ROOT, 'dist');
/** Burst mode: concurrency → waves per run (enough streams per run for a p99 over the pairs). */
const WAVES: Record<number, number> = { 1: 20, 10: 4, 100: 1 };

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const round2 = (_k: string, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(2)) : v);

/** Both sides' runs of a pair, each with the most backend calls it had in flight at once. */
type Pair = Record<Side, RunStats & { backendMax: number }>;

/** The summary of one concurrency's pairs. */
function summarise(k: number, plan: RunPlan, pairs: Pair[], sides: Record<Side, string[]>) {
  const med = (g: (x: Pair) => number) => median(pairs.map(g));
  const cpu = (side: Side) => Object.fromEntries(sides[side].map((n) => [n, med((x) => x[side].cpuMs[n]!)]));
  const row = {
    mode: plan.mode,
    concurrency: k,
    streamsPerRun: med((x) => x.cell0.n),
    direct: { ttftP50: med((x) => x.direct.ttftP50), ttftP99: med((x) => x.direct.ttftP99) },
    cell0: { ttftP50: med((x) => x.cell0.ttftP50), ttftP99: med((x) => x.cell0.ttftP99) },
    addedTtftP50: med((x) => x.cell0.ttftP50 - x.direct.ttftP50),
    addedTtftP99: med((x) => x.cell0.ttftP99 - x.direct.ttftP99),
    tokensPerSec: {
      direct: med((x) => x.direct.tokensPerSecP50),
      cell0: med((x) => x.cell0.tokensPerSecP50),
    },
    /** The most calls the simulator served at once in a run (median over pairs). */
    backendMax: { direct: med((x) => x.direct.backendMax), cell0: med((x) => x.cell0.backendMax) },
    streamsPerSec: {
      direct: med((x) => x.direct.streamsPerSec ?? NaN),
      cell0: med((x) => x.cell0.streamsPerSec ?? NaN),
    },
    cpuMsPerStream: { direct: cpu('direct'), cell0: cpu('cell0') },
    /**
     * Burst: of each cell0 process, its event-loop CPU ms from a wave's start to the first text of its first
     * stream and of its median one (median over pairs).
     */
    cell0LoopToFirstText: Object.fromEntries(
      Object.keys(pairs[0]?.cell0.toFirstText ?? {}).map((n) => [
        n,
        {
          first: med((x) => x.cell0.toFirstText?.[n]?.first ?? NaN),
          median: med((x) => x.cell0.toFirstText?.[n]?.median ?? NaN),
        },
      ]),
    ),
    /**
     * --backend-probe on: cell0's event-loop CPU ms from a burst's first request to its backend calls number 1,
     * K/4, K/2, 3K/4 and K, and to its last request's arrival (median over pairs).
     */
    cell0BackendCalls: pairs[0]?.cell0.backendCalls
      ? {
          at: pairs[0].cell0.backendCalls.at.map((_, i) => med((x) => x.cell0.backendCalls?.at[i] ?? NaN)),
          arrived: med((x) => x.cell0.backendCalls?.arrived ?? NaN),
        }
      : undefined,
    /** Per stream, of each cell0 process: event-loop CPU ms, read and write system calls. */
    cell0Loop: Object.fromEntries(
      Object.keys(pairs[0]?.cell0.loop ?? {})
        .filter((n) => n !== 'simulator' && n !== 'redis')
        .map((n) => [
          n,
          {
            cpuMs: med((x) => x.cell0.loop[n]!.cpuMs),
            reads: med((x) => x.cell0.loop[n]!.reads),
            writes: med((x) => x.cell0.loop[n]!.writes),
          },
        ]),
    ),
    redisCommandsPerStream: {
      all: med((x) => x.cell0.commands?.all ?? NaN),
      xadd: med((x) => x.cell0.commands?.xadd ?? NaN),
      xread: med((x) => x.cell0.commands?.xread ?? NaN),
      top: pairs[pairs.length - 1]?.cell0.commands?.top ?? '',
    },
    errors: pairs.reduce((s, x) => s + x.direct.errors + x.cell0.errors, 0),
    cachedOrJoined: pairs.reduce((s, x) => s + x.cell0.notOwn, 0),
  };
  const ok = row.addedTtftP50 <= 20 && row.addedTtftP99 <= 50 && row.errors === 0 && row.cachedOrJoined === 0;
  return { row, ok };
}

async function main(): Promise<void> {
  const usage =
    'npm run bench:stream -- [--mode burst|closed|both] [--duration S] [--warmup S] [--pairs P] [--tokens N] [--ttft-ms T] [--tokens-per-sec R] [--levels 1,10,100] [--cpu-prof DIR] [--stages R] [--api-processes N] [--backend-limit adaptive|N] [--backend-limit-max N] [--cell0-warmup on|off] [--warmup-bursts N] [--dist DIR] [--cpu-prof-timed DIR] [--cpu-prof-interval US] [--backend-probe on|off] [--cell0-node-flags "FLAGS"|none] [--json]';
  const opts = benchArgs(
    process.argv.slice(2),
    {
      pairs: 5,
      tokens: 32,
      'ttft-ms': 40,
      'tokens-per-sec': 200,
      stages: 0,
      'api-processes': 0,
      duration: 5,
      warmup: 2,
      'backend-limit-max': 128,
      'cpu-prof-interval': 1000,
    },
    usage,
    [
      'levels',
      'cpu-prof',
      'cpu-prof-timed',
      'mode',
      'backend-limit',
      'cell0-warmup',
      'warmup-bursts',
      'dist',
      'cell0-node-flags',
      'backend-probe',
    ],
  );
  // cell0's processes run with the node flags `npm start` gives it (package.json, Dockerfile): the young
  // generation's cap among them decides how often and how long its scavenges pause the event loop.
  const cell0Flags = cell0NodeFlags(opts.text['cell0-node-flags']);
  const backendProbe = opts.text['backend-probe'] ?? 'off';
  if (backendProbe !== 'on' && backendProbe !== 'off') {
    console.error(`bad argument --backend-probe ${backendProbe}\nusage: ${usage}`);
    process.exit(2);
  }
  /** --backend-probe on: where cell0's processes append a line per burst (bench/backend-call-probe.mjs). */
  const probeFile =
    backendProbe === 'on'
      ? join(os.tmpdir(), `cell0-stream-probe-${process.pid}-${randomBytes(4).toString('hex')}.jsonl`)
      : undefined;
  const cell0Warmup = opts.text['cell0-warmup'] ?? 'on';
  if (cell0Warmup !== 'on' && cell0Warmup !== 'off') {
    console.error(`bad argument --cell0-warmup ${cell0Warmup}\nusage: ${usage}`);
    process.exit(2);
  }
  const warmupBurstsText = opts.text['warmup-bursts'] ?? '6';
  if (!/^[0-9]+$/.test(warmupBurstsText)) {
    console.error(`bad argument --warmup-bursts ${warmupBurstsText}\nusage: ${usage}`);
    process.exit(2);
  }
  const warmupBursts = Number(warmupBurstsText);
  const CLI = join(opts.text.dist ?? DIST, 'bin', 'cell0.js');
  const backendLimit = opts.text['backend-limit'] ?? 'adaptive';
  if (backendLimit !== 'adaptive' && !/^[1-9][0-9]*$/.test(backendLimit)) {
    console.error(`bad argument --backend-limit ${backendLimit}\nusage: ${usage}`);
    process.exit(2);
  }
  const mode = opts.text.mode ?? 'burst';
  if (!['burst', 'closed', 'both'].includes(mode)) {
    console.error(`bad argument --mode ${mode}\nusage: ${usage}`);
    process.exit(2);
  }
  const profDir = opts.text['cpu-prof'];
  const levels = (opts.text.levels ?? '1,10,100')
    .split(',')
    .map(Number)
    .filter((k) => Number.isInteger(k) && k > 0);
  const plans: RunPlan[] = [];
  if (mode !== 'closed') plans.push({ mode: 'burst', waves: 0 });
  if (mode !== 'burst')
    plans.push({ mode: 'closed', warmupMs: opts.warmup * 1000, durationMs: opts.duration * 1000 });
  const planFor = (plan: RunPlan, k: number): RunPlan =>
    plan.mode === 'burst' ? { mode: 'burst', waves: WAVES[k] ?? Math.max(1, Math.ceil(20 / k)) } : plan;
  const maxTokens = opts.tokens;
  const { url: redisUrl, redis, version: redisVersion, child: redisServer } = await startRedisServer();
  const simPort = await freePort();
  const sim = await startProcess(
    process.execPath,
    [join(DIST, 'bin', 'cell0.js'), 'simulator', '--port', String(simPort)],
    {
      CELL0_SIM_TTFT_MS: String(opts['ttft-ms']),
      CELL0_SIM_TOKENS_PER_SEC: String(opts['tokens-per-sec']),
      CELL0_SIM_LOAD_MS_PER_GB: '1',
      CELL0_LOG_LEVEL: 'warn',
    },
    /ready/,
    'simulator',
  );
  const simUrl = `http://127.0.0.1:${simPort}`;
  const spans = opts.stages > 0 ? await startSpanReceiver() : undefined;
  const apiPort = await freePort();
  const env = {
    REDIS_URL: redisUrl,
    CELL0_OLLAMA_URL: simUrl,
    CELL0_API_KEYS: KEY,
    CELL0_DASHBOARD_PORT: String(await freePort()),
    CELL0_INFERENCE_CONCURRENCY: '128',
    CELL0_HTTP_CONNECTIONS_PER_HOST: '128',
    // Calls in flight to the simulator: adaptive (cell0's default) or pinned (--backend-limit N), and the
    // adaptive limit's cap lifted above 100 like the two settings above (cell0's default cap, 64, would hold
    // a third of 100 streams back in the queue while the direct side runs all 100 at once).
    CELL0_BACKEND_LIMIT: backendLimit,
    CELL0_BACKEND_LIMIT_MAX: String(opts['backend-limit-max']),
    // The machine's load is not cell0's: a worker must not stop taking jobs because others use the CPU.
    CELL0_MAX_CPU_PERCENT: '0',
    CELL0_LOG_LEVEL: 'warn',
    ...(spans ? { OTEL_EXPORTER_OTLP_ENDPOINT: spans.url, OTEL_SERVICE_NAME: 'cell0-bench' } : {}),
    ...(probeFile ? { CELL0_BENCH_PROBE_OUT: probeFile } : {}),
  };
  const timedDir = opts.text['cpu-prof-timed'];
  /** The timed profiles of cell0's processes (--cpu-prof-timed), by process name. */
  const timedProfiles: Record<string, TimedProfile> = {};
  /** The node arguments of cell0 process `name`: whole-life or timed profiling. */
  const profArgs = async (name: string): Promise<string[]> => {
    const args = [
      ...cell0Flags,
      ...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []),
      ...(probeFile ? ['--import', pathToFileURL(join(__dirname, 'backend-call-probe.mjs')).href] : []),
    ];
    if (!timedDir) return args;
    const port = await freePort();
    timedProfiles[name] = new TimedProfile(port);
    return [...args, ...inspectArgs(port)];
  };
  // cell0's processes by name: `cell0 start` (API and worker in one), or a worker and N API processes
  // sharing the port (--api-processes N).
  const cell0Pids: Record<string, number | undefined> = {};
  if (opts['api-processes'] === 0) {
    const c = await startProcess(
      process.execPath,
      [...(await profArgs('cell0')), CLI, 'start', '--port', String(apiPort)],
      env,
      /cell0 start .* ready/,
      'cell0',
    );
    cell0Pids.cell0 = c.pid;
  } else {
    const w = await startProcess(
      process.execPath,
      [...(await profArgs('worker')), CLI, 'worker'],
      env,
      /cell0 worker .* ready/,
      'worker',
    );
    cell0Pids.worker = w.pid;
    for (let i = 1; i <= opts['api-processes']; i++) {
      const a = await startProcess(
        process.execPath,
        [...(await profArgs(`api${i}`)), CLI, 'api', '--port', String(apiPort), '--reuse-port'],
        env,
        /cell0 api .* ready/,
        `api ${i}`,
      );
      cell0Pids[`api${i}`] = a.pid;
    }
  }
  const simPool = new Pool(simUrl, { connections: 128 });
  const cell0Pool = new Pool(`http://127.0.0.1:${apiPort}`, { connections: 128 });
  const pools: Record<Side, Pool> = { direct: simPool, cell0: cell0Pool };
  const pids: Record<Side, Record<string, number | undefined>> = {
    direct: { simulator: sim.pid },
    cell0: { ...cell0Pids, simulator: sim.pid, redis: redisServer.pid },
  };
  const load0 = os.loadavg();
  console.log(
    'bench:stream — streaming chat: cell0 POST /v1/chat/completions vs the simulator POST /api/chat',
  );
  console.log(`date     ${new Date().toISOString()}`);
  console.log(
    `machine  ${os.cpus()[0]?.model.trim()}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, redis ${redisVersion}`,
  );
  console.log(`load     ${load0.map((l) => l.toFixed(2)).join(' ')} (1/5/15-minute load average at start)`);
  console.log(
    `setup    simulator TTFT ${opts['ttft-ms']} ms, ${opts['tokens-per-sec']} tokens/s, max_tokens ${maxTokens}; ` +
      `${opts.pairs} pairs per concurrency; unique prompts; mode ${mode}${
        mode === 'burst' ? '' : ` (closed loop: ${opts.warmup} s warm-up, ${opts.duration} s timed per run)`
      }; cell0 as ${
        opts['api-processes'] === 0
          ? 'one `cell0 start` process'
          : `one worker and ${opts['api-processes']} API process(es) on one port`
      }; backend limit ${backendLimit === 'adaptive' ? `adaptive, at most ${opts['backend-limit-max']}` : backendLimit}` +
      `${cell0Warmup === 'off' ? '; cell0 not warmed up' : `; cell0 warmed up (20 streams, ${warmupBursts} burst${warmupBursts === 1 ? '' : 's'} of ${Math.max(100, ...levels)})`}; cell0 build ${CLI}` +
      `; cell0 node flags ${cell0Flags.length > 0 ? cell0Flags.join(' ') : 'none'}`,
  );
  const tag = randomBytes(3).toString('hex');
  let pass = true;
  const summary: Record<string, unknown>[] = [];
  try {
    // Warm-up: the model loaded, connections and code paths warm on both sides. Then bursts of the
    // largest level, so that the timed pairs meet code V8 has optimised (see the header: --warmup-bursts).
    const warmSides = cell0Warmup === 'on' ? (['direct', 'cell0'] as const) : (['direct'] as const);
    for (const side of warmSides)
      await run(side, pools[side], 10, { mode: 'burst', waves: 2 }, `${tag}w`, maxTokens, {});
    const warmK = Math.max(100, ...levels);
    for (let i = 0; i < warmupBursts; i++)
      for (const side of warmSides)
        await run(side, pools[side], warmK, { mode: 'burst', waves: 1 }, `${tag}wb${i}`, maxTokens, {});
    if (spans) {
      await stageRuns(spans.traces, {
        levels: levels.map((k) => [k, WAVES[k] ?? 1] as const),
        runs: opts.stages,
        tag,
        json: opts.json,
        cell0: (prompt, headers) => viaCell0(cell0Pool, prompt, maxTokens, headers),
        direct: (prompt) => direct(simPool, prompt, maxTokens),
      });
      await spans.close();
      return;
    }

    for (const p of Object.values(timedProfiles)) await p.start(opts['cpu-prof-interval']);
    for (const base of plans)
      for (const k of levels) {
        const plan = planFor(base, k);
        console.log(
          plan.mode === 'burst'
            ? `\nburst: ${k} stream${k === 1 ? '' : 's'} started at once, ${plan.waves} wave${plan.waves === 1 ? '' : 's'} per run`
            : `\nclosed loop: ${k} client${k === 1 ? '' : 's'}, each stream started when the client's previous one ended; ${opts.warmup} s warm-up, ${opts.duration} s timed`,
        );
        const pairs: Pair[] = [];
        for (let p = 0; p < opts.pairs; p++) {
          const order: Side[] = p % 2 === 0 ? ['direct', 'cell0'] : ['cell0', 'direct'];
          const got = {} as Pair;
          for (const side of order) {
            await simReset(simPool);
            const stats = await run(
              side,
              pools[side],
              k,
              plan,
              `${tag}${plan.mode[0]}k${k}p${p}${side[0]}`,
              maxTokens,
              pids[side],
              side === 'cell0' ? redis : undefined,
              side === 'cell0' ? probeFile : undefined,
            );
            got[side] = { ...stats, backendMax: await simMaxInFlight(simPool) };
          }
          pairs.push(got);
          const d = got.direct;
          const c = got.cell0;
          console.log(
            `  pair ${p + 1} (${order.join(', ')}): TTFT p50/p99 direct ${f(d.ttftP50)}/${f(d.ttftP99)} ms, ` +
              `cell0 ${f(c.ttftP50)}/${f(c.ttftP99)} ms; tokens/s direct ${f(d.tokensPerSecP50, 0)} cell0 ${f(c.tokensPerSecP50, 0)}` +
              `; cell0 event loop ${Object.entries(c.loop)
                .filter(([n]) => n !== 'simulator' && n !== 'redis')
                .map(([, l]) => f(l.cpuMs, 2))
                .join('/')} ms/stream` +
              (c.backendCalls
                ? `, at its backend calls ${c.backendCalls.at.map((x) => f(x, 1)).join('/')} ms (arrivals ${f(c.backendCalls.arrived, 1)})` +
                  (c.backendCalls.scavenges
                    ? `, bursts with a scavenge before the K/2-th call / first text ${c.backendCalls.scavenges.toHalfCall}/${c.backendCalls.scavenges.toHalfText} of ${c.backendCalls.scavenges.bursts} (${f(c.backendCalls.scavenges.msToHalfText, 1)} ms of pauses)`
                    : '')
                : '') +
              (c.toFirstText
                ? `, to the first/median first text ${Object.values(c.toFirstText)
                    .map((t) => `${f(t.first, 1)}/${f(t.median, 1)}`)
                    .join(', ')} ms`
                : '') +
              (plan.mode === 'closed'
                ? `; streams/s direct ${f(d.streamsPerSec ?? NaN)} cell0 ${f(c.streamsPerSec ?? NaN)} (timed ${d.n}/${c.n})`
                : '') +
              (d.errors + c.errors > 0
                ? ` | errors direct ${d.errors} cell0 ${c.errors} (${c.firstError ?? d.firstError})`
                : '') +
              (c.notOwn > 0 ? ` | cached or joined ${c.notOwn}` : ''),
          );
        }
        const sides = { direct: Object.keys(pids.direct), cell0: Object.keys(pids.cell0) };
        const { row, ok } = summarise(k, plan, pairs, sides);
        if (!ok) pass = false;
        summary.push(row);
        console.log(
          `  median over pairs: TTFT p50 direct ${f(row.direct.ttftP50)} cell0 ${f(row.cell0.ttftP50)} ms, ` +
            `p99 direct ${f(row.direct.ttftP99)} cell0 ${f(row.cell0.ttftP99)} ms` +
            (plan.mode === 'closed'
              ? `; streams/s direct ${f(row.streamsPerSec.direct)} cell0 ${f(row.streamsPerSec.cell0)}`
              : ''),
        );
        console.log(
          `  cell0 added TTFT (${plan.mode}, ${k}): p50 ${f(row.addedTtftP50)} ms (target <= 20), p99 ${f(row.addedTtftP99)} ms (target <= 50)` +
            ` — ${ok ? 'met' : 'MISSED'}; tokens/s direct ${f(row.tokensPerSec.direct, 0)} cell0 ${f(row.tokensPerSec.cell0, 0)}` +
            `; backend calls at once at most: direct ${row.backendMax.direct} cell0 ${row.backendMax.cell0}`,
        );
        console.log(
          `  CPU ms/stream: direct ${JSON.stringify(row.cpuMsPerStream.direct, round2)}; ` +
            `cell0 ${JSON.stringify(row.cpuMsPerStream.cell0, round2)}`,
        );
        console.log(
          `  cell0 per stream: ${Object.entries(row.cell0Loop)
            .map(
              ([n, l]) =>
                `${n} event loop ${f(l.cpuMs, 2)} ms CPU, ${f(l.reads)} reads, ${f(l.writes)} writes (system calls)`,
            )
            .join('; ')}` +
            (Object.keys(row.cell0LoopToFirstText).length > 0
              ? `; event-loop CPU from the burst's start to its first / median stream's first text: ${Object.entries(
                  row.cell0LoopToFirstText,
                )
                  .map(([n, t]) => `${n} ${f(t.first, 1)} / ${f(t.median, 1)} ms`)
                  .join(', ')}`
              : ''),
        );
        if (row.cell0BackendCalls)
          console.log(
            `  cell0 event-loop CPU from a burst's first request to its backend calls 1, K/4, K/2, 3K/4, K: ${row.cell0BackendCalls.at
              .map((x) => f(x, 1))
              .join(' / ')} ms (to its last request's arrival ${f(row.cell0BackendCalls.arrived, 1)} ms)`,
          );
        const rc = row.redisCommandsPerStream;
        console.log(
          `  Redis commands/stream (cell0): ${f(rc.all)} (xadd ${f(rc.xadd)}, xread ${f(rc.xread)}); last pair's most frequent: ${rc.top}`,
        );
      }

    for (const [name, p] of Object.entries(timedProfiles))
      console.log(`  timed CPU profile: ${await p.stop(timedDir!, `stream-${name}`)}`);
    console.log(
      '\n100 identical concurrent streams through cell0 (a burst; against 5 single direct streams per pair)',
    );
    const same = await identicalPairs(
      cell0Pool,
      simPool,
      redis,
      { pairs: opts.pairs, tag, maxTokens, readers: 100 },
      (line) => console.log(line),
    );
    const sameOk = same.ok && same.addedP50 <= 20 && same.addedP99 <= 50;
    if (!sameOk) pass = false;
    console.log(
      `  checks (1 generation, 100/100 whole texts in every pair): ${same.ok ? 'met' : 'FAILED'}; ` +
        `cell0 added TTFT: p50 ${f(same.addedP50)} ms (target <= 20), p99 ${f(same.addedP99)} ms (target <= 50) — ${sameOk ? 'met' : 'MISSED'}`,
    );
    summary.push({
      identical: 100,
      addedTtftP50: same.addedP50,
      addedTtftP99: same.addedP99,
      pairs: same.pairs,
    });
    console.log(
      `\nload     ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} at the end`,
    );
    console.log(`targets  ${pass ? 'PASS' : 'FAIL'}`);
    if (opts.json)
      console.log(JSON.stringify({ date: new Date().toISOString(), load: load0, summary, pass }, round2));
  } finally {
    await simPool.close();
    await cell0Pool.close();
    redis.disconnect();
    await stopAll();
    if (probeFile) rmSync(probeFile, { force: true });
  }
  process.exitCode = pass ? 0 : 1;
}

killChildrenOnInterrupt();
main().catch(async (err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  await stopAll();
  process.exit(1);
});
