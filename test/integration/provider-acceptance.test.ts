/*
 * The providers issue's acceptance checks, end to end: configuration → buildProviders → Cell0Worker →
 * real Redis → local servers speaking the backends' real shapes.
 */
import { Redis } from 'ioredis';
import { Cell0Client } from '../../producers/cell0-client';
import { loadConfig, type Config } from '../../shared/config/config';
import { silentLogger } from '../../shared/logger';
import { closeRedis, createRedisConnection } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { QueueName } from '../../shared/queues/names';
import { SearchProvider } from '../../shared/queues/enums';
import { Cell0Worker } from '../../workers/cell0-worker';
import { buildProviders, type ProviderSet } from '../../workers/providers/from-config';
import { OllamaSimulator } from '../../workers/providers/simulator/ollama-simulator';
import { type SimulatorStats } from '../../workers/providers/simulator/simulator-stats';
import { spawnCell0 } from '../helpers/cli';
import { startFakeOpenAI } from '../helpers/fake-openai';
import { startFakeSearxng } from '../helpers/fake-searxng';
import { startFakeBrave } from '../helpers/fake-brave';
import { freePort } from '../helpers/redis-server';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';
import { intervalViolation } from '../helpers/checks';
import { type PermitGrant } from '../../shared/rate-limit/token-bucket';

jest.setTimeout(120_000);

interface Fleet {
  config: Config;
  client: Cell0Client;
  workers: Cell0Worker[];
  providers: ProviderSet[];
  deferred: number;
  close(): Promise<void>;
}

/** `n` workers (each with its own pools, guards and rate-limit connection, as separate processes have). */
async function startFleet(env: Record<string, string>, n = 1, concurrency = 8): Promise<Fleet> {
  const prefix = uniquePrefix('prov');
  const config = loadConfig({ REDIS_URL: testRedisUrl(), CELL0_QUEUE_PREFIX: prefix, ...env });
  const conns: RedisConnection[] = [];
  const fleet: Fleet = {
    config,
    // The tests here are about the providers' paths; hundreds of submissions at once on a stalled host can
    // outlast the producer's 2 s command timeout (a typed RedisTimeoutError, tested in redis-slow.test.ts).
    client: new Cell0Client({
      redisUrl: config.redis.url,
      prefix,
      policy: { attempts: 1 },
      commandTimeoutMs: 30_000,
    }),
    workers: [],
    providers: [],
    deferred: 0,
    close: async () => {
      await Promise.all(fleet.workers.map((w) => w.close()));
      await Promise.all(fleet.providers.map((p) => p.close()));
      await fleet.client.close();
      const r = new Redis(config.redis.url);
      const keys = await r.keys(`${prefix}*`);
      if (keys.length > 0) await r.unlink(...keys);
      await r.quit();
      await Promise.all(conns.map((c) => closeRedis(c)));
    },
  };
  for (let i = 0; i < n; i++) {
    const redis = createRedisConnection({ url: config.redis.url, role: 'worker', connectionName: 'test:rl' });
    conns.push(redis);
    const providers = buildProviders(config, {
      inference: true,
      search: true,
      redis,
      logger: silentLogger(),
    });
    const worker = new Cell0Worker({
      redisUrl: config.redis.url,
      prefix,
      inference: providers.inference!,
      search: providers.search,
      concurrency: { inference: concurrency, search: concurrency },
      backendWaitMaxMs: config.providers.backendWaitMaxMs,
      shutdownTimeoutMs: 5000,
      heartbeatMs: 200,
      status: () => providers.metrics(),
    });
    worker.on('job:deferred', () => fleet.deferred++);
    await worker.start();
    fleet.workers.push(worker);
    fleet.providers.push(providers);
  }
  await fleet.client.start();
  return fleet;
}

