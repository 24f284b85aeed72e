/*
 * Embeddings are per tenant, like inference and search: tenant B cannot read tenant A's embedding jobs or
 * the results of A's batch of embedding requests, and is answered exactly as for an unknown id (404);
 * B's identical input is a job of B's own.
 */
import { randomBytes } from 'node:crypto';
import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { testRedisUrl } from '../helpers/redis';
import { until } from '../helpers/wait';
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';

const NOMIC = 'nomic-embed-text';
const A = { authorization: 'Bearer embed-tenant-a-key' };
const B = { authorization: 'Bearer embed-tenant-b-key' };

/** Status and body of a GET, with `id` in the body replaced so that two answers can be compared. */
async function read(url: string, headers: Record<string, string>, id: string) {
  const r = await get(url, headers);
  return { status: r.status, body: JSON.stringify(r.body).split(id).join('<id>') };
}

describe('embeddings are per tenant', () => {
  let fleet: TestFleet;
  let worker: Cell0Worker | undefined;
  beforeAll(async () => {
    // No worker at first: the jobs stay pending, so their ids come back in the 504 answer.
    fleet = await startTestFleet({
      worker: false,
      apiKeys: ['embed-tenant-a-key', 'embed-tenant-b-key'],
      tenantSecret: 'an-embeddings-test-secret-of-length',
      batches: { concurrency: 8 },
    });
  });
  afterAll(async () => {
    await worker?.close();
    await fleet.close();
  });

  it("answers another tenant's embedding job and batch results like unknown ones, before and after they finish", async () => {
    const input = `private tenant text ${randomBytes(4).toString('hex')}`;
    const mine = await post(
      `${fleet.url}/v1/embeddings`,
      { model: NOMIC, input: [input], wait: 50 },
      { headers: A },
    );
    expect(mine.status).toBe(504);
    const jobId = (mine.body.error as { pending: { jobId: string }[] }).pending[0]!.jobId;
    // B's identical input is another job (B's namespace).
    const theirs = await post(
      `${fleet.url}/v1/embeddings`,
      { model: NOMIC, input: [input], wait: 50 },
      { headers: B },
    );
    expect(theirs.status).toBe(504);
    expect((theirs.body.error as { pending: { jobId: string }[] }).pending[0]!.jobId).not.toBe(jobId);

    const batch = await post(`${fleet.url}/v1/batches`, undefined, {
      raw: JSON.stringify({ custom_id: 'e1', queue: 'embedding', body: { model: NOMIC, input } }) + '\n',
      headers: { 'content-type': 'application/jsonl', ...A },
    });
    expect(batch.status).toBe(202);
    const batchId = batch.body.id as string;

    const unknownJob = `e-${randomBytes(16).toString('hex')}`;
    const unknownBatch = 'batch_000000000000000000000000';
    const expectHidden = async () => {
      const foreign = await read(`${fleet.url}/v1/jobs/embedding/${jobId}`, B, jobId);
      expect(foreign.status).toBe(404);
      expect(foreign).toEqual(await read(`${fleet.url}/v1/jobs/embedding/${unknownJob}`, B, unknownJob));
      const foreignBatch = await read(`${fleet.url}/v1/batches/${batchId}`, B, batchId);
      expect(foreignBatch.status).toBe(404);
      expect(foreignBatch).toEqual(await read(`${fleet.url}/v1/batches/${unknownBatch}`, B, unknownBatch));
      const res = await fetch(`${fleet.url}/v1/batches/${batchId}/results`, { headers: B });
      expect(res.status).toBe(404);
      expect((await res.text()).split(batchId).join('<id>')).toBe(
        (await (await fetch(`${fleet.url}/v1/batches/${unknownBatch}/results`, { headers: B })).text())
          .split(unknownBatch)
          .join('<id>'),
      );
    };
    // Pending: the owner sees its job, the other tenant sees nothing.
    expect((await get(`${fleet.url}/v1/jobs/embedding/${jobId}`, A)).status).toBe(200);
    await expectHidden();

    // A worker finishes everything; the answer stays the same for B, and A reads its vectors.
    worker = new Cell0Worker({
      redisUrl: testRedisUrl(),
      prefix: fleet.prefix,
      queues: ['embedding'],
      inference: new OllamaBackend(new OllamaClient({ baseUrl: fleet.sim.url })),
      heartbeatMs: 0,
    });
    await worker.start();
    await until(
      async () => (await get(`${fleet.url}/v1/batches/${batchId}`, A)).body.status === 'completed',
      30_000,
      "tenant A's batch to complete",
    );
    const own = await get(`${fleet.url}/v1/jobs/embedding/${jobId}`, A);
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ jobId, state: 'completed' });
    const ownResults = await fetch(`${fleet.url}/v1/batches/${batchId}/results`, { headers: A });
    expect(ownResults.status).toBe(200);
    expect(JSON.parse((await ownResults.text()).trim())).toMatchObject({
      custom_id: 'e1',
      status: 'completed',
    });
    await expectHidden();
  }, 60_000);
});
