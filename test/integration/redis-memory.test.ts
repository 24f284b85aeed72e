import { Writable } from 'node:stream';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Cell0Client } from '../../producers/cell0-client';
import { createApi } from '../../producers/api/create-api';
import { LoadShedder } from '../../producers/load-shedder';
import { HttpServer } from '../../shared/http-server';
import { RedisFullError } from '../../shared/errors';
import { createLogger, LOG_LINE_LIMIT } from '../../shared/logger';
import { QUEUE_NAMES, QueueName, queuePrefix } from '../../shared/queues/names';
import { SearchProvider } from '../../shared/queues/enums';
import { parseMemoryInfo } from '../../shared/redis/redis-memory';
import { Cell0Worker } from '../../workers/cell0-worker';
import { createMaintenanceTasks } from '../../workers/maintenance';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';
import { LocalSearch } from '../../workers/providers/local-search/local-search';
import { OllamaSimulator } from '../../workers/providers/simulator/ollama-simulator';
import { get, post } from '../helpers/fleet';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server';
import { spawnCell0 } from '../helpers/cli';
import { rejectionOf, until } from '../helpers/wait';

const MARKER = 'PAYLOAD-MARKER-';
/** A 30 KB prompt that can be recognised in a log line. */
const prompt = (n: number) => `${n} ` + MARKER.repeat(2000);
const MODEL = 'qwen2.5:0.5b';

describe('a full Redis (private redis-server, maxmemory 16mb, noeviction)', () => {
  let redis: PrivateRedis;
  let admin: Redis;
  let sim: OllamaSimulator;
  let simUrl: string;
  const lines: string[] = [];
  const log = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    }),
  });
  const closers: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    redis = await startPrivateRedis({ args: ['--maxmemory', '16mb', '--maxmemory-policy', 'noeviction'] });
    admin = new Redis(redis.url);
    sim = new OllamaSimulator({ ttftMs: 1, tokensPerSec: 100_000, loadMsPerGb: 1 });
    simUrl = (await sim.start()).url;
  });
  afterAll(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    admin.disconnect();
    await sim.close();
    await redis.destroy();
  });

  const memory = async () => parseMemoryInfo(await admin.info('memory'));

  const newWorker = (completed: Set<string>) => {
    const maintRedis = new Redis(redis.url, { maxRetriesPerRequest: null });
    maintRedis.on('error', () => undefined);
    const queues = QUEUE_NAMES.map(
      (q) => new Queue(q, { connection: maintRedis, prefix: queuePrefix('{cell0}', q) }),
    );
    for (const q of queues) q.on('error', () => undefined);
    const worker = new Cell0Worker({
      redisUrl: redis.url,
      inference: new OllamaBackend(new OllamaClient({ baseUrl: simUrl })),
      search: { [SearchProvider.LOCAL]: new LocalSearch() },
      concurrency: { inference: 8, search: 2 },
      shutdownTimeoutMs: 2000,
      fetchRetryDelayMs: 1000,
      maintenance: {
        tasks: createMaintenanceTasks({
          redis: maintRedis,
          prefix: '{cell0}',
          queues,
          summaryTtlMs: 15_000,
          retention: { completedMs: 3_600_000, failedMs: 86_400_000 },
          logger: log,
        }),
        monitorEveryMs: 5000,
        cleanupEveryMs: 60_000,
      },
      logger: log,
    });
    worker.on('job:completed', (e) => completed.add(e.jobId));
    closers.push(async () => {
      await worker.close();
      await Promise.allSettled(queues.map((q) => q.close()));
      maintRedis.disconnect();
    });
    return worker;
  };

  const newApi = async (client: Cell0Client, shed: boolean) => {
    if (shed)
      client.shedder = new LoadShedder({
        queues: () => ({}),
        fleet: async () => [],
        redisMemory: client.redisMemory,
      });
    const server = new HttpServer(createApi({ client, resultWaitMs: 0, logger: log }), {
      host: '127.0.0.1',
      port: 0,
    });
    const { url } = await server.start();
    closers.push(() => server.close());
    return url;
  };

  it('sheds at the watermark, answers 503 CELL0_REDIS_FULL when full, logs no payload, and a worker started while full drains every accepted job', async () => {
    const limits = { maxPromptBytes: 64 * 1024 };
    // The API as deployed: a load shedder reading the memory watermark (80% here).
    const shedClient = new Cell0Client({
      redisUrl: redis.url,
      limits,
      memoryWatermarkPercent: 80,
      logger: log,
    });
    closers.push(() => shedClient.close());
    await shedClient.start();
    const apiUrl = await newApi(shedClient, true);

    // 1. Finished jobs take memory (results are kept for an hour): run some with a first worker.
    const done1 = new Set<string>();
    const w1 = newWorker(done1);
    await w1.start();
    for (let i = 0; i < 150; i++) {
      const r = await post(`${apiUrl}/v1/inference`, { model: MODEL, prompt: prompt(i), wait: 0 });
      // Accepted: 202, or 200 when the worker (in this process) finished the job while it was being added —
      // `wait: 0` does not wait, but a result already there is answered (docs/http-api.md).
      expect([200, 202]).toContain(r.status);
      expect(r.body).toMatchObject({ jobId: expect.any(String) });
    }
    await until(() => done1.size >= 150, 60_000, '150 jobs completed');
    await w1.close();

    // 2. No worker: requests pile up until the watermark sheds them, before Redis refuses anything.
    const accepted = new Set<string>();
    let shed: Awaited<ReturnType<typeof post>> | undefined;
    for (let i = 1000; i < 2000 && !shed; i++) {
      const r = await post(`${apiUrl}/v1/inference`, { model: MODEL, prompt: prompt(i), wait: 0 });
      if (r.status === 202) accepted.add(r.body.jobId as string);
      else shed = r;
      if (i % 20 === 0) await shedClient.redisMemory.refresh();
    }
    expect(shed?.status).toBe(503);
    expect(shed?.body).toMatchObject({ error: { code: 'CELL0_REDIS_FULL', reason: 'watermark' } });
    expect(Number(shed?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await memory()).usedPercent).toBeLessThan(100);
    let ready = await get(`${apiUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({
      reason: 'redis_memory_watermark',
      redisMemory: { state: 'watermark', watermarkPercent: 80, policy: 'noeviction', policyOk: true },
    });

    // 3. A producer without a watermark fills Redis up: the library throws the typed error...
    const rawClient = new Cell0Client({
      redisUrl: redis.url,
      limits,
      memoryWatermarkPercent: 0,
      logger: log,
    });
    closers.push(() => rawClient.close());
    await rawClient.start();
    let oom: unknown;
    for (let i = 5000; i < 7000 && !oom; i++) {
      try {
        const r = await rawClient.submitInference(
          rawClient.parseInference({ model: MODEL, prompt: prompt(i) }),
          {
            waitMs: 0,
          },
        );
        accepted.add(r.jobId);
      } catch (err) {
        oom = err;
      }
    }
    expect(oom).toBeInstanceOf(RedisFullError);
    expect(oom).toMatchObject({ code: 'CELL0_REDIS_FULL', reason: 'oom' });
    // ...and its API answers 503 CELL0_REDIS_FULL with Retry-After (it was 500 CELL0_INTERNAL).
    const rawUrl = await newApi(rawClient, false);
    // Redis at its limit can take one more small write after refusing a larger one (memory moves a little
    // between the two), so the API keeps sending unique requests until Redis refuses: each one is either
    // accepted (202, and must complete below like every accepted job) or refused with the typed 503.
    let full = await post(`${rawUrl}/v1/inference`, { model: MODEL, prompt: prompt(9000), wait: 0 });
    for (let i = 9001; full.status === 202 && i < 9050; i++) {
      accepted.add(full.body.jobId as string);
      full = await post(`${rawUrl}/v1/inference`, { model: MODEL, prompt: prompt(i), wait: 0 });
    }
    expect(full.status).toBe(503);
    expect(full.body).toMatchObject({ error: { code: 'CELL0_REDIS_FULL', reason: 'oom' } });
    expect(Number(full.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // The deployed API says why it is not ready.
    await shedClient.redisMemory.refresh();
    ready = await get(`${apiUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ reason: 'redis_full', redisMemory: { state: 'full' } });
    expect((await memory()).usedPercent).toBeGreaterThanOrEqual(99);

    // 4. A worker started on the full Redis starts (its scheduler upsert and status are retried later),
    //    frees memory (old finished jobs) and runs every job that was accepted.
    const done2 = new Set<string>();
    const w2 = newWorker(done2);
    await w2.start();
    await until(() => [...accepted].every((id) => done2.has(id)), 120_000, 'every accepted job completed');
    expect(accepted.size).toBeGreaterThan(50);
    await shedClient.redisMemory.refresh();
    expect((await get(`${apiUrl}/readyz`)).status).toBe(200);

    // 5. Logs: bounded lines, never a prompt (a failed add once logged its whole payload).
    expect(lines.length).toBeGreaterThan(0);
    const longest = Math.max(...lines.map((l) => Buffer.byteLength(l)));
    expect(longest).toBeLessThanOrEqual(LOG_LINE_LIMIT);
    expect(lines.filter((l) => l.includes(MARKER))).toEqual([]);
    expect(lines.some((l) => l.includes('Redis memory over the watermark'))).toBe(true);
  }, 240_000);
});