describe('providers acceptance', () => {
  test('429 on a third of requests: 500 jobs, 0 failed, the limiter never grants more than the configured rate', async () => {
    const rate = 100;
    const burst = 10;
    // The simulator enforces the same limit itself and answers 429 beyond it. A fleet-wide limiter spaces
    // its grants (on Redis's clock), not the arrivals at the server: a request granted on time can be held
    // up on a busy host (in the worker's event loop, the socket, the server's) and arrive bunched with the
    // next ones. What the system guarantees is measured where it is made, at the limiter; a bunched arrival
    // the server refuses is a 429 like the injected ones, and the 429 path (retry after Retry-After, or the
    // job waits in the queue) must absorb it without failing a job. It runs in a process of its own
    // (`cell0 simulator`) so that its arrival times are not taken by the event loop of the workers.
    const simProc = spawnCell0(['simulator', '--port', '0'], {
      CELL0_SIM_TTFT_MS: '2',
      CELL0_SIM_TOKENS_PER_SEC: '5000',
      CELL0_SIM_LOAD_MS_PER_GB: '0',
      CELL0_SIM_FAULT_RATE_429: String(1 / 3),
      CELL0_SIM_FAULT_RETRY_AFTER_SEC: '1',
      CELL0_SIM_FAULT_SEED: '42',
      CELL0_SIM_RATE_LIMIT_RPS: String(rate),
      CELL0_SIM_RATE_LIMIT_BURST: String(burst),
    });
    const [, url] = (await simProc.waitFor(/simulator\s+(http:\/\/\S+)/).catch((err: unknown) => {
      simProc.kill('SIGKILL');
      throw err;
    })) as [string, string];
    const sim = {
      stats: async () => (await (await fetch(`${url}/_sim/stats`)).json()) as SimulatorStats,
      close: async () => {
        simProc.kill('SIGTERM');
        await simProc.exited;
      },
    };
    const fleet = await startFleet(
      {
        CELL0_OLLAMA_URL: url,
        CELL0_RATE_LIMITS: `ollama=${rate}/${burst}`,
        CELL0_RATE_LIMIT_SCOPE: 'fleet',
      },
      2,
      32,
    ).catch(async (err: unknown) => {
      await sim.close();
      throw err;
    });
    // Every permit either worker's limiter hands out, with its grant time on Redis's clock.
    const grants: PermitGrant[] = [];
    const limiters = fleet.providers.flatMap((p) => p.guards.map((g) => g.limiter));
    expect(limiters).toHaveLength(2);
    for (const l of limiters) l!.on('permit:granted', (g) => grants.push(g));
    const deferred: string[] = [];
    for (const w of fleet.workers) w.on('job:deferred', (d) => deferred.push(d.reason));
    try {
      const handles = await Promise.all(
        Array.from({ length: 500 }, (_, i) =>
          fleet.client.enqueueInference({
            model: 'qwen2.5:0.5b',
            prompt: `question ${i}`,
            params: { max_tokens: 4 },
          }),
        ),
      );
      const results = await Promise.all(handles.map((h) => h.wait(110_000)));
      expect(results).toHaveLength(500);
      for (const r of results) expect(r.provider).toBe('ollama');

      const counts = await fleet.client.submitter.getCounts();
      expect(counts[QueueName.INFERENCE]).toMatchObject({ completed: 500, failed: 0 });
      const stats = await sim.stats();
      // A third of the calls were refused with 429 and retried: the retries went through the limit too.
      expect(stats.faults.injected429).toBeGreaterThan(150);
      // The guarantee, at the limiter: over ANY interval, at most burst + rate × interval grants, fleet-wide
      // (both workers' grants merged; they share one bucket in Redis).
      expect(
        intervalViolation(
          grants.map((g) => g.grantedAt),
          rate,
          burst,
        ),
      ).toBeUndefined();
      // Every call the server saw went through the limiter (a grant whose call a busy host timed out before
      // it left is a grant without a request, never the other way round).
      expect(grants.every((g) => g.tokens === 1)).toBe(true);
      const requests = stats.requests.byEndpoint['/api/generate'] ?? 0;
      expect(requests).toBeLessThanOrEqual(grants.length);
      // The 429 path: every 429 the server answered (injected, or its own limit refusing an arrival bunched
      // by the host) was retried in-line after its Retry-After or sent its job back to wait — and, above,
      // every job completed with none failed.
      const total429 = stats.faults.injected429 + stats.faults.rateLimited;
      const retries429 = fleet.providers
        .flatMap((p) => p.metrics().backends)
        .reduce((n, b) => n + (b.retriesBy['429'] ?? 0), 0);
      expect(retries429).toBeGreaterThan(100);
      expect(retries429).toBeLessThanOrEqual(total429);
      expect(retries429 + deferred.length).toBeGreaterThanOrEqual(total429);
      // 500 answered calls plus one for each 429, at least.
      expect(requests).toBeGreaterThanOrEqual(500 + total429);
    } finally {
      await fleet.close();
      await sim.close();
    }
  });

  test('with the backend down, jobs wait (no attempt spent) and complete once it is back', async () => {
    const port = await freePort();
    const fleet = await startFleet({
      CELL0_OLLAMA_URL: `http://127.0.0.1:${port}`,
      CELL0_PROVIDER_RETRIES: '1',
      CELL0_PROVIDER_BREAKER_THRESHOLD: '3',
      CELL0_PROVIDER_BREAKER_RESET_MS: '500',
      CELL0_RATE_LIMITS: '',
    });
    let sim: OllamaSimulator | undefined;
    try {
      const handles = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          fleet.client.enqueueInference({
            model: 'qwen2.5:0.5b',
            prompt: `outage ${i}`,
            params: { max_tokens: 4 },
          }),
        ),
      );
      await until(() => fleet.deferred >= 20, 20_000, 'jobs deferred while the backend is down');
      const guard = fleet.providers[0]!.metrics().backends[0]!;
      expect(guard.breaker.failures).toBeGreaterThanOrEqual(3);
      // The open breaker is visible fleet-wide, in the status the worker publishes (GET /v1/fleet).
      await until(
        async () => {
          const [w] = await fleet.client.fleet();
          const backends = (w?.backends ?? []) as Array<{ breaker: { state: string } }>;
          return backends[0]?.breaker.state === 'open';
        },
        10_000,
        'the published status to show the open breaker',
      );
      const during = await fleet.client.submitter.getCounts();
      expect(during[QueueName.INFERENCE]!.failed).toBe(0);
      expect(during[QueueName.INFERENCE]!.completed).toBe(0);

      sim = new OllamaSimulator({ port, ttftMs: 2, tokensPerSec: 5000, loadMsPerGb: 0 });
      await sim.start();
      const results = await Promise.all(handles.map((h) => h.wait(60_000)));
      expect(results).toHaveLength(20);
      const after = await fleet.client.submitter.getCounts();
      expect(after[QueueName.INFERENCE]).toMatchObject({ completed: 20, failed: 0 });
      // Waiting for the backend spent no attempt: each job completed on its first.
      for (const h of handles) {
        const job = await fleet.client.submitter.getQueue(QueueName.INFERENCE).getJob(h.id);
        expect(job?.attemptsMade).toBe(1);
      }
    } finally {
      await fleet.close();
      await sim?.close();
    }
  });

  test('a job the rate limit cannot serve now waits in the queue (no attempt spent) and runs later', async () => {
    const sim = new OllamaSimulator({ ttftMs: 2, tokensPerSec: 5000, loadMsPerGb: 0 });
    const { url } = await sim.start();
    const fleet = await startFleet({
      CELL0_OLLAMA_URL: url,
      CELL0_RATE_LIMITS: 'ollama=4/1',
      CELL0_RATE_LIMIT_MAX_WAIT_MS: '0',
      CELL0_RATE_LIMIT_SCOPE: 'process',
    });
    try {
      const handles = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          fleet.client.enqueueInference({
            model: 'qwen2.5:0.5b',
            prompt: `limited ${i}`,
            params: { max_tokens: 4 },
          }),
        ),
      );
      const results = await Promise.all(handles.map((h) => h.wait(30_000)));
      expect(results).toHaveLength(6);
      expect(fleet.deferred).toBeGreaterThan(0);
      const limiter = fleet.providers[0]!.metrics().backends[0]!.limiter!;
      expect(limiter.granted).toBe(6);
      expect(limiter.refused).toBeGreaterThan(0);
      for (const h of handles) {
        const job = await fleet.client.submitter.getQueue(QueueName.INFERENCE).getJob(h.id);
        expect(job?.attemptsMade).toBe(1);
      }
      expect(sim.stats().requests.byEndpoint['/api/generate']).toBe(6);
    } finally {
      await fleet.close();
      await sim.close();
    }
  });

  test('CELL0_OPENAI_URL runs inference on an OpenAI-compatible server; routes split models between backends', async () => {
    const openai = await startFakeOpenAI({ apiKey: 'sk-test', models: ['gpt-fake'] });
    const sim = new OllamaSimulator({ ttftMs: 2, tokensPerSec: 5000, loadMsPerGb: 0 });
    const { url: simUrl } = await sim.start();
    const fleet = await startFleet({
      CELL0_OPENAI_URL: openai.url,
      CELL0_OPENAI_API_KEY: 'sk-test',
      CELL0_OLLAMA_URL: simUrl,
      CELL0_MODEL_ROUTES: 'gpt-*=openai,*=ollama',
    });
    try {
      const a = await fleet.client.infer({ model: 'gpt-fake', prompt: 'hello openai' }, { waitMs: 20_000 });
      expect(a.result.provider).toBe('openai');
      expect(a.result.text.length).toBeGreaterThan(0);
      const chat = openai.requests.find((r) => r.path.endsWith('/chat/completions'));
      expect(chat?.headers.authorization).toBe('Bearer sk-test');
      const b = await fleet.client.infer(
        { model: 'qwen2.5:0.5b', prompt: 'hello ollama' },
        { waitMs: 20_000 },
      );
      expect(b.result.provider).toBe('ollama');
      expect(sim.stats().requests.byEndpoint['/api/generate']).toBe(1);
    } finally {
      await fleet.close();
      await sim.close();
      await openai.close();
    }
  });

  test('only CELL0_OPENAI_URL set: every model goes to it', async () => {
    const openai = await startFakeOpenAI({ models: ['served-model'] });
    const fleet = await startFleet({ CELL0_OPENAI_URL: openai.url });
    try {
      const r = await fleet.client.infer({ model: 'served-model', prompt: 'hi' }, { waitMs: 20_000 });
      expect(r.result.provider).toBe('openai');
    } finally {
      await fleet.close();
      await openai.close();
    }
  });

  test('a worker leaves the fleet list when it closes', async () => {
    const sim = new OllamaSimulator();
    const { url } = await sim.start();
    const fleet = await startFleet({ CELL0_OLLAMA_URL: url }, 2);
    try {
      expect((await fleet.client.fleet()).length).toBe(2);
      await fleet.workers[0]!.close();
      const left = await fleet.client.fleet();
      expect(left.map((w) => w.id)).toEqual([fleet.workers[1]!.id]);
    } finally {
      await fleet.close();
      await sim.close();
    }
  });

  test('search jobs reach SearXNG and Brave when configured', async () => {
    const searxng = await startFakeSearxng();
    const brave = await startFakeBrave({ apiKey: 'brave-key' });
    const fleet = await startFleet({
      CELL0_SEARXNG_URL: searxng.url,
      CELL0_BRAVE_API_KEY: 'brave-key',
      CELL0_BRAVE_URL: brave.url,
      CELL0_RATE_LIMITS: 'brave=50/50',
    });
    try {
      const s = await fleet.client.search(
        { query: 'open source search', provider: SearchProvider.SEARXNG },
        { waitMs: 20_000 },
      );
      expect(s.result.provider).toBe('searxng');
      expect(s.result.hits.length).toBeGreaterThan(0);
      const b = await fleet.client.search(
        { query: 'open source search', provider: SearchProvider.BRAVE },
        { waitMs: 20_000 },
      );
      expect(b.result.provider).toBe('brave');
      expect(b.result.hits.length).toBeGreaterThan(0);
      expect(brave.requests[0]?.headers['x-subscription-token']).toBe('brave-key');
    } finally {
      await fleet.close();
      await searxng.close();
      await brave.close();
    }
  });
});
