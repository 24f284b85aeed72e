/*
 * bench:scale-commands — Redis commands per job as the number of API (producer) processes grows.
 *
 * For each count P of API processes (default 1, 2, 4): a private redis-server, the simulator, one worker and
 * P `cell0 api` processes; N unique-prompt POST /v1/inference requests at concurrency K, spread round-robin
 * over the APIs. Counts every command Redis ran (INFO commandstats, script-internal commands included)
 * during the run, and during an idle window before it (the processes' background: heartbeats, memory
 * watch, maintenance), and prints commands per job raw and with the background rate taken out. A count,
 * not a timing. Part of the scaling measurements of docs/scaling.md (the full bench:scale is not written).
 *
 *   npm run bench:scale-commands -- [--jobs N] [--concurrency K] [--apis 1,2,4] [--idle-ms MS]
 */
import os from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import {
  commandCalls,
  freePort,
  killChildrenOnInterrupt,
  startProcess,
  startRedisServer,
  stop,
  stopAll,
} from './fleet.js';

const CELL0 = ['--import', 'tsx', join(__dirname, '..', 'bin', 'cell0.ts')];

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}

const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function send(urls: string[], n: number, concurrency: number, tag: string): Promise<number> {
  const pools = urls.map((u) => new Pool(u, { connections: concurrency }));
  let next = 0;
  let failed = 0;
  const lane = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const res = await pools[i % pools.length]!.request({
        path: '/v1/inference',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'qwen2.5:0.5b',
          prompt: `scale ${tag} ${i}`,
        }),
      });
      const body = (await res.body.json()) as { status?: string };
      if (res.statusCode !== 200 || body.status !== 'completed') {
        if (failed++ === 0)
          console.error(`first failure: ${res.statusCode} ${JSON.stringify(body).slice(0, 300)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  await Promise.all(pools.map((p) => p.close()));
  return failed;
}

async function main(): Promise<void> {
  killChildrenOnInterrupt();
  const jobs = Number(arg('jobs', '200'));
  const concurrency = Number(arg('concurrency', '16'));
  const apis = arg('apis', '1,2,4').split(',').map(Number);
  const idleMs = Number(arg('idle-ms', '5000'));
  const simPort = await freePort();
  await startProcess(
    process.execPath,
    [...CELL0, 'simulator', '--port', String(simPort)],
    { CELL0_SIM_TTFT_MS: '1', CELL0_SIM_TOKENS_PER_SEC: '1000000', CELL0_SIM_LOAD_MS_PER_GB: '1' },
    /simulator listening/,
    'simulator',
  );
  const simUrl = `http://127.0.0.1:${simPort}`;
  console.log('bench:scale-commands — Redis commands per job against the number of API processes');
  console.log(`date     ${new Date().toISOString()}`);
  console.log(`machine  ${os.cpus()[0]?.model.trim()}, ${os.cpus().length} cores, node ${process.version}`);
  console.log(
    `load     ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} (at start)`,
  );
  console.log(
    `setup    ${jobs} unique inference jobs, concurrency ${concurrency}, 1 worker, idle window ${idleMs} ms`,
  );
  console.log('apis  jobs  failed  commands  idle/s  per job (raw)  per job (background out)');
  try {
    for (const p of apis) {
      const { url, redis, child: server } = await startRedisServer();
      const common = { REDIS_URL: url, CELL0_LOG_LEVEL: 'info', CELL0_MAX_CPU_PERCENT: '0' };
      const worker = await startProcess(
        process.execPath,
        [...CELL0, 'worker'],
        { ...common, CELL0_OLLAMA_URL: simUrl, CELL0_INFERENCE_CONCURRENCY: '64' },
        /worker started/,
        'worker',
      );
      const apiProcs = [];
      const urls: string[] = [];
      for (let i = 0; i < p; i++) {
        const port = await freePort();
        apiProcs.push(
          await startProcess(
            process.execPath,
            [...CELL0, 'api', '--port', String(port)],
            common,
            /api listening/,
            'api',
          ),
        );
        urls.push(`http://127.0.0.1:${port}`);
      }
      const tag = randomBytes(3).toString('hex');
      await send(urls, 20, concurrency, `${tag}w`);
      const i0 = total(await commandCalls(redis));
      await sleep(idleMs);
      const i1 = total(await commandCalls(redis));
      const idlePerMs = (i1 - i0 - 1) / idleMs;
      const t0 = performance.now();
      const c0 = total(await commandCalls(redis));
      const failed = await send(urls, jobs, concurrency, tag);
      const c1 = total(await commandCalls(redis));
      const ms = performance.now() - t0;
      const cmds = c1 - c0 - 1;
      const net = cmds - idlePerMs * ms;
      console.log(
        `${String(p).padStart(4)}  ${String(jobs).padStart(4)}  ${String(failed).padStart(6)}  ${String(cmds).padStart(8)}  ${(idlePerMs * 1000).toFixed(1).padStart(6)}  ${(cmds / jobs).toFixed(2).padStart(13)}  ${(net / jobs).toFixed(2).padStart(24)}`,
      );
      await Promise.all([...apiProcs, worker].map((c) => stop(c)));
      redis.disconnect();
      await stop(server);
    }
  } finally {
    await stopAll();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    void stopAll().then(() => process.exit(1));
  },
);
