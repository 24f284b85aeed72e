/*
 * bench:e2e producer process. Started by bench/e2e.ts with a JSON ProducerConfig as argv[2]. Keeps
 * `window` jobs in flight (start W, start another whenever one finishes), first `warmup` jobs that are
 * not counted, then `jobs` measured ones, and sends { type: 'result', result } to the parent. With
 * `rate` set the measured jobs are paced instead (open loop, `rate` jobs/s).
 *
 *   bare:  queue.add(name, data) + job.waitUntilFinished(queueEvents)
 *   cell0: Cell0Client.infer({ model: 'noop', prompt: 'job <i> <run-id>' }) — every prompt unique
 */
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import {
  BENCH_QUEUE,
  childConfig,
  cpuMsSince,
  loadCompiledProducers,
  isParentMessage,
  percentile,
  sendToParent,
  type ProducerConfig,
  type ProducerResult,
} from './e2e-common.js';
import { epochNow, printStages, watchPauses, type StageSample } from './e2e-stages.js';
import { queueKey } from '../shared/queues/names.js';

const cfg = childConfig<ProducerConfig>();

// If the parent benchmark dies, do not linger (and keep writing keys under its prefix).
process.on('disconnect', () => process.exit(1));

interface Target {
  /** Runs job `i` end to end: resolves with its job id when its result arrived, rejects when it failed. */
  call(prompt: string): Promise<string>;
  close(): Promise<void>;
}

async function bareTarget(): Promise<Target> {
  const conn = new Redis(cfg.redisUrl, { maxRetriesPerRequest: null });
  const eventsConn = new Redis(cfg.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(BENCH_QUEUE, { connection: conn, prefix: cfg.prefix });
  const events = new QueueEvents(BENCH_QUEUE, { connection: eventsConn, prefix: cfg.prefix });
  queue.on('error', () => undefined);
  events.on('error', () => undefined);
  // waitUntilFinished adds listeners per job in flight (W of them): not a leak.
  queue.setMaxListeners(0);
  events.setMaxListeners(0);
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
  return {
    async call(prompt) {
      const job = await queue.add('generate', { model: 'noop', prompt });
      await job.waitUntilFinished(events, cfg.waitMs);
      return job.id!;
    },
    async close() {
      await Promise.allSettled([events.close(), queue.close()]);
      await Promise.allSettled([conn.quit(), eventsConn.quit()]);
    },
  };
}

async function cell0Target(): Promise<Target> {
  const { Cell0Client, Cell0Metrics } = await loadCompiledProducers(cfg.dist);
  const client = new Cell0Client({ redisUrl: cfg.redisUrl, prefix: cfg.prefix });
  if (cfg.metrics) client.metrics = new Cell0Metrics();
  await client.start();
  return {
    async call(prompt) {
      return (await client.infer({ model: 'noop', prompt }, { waitMs: cfg.waitMs })).jobId;
    },
    close: () => client.close(),
  };
}

interface WindowRun {
  latencies: Float64Array;
  /** Each successful job's id, due time and result time (for --stages). */
  samples: StageSample[];
  failures: number;
  wallMs: number;
  firstError?: string;
}

/** Runs `n` jobs keeping `window` in flight; latency per job = call to result. */
async function runWindow(target: Target, n: number, window: number, tag: string): Promise<WindowRun> {
  const latencies = new Float64Array(n).fill(NaN);
  const samples: StageSample[] = [];
  let next = 0;
  let failures = 0;
  let firstError: string | undefined;
  const lane = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      const t0 = performance.now();
      const due = epochNow();
      try {
        const jobId = await target.call(`job ${i} ${tag}`);
        latencies[i] = performance.now() - t0;
        if (cfg.stages) samples.push({ jobId, due, seen: epochNow() });
      } catch (err) {
        failures++;
        firstError ??= err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(window, n) }, lane));
  const wallMs = performance.now() - t0;
  return firstError === undefined
    ? { latencies, samples, failures, wallMs }
    : { latencies, samples, failures, wallMs, firstError };
}

