/*
 * Resource management in a running fleet, on a real Redis with the Ollama simulator over real HTTP:
 * a worker under (injected) memory pressure stops taking jobs and its peer serves them all; GET /v1/fleet
 * shows usage, state and resident models; the model memory manager keeps the simulator within a budget
 * that fits two of three models; producers shed load with 503 + Retry-After.
 */
import { EventEmitter, once } from 'node:events';
import { SearchProvider } from '../../shared/queues/enums';
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';
import { LocalSearch } from '../../workers/providers/local-search/local-search';
import { modelDriverFor } from '../../workers/providers/model-driver';
import { ResourceManagement } from '../../shared/resources/resource-management';
import { EvictionPolicy, type ResourceSample, type ResourceViolation } from '../../shared/resources/types';
import { getFleetUsage, publishWorkerStatus } from '../../shared/fleet/worker-status';
import { createRedisConnection, closeRedis, waitUntilReady } from '../../shared/redis/connection';
import { QueueName } from '../../shared/queues/names';
import { startTestFleet, post, get, type TestFleet } from '../helpers/fleet';
import { resourceSample } from '../helpers/resource-sample';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { startApi } from '../../bin/runtime-api';
import { loadConfig } from '../../shared/config/config';
import { silentLogger } from '../../shared/logger';
import { until } from '../helpers/wait';
import { shedInference, workerStatus } from '../helpers/pressure';

/** A sample with everything comfortably within the default limits, except the memory the test sets. */
const sample = (memoryPercent: number): ResourceSample =>
  resourceSample({ memory: memoryPercent, cpu: 10, disk: 40 });

/** Polls the simulator's /api/ps until stopped: the most models it showed loaded at once, and the polls made. */
function watchLoaded(simUrl: string): { stop(): Promise<{ max: number; polls: number }> } {
  let max = 0;
  let polls = 0;
  let polling = true;
  const loop = (async () => {
    while (polling) {
      const ps = (await (await fetch(`${simUrl}/api/ps`)).json()) as { models: unknown[] };
      max = Math.max(max, ps.models.length);
      polls++;
    }
  })();
  return {
    stop: async () => {
      polling = false;
      await loop;
      return { max, polls };
    },
  };
}

const search = new LocalSearch();

function workerFor(
  fleet: TestFleet,
  simUrl: string,
  extra: Partial<ConstructorParameters<typeof Cell0Worker>[0]>,
) {
  return new Cell0Worker({
    redisUrl: testRedisUrl(),
    prefix: fleet.prefix,
    inference: new OllamaBackend(new OllamaClient({ baseUrl: simUrl })),
    search: { [SearchProvider.LOCAL]: search },
    concurrency: { inference: 2, search: 2 },
    shutdownTimeoutMs: 5000,
    heartbeatMs: 300,
    ...extra,
  });
}

