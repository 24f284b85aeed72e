import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { testRedisConnection } from '../helpers/redis';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { JobName, QueueName } from '../../shared/queues/names';
import { shardKey, shardOf } from '../../shared/queues/shards';
import { simulatedEmbedding } from '../../workers/providers/simulator/text';
import { type BatchResultLine } from '../../producers/batches/batch-model';

/*
 * Many items at once on sharded queues (CELL0_QUEUE_SHARDS=3): a submitMany of the job submitter, a batch
 * job (POST /v1/batches) and a multi-input embeddings request each put every item on the shard its job id
 * hashes to (its job's keys there and on no other shard), run each distinct item once (the backend's call
 * counts are exact) and return every item's result in order. On one Redis, and on the cluster under
 * `npm run test:cluster` (where the three shards sit on three masters).
 */
describe('many-item submits on sharded queues (3 shards)', () => {
  const model = 'qwen2.5:7b';
  const shards = 3;
  let fleet: TestFleet;
  let conn: RedisConnection;

  beforeAll(async () => {
    fleet = await startTestFleet({
      shards,
      batches: { concurrency: 64 },
      workerConcurrency: 16,
      resultWaitMs: 60_000,
    });
    conn = testRedisConnection('sharded-many');
  }, 60_000);
  afterAll(async () => {
    await fleet?.close();
    await closeRedis(conn);
  });
  beforeEach(() => fleet.sim.reset());

  const generateCalls = () => fleet.sim.stats().requests.byEndpoint['/api/generate'] ?? 0;
  /** Which shards hold job `id` of `queue` (its hash key exists there). */
  const shardsHolding = async (queue: QueueName, id: string) => {
    const on: number[] = [];
    for (let s = 0; s < shards; s++)
      if ((await conn.exists(`${shardKey(fleet.prefix, queue, s, shards)}:${id}`)) === 1) on.push(s);
    return on;
  };
  /** Every distinct job is on its own shard only, and together they cover all three shards. */
  const expectOnTheirShards = async (queue: QueueName, ids: Iterable<string>) => {
    const used = new Set<number>();
    for (const id of new Set(ids)) {
      const shard = shardOf(id, shards);
      expect({ id, on: await shardsHolding(queue, id) }).toEqual({ id, on: [shard] });
      used.add(shard);
    }
    expect([...used].sort()).toEqual([0, 1, 2]);
  };

  it('submitMany: 30 items, 10 distinct, one job each on its shard, 10 backend calls, every result', async () => {
    const prompts = Array.from({ length: 30 }, (_, i) => `many ${i % 10}`);
    const datas = prompts.map((prompt) => fleet.client.parseInference({ model, prompt }));
    const results = await fleet.client.submitter.submitMany(QueueName.INFERENCE, JobName.GENERATE, datas, {
      waitMs: 60_000,
    });
    expect(results).toHaveLength(30);
    const textOf = new Map<string, string>();
    results.forEach((r, i) => {
      expect(r).toMatchObject({ state: 'completed' });
      // Each item's job is the id of its own request.
      expect(r.jobId).toBe(fleet.client.submitter.jobIdFor(QueueName.INFERENCE, datas[i]!));
      const text = (r as { result: { text: string } }).result.text;
      expect(text).toMatch(/^\[simulated qwen2\.5:7b\]/);
      // Duplicates share one job and so one answer.
      if (textOf.has(prompts[i]!)) expect(text).toBe(textOf.get(prompts[i]!));
      else textOf.set(prompts[i]!, text);
    });
    expect(new Set(results.map((r) => r.jobId)).size).toBe(10);
    expect(generateCalls()).toBe(10);
    await expectOnTheirShards(
      QueueName.INFERENCE,
      results.map((r) => r.jobId),
    );
  });

  it('a batch job: 60 lines, 20 distinct, one backend call per distinct request, one result per line', async () => {
    const lines = Array.from({ length: 60 }, (_, i) => ({
      custom_id: `line-${i}`,
      queue: 'inference',
      body: { model, prompt: `batched ${(i * 7) % 20}` },
    }));
    const created = await post(`${fleet.url}/v1/batches`, undefined, {
      raw: lines.map((l) => JSON.stringify(l)).join('\n') + '\n',
      headers: { 'content-type': 'application/jsonl' },
    });
    expect(created.status).toBe(202);
    const res = await fetch(`${fleet.url}/v1/batches/${created.body.id as string}/results`);
    expect(res.status).toBe(200);
    const out = (await res.text())
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as BatchResultLine);
    expect(out).toHaveLength(60);
    expect(out.map((l) => l.custom_id).sort()).toEqual(lines.map((l) => l.custom_id).sort());
    expect(out.every((l) => l.status === 'completed')).toBe(true);
    const jobOf = new Map<string, string>();
    for (const l of out) {
      const prompt = lines[l.line - 1]!.body.prompt;
      const want = fleet.client.submitter.jobIdFor(
        QueueName.INFERENCE,
        fleet.client.parseInference({ model, prompt }),
      );
      expect(l.job_id).toBe(want);
      jobOf.set(prompt, want);
    }
    expect(jobOf.size).toBe(20);
    expect(generateCalls()).toBe(20);
    await expectOnTheirShards(QueueName.INFERENCE, jobOf.values());
    const view = await get(`${fleet.url}/v1/batches/${created.body.id as string}`);
    expect(view.body).toMatchObject({
      status: 'completed',
      request_counts: { total: 60, completed: 60, failed: 0 },
    });
  }, 120_000);

  it('an embeddings request of 24 inputs, 12 distinct: 12 texts embedded, every vector in input order', async () => {
    const input = Array.from({ length: 24 }, (_, i) => `sharded text ${i % 12}`);
    const outcome = await fleet.client.submitEmbeddings(
      fleet.client.parseEmbeddings({ model: 'nomic-embed-text', input }),
      { waitMs: 60_000 },
    );
    expect(outcome.state).toBe('completed');
    if (outcome.state !== 'completed') return;
    expect(outcome.response.data).toHaveLength(24);
    outcome.response.data.forEach((d, i) => {
      expect(d.index).toBe(i);
      const want = simulatedEmbedding(input[i]!, 768);
      const got = d.embedding as number[];
      expect(got).toHaveLength(768);
      for (let k = 0; k < 768; k += 97) expect(got[k]).toBeCloseTo(want[k]!, 6);
    });
    // Identical texts, one job; each distinct text embedded once, whatever shard its job is on.
    expect(new Set(outcome.jobIds).size).toBe(12);
    expect(outcome.jobIds.slice(0, 12)).toEqual(outcome.jobIds.slice(12));
    expect(fleet.sim.stats().embed.inputs).toBe(12);
    await expectOnTheirShards(QueueName.EMBEDDING, outcome.jobIds);
  }, 60_000);
});
