/*
 * bench:job-codec — what a worker's per-job decoding and completion arguments cost the process: BullMQ's own
 * (raw2NextJobData, backend.moveToCompletedArgs) against cell0's direct ones (shared/queues/lean-job-codec.ts),
 * on a job hash shaped like cell0's inference jobs (as Redis returns it from a fetch).
 *
 * Starts a private redis-server, adds one job with cell0's job options, reads its hash, and makes a worker
 * (not running) for its backend. Per round, each side decodes the fetch reply and builds the completion's
 * arguments in a timed loop (after a warm-up), the sides alternating; prints ns per job of each and the median
 * over the rounds of the ratio direct / BullMQ. The two sides' outputs are checked equal first.
 * `--side bullmq|direct --loops N` runs one side only, once, untimed (for callgrind).
 *
 *   node --import tsx bench/job-codec.ts [--rounds R] [--loops N] [--side bullmq|direct] [--json]
 */
import { isDeepStrictEqual } from 'node:util';
import { Queue, Worker, raw2NextJobData, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { completedArgsOf, nextJobData } from '../shared/queues/lean-job-codec.js';
import { benchArgs, printBenchHeader } from './args.js';
import { median } from './e2e-common.js';
import { startRedisServer, stopAll } from './fleet.js';

interface Backend {
  moveToCompletedArgs(job: Job, value: string, rc: unknown, token: string, fetchNext: boolean): unknown[];
}

function nsPerCall(fn: () => unknown, loops: number): number {
  for (let i = 0; i < Math.min(loops, 2000); i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < loops; i++) fn();
  return Number(process.hrtime.bigint() - t0) / loops;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const sideAt = argv.indexOf('--side');
  const side = sideAt >= 0 ? argv.splice(sideAt, 2)[1] : undefined;
  const opts = benchArgs(
    argv,
    { rounds: 6, loops: 20_000 },
    'node --import tsx bench/job-codec.ts [--rounds R] [--loops N] [--side bullmq|direct] [--json]',
  );
  const { url } = await startRedisServer();
  const qc = new Redis(url, { maxRetriesPerRequest: null });
  const wc = new Redis(url, { maxRetriesPerRequest: null });
  const queue = new Queue('inference', { connection: qc, prefix: '{cell0}' });
  const worker = new Worker('inference', null, { connection: wc, prefix: '{cell0}', autorun: false });
  try {
    await worker.waitUntilReady();
    // cell0's options for an inference job (shared/queues/job-policy.ts jobOptionsFor, the producer's token).
    const added = await queue.add(
      'inference',
      {
        model: 'qwen2.5:0.5b',
        prompt: 'Summarise the following paragraph in one sentence: a unique prompt of the bench, 1234',
        options: { temperature: 0.2, maxTokens: 64 },
        requestId: 'req-0123456789abcdef',
      },
      {
        jobId: 'inference-0f3c9a7d2b1e4c58a6d90b7f12e3c4d5',
        attempts: 3,
        backoff: { type: 'exponential', delay: 500 },
        removeOnComplete: false,
        removeOnFail: { age: 3600, count: 1000 },
        ...{ cell0Adder: 'p1.2s' },
      },
    );
    const hash = (await qc.call('HGETALL', `{cell0}:inference:${added.id}`)) as unknown[];
    const reply = [hash, added.id, 0, 0];
    const backend = (worker as unknown as { backend: Backend }).backend;
    const direct = completedArgsOf(backend as unknown as Parameters<typeof completedArgsOf>[0])!;
    const createJob = (d: unknown, id: unknown) =>
      (worker as unknown as { createJob(d: unknown, id: unknown): Job }).createJob(d, id);
    const job = createJob(raw2NextJobData(reply)[0], added.id);
    const token = '1f0c2a9e-7b4d-4c3e-9a8f-0d1e2f3a4b5c:17';
    const value = '{"model":"qwen2.5:0.5b","text":"an answer of a few words","usage":{"promptTokens":10}}';
    const bullmqSide = () => [
      raw2NextJobData(reply),
      backend.moveToCompletedArgs(job, value, job.opts.removeOnComplete, token, true),
    ];
    const directSide = () => [nextJobData(reply), direct(job, value, job.opts.removeOnComplete, token, true)];
    const a = bullmqSide();
    const b = directSide();
    (a[1] as unknown[])[15] = (b[1] as unknown[])[15]; // the timestamps
    if (!isDeepStrictEqual(a, b)) throw new Error('the two sides differ');
    if (side) {
      const fn = side === 'direct' ? directSide : bullmqSide;
      for (let i = 0; i < opts.loops; i++) fn();
      console.log(`${side}: ${opts.loops} jobs`);
      return;
    }
    printBenchHeader(`bench:job-codec — ${opts.rounds} rounds of ${opts.loops} jobs per side`);
    const rows: { bullmq: number; direct: number }[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      const row = { bullmq: 0, direct: 0 };
      for (const s of r % 2 === 0 ? (['bullmq', 'direct'] as const) : (['direct', 'bullmq'] as const))
        row[s] = nsPerCall(s === 'bullmq' ? bullmqSide : directSide, opts.loops);
      rows.push(row);
      if (!opts.json)
        console.log(
          `round ${r + 1}: BullMQ ${row.bullmq.toFixed(0)} ns/job, direct ${row.direct.toFixed(0)} ns/job, ratio ${(row.direct / row.bullmq).toFixed(3)}`,
        );
    }
    const summary = {
      bullmqNs: median(rows.map((x) => x.bullmq)),
      directNs: median(rows.map((x) => x.direct)),
      ratio: median(rows.map((x) => x.direct / x.bullmq)),
    };
    if (opts.json) console.log(JSON.stringify(summary));
    else
      console.log(
        `median: BullMQ ${summary.bullmqNs.toFixed(0)} ns/job, direct ${summary.directNs.toFixed(0)} ns/job, ratio ${summary.ratio.toFixed(3)}`,
      );
  } finally {
    await worker.close();
    await queue.close();
    qc.disconnect();
    wc.disconnect();
    await stopAll();
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
