import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { testRedisConnection, testRedisUrl } from '../helpers/redis';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { shardKey, shardOf, shardPrefix } from '../../shared/queues/shards';
import { keySlot } from '../../shared/redis/key-slot';
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';

/*
 * Queues in 3 shards (CELL0_QUEUE_SHARDS=3): each shard is a BullMQ queue under a hash tag of its own, a
 * job goes to the shard its id hashes to. Identical requests still make one job (one backend call), a job
 * id still reads back through GET /v1/jobs/:queue/:id, /v1/queues and Bull Board show the shards, and a
 * worker serves only the shards it is given. On one Redis, and on the cluster under `npm run test:cluster`
 * (where test/integration/cluster.test.ts checks that the shards land on more than one master).
 */
describe('sharded queues (3 shards)', () => {
  const model = 'qwen2.5:7b';
  let fleet: TestFleet;
  let conn: RedisConnection;
  let late: Cell0Worker | undefined;

  beforeAll(async () => {
    // The fleet's one worker serves shards 0 and 1 only.
    fleet = await startTestFleet({ shards: 3, workerShards: () => [0, 1] });
    conn = testRedisConnection('sharded-queues');
  }, 60_000);
  afterAll(async () => {
    await late?.close();
    await fleet?.close();
    await closeRedis(conn);
  });

  const idOf = (prompt: string) =>
    fleet.client.submitter.jobIdFor('inference', fleet.client.parseInference({ model, prompt }));
  /** A prompt whose job lands on `shard`. */
  const promptOn = (shard: number, tag: string) => {
    for (let i = 0; ; i++) if (shardOf(idOf(`${tag} ${i}`), 3) === shard) return `${tag} ${i}`;
  };
  const generateCalls = () => fleet.sim.stats().requests.byEndpoint['/api/generate'] ?? 0;

  it('coalesces identical requests exactly: one job, on its shard only, one backend call', async () => {
    const prompt = promptOn(1, 'same question');
    const id = idOf(prompt);
    const before = generateCalls();
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => post(`${fleet.url}/v1/inference`, { model, prompt })),
    );
    for (const a of answers)
      expect(a).toMatchObject({ status: 200, body: { status: 'completed', jobId: id } });
    expect(generateCalls() - before).toBe(1);
    // The job is on shard 1 and nowhere else.
    const exists = await Promise.all(
      [0, 1, 2].map((s) => conn.exists(`${shardKey(fleet.prefix, 'inference', s, 3)}:${id}`)),
    );
    expect(exists).toEqual([0, 1, 0]);
  });

  it('reads a job of any shard back by its id; /v1/queues and Bull Board show every shard', async () => {
    const ids: string[] = [];
    for (const shard of [0, 1]) {
      const r = await post(`${fleet.url}/v1/inference`, { model, prompt: promptOn(shard, 'read back') });
      expect(r.status).toBe(200);
      ids.push(r.body.jobId as string);
    }
    for (const id of ids) {
      const job = await get(`${fleet.url}/v1/jobs/inference/${id}`);
      expect(job).toMatchObject({ status: 200, body: { jobId: id, state: 'completed' } });
      expect((job.body.result as { text: string }).text).toMatch(/^\[simulated qwen2\.5:7b\]/);
    }
    expect((await get(`${fleet.url}/v1/jobs/inference/i-${'0'.repeat(32)}`)).status).toBe(404);

    const queues = await get(`${fleet.url}/v1/queues`);
    expect(queues.status).toBe(200);
    const shards = (
      queues.body.shards as Record<string, { shard: number; tag: string; counts: { completed: number } }[]>
    ).inference!;
    expect(shards.map((s) => [s.shard, s.tag])).toEqual(
      [0, 1, 2].map((k) => [k, shardPrefix(fleet.prefix, 'inference', k, 3)]),
    );
    // Each tag on the middle slot of its third of the slot space.
    expect(shards.map((s) => keySlot(s.tag))).toEqual([2730, 8192, 13653]);
    expect(shards[0]!.counts.completed).toBeGreaterThanOrEqual(1);
    expect(shards[1]!.counts.completed).toBeGreaterThanOrEqual(2);
    const total = (queues.body.queues as Record<string, { completed: number }>).inference!.completed;
    expect(total).toBe(shards.reduce((n, s) => n + s.counts.completed, 0));

    const board = await get(`${fleet.url}/admin/queues/api/queues`);
    const names = (board.body.queues as { name: string }[]).map((q) => q.name);
    expect(names).toEqual(
      expect.arrayContaining(['shard-0:inference', 'shard-1:inference', 'shard-2:inference']),
    );
  });

  it('a worker serves only its shards; one started for the others takes their jobs', async () => {
    const onTwo = await post(`${fleet.url}/v1/inference`, { model, prompt: promptOn(2, 'late'), wait: 0 });
    expect(onTwo).toMatchObject({ status: 202, body: { status: 'pending' } });
    const jobId = onTwo.body.jobId as string;
    // A job added after it, on a shard the worker serves, is done; the one on shard 2 still waits.
    const onZero = await post(`${fleet.url}/v1/inference`, { model, prompt: promptOn(0, 'early') });
    expect(onZero).toMatchObject({ status: 200, body: { status: 'completed' } });
    expect((await get(`${fleet.url}/v1/jobs/inference/${jobId}`)).body.state).toBe('waiting');

    late = new Cell0Worker({
      redisUrl: testRedisUrl(),
      prefix: fleet.prefix,
      shards: 3,
      servedShards: [2],
      queues: ['inference'],
      inference: new OllamaBackend(new OllamaClient({ baseUrl: fleet.sim.url })),
      heartbeatMs: 0,
    });
    await late.start();
    const done = await fleet.client.submitter.waitFor('inference', jobId, { waitMs: 30_000 });
    expect(done).toMatchObject({ state: 'completed', jobId });
    expect((done as { result: { servedBy: string } }).result.servedBy).toBe(late.id);
  });
});
