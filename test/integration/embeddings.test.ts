import { QueueName } from '../../shared/queues/names';
import { jobIdFor } from '../../shared/queues/job-id';
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';
import { simulatedEmbedding } from '../../workers/providers/simulator/text';
import { post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { testRedisUrl } from '../helpers/redis';
import { until } from '../helpers/wait';

const NOMIC = 'nomic-embed-text';
const MINILM = 'all-minilm';
/**
 * A batch's wait where a test counts backend calls exactly: the jobs that are ready when a batch opens all
 * reach it within this, however loaded the host. Not how long a test waits for anything: a full batch
 * leaves at once.
 */
const EXACT_WAIT_MS = 2000;
const texts = (n: number, tag: string): string[] =>
  Array.from({ length: n }, (_, i) => `${tag} sentence number ${i} about queues`);

interface EmbeddingsBody {
  object: string;
  data: { object: string; index: number; embedding: number[] | string }[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** Equal to the simulator's vector for `text`, within float rounding. */
function expectVectorOf(v: number[], text: string, dims: number): void {
  const want = simulatedEmbedding(text, dims);
  expect(v).toHaveLength(dims);
  for (let i = 0; i < dims; i++) expect(v[i]).toBeCloseTo(want[i]!, 6);
}

describe('embeddings: POST /v1/embeddings through the fleet, micro-batched', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    // The counts of backend calls below are exact: a batch leaves when full (64 inputs) or when its wait
    // ends, and the wait is far longer than a worker takes to fetch a request's ready jobs even on a loaded
    // host (with the default 10 ms and its hold-open looks, a starved worker split a request's jobs in two).
    fleet = await startTestFleet({ embedding: { maxWaitMs: EXACT_WAIT_MS } });
  });
  afterAll(async () => {
    await fleet.close();
  });
  beforeEach(() => fleet.sim.reset());

  it('answers 64 inputs in OpenAI shape, with ONE backend call for all of them', async () => {
    const input = texts(64, 'alpha');
    const r = await post(`${fleet.url}/v1/embeddings`, { model: NOMIC, input });
    expect(r.status).toBe(200);
    const body = r.body as unknown as EmbeddingsBody;
    expect(body.object).toBe('list');
    expect(body.model).toBe(NOMIC);
    expect(body.data).toHaveLength(64);
    body.data.forEach((d, i) => {
      expect(d.object).toBe('embedding');
      expect(d.index).toBe(i);
      // Each input got its own vector, in input order.
      expectVectorOf(d.embedding as number[], input[i]!, 768);
    });
    expect(body.usage.prompt_tokens).toBeGreaterThan(0);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens);
    const embed = fleet.sim.stats().embed;
    expect(embed.calls).toBe(1);
    expect(embed.byModel).toEqual({ 'nomic-embed-text:latest': { calls: 1, inputs: 64 } });
    expect(fleet.worker!.embeddingStats()).toMatchObject({ backendCalls: expect.any(Number) });
  }, 60_000);

  it('coalesces per text: duplicates in a request, and a repeat of finished texts, cost no backend call', async () => {
    const input = ['one text', 'another text', 'one text'];
    const first = await post(`${fleet.url}/v1/embeddings`, { model: NOMIC, input });
    expect(first.status).toBe(200);
    const a = first.body as unknown as EmbeddingsBody;
    expect(a.data[0]!.embedding).toEqual(a.data[2]!.embedding);
    expect(fleet.sim.stats().embed).toMatchObject({ calls: 1, inputs: 2 });

    // The same texts again, one new: only the new one reaches the backend.
    const second = await post(`${fleet.url}/v1/embeddings`, {
      model: NOMIC,
      input: ['another text', 'a third text', 'one text'],
    });
    expect(second.status).toBe(200);
    expect(second.headers.get('x-cell0-reused')).toBe('2');
    const b = second.body as unknown as EmbeddingsBody;
    expect(b.data[0]!.embedding).toEqual(a.data[1]!.embedding);
    expect(b.data[2]!.embedding).toEqual(a.data[0]!.embedding);
    expect(fleet.sim.stats().embed).toMatchObject({ calls: 2, inputs: 3 });
  });

  it('answers a single string input and base64 vectors (what OpenAI SDKs ask for)', async () => {
    const r = await post(`${fleet.url}/v1/embeddings`, {
      model: MINILM,
      input: 'base64 please',
      encoding_format: 'base64',
    });
    expect(r.status).toBe(200);
    const body = r.body as unknown as EmbeddingsBody;
    expect(body.data).toHaveLength(1);
    const b64 = body.data[0]!.embedding as string;
    expect(typeof b64).toBe('string');
    const buf = Buffer.from(b64, 'base64');
    const floats = Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4));
    expect(floats).toHaveLength(384);
    const want = simulatedEmbedding('base64 please', 384);
    floats.forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 6));
  });

  it('refuses bad requests with the field and reason, before anything is queued', async () => {
    const before = await fleet.client.submitter.getCounts();
    const cases: [unknown, string][] = [
      [{ model: NOMIC }, 'input'],
      [{ model: NOMIC, input: '' }, 'input'],
      [{ model: NOMIC, input: ['ok', ''] }, 'input.1'],
      [{ model: NOMIC, input: [] }, 'input'],
      [{ model: NOMIC, input: [1, 2, 3] }, 'input'],
      [{ model: NOMIC, input: 'x', dimensions: 64 }, 'dimensions'],
      [{ model: NOMIC, input: 'x', encoding_format: 'int8' }, 'encoding_format'],
      [{ model: NOMIC, input: 'x', temperature: 1 }, 'temperature'],
      [{ model: '', input: 'x' }, 'model'],
      [{ model: NOMIC, input: 'x', wait: -1 }, 'wait'],
    ];
    for (const [body, field] of cases) {
      const r = await post(`${fleet.url}/v1/embeddings`, body);
      expect(r.status).toBe(400);
      const err = r.body.error as { code: string; issues: { field: string }[] };
      expect(err.code).toBe('CELL0_VALIDATION');
      expect(err.issues.map((i) => i.field)).toContain(field);
    }
    const tooMany = await post(`${fleet.url}/v1/embeddings`, { model: NOMIC, input: texts(2049, 'many') });
    expect(tooMany.status).toBe(400);
    expect(JSON.stringify(tooMany.body)).toContain('at most 2048 inputs');
    const tooLong = await post(`${fleet.url}/v1/embeddings`, { model: NOMIC, input: ['x'.repeat(40_000)] });
    expect(tooLong.status).toBe(413);
    expect((tooLong.body.error as { issues: { field: string }[] }).issues[0]!.field).toBe('input.0');
    const get = await fetch(`${fleet.url}/v1/embeddings`);
    expect(get.status).toBe(405);
    expect(fleet.sim.stats().embed.calls).toBe(0);
    const counts = await fleet.client.submitter.getCounts();
    expect(counts.embedding).toEqual(before.embedding);
  });

  it('fails the request for a model the backend does not have (422), without failing other models', async () => {
    const [bad, good] = await Promise.all([
      post(`${fleet.url}/v1/embeddings`, { model: 'no-such-embedder', input: ['p', 'q'] }),
      post(`${fleet.url}/v1/embeddings`, { model: NOMIC, input: ['r', 's'] }),
    ]);
    expect(bad.status).toBe(422);
    expect(bad.body.error).toMatchObject({ code: 'CELL0_MODEL_NOT_FOUND', param: 'input.0' });
    expect(good.status).toBe(200);
  });

  it('answers 504 with the pending jobs when the vectors are not ready within the wait', async () => {
    const slowFleet = await startTestFleet({ worker: false });
    try {
      const r = await post(`${slowFleet.url}/v1/embeddings`, { model: NOMIC, input: ['later'], wait: 50 });
      expect(r.status).toBe(504);
      expect(r.headers.get('retry-after')).toBe('1');
      const err = r.body.error as { code: string; pending: { index: number; jobId: string }[] };
      expect(err.code).toBe('CELL0_WAIT_TIMEOUT');
      expect(err.pending).toEqual([
        {
          index: 0,
          jobId: jobIdFor(QueueName.EMBEDDING, { input: 'later', model: NOMIC }),
          jobState: 'waiting',
        },
      ]);
    } finally {
      await slowFleet.close();
    }
  });
});