describe('admission under resource pressure (two workers)', () => {
  let fleet: TestFleet;
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
    await fleet?.close();
  });

  it('a worker with an injected memory violation stops taking jobs, the other serves them all; it resumes after', async () => {
    fleet = await startTestFleet({ worker: false });
    const simUrl = fleet.sim.url;
    const memory = { a: 40, b: 40 };
    const rmA = new ResourceManagement({ sampleMs: 100, sampler: () => sample(memory.a) });
    const rmB = new ResourceManagement({ sampleMs: 100, sampler: () => sample(memory.b) });
    const a = workerFor(fleet, simUrl, { limiter: rmA.limiter, status: () => rmA.status() });
    const b = workerFor(fleet, simUrl, { limiter: rmB.limiter, status: () => rmB.status() });
    closers.push(
      () => rmA.close(),
      () => rmB.close(),
      () => a.close(),
      () => b.close(),
    );
    await Promise.all([rmA.start(), rmB.start()]);
    await Promise.all([a.start(), b.start()]);

    // Injected memory violation on A: 97% > 85%.
    const paused = once(a, 'worker:paused');
    memory.a = 97;
    const [{ violations }] = (await paused) as [{ violations: ResourceViolation[] }];
    expect(violations).toEqual([expect.objectContaining({ resource: 'memory', value: 97, threshold: 85 })]);
    expect(a.paused).toBe(true);

    const run = async (tag: string, n: number) =>
      Promise.all(
        Array.from({ length: n }, (_, i) =>
          post(`${fleet.url}/v1/inference`, {
            model: 'qwen2.5:0.5b',
            prompt: `${tag} job ${i}`,
            wait: 20_000,
          }),
        ),
      );
    const first = await run('pressure-on', 16);
    expect(first.map((r) => r.status)).toEqual(Array(16).fill(200));
    const servedBy = (rs: typeof first) => rs.map((r) => (r.body.result as { servedBy: string }).servedBy);
    expect(new Set(servedBy(first))).toEqual(new Set([b.id]));

    // The fleet view: A paused by memory, with its latest usage; B running.
    const fleetView = await get(`${fleet.url}/v1/fleet`);
    expect(fleetView.status).toBe(200);
    const workers = fleetView.body.workers as Record<string, unknown>[];
    const viewA = workers.find((w) => w.id === a.id)!;
    const viewB = workers.find((w) => w.id === b.id)!;
    expect(viewA.state).toBe('paused');
    expect(viewA.pressure).toMatchObject({ underPressure: true, violations: [{ resource: 'memory' }] });
    expect((viewA.resources as { usage: ResourceSample }).usage.memoryPercent).toBe(97);
    expect(viewB.state).toBe('running');
    expect((viewB.resources as { usage: ResourceSample }).usage.memoryPercent).toBe(40);
    expect(fleetView.body.summary).toMatchObject({ workers: 2, running: 1, paused: 1 });
    // The same, read from Redis by any process.
    const reader = createRedisConnection({ url: testRedisUrl(), role: 'client' });
    try {
      await waitUntilReady(reader, 5000);
      const usage = await getFleetUsage(reader, fleet.prefix);
      expect(
        usage
          .map((u) => [u.id === a.id ? 'a' : 'b', u.state, (u.usage as ResourceSample).memoryPercent])
          .sort(),
      ).toEqual([
        ['a', 'paused', 97],
        ['b', 'running', 40],
      ]);
    } finally {
      await closeRedis(reader);
    }

    // Hysteresis: 82% is under the limit but not under limit - 5: still paused.
    memory.a = 82;
    await once(rmA.monitor, 'sample');
    await once(rmA.monitor, 'sample');
    expect(a.paused).toBe(true);

    // Removing the violation resumes A; with B now under pressure, A serves everything.
    const resumed = once(a, 'worker:resumed');
    memory.a = 40;
    await resumed;
    const bPaused = once(b, 'worker:paused');
    memory.b = 99;
    await bPaused;
    const second = await run('pressure-moved', 16);
    expect(second.map((r) => r.status)).toEqual(Array(16).fill(200));
    expect(new Set(servedBy(second))).toEqual(new Set([a.id]));
  });

  it('a job that reaches a worker under pressure goes back to wait without spending an attempt, and runs after the pressure ends', async () => {
    fleet = await startTestFleet({ worker: false });
    // A limiter the test drives by hand: pressure can begin before the worker has heard of it (the state a
    // worker is in when pressure starts between fetching a job and running it).
    const limiter = Object.assign(new EventEmitter(), {
      underPressure: false,
      violations: [{ resource: 'memory', value: 96, threshold: 85 }] as ResourceViolation[],
      episodes: 0,
    });
    const w = workerFor(fleet, fleet.sim.url, { limiter });
    closers.push(() => w.close());
    await w.start();
    limiter.underPressure = true;
    const handedBack = once(w, 'job:handed-back');
    const paused = once(w, 'worker:paused');
    const submitted = post(`${fleet.url}/v1/inference`, {
      model: 'qwen2.5:0.5b',
      prompt: 'held',
      wait: 20_000,
    });
    const [{ jobId }] = (await handedBack) as [{ jobId: string }];
    await paused;
    // A fetch that was already blocked on the queue when the pause began can take the job once more (BullMQ
    // wakes it with the job's marker); that worker, paused, hands it back again. So the job is back in wait
    // once the hand-backs are over, whatever the order a stalled host runs them in.
    const job = await fleet.client.submitter.getQueue(QueueName.INFERENCE).getJob(jobId);
    await until(async () => (await job?.getState()) === 'waiting', 30_000, 'the job back in wait');
    expect(job?.attemptsMade).toBe(0);
    expect(w.paused).toBe(true);

    limiter.underPressure = false;
    limiter.emit('pressure:end');
    const r = await submitted;
    expect(r.status).toBe(200);
    const done = await fleet.client.submitter.getQueue(QueueName.INFERENCE).getJob(jobId);
    // Completed on its first attempt: the hand-back did not count as one.
    expect(done?.attemptsMade).toBe(1);
    expect(await done?.getState()).toBe('completed');
    expect(w.paused).toBe(false);
  });

  it('a worker that comes under pressure lets its running jobs finish', async () => {
    fleet = await startTestFleet({ worker: false, sim: { ttftMs: 600 } });
    const memory = { v: 40 };
    const rm = new ResourceManagement({ sampleMs: 100, sampler: () => sample(memory.v) });
    const w = workerFor(fleet, fleet.sim.url, { limiter: rm.limiter });
    closers.push(
      () => rm.close(),
      () => w.close(),
    );
    await rm.start();
    await w.start();
    const running = post(`${fleet.url}/v1/inference`, {
      model: 'qwen2.5:0.5b',
      prompt: 'long one',
      wait: 20_000,
    });
    await until(() => w.active === 1, 5000, 'the job to be running');
    memory.v = 95;
    await once(w, 'worker:paused');
    expect(w.active).toBe(1);
    const r = await running;
    expect(r.status).toBe(200);
  });
});

