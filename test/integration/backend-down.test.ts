/*
 * A fast answer when the backend is down, with the processes wired as `cell0 worker` and `cell0 api` wire
 * them (bin/runtime), on a real Redis, with the simulator as the backend: it is stopped (connections
 * refused) and started again on the same port. While the model's backend is open-circuited on every
 * worker, a request is answered at once with 202, its job id, Retry-After and reason "backend_unavailable"
 * (its job is still queued and runs once the backend is back); /readyz?backends=1 shows the breakers.
 */
import { QueueName } from '../../shared/queues/names';
import { loadConfig } from '../../shared/config/config';
import { silentLogger } from '../../shared/logger';
import { OllamaSimulator } from '../../workers/providers/simulator/ollama-simulator';
import { startWorker, type Service } from '../../bin/runtime';
import { startApi } from '../../bin/runtime-api';
import { type FleetBackendHealth } from '../../shared/fleet/backend-health';
import { get, post } from '../helpers/fleet';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';

const MODEL = 'qwen2.5:0.5b';
const SIM = { ttftMs: 5, tokensPerSec: 2000, loadMsPerGb: 5 };

describe('backend down: a fast answer, nothing lost', () => {
  const services: Service[] = [];
  let sim: OllamaSimulator | undefined;
  afterEach(async () => {
    for (const s of services.splice(0).reverse()) await s.close();
    await sim?.close();
  });

  it('answers 202 with Retry-After and the reason at once while the breaker is open everywhere; runs the job once the backend is back', async () => {
    sim = new OllamaSimulator(SIM);
    const { url: simUrl, port } = await sim.start();
    const config = loadConfig({
      REDIS_URL: testRedisUrl(),
      CELL0_QUEUE_PREFIX: uniquePrefix('down'),
      CELL0_OLLAMA_URL: simUrl,
      // One refused call opens the breaker; a trial call 2 s later.
      CELL0_PROVIDER_BREAKER_THRESHOLD: '1',
      CELL0_PROVIDER_BREAKER_RESET_MS: '2000',
      CELL0_PROVIDER_RETRIES: '0',
      CELL0_MODEL_MEMORY_BUDGET: 'off',
      CELL0_CACHE_ENABLED: '0',
      CELL0_HTTP_CACHE: '0',
      // This test is about backends; a busy test machine must not make it about CPU.
      CELL0_MAX_CPU_PERCENT: '0',
    });
    const log = silentLogger();
    const worker = await startWorker(config, log, { queues: [QueueName.INFERENCE] });
    services.push(worker);
    const api = await startApi(config, log, { port: 0 });
    services.push(api);
    const shedder = api.client.shedder!;
    const backendName = `ollama@${simUrl}`;
    const readyBackends = async () => {
      const r = await get(`${api.url}/readyz?backends=1`);
      return {
        status: r.status,
        body: r.body as { backends?: FleetBackendHealth[]; backendsHealthy?: boolean },
      };
    };

    // Healthy: the answer comes from the backend; plain /readyz says nothing of backends.
    const warm = await post(`${api.url}/v1/inference`, { model: MODEL, prompt: 'warm up', wait: 20_000 });
    expect(warm.status).toBe(200);
    const plain = await get(`${api.url}/readyz`);
    expect(plain.status).toBe(200);
    expect(plain.body.backends).toBeUndefined();
    await until(
      async () => (await readyBackends()).body.backends?.[0]?.state === 'closed',
      10_000,
      '/readyz?backends=1 to show the backend closed',
    );
    expect((await readyBackends()).body).toMatchObject({
      status: 'ready',
      backendsHealthy: true,
      backends: [{ name: backendName, state: 'closed', workers: { closed: 1 }, models: ['*'] }],
    });

    // The backend goes away. A job tries it: the connection is refused and the breaker opens.
    await sim.close();
    const tripped = await post(`${api.url}/v1/inference`, { model: MODEL, prompt: 'trips it', wait: 0 });
    expect(tripped.status).toBe(202);
    await until(
      async () => (await readyBackends()).body.backends?.[0]?.state === 'open',
      20_000,
      '/readyz?backends=1 to show the breaker open',
    );
    const open = await readyBackends();
    // Backends are reported, not a reason for 503: jobs for them are still accepted.
    expect(open.status).toBe(200);
    expect(open.body).toMatchObject({
      backendsHealthy: false,
      backends: [
        {
          name: backendName,
          state: 'open',
          workers: { open: 1 },
          lastError: { code: 'CELL0_PROVIDER_ERROR', kind: 'connection', cause: 'ECONNREFUSED' },
        },
      ],
    });
    // The producer sees it through its background reading of the fleet (no extra round trip per request).
    await until(
      () => shedder.backendUnavailable({ queue: QueueName.INFERENCE, model: MODEL }) !== undefined,
      10_000,
      'the API to read the open breaker',
    );

    // A new request that would wait 20 s is answered at once: pending, with its job id and the reason.
    const fast = await post(`${api.url}/v1/inference`, {
      model: MODEL,
      prompt: 'answer me now',
      wait: 20_000,
    });
    expect(fast.status).toBe(202);
    expect(fast.body).toMatchObject({
      queue: 'inference',
      status: 'pending',
      reason: 'backend_unavailable',
      backends: [backendName],
    });
    const retryAfter = Number(fast.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(fast.body.retryAfterSec).toBe(retryAfter);
    const jobId = fast.body.jobId as string;
    expect(fast.headers.get('location')).toBe(`/v1/jobs/inference/${jobId}`);
    // The answer came while the backend was still down (it has not been started again): the job cannot
    // have run, it is queued — nothing is lost.
    const queued = await get(`${api.url}/v1/jobs/inference/${jobId}`);
    expect(queued.status).toBe(200);
    expect(['waiting', 'delayed', 'active']).toContain(queued.body.state);
    expect(queued.body.attemptsMade).toBe(0);

    // The backend comes back on the same address: the breaker's trial call succeeds and the jobs run.
    sim = new OllamaSimulator({ ...SIM, port });
    await sim.start();
    const result = await api.client.handle(QueueName.INFERENCE, jobId).wait(60_000);
    expect(result).toMatchObject({ model: MODEL, provider: 'ollama' });
    await api.client.handle(QueueName.INFERENCE, tripped.body.jobId as string).wait(60_000);
    await until(
      async () => (await readyBackends()).body.backends?.[0]?.state === 'closed',
      20_000,
      '/readyz?backends=1 to show the breaker closed again',
    );
    expect((await readyBackends()).body).toMatchObject({
      backendsHealthy: true,
      backends: [{ state: 'closed' }],
    });

    // Once the API has read that, a later request waits for its answer again.
    await until(
      () => shedder.backendUnavailable({ queue: QueueName.INFERENCE, model: MODEL }) === undefined,
      10_000,
      'the API to read the closed breaker',
    );
    const later = await post(`${api.url}/v1/inference`, {
      model: MODEL,
      prompt: 'back to normal',
      wait: 20_000,
    });
    expect(later.status).toBe(200);
    expect(later.body.reason).toBeUndefined();
  }, 120_000);
});
