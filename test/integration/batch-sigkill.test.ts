import { type ChildProcess } from 'node:child_process';
import { startTestFleet, type TestFleet } from '../helpers/fleet';
import { batchFinished, expectAllCompleted, submitBatch } from '../helpers/batch-checks';
import { testRedisUrl } from '../helpers/redis';
import { until } from '../helpers/wait';
import { startReadyChild } from '../helpers/ready-child';
import { Batches } from '../../producers/batches/batches';

/** Starts a batch runner in its own process and resolves once it takes jobs. */
function startRunner(prefix: string): Promise<ChildProcess> {
  return startReadyChild('batch-runner-process.ts', {
    REDIS_URL: testRedisUrl(),
    PREFIX: prefix,
    CONCURRENCY: '16',
  });
}

describe('a batch runner killed with SIGKILL mid-batch', () => {
  let fleet: TestFleet;
  let child: ChildProcess | undefined;
  let rescuer: Batches | undefined;
  beforeAll(async () => {
    // The API here creates batches but runs no item: the child process does, until it is killed.
    fleet = await startTestFleet({
      batches: { runner: false },
      sim: { ttftMs: 20, tokensPerSec: 2000 },
      workerConcurrency: 16,
    });
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await rescuer?.close();
    await fleet.close();
  });

  it('loses no item and completes none twice: another runner takes the stalled ones over', async () => {
    child = await startRunner(fleet.prefix);
    const lines = Array.from({ length: 400 }, (_, i) => ({
      custom_id: `k-${i}`,
      queue: 'inference',
      body: { model: 'qwen2.5:7b', prompt: `killed runner ${i % 250}`, params: { max_tokens: 16 } },
    }));
    const id = await submitBatch(fleet, lines);
    const done = () => batchFinished(fleet, id);
    await until(async () => (await done()) >= 60, 60_000, 'the child runner to finish 60 items');
    child.kill('SIGKILL');
    await new Promise((resolve) => child!.once('exit', resolve));
    const atKill = await done();
    expect(atKill).toBeLessThan(400);
    // A second runner; its stalled check gives it the items whose runner died (their locks run out).
    rescuer = new Batches({
      client: fleet.client,
      concurrency: 16,
      lockDurationMs: 2000,
      stalledIntervalMs: 500,
    });
    await rescuer.start();
    await expectAllCompleted(fleet, id, 400);
    // Items re-run after the kill joined their finished jobs: one generation per distinct prompt.
    expect(fleet.sim.stats().requests.byEndpoint['/api/generate']).toBe(250);
  }, 120_000);
});
