import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { until } from '../helpers/wait';
import { type BatchResultLine } from '../../producers/batches/batch-model';

/** The whole results stream of a batch (follows it until the batch is finished). */
async function results(url: string, id: string, headers: Record<string, string> = {}): Promise<BatchResultLine[]> {
  const res = await fetch(`${url}/v1/batches/${id}/results`, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/jsonl/);
  const text = await res.text();
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as BatchResultLine);
}

function jsonl(lines: unknown[]): string {
  return lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
}

async function postBatch(
  url: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  return post(`${url}/v1/batches`, undefined, {
    raw: body,
    headers: { 'content-type': 'application/jsonl', ...headers },
  });
}

describe('batch jobs over HTTP', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    fleet = await startTestFleet({ batches: { concurrency: 64 } });
  });
  afterAll(async () => {
    await fleet.close();
  });

  it('runs a small JSONL batch to completion, one result line per request', async () => {
    const lines = [
      { custom_id: 'a', queue: 'inference', body: { model: 'qwen2.5:7b', prompt: 'batch one' } },
      { custom_id: 'b', queue: 'search', body: { query: 'redis streams' } },
      { custom_id: 'c', queue: 'inference', body: { model: 'qwen2.5:7b', prompt: 'batch one' } },
    ];
    const r = await postBatch(fleet.url, jsonl(lines));
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ object: 'batch', request_counts: { total: 3 } });
    const id = r.body.id as string;
    const out = await results(fleet.url, id);
    expect(out.map((l) => l.custom_id).sort()).toEqual(['a', 'b', 'c']);
    expect(out.every((l) => l.status === 'completed')).toBe(true);
    const a = out.find((l) => l.custom_id === 'a')!;
    const c = out.find((l) => l.custom_id === 'c')!;
    expect(c.result).toEqual(a.result);
    expect(c.job_id).toBe(a.job_id);
    const view = await get(`${fleet.url}/v1/batches/${id}`);
    expect(view.body).toMatchObject({
      id,
      status: 'completed',
      request_counts: { total: 3, completed: 3, failed: 0 },
    });
  });
});