describe('embeddings: worker micro-batches grouped by model', () => {
  it('embeds the ready jobs of several requests and models in one call per model (exact counts)', async () => {
    // No worker yet: every job is waiting when the worker starts, so the grouping is exact.
    const fleet = await startTestFleet({ worker: false });
    let worker: Cell0Worker | undefined;
    try {
      const reqs = [
        { model: NOMIC, input: texts(20, 'n1') },
        { model: MINILM, input: texts(10, 'm1') },
        { model: NOMIC, input: [...texts(10, 'n2'), 'n1 sentence number 3 about queues'] },
        { model: MINILM, input: texts(5, 'm2') },
      ];
      const pending = reqs.map((q) =>
        fleet.client.submitEmbeddings(fleet.client.parseEmbeddings(q), { waitMs: 20_000 }),
      );
      const queue = fleet.client.submitter.getQueue(QueueName.EMBEDDING);
      // 30 distinct nomic texts (one repeated across requests) and 15 minilm texts: 45 jobs.
      await until(async () => (await queue.getWaitingCount()) === 45, 10_000, '45 waiting embedding jobs');
      worker = new Cell0Worker({
        redisUrl: testRedisUrl(),
        prefix: fleet.prefix,
        queues: [QueueName.EMBEDDING],
        inference: new OllamaBackend(new OllamaClient({ baseUrl: fleet.sim.url })),
        embedding: { maxBatchSize: 64, maxWaitMs: EXACT_WAIT_MS },
        heartbeatMs: 0,
      });
      await worker.start();
      const results = await Promise.all(pending);
      results.forEach((r, i) => {
        expect(r.state).toBe('completed');
        if (r.state !== 'completed') return;
        expect(r.response.data).toHaveLength(reqs[i]!.input.length);
        const dims = reqs[i]!.model === NOMIC ? 768 : 384;
        r.response.data.forEach((d) =>
          expectVectorOf(d.embedding as number[], reqs[i]!.input[d.index]!, dims),
        );
      });
      expect(fleet.sim.stats().embed.byModel).toEqual({
        'nomic-embed-text:latest': { calls: 1, inputs: 30 },
        'all-minilm:latest': { calls: 1, inputs: 15 },
      });
      const stats = worker.embeddingStats()!;
      expect(stats).toMatchObject({ batches: 2, items: 45, backendCalls: 2, splits: 0 });
    } finally {
      await worker?.close();
      await fleet.close();
    }
  });
});
