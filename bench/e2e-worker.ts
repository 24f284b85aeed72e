/*
 * bench:e2e worker process. Started by bench/e2e.ts with a JSON WorkerConfig as argv[2]; sends
 * { type: 'ready' } once it takes jobs, and closes gracefully on SIGTERM.
 *
 *   bare:  new Worker(queue, async () => ({ ok: true }), { concurrency: C })
 *   cell0: Cell0Worker serving the inference queue with the no-op backend, concurrency C, silent logger,
 *          with resource admission as in production (monitor sampling every 2 s, limiter with the default
 *          limits, checked before each job).
 */
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import {
  BENCH_QUEUE,
  loadCompiledWorkers,
  childConfig,
  cpuMsSince,
  isParentMessage,
  sendToParent,
  type WorkerConfig,
} from './e2e-common.js';
import { watchPauses } from './e2e-stages.js';

const cfg = childConfig<WorkerConfig>();

// If the parent benchmark dies, do not linger (and keep writing keys under its prefix).
process.on('disconnect', () => process.exit(1));

async function startBare(): Promise<() => Promise<void>> {
  const conn = new Redis(cfg.redisUrl, { maxRetriesPerRequest: null });
  const worker = new Worker(BENCH_QUEUE, async () => ({ ok: true }), {
    connection: conn,
    prefix: cfg.prefix,
    concurrency: cfg.concurrency,
  });
  worker.on('error', () => undefined);
  await worker.waitUntilReady();
  return async () => {
    await worker.close();
    await conn.quit();
  };
}

async function startCell0(): Promise<() => Promise<void>> {
  const workers = await loadCompiledWorkers(cfg.dist);
  const {
    Cell0Worker,
    Cell0Metrics,
    MeteredInference,
    NoopInferenceBackend,
    ResourceManagement,
    bindWorkerMetrics,
  } = workers;
  // As `cell0 worker` counts: job events and backend calls into the process's registry.
  const metrics = cfg.metrics ? new Cell0Metrics() : undefined;
  const backend = new NoopInferenceBackend();
  const resources = new ResourceManagement();
  await resources.start();
  const worker = new Cell0Worker({
    redisUrl: cfg.redisUrl,
    prefix: cfg.prefix,
    queues: [BENCH_QUEUE],
    inference: metrics ? new MeteredInference(backend, metrics.backends) : backend,
    concurrency: { inference: cfg.concurrency },
    limiter: resources.limiter,
    status: () => resources.status(),
  });
  const unbind = metrics ? bindWorkerMetrics(worker, metrics) : undefined;
  await worker.start();
  return async () => {
    unbind?.();
    await worker.close();
    await resources.close();
  };
}

async function main(): Promise<void> {
  const stop = cfg.side === 'bare' ? await startBare() : await startCell0();
  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  let mark = process.cpuUsage();
  const pauses = cfg.stages ? watchPauses() : undefined;
  process.on('message', (m: unknown) => {
    if (!isParentMessage(m)) return;
    if (m.type === 'mark') {
      mark = process.cpuUsage();
      pauses?.reset();
    } else if (m.type === 'stats') {
      const cpuMs = cpuMsSince(mark);
      void (pauses?.report(`${cfg.side} worker`, m.jobs ?? 1) ?? Promise.resolve(undefined)).then((line) => {
        if (line) console.log(line);
        return sendToParent({ type: 'stats', cpuMs });
      });
    }
  });
  await sendToParent({ type: 'ready' });
}

main().catch(async (err: unknown) => {
  await sendToParent({
    type: 'error',
    message: err instanceof Error ? (err.stack ?? err.message) : String(err),
  });
  process.exit(1);
});
