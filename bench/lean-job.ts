/*
 * bench:lean-job — a BullMQ worker's own cost per job, with BullMQ's start and completion and with cell0's lean
 * path (shared/queues/bullmq-internals.ts leanJobPath), side by side.
 *
 * Starts a private redis-server; per round and side, adds N jobs (~200 bytes of data each) to a fresh queue,
 * then runs a worker (concurrency 64, a processor that returns at once) until all are completed, and reads
 * this process's CPU time (user + system) and the promises created (a v8.promiseHooks count) over the run,
 * per job. Rounds alternate the order of the sides; prints each round and the median of the per-round
 * ratios lean / BullMQ. Only the worker's side runs in this process (the adds happen before the measurement).
 *
 *   node --import tsx bench/lean-job.ts [--jobs N] [--rounds R] [--json]
 */
import { promiseHooks } from 'node:v8';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { leanJobPath } from '../shared/queues/bullmq-internals.js';
import { benchArgs, printBenchHeader } from './args.js';
import { median } from './e2e-common.js';
import { startRedisServer, stopAll } from './fleet.js';

interface Round {
  cpuUs: number;
  promises: number;
}

async function round(url: string, lean: boolean, r: number, n: number): Promise<Round> {
  const prefix = `lj${r}${lean ? 'l' : 'b'}`;
  const qc = new Redis(url, { maxRetriesPerRequest: null });
  const wc = new Redis(url, { maxRetriesPerRequest: null });
  const queue = new Queue('q', { connection: qc, prefix });
  let done = 0;
  let allDone!: () => void;
  const all = new Promise<void>((resolve) => (allDone = resolve));
  const worker = new Worker('q', async () => ({ ok: 1 }), {
    connection: wc,
    prefix,
    concurrency: 64,
    autorun: false,
  });
  worker.on('completed', () => {
    if (++done === n) allDone();
  });
  await worker.waitUntilReady();
  if (lean && !(await leanJobPath(worker))) throw new Error('the lean path could not be installed');
  await queue.addBulk(
    Array.from({ length: n }, (_, i) => ({ name: 'j', data: { i, text: 'x'.repeat(200) } })),
  );
  let promises = 0;
  const stop = promiseHooks.onInit(() => promises++);
  const c0 = process.cpuUsage();
  void worker.run();
  await all;
  const c = process.cpuUsage(c0);
  stop();
  await worker.close();
  await queue.close();
  qc.disconnect();
  wc.disconnect();
  return { cpuUs: (c.user + c.system) / n, promises: promises / n };
}

async function main(): Promise<void> {
  const opts = benchArgs(
    process.argv.slice(2),
    { jobs: 3000, rounds: 10 },
    'node --import tsx bench/lean-job.ts [--jobs N] [--rounds R] [--json]',
  );
  const { url, redis } = await startRedisServer();
  printBenchHeader(`bench:lean-job — ${opts.jobs} jobs per run, ${opts.rounds} rounds`);
  try {
    const rows: { bullmq: Round; lean: Round }[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      const order = r % 2 === 0 ? [false, true] : [true, false];
      const got: Partial<Record<'bullmq' | 'lean', Round>> = {};
      for (const lean of order) got[lean ? 'lean' : 'bullmq'] = await round(url, lean, r, opts.jobs);
      const row = { bullmq: got.bullmq!, lean: got.lean! };
      rows.push(row);
      console.log(
        `  round ${r + 1}: BullMQ ${row.bullmq.cpuUs.toFixed(1)} µs ${row.bullmq.promises.toFixed(1)} promises | ` +
          `lean ${row.lean.cpuUs.toFixed(1)} µs ${row.lean.promises.toFixed(1)} promises per job | ` +
          `CPU ratio ${(row.lean.cpuUs / row.bullmq.cpuUs).toFixed(2)}`,
      );
    }
    // The first round runs before V8 has optimised either path: left out of the medians.
    const steady = rows.length > 1 ? rows.slice(1) : rows;
    const summary = {
      cpuRatio: median(steady.map((r) => r.lean.cpuUs / r.bullmq.cpuUs)),
      cpuUs: {
        bullmq: median(steady.map((r) => r.bullmq.cpuUs)),
        lean: median(steady.map((r) => r.lean.cpuUs)),
      },
      promises: {
        bullmq: median(steady.map((r) => r.bullmq.promises)),
        lean: median(steady.map((r) => r.lean.promises)),
      },
    };
    console.log(
      `  median (rounds 2+): CPU µs/job BullMQ ${summary.cpuUs.bullmq.toFixed(1)}, lean ${summary.cpuUs.lean.toFixed(1)}, ` +
        `ratio ${summary.cpuRatio.toFixed(2)}; promises/job ${summary.promises.bullmq.toFixed(1)} → ${summary.promises.lean.toFixed(1)}`,
    );
    if (opts.json) console.log(JSON.stringify(summary));
  } finally {
    await redis.quit().catch(() => undefined);
    await stopAll();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
