import { batchKeys, type BatchResultLine } from '../../producers/batches/batch-model';
import { get, post, type TestFleet } from './fleet';

/* Batch jobs over HTTP, for the tests that kill a process in the middle of one. */

/** POSTs `lines` as a JSONL batch (no key) and returns the batch id; expects 202. */
export async function submitBatch(fleet: TestFleet, lines: unknown[]): Promise<string> {
  const r = await post(`${fleet.url}/v1/batches`, undefined, {
    raw: lines.map((l) => JSON.stringify(l)).join('\n'),
    headers: { 'content-type': 'application/jsonl' },
  });
  expect(r.status).toBe(202);
  return r.body.id as string;
}

/** Requests of the batch finished so far (completed or failed). */
export async function batchFinished(fleet: TestFleet, id: string): Promise<number> {
  const v = await get(`${fleet.url}/v1/batches/${id}`);
  const c = v.body.request_counts as { completed: number; failed: number };
  return c.completed + c.failed;
}

/**
 * Reads the batch's results to the end (the stream ends when the batch does) and checks that they are
 * `total` distinct lines, all completed, and that the batch's counts and its record of finished lines say
 * the same. Returns the lines.
 */
export async function expectAllCompleted(
  fleet: TestFleet,
  id: string,
  total: number,
): Promise<BatchResultLine[]> {
  const res = await fetch(`${fleet.url}/v1/batches/${id}/results`);
  const out = (await res.text())
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as BatchResultLine);
  expect(out).toHaveLength(total);
  expect(new Set(out.map((l) => l.line)).size).toBe(total);
  expect(new Set(out.map((l) => l.custom_id)).size).toBe(total);
  expect(out.every((l) => l.status === 'completed')).toBe(true);
  const view = await get(`${fleet.url}/v1/batches/${id}`);
  expect(view.body).toMatchObject({
    status: 'completed',
    request_counts: { total, completed: total, failed: 0, cancelled: 0 },
  });
  expect(await fleet.client.submitter.redis.connection.hlen(batchKeys(fleet.prefix, id).done)).toBe(total);
  return out;
}