describe('a Redis that may evict keys (maxmemory-policy allkeys-lru)', () => {
  let redis: PrivateRedis;
  beforeAll(async () => {
    redis = await startPrivateRedis({ args: ['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru'] });
  });
  afterAll(() => redis.destroy());

  it.each([['api'], ['worker'], ['dashboard']])(
    '`cell0 %s` refuses to start: exit 2 and how to fix it',
    async (cmd) => {
      const p = spawnCell0([cmd], {
        REDIS_URL: redis.url,
        CELL0_PORT: '0',
        CELL0_DASHBOARD_PORT: '0',
        CELL0_OLLAMA_URL: 'http://127.0.0.1:9',
      });
      expect(await p.exited).toBe(2);
      expect(p.stderr()).toMatch(/maxmemory-policy is "allkeys-lru"/);
      expect(p.stderr()).toMatch(/CONFIG SET maxmemory-policy noeviction/);
      expect(p.stderr()).toMatch(/redis\.conf: +maxmemory-policy noeviction/);
      expect(p.stderr()).toMatch(/parameter group/);
      for (const line of p.stdout().split('\n').filter(Boolean)) expect(() => JSON.parse(line)).not.toThrow();
    },
    40_000,
  );

  it('the library refuses too: Cell0Client.start and Cell0Worker.start reject with CELL0_REDIS_EVICTION_POLICY', async () => {
    const client = new Cell0Client({ redisUrl: redis.url });
    try {
      expect(await rejectionOf(client.start())).toMatchObject({ code: 'CELL0_REDIS_EVICTION_POLICY' });
    } finally {
      await client.close();
    }
    const worker = new Cell0Worker({
      redisUrl: redis.url,
      queues: [QueueName.SEARCH],
      search: { [SearchProvider.LOCAL]: new LocalSearch() },
    });
    try {
      expect(await rejectionOf(worker.start())).toMatchObject({ code: 'CELL0_REDIS_EVICTION_POLICY' });
    } finally {
      await worker.close();
    }
  });
});