/**
 * Open loop: job i starts at t0 + i / rate whatever is still in flight; its latency counts from that
 * scheduled start, so a producer that falls behind shows it in the latencies (no coordinated omission).
 */
async function runPaced(target: Target, n: number, rate: number, tag: string): Promise<WindowRun> {
  const latencies = new Float64Array(n).fill(NaN);
  const samples: StageSample[] = [];
  let failures = 0;
  let firstError: string | undefined;
  const pending: Promise<void>[] = [];
  const t0 = performance.now();
  const start = (i: number) => {
    const due = t0 + (i * 1000) / rate;
    pending.push(
      target.call(`job ${i} ${tag}`).then(
        (jobId) => {
          latencies[i] = performance.now() - due;
          if (cfg.stages) samples.push({ jobId, due: performance.timeOrigin + due, seen: epochNow() });
        },
        (err: unknown) => {
          failures++;
          firstError ??= err instanceof Error ? `${err.name}: ${err.message}` : String(err);
        },
      ),
    );
  };
  let next = 0;
  while (next < n) {
    const now = performance.now();
    while (next < n && t0 + (next * 1000) / rate <= now) start(next++);
    if (next < n) await new Promise((r) => setTimeout(r, Math.max(0, t0 + (next * 1000) / rate - now)));
  }
  await Promise.all(pending);
  const wallMs = performance.now() - t0;
  return firstError === undefined
    ? { latencies, samples, failures, wallMs }
    : { latencies, samples, failures, wallMs, firstError };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

async function main(): Promise<void> {
  const target = cfg.side === 'bare' ? await bareTarget() : await cell0Target();
  if (cfg.warmup > 0) await runWindow(target, cfg.warmup, cfg.window, `${cfg.runId}-warmup`);
  if (process.send) {
    // Barrier: the parent marks the worker's and Redis's CPU counters, then says go.
    const go = new Promise<void>((resolve) => {
      const onMessage = (m: unknown) => {
        if (isParentMessage(m) && m.type === 'go') {
          process.off('message', onMessage);
          resolve();
        }
      };
      process.on('message', onMessage);
    });
    await sendToParent({ type: 'measuring' });
    await go;
  }
  const pauses = cfg.stages ? watchPauses() : undefined;
  pauses?.reset();
  const cpu0 = process.cpuUsage();
  const run = cfg.rate
    ? await runPaced(target, cfg.jobs, cfg.rate, cfg.runId)
    : await runWindow(target, cfg.jobs, cfg.window, cfg.runId);
  const cpuMs = cpuMsSince(cpu0);
  const pauseLine = await pauses?.report(`${cfg.side} producer`, cfg.jobs);
  pauses?.close();
  const ok = Array.from(run.latencies)
    .filter((x) => !Number.isNaN(x))
    .sort((a, b) => a - b);
  const result: ProducerResult = {
    side: cfg.side,
    count: cfg.jobs,
    failures: run.failures,
    wallMs: round(run.wallMs),
    jobsPerSec: round(cfg.jobs / (run.wallMs / 1000)),
    p50: round(percentile(ok, 50)),
    p95: round(percentile(ok, 95)),
    p99: round(percentile(ok, 99)),
    mean: round(ok.reduce((s, x) => s + x, 0) / (ok.length || 1)),
    cpuMs: round(cpuMs),
    ...(run.firstError !== undefined ? { firstError: run.firstError } : {}),
    latencies: ok.map(round),
  };
  if (cfg.stages) {
    const redis = new Redis(cfg.redisUrl, { maxRetriesPerRequest: 2 });
    const key = cfg.side === 'bare' ? `${cfg.prefix}:${BENCH_QUEUE}` : queueKey(cfg.prefix, BENCH_QUEUE);
    await printStages(redis, key, run.samples, cfg.side);
    console.log(pauseLine);
    await redis.quit();
  }
  await sendToParent({ type: 'result', result });
  await target.close();
  process.exit(0);
}

main().catch(async (err: unknown) => {
  await sendToParent({
    type: 'error',
    message: err instanceof Error ? (err.stack ?? err.message) : String(err),
  });
  process.exit(1);
});
