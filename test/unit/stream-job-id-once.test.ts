import crypto from 'node:crypto';
import { Cell0Client } from '../../producers/cell0-client';
import { type InferenceCache } from '../../shared/cache/inference-key';
import { jobIdFor } from '../../shared/queues/job-id';
import { QueueName } from '../../shared/queues/names';
import { type InferenceResult } from '../../shared/queues/results';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';

/*
 * A streamed request's job id (a SHA-256 of its canonical JSON) is computed once: the stream path computes it
 * for the answer's id and hands it to submitInference (CallOptions.jobId), which neither the cache path nor
 * the add path computes again.
 */
const result: InferenceResult = {
  model: 'm',
  text: 'An answer.',
  doneReason: 'stop',
  usage: { promptTokens: 1, completionTokens: 2, totalTokens: 3 },
  timings: { totalMs: 1 },
  provider: 'simulator',
  servedBy: 'test',
} as InferenceResult;

/** SHA-256 calls made for job ids (their input starts with the id's version tag) while `f` runs. */
async function jobIdHashes(f: () => Promise<unknown>): Promise<number> {
  const spy = jest.spyOn(crypto, 'hash');
  try {
    await f();
    return spy.mock.calls.filter((c) => String(c[1]).startsWith('cell0/job/v1\0')).length;
  } finally {
    spy.mockRestore();
  }
}

describe('a job id given to submitInference', () => {
  let client: Cell0Client;
  const cache: InferenceCache<InferenceResult> = {
    get: (prompt) =>
      Promise.resolve({ value: { jobId: 'i-cached', result }, confidence: 'exact', similarity: 1, prompt }),
    set: () => Promise.resolve(),
  };
  beforeAll(() => {
    client = new Cell0Client({
      redisUrl: testRedisUrl(),
      prefix: uniquePrefix('jid'),
      caches: { inference: cache },
    });
  });
  afterAll(async () => {
    await client.close();
  });

  it('is not computed again on the cache path', async () => {
    const data = client.parseInference({ model: 'm', prompt: 'cache path' });
    const id = jobIdFor(QueueName.INFERENCE, data);
    expect(await jobIdHashes(() => client.submitInference(data, { waitMs: 0, jobId: id }))).toBe(0);
    // The check counts what it should: without the id, the path computes it.
    expect(await jobIdHashes(() => client.submitInference(data, { waitMs: 0 }))).toBe(1);
  });

  it('is what beforeAdd gets on the add path, not computed again', async () => {
    const data = client.parseInference({ model: 'm', prompt: 'add path', cache: { noCache: true } });
    const id = jobIdFor(QueueName.INFERENCE, data);
    let seen: string | undefined;
    const stop = new Error('stop before the add');
    const beforeAdd = (j: string) => {
      seen = j;
      return Promise.reject(stop);
    };
    const hashes = await jobIdHashes(() =>
      expect(client.submitInference(data, { waitMs: 0, jobId: id, beforeAdd })).rejects.toBe(stop),
    );
    expect(seen).toBe(id);
    expect(hashes).toBe(0);
    seen = undefined;
    expect(
      await jobIdHashes(() =>
        expect(client.submitInference(data, { waitMs: 0, beforeAdd })).rejects.toBe(stop),
      ),
    ).toBe(1);
    expect(seen).toBe(id);
  });
});
