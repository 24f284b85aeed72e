/*
 * bench:stream — token streaming as a client sees it: cell0's POST /v1/chat/completions with stream: true
 * (API → queue → worker → backend; tokens back through a Redis Stream per job → API → SSE) against the
 * same simulator called directly (POST /api/chat, Ollama NDJSON streaming).
 *
 * Starts a private redis-server, the simulator (dist CLI; TTFT and tokens/s below) and `cell0 start` (API
 * and worker in one process), all as separate processes. For each concurrency K in 1, 10, 100 it runs P
 * pairs; a pair is one run on each side (direct, cell0; the next pair cell0, direct), a run being K
 * concurrent streams, W times over, every prompt unique (nothing coalesces, no cache answers). Per stream:
 *   - TTFT: from sending the request to the first chunk that carries text;
 *   - tokens/s: the answer's tokens (the backend's eval_count / the usage chunk) over the time from the
 *     first to the last text chunk, after the first token.
 * Prints per K the p50/p99 TTFT of each side, cell0's added TTFT (median over pairs of the per-pair p50
 * and p99 differences) and tokens/s. Targets: added TTFT <= 20 ms at p50 and <= 50 ms at p99 at every K.
 *
 * Then 100 identical concurrent streams through cell0 (one prompt not sent before): the simulator's
 * generation calls must grow by exactly 1 and all 100 readers must receive the whole text: equal to cell0's
 * non-streamed answer of the same request afterwards (no new generation), with its token count in the usage
 * chunk. Also printed per run: CPU ms per stream of each process. Exit code 1 when a target or
 * a check fails.
 *
 *   npm run bench:stream -- [--pairs P] [--tokens N] [--ttft-ms T] [--tokens-per-sec R] [--levels 1,10,100]
 *                           [--cpu-prof DIR] [--stages R] [--api-processes N] [--json]
 * --levels runs only those concurrencies; --cpu-prof DIR writes a CPU profile of cell0 (node --cpu-prof).
 * --stages R: instead of the pairs, R traced runs of cell0 per concurrency and the time of each stage of the
 * first token (bench/stream-stages.ts); tracing costs time of its own, so these are shares, not figures.
 * --api-processes N: cell0 as one `cell0 worker` and N `cell0 api --reuse-port` processes instead of one
 * `cell0 start` (API and worker in one process).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { join } from 'node:path';
import { type Redis } from 'ioredis';
import { Pool } from 'undici';
import { finishResult, streamChat, type StreamResult } from './stream-read.js';
import { benchArgs } from './args.js';
import { stageRuns, startSpanReceiver } from './stream-stages.js';
import { median, percentile } from './e2e-common.js';
import {
  commandCalls,
  cpuMsOf,
  freePort,
  killChildrenOnInterrupt,
  startProcess,
  startRedisServer,
  stopAll,
} from './fleet.js';

const MODEL = 'qwen2.5:0.5b';
const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'dist', 'bin', 'cell0.js');
const KEY = 'bench-stream-key';
/** Concurrency → waves per run (enough streams per run for a p99 over the pairs). */
const LEVELS: readonly (readonly [number, number])[] = [
  [1, 20],
  [10, 4],
  [100, 1],
];

/** One streaming chat straight to the simulator: POST /api/chat, NDJSON lines. */
async function direct(pool: Pool, prompt: string, maxTokens: number): Promise<StreamResult> {
  const body = {
    model: MODEL,
    messages: [{ role: 'user', content: prompt }],
    stream: true,
    options: { num_predict: maxTokens },
  };
  const { result } = await streamChat(pool, '/api/chat', {}, body, (line) => {
    if (line.trim() === '') return undefined;
    const msg = JSON.parse(line) as { message?: { content?: string }; done?: boolean; eval_count?: number };
    return { text: msg.message?.content, ...(msg.done ? { tokens: msg.eval_count ?? 0 } : {}) };
  });
  return result;
}

