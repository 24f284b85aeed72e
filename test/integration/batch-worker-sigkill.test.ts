/*
 * A Cell0Worker process killed with SIGKILL in the middle of a batch: its item jobs go to stalled recovery
 * and a new worker finishes them. No item is lost, none is answered twice, the batch's counts are exact, and
 * the backend sees each distinct request generated to the end exactly once: the only extra calls are the
 * ones the kill cut short (the simulator counts them as aborted).
 *
 * The kill is made at a moment when no job can be between its backend answer and its completion: the
 * simulator is switched to hold every new request for a minute, and the worker is killed once every job it
 * holds is inside such a held call (as many calls in flight as active jobs, stable over half a second).
 */
import { type ChildProcess } from 'node:child_process';
import { startTestFleet, type TestFleet } from '../helpers/fleet';
import { batchFinished, expectAllCompleted, submitBatch } from '../helpers/batch-checks';
import { testRedisUrl } from '../helpers/redis';
import { until } from '../helpers/wait';
import { startReadyChild } from '../helpers/ready-child';
import { QueueName } from '../../shared/queues/names';
import { sleep } from '../../shared/sleep';
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';

const ITEMS = 300;
const DISTINCT = 200;
const CONCURRENCY = 8;

/** Starts a Cell0Worker in its own process and resolves once it takes jobs. */
function startWorkerProcess(prefix: string, simUrl: string): Promise<ChildProcess> {
  const env = {
    REDIS_URL: testRedisUrl(),
    PREFIX: prefix,
    SIM_URL: simUrl,
    CONCURRENCY: String(CONCURRENCY),
  };
  return startReadyChild('sim-worker-process.ts', env);
}

describe('a worker process killed with SIGKILL mid-batch', () => {
  let fleet: TestFleet;
  let child: ChildProcess | undefined;
  let rescuer: Cell0Worker | undefined;
  beforeAll(async () => {
    // No worker in this process: the batch's item jobs run in the child until it is killed.
    fleet = await startTestFleet({
      worker: false,
      batches: { concurrency: 32 },
      sim: { ttftMs: 150, tokensPerSec: 200 },
      resultWaitMs: 120_000,
    });
  });
  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rescuer?.close();
    await fleet.close();
  });

  it('loses no item and answers none twice: a new worker takes the stalled jobs over', async () => {
    child = await startWorkerProcess(fleet.prefix, fleet.sim.url);
    const lines = Array.from({ length: ITEMS }, (_, i) => ({
      custom_id: `w-${i}`,
      queue: 'inference',
      body: { model: 'qwen2.5:0.5b', prompt: `killed worker ${i % DISTINCT}`, params: { max_tokens: 12 } },
    }));
    const id = await submitBatch(fleet, lines);
    const finished = () => batchFinished(fleet, id);
    await until(async () => (await finished()) >= 40, 60_000, 'the worker process to finish 40 items');

    // Hold every new backend call, then wait until each job the worker holds is inside one.
    fleet.sim.setFaults({ slowRate: 1, slowMs: 60_000 });
    const queue = fleet.client.submitter.getQueue(QueueName.INFERENCE);
    let active = -1;
    await until(
      async () => {
        const a = await queue.getActiveCount();
        const inFlight = fleet.sim.stats().inFlight;
        await sleep(500);
        const steady =
          a > 0 && a === inFlight && a === (await queue.getActiveCount()) && fleet.sim.stats().inFlight === a;
        if (steady) active = a;
        return steady;
      },
      30_000,
      'every active job to be inside a held backend call',
    );
    const before = fleet.sim.stats();
    child.kill('SIGKILL');
    await new Promise((resolve) => child!.once('exit', resolve));
    expect(await finished()).toBeLessThan(ITEMS);
    // The dead worker's connections close: its held calls end as aborted.
    await until(async () => fleet.sim.stats().inFlight === 0, 10_000, 'the killed calls to end');
    const killed = fleet.sim.stats().aborted - before.aborted;
    expect(killed).toBe(active);
    fleet.sim.setFaults({});

    // A new worker; its stalled check takes the dead worker's jobs once their 2 s locks run out.
    rescuer = new Cell0Worker({
      redisUrl: testRedisUrl(),
      prefix: fleet.prefix,
      queues: ['inference'],
      inference: new OllamaBackend(new OllamaClient({ baseUrl: fleet.sim.url })),
      concurrency: { inference: CONCURRENCY },
      lockDurationMs: 2000,
      stalledIntervalMs: 500,
      heartbeatMs: 0,
    });
    await rescuer.start();

    const out = await expectAllCompleted(fleet, id, ITEMS);
    // Duplicate lines got the same text as the line they repeat.
    const byPrompt = new Map<number, string>();
    for (const l of out) {
      const n = Number(l.custom_id.slice(2)) % DISTINCT;
      const text = (l.result as { text: string }).text;
      expect(text.length).toBeGreaterThan(0);
      if (!byPrompt.has(n)) byPrompt.set(n, text);
      expect(text).toBe(byPrompt.get(n));
    }
    // Each distinct request generated to the end once; the only other calls are those the kill cut short.
    const stats = fleet.sim.stats();
    expect(stats.errors).toBe(0);
    expect(stats.aborted).toBe(killed);
    expect(stats.requests.byEndpoint['/api/generate']).toBe(DISTINCT + killed);
  }, 180_000);
});
