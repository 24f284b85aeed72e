import { createServer } from 'node:net';
import { type AddressInfo } from 'node:net';
import { createApi } from '../../producers/api/create-api';
import { Cell0Client } from '../../producers/cell0-client';
import { HttpServer } from '../../shared/http-server';
import { Cell0Metrics } from '../../shared/metrics/metrics';
import { spawnCell0 } from '../helpers/cli';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { parseSamples, promtool, series } from '../helpers/prom';

jest.setTimeout(60_000);

/**
 * A known workload through a whole fleet in this process (simulator, worker, client, API, caches), then the
 * counters on GET /metrics must hold exactly what happened.
 */
describe('GET /metrics after a known workload', () => {
  let fleet: TestFleet;
  let metrics: Cell0Metrics;
  let text: string;
  let samples: Map<string, number>;
  /** Prompt tokens of the 8 jobs' answers (the three identical requests share one job). */
  let promptTokens = 0;
  const model = 'qwen2.5:7b';

  beforeAll(async () => {
    metrics = new Cell0Metrics();
    // A slow first token: the three identical requests below are all in before their job finishes.
    fleet = await startTestFleet({ caches: true, metrics, sim: { ttftMs: 1500 } });

    // 10 requests at once: 7 different prompts and 3 copies of one → 8 jobs; 2 requests join a job.
    const prompts = [
      'describe the water cycle',
      'name three prime numbers',
      'what is a monad in functional programming',
      'write a haiku about autumn leaves',
      'explain TCP slow start',
      'how do bees make honey',
      'summarise the plot of Hamlet',
    ];
    const same = 'list the planets of the solar system';
    const answers = await Promise.all(
      [...prompts, same, same, same].map((prompt) => post(`${fleet.url}/v1/inference`, { model, prompt })),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    expect(new Set(answers.slice(7).map((a) => a.body.jobId)).size).toBe(1);
    for (const a of answers.slice(0, 8))
      promptTokens += (a.body.result as { usage: { promptTokens: number } }).usage.promptTokens;

    // The same prompt again, now finished: the semantic cache answers it exactly, no job.
    const cached = await post(`${fleet.url}/v1/inference`, { model, prompt: same });
    expect(cached.body).toMatchObject({ status: 'completed', cached: 'exact' });

    // A model the backend does not have: one job, which fails with its code.
    const failed = await post(`${fleet.url}/v1/inference`, { model: 'no-such-model:1b', prompt: 'hi' });
    expect(failed.status).toBe(422);

    // A search twice: a job, then the search cache.
    expect((await post(`${fleet.url}/v1/search`, { query: 'capital of France' })).status).toBe(200);
    const again = await post(`${fleet.url}/v1/search`, { query: 'capital of France' });
    expect(again.body).toMatchObject({ cached: 'exact' });

    expect((await get(`${fleet.url}/v1/jobs/inference/i-${'0'.repeat(32)}`)).status).toBe(404);

    const res = await fetch(`${fleet.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    text = await res.text();
    samples = parseSamples(text);
  });

  afterAll(async () => {
    await fleet?.close();
  });

  const value = (name: string, labels: Record<string, string> = {}) => samples.get(series(name, labels));

  it('counts jobs added and requests coalesced', () => {
    expect(value('cell0_jobs_added_total', { queue: 'inference' })).toBe(9);
    expect(value('cell0_jobs_added_total', { queue: 'search' })).toBe(1);
    expect(value('cell0_jobs_coalesced_total', { queue: 'inference', how: 'joined' })).toBe(2);
    expect(value('cell0_jobs_coalesced_total', { queue: 'inference', how: 'stored_result' })).toBeUndefined();
  });

  it('counts cache lookups by cache and result', () => {
    // 7 prompts, the 3 identical requests (one lookup: they were in flight together, LookupFlights), the
    // unknown model.
    expect(value('cell0_cache_lookups_total', { cache: 'semantic', result: 'miss' })).toBe(9);
    expect(value('cell0_cache_lookups_total', { cache: 'semantic', result: 'exact' })).toBe(1);
    expect(value('cell0_cache_lookups_total', { cache: 'search', result: 'miss' })).toBe(1);
    expect(value('cell0_cache_lookups_total', { cache: 'search', result: 'exact' })).toBe(1);
    // The 8 answered prompts are stored in the semantic cache, the one search in the search cache.
    expect(value('cell0_cache_entries', { cache: 'semantic' })).toBe(8);
    expect(value('cell0_cache_entries', { cache: 'search' })).toBe(1);
  });

  it("gives the producer's add batches as a batch-size histogram", () => {
    const batches = value('cell0_batches_total', { batcher: 'enqueue' })!;
    expect(batches).toBeGreaterThan(0);
    expect(value('cell0_batch_size_count', { batcher: 'enqueue' })).toBe(batches);
    expect(value('cell0_batch_size_sum', { batcher: 'enqueue' })).toBe(
      value('cell0_batch_items_total', { batcher: 'enqueue' }),
    );
  });

  it("counts the worker's completed and failed jobs, with their times", () => {
    expect(value('cell0_jobs_completed_total', { queue: 'inference' })).toBe(8);
    expect(value('cell0_jobs_completed_total', { queue: 'search' })).toBe(1);
    expect(value('cell0_jobs_failed_total', { queue: 'inference', code: 'CELL0_MODEL_NOT_FOUND' })).toBe(1);
    expect(value('cell0_job_run_seconds_count', { queue: 'inference' })).toBe(8);
    expect(value('cell0_job_end_to_end_seconds_count', { queue: 'inference' })).toBe(8);
    expect(value('cell0_job_wait_seconds_count', { queue: 'inference' })).toBe(8);
    // Every inference job waited for a first token of 1.5 s: none ran in under a second.
    expect(value('cell0_job_run_seconds_bucket', { queue: 'inference', le: '1' })).toBe(0);
    expect(value('cell0_job_run_seconds_bucket', { queue: 'inference', le: '+Inf' })).toBe(8);
    expect(value('cell0_jobs_active')).toBe(0);
  });

  it('counts backend calls: one per job run, by outcome, with the tokens the simulator counted', async () => {
    const labels = { provider: 'ollama', origin: new URL(fleet.sim.url).origin, model: '*' };
    // 9 inference jobs ran: 8 answered, 1 refused by the backend (404: no such model).
    expect(value('cell0_backend_requests_total', { ...labels, outcome: 'ok' })).toBe(8);
    expect(value('cell0_backend_requests_total', { ...labels, outcome: 'client_error' })).toBe(1);
    expect(value('cell0_backend_requests_total', { ...labels, outcome: 'server_error' })).toBe(0);
    expect(value('cell0_backend_request_duration_seconds_count', labels)).toBe(9);
    // Every answer was streamed: a first token each, after the simulator's 1.5 s.
    expect(value('cell0_backend_time_to_first_token_seconds_count', labels)).toBe(8);
    expect(value('cell0_backend_time_to_first_token_seconds_bucket', { ...labels, le: '1' })).toBe(0);
    expect(value('cell0_backend_tokens_per_second_count', labels)).toBe(8);
    const sim = fleet.sim.stats();
    expect(value('cell0_backend_tokens_total', { ...labels, direction: 'out' })).toBe(sim.tokensGenerated);
    expect(promptTokens).toBeGreaterThan(0);
    expect(value('cell0_backend_tokens_total', { ...labels, direction: 'in' })).toBe(promptTokens);
    // The search job went to the local corpus.
    expect(
      value('cell0_backend_requests_total', {
        provider: 'local',
        origin: 'local',
        model: 'none',
        outcome: 'ok',
      }),
    ).toBe(1);
  });

  it('counts HTTP requests by route pattern, method and status, never by raw path', () => {
    expect(
      value('cell0_http_requests_total', { route: '/v1/inference', method: 'POST', status: '200' }),
    ).toBe(11);
    expect(
      value('cell0_http_requests_total', { route: '/v1/inference', method: 'POST', status: '422' }),
    ).toBe(1);
    expect(value('cell0_http_requests_total', { route: '/v1/search', method: 'POST', status: '200' })).toBe(
      2,
    );
    expect(
      value('cell0_http_requests_total', { route: '/v1/jobs/:queue/:id', method: 'GET', status: '404' }),
    ).toBe(1);
    expect(
      value('cell0_http_request_duration_seconds_count', { route: '/v1/inference', method: 'POST' }),
    ).toBe(12);
    expect(text).not.toMatch(/i-0{32}/);
    expect(text).not.toMatch(/planets|capital of France/);
  });

  it("serves BullMQ's queue metrics once, under one header per family", () => {
    expect(value('bullmq_job_count', { queue: 'inference', state: 'completed' })).toBe(8);
    expect(value('bullmq_job_count', { queue: 'inference', state: 'failed' })).toBe(1);
    expect(value('bullmq_job_completed_total', { queue: 'inference' })).toBe(8);
    expect(value('bullmq_job_failed_total', { queue: 'inference' })).toBe(1);
    expect(value('bullmq_job_completed_total', { queue: 'search' })).toBe(1);
    expect(text.match(/^# TYPE bullmq_job_count /gm)).toHaveLength(1);
    // BullMQ declares it a gauge, a type promtool's linter refuses for a name ending in _count.
    expect(text).toMatch(/^# TYPE bullmq_job_count untyped$/m);
  });

  it('includes the Node process metrics', () => {
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });

  it('passes promtool check metrics', async () => {
    const r = await promtool(['check', 'metrics'], text);
    expect({ code: r.code, out: r.stdout + r.stderr }).toEqual({ code: 0, out: '' });
  });
});

describe('HTTP request counts of error answers', () => {
  it("counts an error a route throws under the route's whole pattern, mount included", async () => {
    const metrics = new Cell0Metrics({ defaultMetrics: false });
    const fleet = await startTestFleet({ metrics });
    try {
      const inference = `${fleet.url}/v1/inference`;
      // Thrown by the route (or its body reader) and answered by the app's error handler: malformed JSON and a
      // missing prompt, on the fast path and through express (a query string), a bad search, a bad batch.
      expect((await post(inference, null, { raw: '{"model":' })).status).toBe(400);
      expect((await post(`${inference}?x=1`, { model: 'qwen2.5:7b' })).status).toBe(400);
      expect((await post(`${fleet.url}/v1/search`, { query: '' })).status).toBe(400);
      // Answered inside the router, as before: the job id guard.
      expect((await get(`${fleet.url}/v1/jobs/inference/nope`)).status).toBe(404);
      const counted = (await metrics.text())
        .split('\n')
        .filter((l) => l.startsWith('cell0_http_requests_total{'))
        .sort();
      expect(counted).toEqual([
        'cell0_http_requests_total{route="/v1/inference",method="POST",status="400"} 2',
        'cell0_http_requests_total{route="/v1/jobs/:queue/:id",method="GET",status="404"} 1',
        'cell0_http_requests_total{route="/v1/search",method="POST",status="400"} 1',
      ]);
    } finally {
      await fleet.close();
    }
  });
});

describe('GET /metrics behind a bearer token', () => {
  it('answers 401 without the token and the metrics with it', async () => {
    const client = new Cell0Client({ redisUrl: testRedisUrl(), prefix: uniquePrefix('metrics') });
    const metrics = new Cell0Metrics({ defaultMetrics: false });
    const token = 'a-scrape-token-of-some-length';
    const server = new HttpServer(createApi({ client, metrics, metricsToken: token }), {
      host: '127.0.0.1',
      port: 0,
    });
    const { url } = await server.start();
    try {
      const denied = await fetch(`${url}/metrics`);
      expect(denied.status).toBe(401);
      expect(await denied.json()).toMatchObject({ error: { code: 'CELL0_UNAUTHORIZED' } });
      expect((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(
        401,
      );
      const ok = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      // The 401s above were counted, as unmatched-free route /metrics.
      expect(
        parseSamples(await ok.text()).get(
          series('cell0_http_requests_total', {
            route: '/metrics',
            method: 'GET',
            status: '401',
          }),
        ),
      ).toBe(2);
    } finally {
      await server.close();
      await client.close();
    }
  });
});

describe('cell0 worker', () => {
  it('serves its own metrics on CELL0_METRICS_PORT, without the queue metrics', async () => {
    const proc = spawnCell0(['worker', '--queues', 'search'], {
      REDIS_URL: testRedisUrl(),
      CELL0_QUEUE_PREFIX: uniquePrefix('metrics-worker'),
      CELL0_HOST: '127.0.0.1',
      CELL0_METRICS_PORT: '0',
      CELL0_METRICS_TOKEN: 'worker-scrape-token-123',
    });
    try {
      const [, url] = await proc.waitFor(/metrics: (http:\/\/\S+)/, 60_000);
      expect((await fetch(url!)).status).toBe(401);
      const res = await fetch(url!, { headers: { authorization: 'Bearer worker-scrape-token-123' } });
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(parseSamples(text).get(series('cell0_jobs_active'))).toBe(0);
      expect(text).toMatch(/^# TYPE cell0_job_run_seconds histogram$/m);
      // Queue counts are the fleet's: served by the API only, not once per worker.
      expect(text).not.toMatch(/bullmq_job_count/);
      expect((await fetch(url!.replace('/metrics', '/nope'))).status).toBe(404);
    } finally {
      proc.kill('SIGTERM');
      await proc.exited;
    }
  }, 90_000);
  it('starts anyway when its metrics port is taken (a second worker on the host): a free port, and a warning', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    const proc = spawnCell0(['worker', '--queues', 'search'], {
      REDIS_URL: testRedisUrl(),
      CELL0_QUEUE_PREFIX: uniquePrefix('metrics-port-taken'),
      CELL0_HOST: '127.0.0.1',
      CELL0_METRICS_PORT: String(port),
    });
    try {
      const [, url] = await proc.waitFor(/metrics: (http:\/\/\S+)/, 60_000);
      expect(new URL(url!).port).not.toBe(String(port));
      expect((await fetch(url!)).status).toBe(200);
      expect(proc.stdout()).toMatch(/metrics port in use/);
    } finally {
      proc.kill('SIGTERM');
      await proc.exited;
      await new Promise((resolve) => taken.close(resolve));
    }
  }, 90_000);
});