/** One streaming chat through cell0: POST /v1/chat/completions, SSE in OpenAI's chunk format. */
async function viaCell0(
  pool: Pool,
  prompt: string,
  maxTokens: number,
  headers: Record<string, string> = {},
): Promise<StreamResult> {
  const body = {
    model: MODEL,
    messages: [{ role: 'user', content: prompt }],
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: maxTokens,
  };
  const auth = { ...headers, authorization: `Bearer ${KEY}` };
  const { result, ok, header } = await streamChat(pool, '/v1/chat/completions', auth, body, (line) => {
    if (!line.startsWith('data: ')) return undefined;
    const data = line.slice(6);
    if (data === '[DONE]') return { end: true };
    const msg = JSON.parse(data) as {
      choices?: { delta?: { content?: string } }[];
      usage?: { completion_tokens?: number } | null;
      error?: { message?: string };
    };
    return {
      text: msg.choices?.[0]?.delta?.content,
      ...(msg.error ? { error: msg.error.message ?? 'error event' } : {}),
      ...(msg.usage ? { tokens: msg.usage.completion_tokens ?? 0 } : {}),
    };
  });
  if (!ok) return result;
  return {
    ...result,
    ...(header('x-cell0-cache') ? { cache: header('x-cell0-cache') } : {}),
    ...(header('x-cell0-coalesced') ? { coalesced: header('x-cell0-coalesced') } : {}),
  };
}

type Side = 'direct' | 'cell0';

interface RunStats {
  n: number;
  ttftP50: number;
  ttftP99: number;
  tokensPerSecP50: number;
  errors: number;
  firstError?: string;
  /** Answers cell0 did not generate for this request (a cache hit or a joined generation): should be 0. */
  notOwn: number;
  /** CPU ms per stream of each process over the run. */
  cpuMs: Record<string, number>;
  /** cell0 runs: Redis commands per stream (INFO commandstats delta: all, xadd, xread). */
  commands?: { all: number; xadd: number; xread: number };
}

/** Redis commands per stream between two commandstats readings. */
function commandsPer(a: Map<string, number>, b: Map<string, number>, n: number) {
  const d = (c?: string) =>
    c === undefined
      ? [...b].reduce((s, [k, v]) => s + v - (a.get(k) ?? 0), 0)
      : (b.get(c) ?? 0) - (a.get(c) ?? 0);
  // The commandstats reading itself (INFO) is not cell0's.
  return { all: (d() - 1) / n, xadd: d('xadd') / n, xread: d('xread') / n };
}

/** K concurrent streams, `waves` times over, unique prompts. */
async function run(
  side: Side,
  pool: Pool,
  k: number,
  waves: number,
  tag: string,
  maxTokens: number,
  pids: Record<string, number | undefined>,
  redis?: Redis,
): Promise<RunStats> {
  const results: StreamResult[] = [];
  const calls0 = redis ? await commandCalls(redis) : undefined;
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMsOf(pid)]));
  for (let w = 0; w < waves; w++) {
    const wave = await Promise.all(
      Array.from({ length: k }, (_, i) => {
        const prompt = `Stream ${tag} wave ${w} reader ${i}: describe ${randomBytes(6).toString('hex')} in detail`;
        return (side === 'direct' ? direct : viaCell0)(pool, prompt, maxTokens).catch(
          (err: unknown): StreamResult => ({
            ...finishResult(0, undefined, 0, '', 0, 0),
            error: String(err),
          }),
        );
      }),
    );
    results.push(...wave);
  }
  const ok = results.filter((r) => r.error === undefined && Number.isFinite(r.ttftMs));
  const ttft = ok.map((r) => r.ttftMs).sort((a, b) => a - b);
  const tps = ok
    .map((r) => r.tokensPerSec)
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
  const failed = results.filter((r) => !ok.includes(r));
  const cpuMs: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) cpuMs[name] = (cpuMsOf(pid) - cpu0[name]!) / results.length;
  // The last stream's job may still be completing: its commands are counted once they are all in.
  const commands =
    redis && calls0 ? commandsPer(calls0, await commandCalls(redis), results.length) : undefined;
  return {
    ...(commands ? { commands } : {}),
    n: results.length,
    ttftP50: percentile(ttft, 50),
    ttftP99: percentile(ttft, 99),
    tokensPerSecP50: percentile(tps, 50),
    errors: failed.length,
    ...(failed[0] ? { firstError: failed[0].error ?? 'no text' } : {}),
    notOwn: results.filter((r) => r.cache === 'exact' || r.cache === 'semantic' || r.coalesced === 'joined')
      .length,
    cpuMs,
  };
}

