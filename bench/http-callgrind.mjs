/*
 * Instructions per request of `cell0 start` under callgrind, caches off: a private redis-server and simulator
 * (the settings of bench:http), `cell0 start` from DIST under
 * `valgrind --tool=callgrind --instr-atstart=no node --single-threaded`, M warm-up requests at concurrency 50
 * (not counted), then instrumentation on for N unique bench:http-shaped requests at concurrency K, off, and a
 * dump. Prints the instructions per counted request, in total and split into V8's garbage collector (its
 * scavenger, sweeper and marking functions, by name) and the rest. Slow (minutes): valgrind runs node ~20-50x
 * slower, so the timers' work weighs more than in bench:http; run the builds in turn and compare like with like.
 *
 *   node bench/http-callgrind.mjs DIST [--requests N] [--concurrency K] [--warmup M] [--log-level L] [--out FILE]
 */
import { spawn, execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const { fetch } = globalThis;
const argv = process.argv.slice(2);
const dist = path.resolve(argv[0] ?? '');
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
if (!argv[0] || !fs.existsSync(path.join(dist, 'bin', 'cell0.js'))) {
  console.error(
    'usage: node bench/http-callgrind.mjs DIST [--requests N] [--concurrency K] [--warmup M] [--log-level L] [--out FILE]',
  );
  process.exit(2);
}
const requests = Number(opt('requests', '1000'));
const concurrency = Number(opt('concurrency', '50'));
const warmup = Number(opt('warmup', '1000'));
const logLevel = opt('log-level', undefined);
const out = path.resolve(opt('out', path.join(os.tmpdir(), `cell0-callgrind-${process.pid}.out`)));

const free = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
const children = [];
const start = (cmd, args, env) => {
  const c = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(c);
  return c;
};
const ready = (child, re, what) =>
  new Promise((resolve, reject) => {
    let seen = '';
    const on = (chunk) => {
      if (seen.length < 50_000) seen += chunk;
      if (re.test(seen)) resolve();
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}): ${seen.slice(-2000)}`)));
  });

/** Instructions in a callgrind output: total, and those of V8's garbage collector (by function name). */
function instructions(file) {
  const text = execFileSync('callgrind_annotate', ['--threshold=100', file], {
    maxBuffer: 1 << 28,
  }).toString();
  let total = 0;
  let gc = 0;
  for (const line of text.split('\n')) {
    const m = line.match(/^\s*([\d,]+) \(/);
    if (!m) continue;
    const n = Number(m[1].replaceAll(',', ''));
    if (line.includes('PROGRAM TOTALS')) total = n;
    else if (
      /Scaveng|Sweep|MarkCompact|Marking|Evacuat|IteratePointers|SizeFromMap|MinorMS|Heap::|RememberedSet|SlotSet/.test(
        line,
      )
    )
      gc += n;
  }
  return { total, gc };
}

try {
  const redisPort = await free();
  const redis = start('redis-server', ['--port', String(redisPort), '--save', '', '--appendonly', 'no'], {});
  await ready(redis, /Ready to accept/, 'redis-server');
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const simPort = await free();
  const sim = start(
    process.execPath,
    [path.join(dist, 'bin', 'cell0.js'), 'simulator', '--port', String(simPort)],
    {
      CELL0_SIM_TTFT_MS: '1',
      CELL0_SIM_TOKENS_PER_SEC: '1000000',
      CELL0_SIM_LOAD_MS_PER_GB: '1',
      CELL0_LOG_LEVEL: 'warn',
      REDIS_URL: redisUrl,
    },
  );
  await ready(sim, /ready/, 'simulator');
  const apiPort = await free();
  const cell0 = start(
    'valgrind',
    [
      '--tool=callgrind',
      '--instr-atstart=no',
      `--callgrind-out-file=${out}`,
      process.execPath,
      '--single-threaded',
      path.join(dist, 'bin', 'cell0.js'),
      'start',
      '--port',
      String(apiPort),
    ],
    {
      REDIS_URL: redisUrl,
      CELL0_OLLAMA_URL: `http://127.0.0.1:${simPort}`,
      CELL0_DASHBOARD_PORT: String(await free()),
      CELL0_INFERENCE_CONCURRENCY: '64',
      CELL0_HTTP_CONNECTIONS_PER_HOST: '64',
      CELL0_MAX_CPU_PERCENT: '0',
      CELL0_CACHE_ENABLED: '0',
      ...(logLevel ? { CELL0_LOG_LEVEL: logLevel } : {}),
    },
  );
  await ready(cell0, /cell0 start .* ready/, 'cell0 start');
  let next = 0;
  const one = async () => {
    const i = next++;
    const r = await fetch(`http://127.0.0.1:${apiPort}/v1/inference`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'qwen2.5:0.5b',
        prompt: `Request cg-${i}: tell me about ${Math.random().toString(16).slice(2, 14)} and ${i * 7919}`,
        params: { max_tokens: 8 },
      }),
    });
    const text = await r.text();
    if (r.status !== 200) throw new Error(`${r.status} ${text.slice(0, 200)}`);
  };
  const run = async (count, k) => {
    let left = count;
    await Promise.all(
      Array.from({ length: k }, async () => {
        while (left-- > 0) await one();
      }),
    );
  };
  const t0 = Date.now();
  await run(warmup, 50);
  const t1 = Date.now();
  execFileSync('callgrind_control', ['-i', 'on', String(cell0.pid)]);
  await run(requests, concurrency);
  execFileSync('callgrind_control', ['-i', 'off', String(cell0.pid)]);
  execFileSync('callgrind_control', ['-d', String(cell0.pid)]);
  const t2 = Date.now();
  // The dump goes to `<out>.1` (the part of the run between the switches).
  let file = '';
  for (let i = 0; i < 100 && !file; i++) {
    if (fs.existsSync(`${out}.1`) && fs.statSync(`${out}.1`).size > 0) file = `${out}.1`;
    else await sleep(100);
  }
  if (!file) throw new Error(`no callgrind dump at ${out}.1`);
  await sleep(1000);
  const { total, gc } = instructions(file);
  const per = (n) => Math.round(n / requests);
  console.log(
    JSON.stringify({
      date: new Date().toISOString(),
      load: os.loadavg().map((x) => +x.toFixed(2)),
      dist,
      warmupS: (t1 - t0) / 1000,
      countedS: (t2 - t1) / 1000,
      requests,
      concurrency,
      perRequest: { total: per(total), gc: per(gc), rest: per(total - gc) },
      file,
    }),
  );
} finally {
  for (const c of children.reverse()) c.kill('SIGKILL');
}
