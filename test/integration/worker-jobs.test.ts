import { Queue, QueueEvents } from 'bullmq';
import { decodeFailure } from '../../shared/queues/failure';
import { SearchProvider } from '../../shared/queues/enums';
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';
import { LocalSearch } from '../../workers/providers/local-search/local-search';
import { OllamaSimulator } from '../../workers/providers/simulator/ollama-simulator';
import { testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { queuePrefix } from '../../shared/queues/names';

describe('Cell0Worker with jobs from any producer', () => {
  let sim: OllamaSimulator;
  let worker: Cell0Worker;
  let prefix: string;
  let inference: Queue;
  let search: Queue;
  let events: QueueEvents;

  const conns: RedisConnection[] = [];
  const conn = () => {
    const c = testRedisConnection('test:wj');
    conns.push(c);
    return c;
  };

  beforeAll(async () => {
    sim = new OllamaSimulator({ ttftMs: 5, tokensPerSec: 5000 });
    await sim.start();
    prefix = uniquePrefix('wj');
    worker = new Cell0Worker({
      redisUrl: testRedisUrl(),
      prefix,
      inference: new OllamaBackend(new OllamaClient({ baseUrl: sim.url })),
      search: { [SearchProvider.LOCAL]: new LocalSearch() },
      // Not the subject here (the timeout test below has its own worker): a first call on a busy machine can
      // take longer than a tight limit.
      providerTimeoutMs: 30_000,
    });
    await worker.start();
    // Connections from cell0's factory: one Redis or a Cluster, whichever the run has.
    const connection = conn();
    inference = new Queue('inference', { connection, prefix: queuePrefix(prefix, 'inference') });
    search = new Queue('search', { connection, prefix: queuePrefix(prefix, 'search') });
    events = new QueueEvents('inference', { connection: conn(), prefix: queuePrefix(prefix, 'inference') });
    await events.waitUntilReady();
  });
  afterAll(async () => {
    await worker.close();
    await Promise.all([inference.close(), search.close(), events.close()]);
    await Promise.all(conns.map((c) => closeRedis(c)));
    await sim.close();
  });

  async function outcome(
    q: Queue,
    data: unknown,
  ): Promise<{ state: string; result?: unknown; error?: ReturnType<typeof decodeFailure> }> {
    const job = await q.add('x', data, { attempts: 1 });
    const qe =
      q === inference
        ? events
        : new QueueEvents('search', {
            connection: conn(),
            prefix: queuePrefix(prefix, 'search'),
          });
    try {
      const result: unknown = await job.waitUntilFinished(qe, 10_000);
      return { state: 'completed', result };
    } catch {
      const j = await q.getJob(job.id!);
      return { state: (await j!.getState()) as string, error: decodeFailure(j!.failedReason) };
    } finally {
      if (qe !== events) await qe.close();
    }
  }

  it('fills in defaults for job data written without them, and runs it', async () => {
    const r = await outcome(inference, {
      model: 'qwen2.5:0.5b',
      prompt: 'hello from a plain BullMQ producer',
    });
    expect(r.state).toBe('completed');
    expect((r.result as { text: string }).text).toMatch(/^\[simulated qwen2\.5:0\.5b\]/);
  });

  it('fails invalid job data at once, naming the field', async () => {
    const r = await outcome(inference, { model: 'qwen2.5:0.5b', prompt: 42 });
    expect(r.state).toBe('failed');
    expect(r.error).toMatchObject({ code: 'CELL0_VALIDATION', message: expect.stringContaining('prompt') });
  });

  it('fails a search for a provider this worker does not have', async () => {
    const r = await outcome(search, { query: 'x', provider: 'brave', type: 'web', limit: 5, offset: 0 });
    expect(r.state).toBe('failed');
    expect(r.error).toMatchObject({ code: 'CELL0_PROVIDER_UNAVAILABLE' });
  });

  it('aborts a provider call that runs past providerTimeoutMs, as a retryable provider error', async () => {
    sim.reset();
    const slow = new OllamaSimulator({ ttftMs: 5000 });
    await slow.start();
    const timeoutPrefix = uniquePrefix('wj-timeout');
    const w = new Cell0Worker({
      redisUrl: testRedisUrl(),
      prefix: timeoutPrefix,
      queues: ['inference'],
      inference: new OllamaBackend(new OllamaClient({ baseUrl: slow.url })),
      providerTimeoutMs: 300,
    });
    const failed = new Promise<{ error: string; willRetry: boolean }>((resolve) =>
      w.once('job:failed', resolve),
    );
    await w.start();
    const q = new Queue('inference', {
      connection: conn(),
      prefix: queuePrefix(timeoutPrefix, 'inference'),
    });
    const t0 = Date.now();
    await q.add(
      'x',
      { model: 'qwen2.5:0.5b', prompt: 'too slow' },
      { attempts: 2, backoff: { type: 'fixed', delay: 60_000 } },
    );
    const f = await failed;
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(decodeFailure(f.error)).toMatchObject({
      code: 'CELL0_PROVIDER_ERROR',
      message: expect.stringMatching(/timed out after 300 ms/),
    });
    expect(f.willRetry).toBe(true);
    await q.close();
    await w.close();
    await slow.close();
  });
});
