/*
 * bench:scale-commands — Redis commands per job as the fleet grows: API (producer) processes, worker
 * processes, queue shards.
 *
 * For each shard count S (default 1), worker count W (default 1) and API count P (default 1, 2, 4): a
 * private redis-server, the simulator, W `cell0 worker` and P `cell0 api` processes, all with
 * CELL0_QUEUE_SHARDS=S; N unique-prompt POST /v1/inference requests at concurrency K, spread round-robin
 * over the APIs. Counts every command Redis ran (INFO commandstats, script-internal commands included)
 * during the run, and during an idle window before it (the processes' background: heartbeats, memory
 * watch, maintenance, blocking reads that time out), and prints commands per job raw and with the
 * background rate taken out. `--by-command` adds each point's commands per job by command (background
 * out), the largest first. A count, not a timing. Part of the scaling measurements of docs/scaling.md.
 *
 *   npm run bench:scale-commands -- [--jobs N] [--concurrency K] [--apis 1,2,4] [--workers 1,4]
 *     [--shards 1,3,6] [--idle-ms MS] [--by-command]
 */
import { randomBytes } from 'node:crypto';
import {
  commandCalls,
  freePort,
  killChildrenOnInterrupt,
  startProcess,
  startRedisServer,
  stop,
  stopAll,
} from './fleet.js';
import { arg, CELL0, runBench, sendUnique, startSimulator } from './scale-common.js';
import { printBenchHeader } from './args.js';
import { sleep } from '../shared/sleep.js';

const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

async function main(): Promise<void> {
  killChildrenOnInterrupt();
  const jobs = Number(arg('jobs', '200'));
  const concurrency = Number(arg('concurrency', '16'));
  const apis = arg('apis', '1,2,4').split(',').map(Number);
  const workerCounts = arg('workers', '1').split(',').map(Number);
  const shardCounts = arg('shards', '1').split(',').map(Number);
  const idleMs = Number(arg('idle-ms', '5000'));
  const byCommand = process.argv.includes('--by-command');
  const simUrl = await startSimulator();
  printBenchHeader('bench:scale-commands — Redis commands per job against API processes, workers and shards');
  console.log(
    `setup    ${jobs} unique inference jobs, concurrency ${concurrency}, worker concurrency 64, idle window ${idleMs} ms`,
  );
  console.log(
    'shards  workers  apis  jobs  failed  commands  idle/s  per job (raw)  per job (background out)',
  );
  try {
    for (const shards of shardCounts)
      for (const w of workerCounts)
        for (const p of apis) {
          const { url, redis, child: server } = await startRedisServer();
          const common = {
            REDIS_URL: url,
            CELL0_LOG_LEVEL: 'info',
            CELL0_MAX_CPU_PERCENT: '0',
            CELL0_QUEUE_SHARDS: String(shards),
          };
          const procs = [];
          for (let i = 0; i < w; i++)
            procs.push(
              await startProcess(
                process.execPath,
                [...CELL0, 'worker'],
                { ...common, CELL0_OLLAMA_URL: simUrl, CELL0_INFERENCE_CONCURRENCY: '64' },
                /worker started/,
                'worker',
              ),
            );
          const urls: string[] = [];
          for (let i = 0; i < p; i++) {
            const port = await freePort();
            procs.push(
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
          await sendUnique(urls, 20, concurrency, `${tag}w`);
          const idle0 = await commandCalls(redis);
          await sleep(idleMs);
          const idle1 = await commandCalls(redis);
          const idlePerMs = (total(idle1) - total(idle0) - 1) / idleMs;
          const t0 = performance.now();
          const c0 = await commandCalls(redis);
          const { failed } = await sendUnique(urls, jobs, concurrency, tag);
          const c1 = await commandCalls(redis);
          const ms = performance.now() - t0;
          const cmds = total(c1) - total(c0) - 1;
          const net = cmds - idlePerMs * ms;
          console.log(
            `${String(shards).padStart(6)}  ${String(w).padStart(7)}  ${String(p).padStart(4)}  ${String(jobs).padStart(4)}  ${String(failed).padStart(6)}  ${String(cmds).padStart(8)}  ${(idlePerMs * 1000).toFixed(1).padStart(6)}  ${(cmds / jobs).toFixed(2).padStart(13)}  ${(net / jobs).toFixed(2).padStart(24)}`,
          );
          if (byCommand) {
            // Each command's calls per job during the run, its idle rate over the run's time taken out.
            const rows = [...c1.keys()]
              .map((name) => {
                const run = (c1.get(name) ?? 0) - (c0.get(name) ?? 0);
                const idle = ((idle1.get(name) ?? 0) - (idle0.get(name) ?? 0)) / idleMs;
                return { name, run: run / jobs, net: (run - idle * ms) / jobs, idle: idle * 1000 };
              })
              .filter((r) => Math.abs(r.run) >= 0.05 || r.idle >= 0.5)
              .sort((a, b) => b.run - a.run);
            for (const r of rows)
              console.log(
                `        ${r.name.padEnd(28)} ${r.run.toFixed(2).padStart(7)}/job raw  ${r.net.toFixed(2).padStart(7)}/job net  idle ${r.idle.toFixed(1)}/s`,
              );
          }
          await Promise.all(procs.map((c) => stop(c)));
          redis.disconnect();
          await stop(server);
        }
  } finally {
    await stopAll();
  }
}

runBench(main);