async function simStats(pool: Pool): Promise<{ generations: number; tokens: number }> {
  const r = await pool.request({ path: '/_sim/stats', method: 'GET' });
  const s = (await r.body.json()) as {
    requests: { byEndpoint: Record<string, number> };
    tokensGenerated: number;
  };
  const by = s.requests.byEndpoint;
  return { generations: (by['/api/chat'] ?? 0) + (by['/api/generate'] ?? 0), tokens: s.tokensGenerated };
}

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');

async function main(): Promise<void> {
  const opts = benchArgs(
    process.argv.slice(2),
    { pairs: 5, tokens: 32, 'ttft-ms': 40, 'tokens-per-sec': 200, stages: 0, 'api-processes': 0 },
    'npm run bench:stream -- [--pairs P] [--tokens N] [--ttft-ms T] [--tokens-per-sec R] [--levels 1,10,100] [--cpu-prof DIR] [--stages R] [--api-processes N] [--json]',
    ['levels', 'cpu-prof'],
  );
  const profDir = opts.text['cpu-prof'];
  const wanted = (opts.text.levels ?? '1,10,100').split(',').map(Number);
  const levels = LEVELS.filter(([k]) => wanted.includes(k));
  const maxTokens = opts.tokens;
  const { url: redisUrl, redis, version: redisVersion, child: redisServer } = await startRedisServer();
  const simPort = await freePort();
  const sim = await startProcess(
    process.execPath,
    [CLI, 'simulator', '--port', String(simPort)],
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
    // The machine's load is not cell0's: a worker must not stop taking jobs because others use the CPU.
    CELL0_MAX_CPU_PERCENT: '0',
    CELL0_LOG_LEVEL: 'warn',
    ...(spans ? { OTEL_EXPORTER_OTLP_ENDPOINT: spans.url, OTEL_SERVICE_NAME: 'cell0-bench' } : {}),
  };
  const prof = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
  // cell0's processes by name: `cell0 start` (API and worker in one), or a worker and N API processes
  // sharing the port (--api-processes N).
  const cell0Pids: Record<string, number | undefined> = {};
  if (opts['api-processes'] === 0) {
    const c = await startProcess(
      process.execPath,
      [...prof, CLI, 'start', '--port', String(apiPort)],
      env,
      /cell0 start .* ready/,
      'cell0',
    );
    cell0Pids.cell0 = c.pid;
  } else {
    const w = await startProcess(
      process.execPath,
      [...prof, CLI, 'worker'],
      env,
      /cell0 worker .* ready/,
      'worker',
    );
    cell0Pids.worker = w.pid;
    for (let i = 1; i <= opts['api-processes']; i++) {
      const a = await startProcess(
        process.execPath,
        [...prof, CLI, 'api', '--port', String(apiPort), '--reuse-port'],
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
      `${opts.pairs} pairs per concurrency; unique prompts; cell0 as ${
        opts['api-processes'] === 0
          ? 'one `cell0 start` process'
          : `one worker and ${opts['api-processes']} API process(es) on one port`
      }`,
  );
  const tag = randomBytes(3).toString('hex');
  let pass = true;
  const summary: Record<string, unknown>[] = [];
  try {
    // Warm-up: the model loaded, connections and code paths warm on both sides.
    for (const side of ['direct', 'cell0'] as const)
      await run(side, pools[side], 10, 2, `${tag}w`, maxTokens, {});
    if (spans) {
      await stageRuns(spans.traces, {
        levels,
        runs: opts.stages,
        tag,
        json: opts.json,
        cell0: (prompt, headers) => viaCell0(cell0Pool, prompt, maxTokens, headers),
        direct: (prompt) => direct(simPool, prompt, maxTokens),
      });
      await spans.close();
      return;
    }

    for (const [k, waves] of levels) {
      console.log(`\n${k} concurrent stream${k === 1 ? '' : 's'} (${k * waves} per run)`);
      const pairs: Record<Side, RunStats>[] = [];
      for (let p = 0; p < opts.pairs; p++) {
        const order: Side[] = p % 2 === 0 ? ['direct', 'cell0'] : ['cell0', 'direct'];
        const got = {} as Record<Side, RunStats>;
        for (const side of order)
          got[side] = await run(
            side,
            pools[side],
            k,
            waves,
            `${tag}k${k}p${p}${side[0]}`,
            maxTokens,
            pids[side],
            side === 'cell0' ? redis : undefined,
          );
        pairs.push(got);
        const d = got.direct;
        const c = got.cell0;
        console.log(
          `  pair ${p + 1} (${order.join(', ')}): TTFT p50/p99 direct ${f(d.ttftP50)}/${f(d.ttftP99)} ms, ` +
            `cell0 ${f(c.ttftP50)}/${f(c.ttftP99)} ms; tokens/s direct ${f(d.tokensPerSecP50, 0)} cell0 ${f(c.tokensPerSecP50, 0)}` +
            (d.errors + c.errors > 0
              ? ` | errors direct ${d.errors} cell0 ${c.errors} (${c.firstError ?? d.firstError})`
              : '') +
            (c.notOwn > 0 ? ` | cached or joined ${c.notOwn}` : ''),
        );
      }
      const med = (g: (x: Record<Side, RunStats>) => number) => median(pairs.map(g));
      const row = {
        concurrency: k,
        streamsPerRun: k * waves,
        direct: { ttftP50: med((x) => x.direct.ttftP50), ttftP99: med((x) => x.direct.ttftP99) },
        cell0: { ttftP50: med((x) => x.cell0.ttftP50), ttftP99: med((x) => x.cell0.ttftP99) },
        addedTtftP50: med((x) => x.cell0.ttftP50 - x.direct.ttftP50),
        addedTtftP99: med((x) => x.cell0.ttftP99 - x.direct.ttftP99),
        tokensPerSec: {
          direct: med((x) => x.direct.tokensPerSecP50),
          cell0: med((x) => x.cell0.tokensPerSecP50),
        },
        cpuMsPerStream: {
          direct: Object.fromEntries(
            Object.keys(pids.direct).map((n) => [n, med((x) => x.direct.cpuMs[n]!)]),
          ),
          cell0: Object.fromEntries(Object.keys(pids.cell0).map((n) => [n, med((x) => x.cell0.cpuMs[n]!)])),
        },
        redisCommandsPerStream: {
          all: med((x) => x.cell0.commands?.all ?? NaN),
          xadd: med((x) => x.cell0.commands?.xadd ?? NaN),
          xread: med((x) => x.cell0.commands?.xread ?? NaN),
        },
        errors: pairs.reduce((s, x) => s + x.direct.errors + x.cell0.errors, 0),
        cachedOrJoined: pairs.reduce((s, x) => s + x.cell0.notOwn, 0),
      };
      const ok =
        row.addedTtftP50 <= 20 && row.addedTtftP99 <= 50 && row.errors === 0 && row.cachedOrJoined === 0;
      if (!ok) pass = false;
      summary.push(row);
      console.log(
        `  median over pairs: TTFT p50 direct ${f(row.direct.ttftP50)} cell0 ${f(row.cell0.ttftP50)} ms, ` +
          `p99 direct ${f(row.direct.ttftP99)} cell0 ${f(row.cell0.ttftP99)} ms`,
      );
      console.log(
        `  cell0 added TTFT: p50 ${f(row.addedTtftP50)} ms (target <= 20), p99 ${f(row.addedTtftP99)} ms (target <= 50)` +
          ` — ${ok ? 'met' : 'MISSED'}; tokens/s direct ${f(row.tokensPerSec.direct, 0)} cell0 ${f(row.tokensPerSec.cell0, 0)}`,
      );
      console.log(
        `  CPU ms/stream: direct ${JSON.stringify(row.cpuMsPerStream.direct, (_k, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(2)) : v))}; ` +
          `cell0 ${JSON.stringify(row.cpuMsPerStream.cell0, (_k, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(2)) : v))}`,
      );
      const rc = row.redisCommandsPerStream;
      console.log(`  Redis commands/stream (cell0): ${f(rc.all)} (xadd ${f(rc.xadd)}, xread ${f(rc.xread)})`);
    }

    // 100 identical streams: one backend generation, every reader gets the whole text.
    const prompt = `Stream ${tag} shared: describe ${randomBytes(6).toString('hex')} in detail`;
    const before = await simStats(simPool);
    const sharedCalls0 = await commandCalls(redis);
    const shared = await Promise.all(
      Array.from({ length: 100 }, () => viaCell0(cell0Pool, prompt, maxTokens)),
    );
    const sharedCommands = commandsPer(sharedCalls0, await commandCalls(redis), 100);
    const after = await simStats(simPool);
    const generations = after.generations - before.generations;
    // The whole answer of that one generation: the same request without streaming (cell0 answers it from
    // the job's result or its cache, with no new generation).
    const ref = await cell0Pool.request({
      path: '/v1/chat/completions',
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: prompt }],
        max_tokens: maxTokens,
      }),
    });
    const refBody = (await ref.body.json()) as {
      choices?: { message?: { content?: string } }[];
      usage?: { completion_tokens?: number };
    };
    const reference = {
      text: refBody.choices?.[0]?.message?.content ?? '',
      tokens: refBody.usage?.completion_tokens ?? -1,
    };
    const generationsAfterRef = (await simStats(simPool)).generations - before.generations;
    const texts = new Set(shared.map((s) => s.text));
    const usageTokens = [...new Set(shared.map((s) => s.tokens))].sort((a, b) => a - b);
    const whole = shared.filter(
      (s) =>
        s.error === undefined &&
        s.text.length > 0 &&
        s.text === reference.text &&
        s.tokens === reference.tokens,
    ).length;
    const sharedTtft = shared
      .map((s) => s.ttftMs)
      .filter(Number.isFinite)
      .sort((a, b) => a - b);
    const sharedOk = generations === 1 && generationsAfterRef === 1 && whole === 100;
    if (!sharedOk) pass = false;
    console.log('\n100 identical concurrent streams through cell0');
    console.log(
      `  simulator generations: ${generations} (must be 1); readers with the whole text: ${whole}/100 ` +
        `(${texts.size} distinct text${texts.size === 1 ? '' : 's'}; equal to cell0's non-streamed answer of the ` +
        `same request, ${reference.tokens} tokens; usage tokens seen ${usageTokens.join('/')}) — ${sharedOk ? 'met' : 'FAILED'}`,
    );
    console.log(
      `  TTFT p50 ${f(percentile(sharedTtft, 50))} ms, p99 ${f(percentile(sharedTtft, 99))} ms; ` +
        `text chunks per reader p50 ${percentile(
          shared.map((s) => s.chunks).sort((a, b) => a - b),
          50,
        )}; Redis commands/stream ${f(sharedCommands.all)} (xadd for the one generation ${f(sharedCommands.xadd * 100, 0)})`,
    );
    summary.push({
      identical: 100,
      generations,
      wholeText: whole,
      distinctTexts: texts.size,
      tokens: reference.tokens,
      ttftP50: percentile(sharedTtft, 50),
      ttftP99: percentile(sharedTtft, 99),
    });
    console.log(
      `\nload     ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} at the end`,
    );
    console.log(`targets  ${pass ? 'PASS' : 'FAIL'}`);
    if (opts.json)
      console.log(JSON.stringify({ date: new Date().toISOString(), load: load0, summary, pass }));
  } finally {
    await simPool.close();
    await cell0Pool.close();
    redis.disconnect();
    await stopAll();
  }
  process.exitCode = pass ? 0 : 1;
}

killChildrenOnInterrupt();
main().catch(async (err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  await stopAll();
  process.exit(1);
});