describe('model memory manager driving the simulator', () => {
  let fleet: TestFleet;
  afterEach(async () => {
    await fleet?.close();
  });

  // 0.40 + 2.02 + 2.18 GB: any two fit in 4.3 GB, all three do not.
  const MODELS = ['qwen2.5:0.5b', 'llama3.2:3b', 'phi3:mini'];
  const BUDGET = 4.3e9;

  /** A worker (concurrency jobs at once) whose inference models are managed within `budget`. */
  async function managedWorker(budget: number, concurrency: number, policy?: EvictionPolicy) {
    const backend = new OllamaBackend(new OllamaClient({ baseUrl: fleet.sim.url }));
    const rm = new ResourceManagement({
      sampleMs: 1000,
      sampler: () => sample(30),
      models: {
        backends: [{ name: 'sim', driver: modelDriverFor(backend)!, serves: () => true }],
        budgetBytes: budget,
        ...(policy ? { policy } : {}),
      },
    });
    const w = workerFor(fleet, fleet.sim.url, {
      inference: backend,
      concurrency: { inference: concurrency, search: 1 },
      limiter: rm.limiter,
      models: (m) => rm.modelsFor(m),
      status: () => rm.status(),
    });
    await rm.start();
    await w.start();
    return { rm, w, close: async () => (await w.close(), await rm.close()) };
  }

  it.each([EvictionPolicy.LRU, EvictionPolicy.FIFO])(
    '%s: a round-robin over three models never has more than two loaded; evictions as the policy says',
    async (policy) => {
      fleet = await startTestFleet({ worker: false });
      const { rm, w, close } = await managedWorker(BUDGET, 1, policy);
      const watch = watchLoaded(fleet.sim.url);
      try {
        const rounds = 4;
        for (let i = 0; i < rounds * MODELS.length; i++) {
          const model = MODELS[i % MODELS.length]!;
          const r = await post(`${fleet.url}/v1/inference`, {
            model,
            prompt: `round robin ${i}`,
            wait: 20_000,
          });
          expect(r.status).toBe(200);
        }
        const seen = await watch.stop();
        expect(seen.polls).toBeGreaterThan(12);
        expect(seen.max).toBe(2);
        const stats = rm.managers[0]!.manager.getStats();
        // Two slots, three models in turn: under LRU and FIFO every access after the first two evicts the
        // model that comes next, so nothing ever hits: 12 loads, 10 evictions, all by the policy.
        expect(stats).toMatchObject({ hits: 0, misses: 12, loads: 12, evictions: 10 });
        expect(stats.evictionsByPolicy).toEqual({ [policy]: 10 });
        const sim = fleet.sim.stats();
        expect(sim.loads).toBe(12);
        expect(sim.unloads).toBe(10);
        // Resident: the last two of the round-robin, as the manager, /api/ps and GET /v1/fleet all say.
        const ps = (await (await fetch(`${fleet.sim.url}/api/ps`)).json()) as { models: { name: string }[] };
        expect(ps.models.map((m) => m.name).sort()).toEqual(['llama3.2:3b', 'phi3:mini']);
        expect(stats.resident.map((m) => m.modelId).sort()).toEqual(['llama3.2:3b', 'phi3:mini']);
        await until(
          async () => {
            const f = await get(`${fleet.url}/v1/fleet`);
            const warm = (f.body.summary as { warmModels: Record<string, string[]> }).warmModels;
            return (
              warm['phi3:mini']?.[0] === w.id && warm['llama3.2:3b']?.[0] === w.id && !warm['qwen2.5:0.5b']
            );
          },
          3000,
          'GET /v1/fleet to show the two resident models on the worker',
        );
      } finally {
        await watch.stop();
        await close();
      }
    },
  );

  // A A A B C B C A B C with room for two: the policies disagree. LRU, FIFO and TTL (equal keep-alives:
  // the soonest to expire is the least recently used) evict A, then B, C, A. LFU keeps A (3 uses early on)
  // and evicts the less used of B and C each time.
  const [A, B, C] = MODELS as [string, string, string];
  const SEQUENCE = [A, A, A, B, C, B, C, A, B, C];
  it.each([
    [EvictionPolicy.LRU, [A, B, C, A], 4],
    [EvictionPolicy.FIFO, [A, B, C, A], 4],
    [EvictionPolicy.TTL, [A, B, C, A], 4],
    [EvictionPolicy.LFU, [B, C, B, C, B], 3],
  ])(
    '%s on the simulator: victims %j, %i hits; never more than two loaded',
    async (policy, victims, hits) => {
      fleet = await startTestFleet({ worker: false });
      const { rm, close } = await managedWorker(BUDGET, 1, policy);
      const evicted: string[] = [];
      rm.managers[0]!.manager.on('model:evicted', (e) => evicted.push(e.modelId));
      const watch = watchLoaded(fleet.sim.url);
      try {
        for (const [i, model] of SEQUENCE.entries()) {
          const r = await post(`${fleet.url}/v1/inference`, { model, prompt: `sequence ${i}`, wait: 20_000 });
          expect(r.status).toBe(200);
        }
        expect((await watch.stop()).max).toBe(2);
        expect(evicted).toEqual(victims);
        const stats = rm.managers[0]!.manager.getStats();
        expect(stats).toMatchObject({ hits, loads: SEQUENCE.length - hits, evictions: victims.length });
        expect(stats.evictionsByPolicy).toEqual({ [policy]: victims.length });
        expect(fleet.sim.stats().unloads).toBe(victims.length);
      } finally {
        await watch.stop();
        await close();
      }
    },
  );

  it('a model in use is never evicted: with room for one model, concurrent jobs on two models take turns', async () => {
    fleet = await startTestFleet({ worker: false, sim: { ttftMs: 150 } });
    const { rm, close } = await managedWorker(2.5e9, 4); // llama3.2:3b (2.02 GB) or phi3:mini (2.18 GB)
    const watch = watchLoaded(fleet.sim.url);
    try {
      const rs = await Promise.all(
        ['llama3.2:3b', 'phi3:mini', 'llama3.2:3b', 'phi3:mini'].map((model, i) =>
          post(`${fleet.url}/v1/inference`, { model, prompt: `turns ${i}`, wait: 20_000 }),
        ),
      );
      expect(rs.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      expect((await watch.stop()).max).toBe(1);
      const stats = rm.managers[0]!.manager.getStats();
      expect(stats.loads).toBeGreaterThanOrEqual(2);
      expect(stats.evictions).toBe(stats.loads - 1);
      expect(fleet.sim.stats().unloads).toBe(stats.evictions);
    } finally {
      await watch.stop();
      await close();
    }
  });

  it('a model larger than the whole budget fails at once with 422 CELL0_MODEL_TOO_LARGE, loading nothing', async () => {
    fleet = await startTestFleet({ worker: false });
    const { close } = await managedWorker(1e9, 1);
    try {
      const r = await post(`${fleet.url}/v1/inference`, {
        model: 'qwen2.5:7b',
        prompt: 'too big',
        wait: 10_000,
      });
      expect(r.status).toBe(422);
      expect(r.body.error).toMatchObject({ code: 'CELL0_MODEL_TOO_LARGE' });
      expect(String((r.body.error as { message: string }).message)).toMatch(/CELL0_MODEL_MEMORY_BUDGET/);
      expect(fleet.sim.stats().loads).toBe(0);
      const job = await fleet.client.submitter.getQueue(QueueName.INFERENCE).getJob(r.body.jobId as string);
      expect(job?.attemptsMade).toBe(1); // not retried
    } finally {
      await close();
    }
  });
});

describe('producers shed load', () => {
  let fleet: TestFleet;
  afterEach(async () => {
    await fleet?.close();
  });

  it('answers 503 with Retry-After when a queue is deeper than its bound (cache misses only)', async () => {
    fleet = await startTestFleet({ worker: false });
    const shedder = shedInference(fleet, { maxQueueDepth: 3, retryAfterMs: 7000 });
    for (let i = 0; i < 3; i++) {
      const r = await post(`${fleet.url}/v1/inference`, {
        model: 'qwen2.5:0.5b',
        prompt: `queued ${i}`,
        wait: 0,
      });
      expect(r.status).toBe(202);
    }
    await shedder.refresh();
    expect(shedder.snapshot().inference).toEqual({
      waiting: 3,
      workers: 0,
      paused: 0,
      saturated: 0,
      // Readings taken while the three were added: growth from the first of them, and the oldest one's age.
      growth: expect.any(Number),
      oldestWaitMs: expect.any(Number),
      behind: expect.any(Boolean),
    });
    const r = await post(`${fleet.url}/v1/inference`, {
      model: 'qwen2.5:0.5b',
      prompt: 'one too many',
      wait: 0,
    });
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('7');
    expect(r.body.error).toMatchObject({ code: 'CELL0_OVERLOADED', reason: 'queue_depth' });
    expect(shedder.refused.queue_depth).toBe(1);
    // The search queue has no bound reading: it still takes work.
    const s = await post(`${fleet.url}/v1/search`, { query: 'still open', provider: 'local', wait: 0 });
    expect(s.status).toBe(202);
  });

  it('cell0 api sheds by CELL0_MAX_QUEUE_DEPTH (the configured wiring)', async () => {
    const prefix = uniquePrefix('shed');
    const api = await startApi(
      loadConfig({
        REDIS_URL: testRedisUrl(),
        CELL0_QUEUE_PREFIX: prefix,
        CELL0_MAX_QUEUE_DEPTH: '2',
        CELL0_OVERLOAD_RETRY_AFTER_SEC: '3',
        CELL0_CACHE_ENABLED: '0',
        CELL0_HTTP_CACHE: '0',
      }),
      silentLogger(),
      { port: 0 },
    );
    try {
      const statuses: number[] = [];
      let refused: Awaited<ReturnType<typeof post>> | undefined;
      // The shedder decides on a reading at most 1 s old: keep adding until it refuses.
      for (let i = 0; i < 100 && !refused; i++) {
        const r = await post(`${api.url}/v1/search`, { query: `depth ${i}`, wait: 0 });
        statuses.push(r.status);
        if (r.status === 503) refused = r;
        else await new Promise((res) => setTimeout(res, 50));
      }
      expect(refused?.body.error).toMatchObject({ code: 'CELL0_OVERLOADED', reason: 'queue_depth' });
      expect(refused?.headers.get('retry-after')).toBe('3');
      expect(statuses.filter((x) => x === 202).length).toBeGreaterThanOrEqual(2);
      expect(statuses.every((x) => x === 202 || x === 503)).toBe(true);
    } finally {
      await api.close();
    }
  });

  it('answers 503 when every live worker serving the queue is paused by pressure, not when one runs', async () => {
    fleet = await startTestFleet({ worker: false });
    const shedder = shedInference(fleet, { maxQueueDepth: 0 });
    const redis = createRedisConnection({ url: testRedisUrl(), role: 'client' });
    await waitUntilReady(redis, 5000);
    try {
      const status = (id: string, state: 'running' | 'paused') => workerStatus(id, { state });
      await publishWorkerStatus(redis, fleet.prefix, status('w1', 'paused'), 10_000);
      await publishWorkerStatus(redis, fleet.prefix, status('w2', 'running'), 10_000);
      await shedder.refresh();
      const ok = await post(`${fleet.url}/v1/inference`, {
        model: 'qwen2.5:0.5b',
        prompt: 'one runs',
        wait: 0,
      });
      expect(ok.status).toBe(202);

      await publishWorkerStatus(redis, fleet.prefix, status('w2', 'paused'), 10_000);
      await shedder.refresh();
      const r = await post(`${fleet.url}/v1/inference`, {
        model: 'qwen2.5:0.5b',
        prompt: 'all paused',
        wait: 0,
      });
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('5');
      expect(r.body.error).toMatchObject({ code: 'CELL0_OVERLOADED', reason: 'fleet_pressure' });
    } finally {
      await closeRedis(redis);
    }
  });
});
