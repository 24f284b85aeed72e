import { Cell0Client } from '../../producers/cell0-client';
import { OllamaSimulator } from '../../workers/providers/simulator/ollama-simulator';
import { spawnCell0, type Cell0Process } from '../helpers/cli';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';

describe('worker process shutdown (cell0 worker, real signals)', () => {
  let sim: OllamaSimulator;
  let client: Cell0Client;
  let prefix: string;
  const procs: Cell0Process[] = [];

  beforeAll(async () => {
    // Every generation takes ~8 s before its first token: a long job to interrupt.
    sim = new OllamaSimulator({ ttftMs: 8000, tokensPerSec: 1000, loadMsPerGb: 0 });
    await sim.start();
  });
  beforeEach(async () => {
    prefix = uniquePrefix('shutdown');
    client = new Cell0Client({
      redisUrl: testRedisUrl(),
      prefix,
      policy: { attempts: 1 },
      // Fail-fast's 2 s is not the subject here; a busy machine can stall a command that long.
      commandTimeoutMs: 30_000,
    });
    await client.start();
    sim.reset();
  });
  afterEach(async () => {
    for (const p of procs.splice(0)) p.kill('SIGKILL');
    await client.close();
  });
  afterAll(() => sim.close());

  function worker(extraEnv: Record<string, string> = {}): Cell0Process {
    const p = spawnCell0(['worker', '--queues', 'inference'], {
      REDIS_URL: testRedisUrl(),
      CELL0_QUEUE_PREFIX: prefix,
      CELL0_OLLAMA_URL: sim.url,
      CELL0_SHUTDOWN_TIMEOUT_MS: '30000',
      CELL0_REDIS_COMMAND_TIMEOUT_MS: '30000',
      ...extraEnv,
    });
    procs.push(p);
    return p;
  }

  it('on SIGTERM finishes the active job, takes no new one, then exits 0', async () => {
    const w = worker();
    await w.waitFor(/cell0 worker .* ready/);
    const job = await client.enqueueInference({ model: 'qwen2.5:0.5b', prompt: 'a long job' });
    await until(() => sim.stats().inFlight === 1, 10_000, 'the job to reach the backend');

    w.kill('SIGTERM');
    const sigtermAt = Date.now();
    await w.waitFor(/SIGTERM received/);
    const second = await client.enqueueInference({
      model: 'qwen2.5:0.5b',
      prompt: 'arrives during shutdown',
    });

    expect(await w.exited).toBe(0);
    const exitedAt = Date.now();
    const view = await job.state();
    expect(view).toMatchObject({ state: 'completed' });
    expect(view!.finishedAt!).toBeGreaterThan(sigtermAt);
    expect(view!.finishedAt!).toBeLessThanOrEqual(exitedAt);
    expect(exitedAt - sigtermAt).toBeGreaterThan(3000); // it really waited for the job
    expect((await second.state())?.state).toBe('waiting');
    // The first job's preload (the model manager) and its generation; nothing for the second job.
    expect(sim.stats().requests.byEndpoint['/api/generate']).toBe(2);
    expect(sim.stats().loads).toBe(1);
    // The job's log line carries queue, job id and duration.
    const line = w
      .stdout()
      .split('\n')
      .filter((l) => l.includes('"job completed"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
    expect(line).toMatchObject({ queue: 'inference', jobId: job.id, durationMs: expect.any(Number) });
    expect(line!.durationMs as number).toBeGreaterThan(3000);
  }, 40_000);

  it('on a second SIGTERM puts the active job back to wait without burning an attempt; another worker finishes it', async () => {
    const w = worker();
    await w.waitFor(/cell0 worker .* ready/);
    const job = await client.enqueueInference({ model: 'qwen2.5:0.5b', prompt: 'interrupted twice' });
    await until(() => sim.stats().inFlight === 1, 10_000, 'the job to reach the backend');

    w.kill('SIGTERM');
    await w.waitFor(/SIGTERM received/);
    const t0 = Date.now();
    w.kill('SIGTERM');
    expect(await w.exited).toBe(1);
    expect(Date.now() - t0).toBeLessThan(6000);
    const view = await job.state();
    expect(view).toMatchObject({ state: 'waiting', attemptsMade: 0 });

    const w2 = worker();
    await w2.waitFor(/cell0 worker .* ready/);
    const result = await job.wait(20_000);
    expect(result.text).toMatch(/^\[simulated qwen2\.5:0\.5b\]/);
    w2.kill('SIGTERM');
    expect(await w2.exited).toBe(0);
  }, 60_000);

  it('past CELL0_SHUTDOWN_TIMEOUT_MS hands the job back to wait and exits', async () => {
    const w = worker({ CELL0_SHUTDOWN_TIMEOUT_MS: '1000' });
    await w.waitFor(/cell0 worker .* ready/);
    const job = await client.enqueueInference({ model: 'qwen2.5:0.5b', prompt: 'outlives the deadline' });
    await until(() => sim.stats().inFlight === 1, 10_000, 'the job to reach the backend');
    const t0 = Date.now();
    w.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(await job.state()).toMatchObject({ state: 'waiting', attemptsMade: 0 });
    expect(w.stdout()).toMatch(/job put back to wait/);
  }, 40_000);
});
