import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { until } from '../helpers/wait';
import { type BatchResultLine } from '../../producers/batches/batch-model';
import { Batches } from '../../producers/batches/batches';
import { type BatchClient } from '../../producers/batches/batch-client';
import { OverloadedError, RedisFullError } from '../../shared/errors';

/** The whole results stream of a batch (follows it until the batch is finished). */
async function results(
  url: string,
  id: string,
  headers: Record<string, string> = {},
): Promise<BatchResultLine[]> {
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

/** A test fleet for one describe block, and the Batches its tests open (all closed after the block). */
function blockFleet(): { fleet: TestFleet; open: (b: Batches) => Batches } {
  const opened: Batches[] = [];
  const block = {
    fleet: undefined as unknown as TestFleet,
    open: (b: Batches) => {
      opened.push(b);
      return b;
    },
  };
  beforeAll(async () => {
    block.fleet = await startTestFleet();
  });
  afterAll(async () => {
    for (const b of opened) await b.close();
    await block.fleet.close();
  });
  return block;
}

/** `n` search items (lines 1…n, custom ids `${tag}-${i}`), each query from `query`. */
function searchItems(fleet: TestFleet, n: number, tag: string, query: (i: number) => string) {
  return Array.from({ length: n }, (_, i) => ({
    line: i + 1,
    custom_id: `${tag}-${i}`,
    queue: 'search' as const,
    data: fleet.client.parseFor('search', { query: query(i) }),
  }));
}

/** Every result line of batch `id`, read through `batches` until the batch is finished. */
async function resultLines(batches: Batches, id: string): Promise<BatchResultLine[]> {
  const lines: BatchResultLine[] = [];
  for await (const chunk of (await batches.results(id))!)
    lines.push(...chunk.map((l) => JSON.parse(l) as BatchResultLine));
  return lines;
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

/** How many generations reached the simulator. */
function generations(fleet: TestFleet): number {
  return fleet.sim.stats().requests.byEndpoint['/api/generate'] ?? 0;
}

describe('batch jobs: coalescing, caches and failures', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    // The answers before a batch are waited for (not 202) however long a loaded host takes to run them.
    fleet = await startTestFleet({
      batches: { concurrency: 128 },
      workerConcurrency: 16,
      resultWaitMs: 60_000,
    });
  });
  afterAll(async () => {
    await fleet.close();
  });

  it('a 1,000-item batch with duplicates inside it and of completed jobs costs one backend call per distinct request', async () => {
    // 50 of the batch's 300 distinct prompts were answered before the batch (completed jobs).
    const before = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        post(`${fleet.url}/v1/inference`, { model: 'qwen2.5:7b', prompt: `distinct ${i}` }),
      ),
    );
    expect(before.every((r) => r.status === 200)).toBe(true);
    const calls0 = generations(fleet);
    const lines = Array.from({ length: 1000 }, (_, i) => ({
      custom_id: `req-${i}`,
      queue: 'inference',
      body: { model: 'qwen2.5:7b', prompt: `distinct ${(i * 7) % 300}` },
    }));
    const r = await postBatch(fleet.url, jsonl(lines));
    expect(r.status).toBe(202);
    const out = await results(fleet.url, r.body.id as string);
    expect(out).toHaveLength(1000);
    expect(new Set(out.map((l) => l.line)).size).toBe(1000);
    expect(out.every((l) => l.status === 'completed')).toBe(true);
    // Identical requests got identical answers from one job.
    const byPrompt = new Map<string, { text: unknown; jobId: string | undefined }>();
    for (const l of out) {
      const prompt = lines[l.line - 1]!.body.prompt;
      const seen = byPrompt.get(prompt);
      const text = (l.result as { text: string }).text;
      if (seen) expect({ text, jobId: l.job_id }).toEqual({ text: seen.text, jobId: seen.jobId });
      else byPrompt.set(prompt, { text, jobId: l.job_id });
    }
    expect(byPrompt.size).toBe(300);
    // The 250 prompts not answered before: one backend call each; the 50 completed ones: none.
    expect(generations(fleet) - calls0).toBe(250);
    const view = await get(`${fleet.url}/v1/batches/${r.body.id as string}`);
    expect(view.body).toMatchObject({
      status: 'completed',
      request_counts: { total: 1000, completed: 1000, failed: 0, cancelled: 0 },
    });
    expect(view.body.completed_at).toEqual(expect.any(Number));
  }, 300_000); // a deadline for a hang: 1,300 jobs through one process on a loaded 2-core host

  it('records a failed request as a failed line, not fatal to the batch', async () => {
    const lines = [
      { custom_id: 'ok', queue: 'inference', body: { model: 'qwen2.5:7b', prompt: 'fine' } },
      { custom_id: 'bad-model', queue: 'inference', body: { model: 'no-such-model:1b', prompt: 'x' } },
      { custom_id: 'ok2', queue: 'search', body: { query: 'bullmq flows' } },
    ];
    const r = await postBatch(fleet.url, jsonl(lines));
    const out = await results(fleet.url, r.body.id as string);
    const bad = out.find((l) => l.custom_id === 'bad-model')!;
    expect(bad).toMatchObject({ status: 'failed', line: 2, error: { code: 'CELL0_MODEL_NOT_FOUND' } });
    expect(
      out
        .filter((l) => l.status === 'completed')
        .map((l) => l.custom_id)
        .sort(),
    ).toEqual(['ok', 'ok2']);
    const view = await get(`${fleet.url}/v1/batches/${r.body.id as string}`);
    expect(view.body).toMatchObject({
      status: 'completed',
      request_counts: { total: 3, completed: 2, failed: 1 },
    });
  });

  it('refuses a batch with bad lines, listing them by number, and enqueues nothing', async () => {
    const queue = fleet.client.batches!.getQueue();
    const counts0 = await queue.getJobCounts();
    const body = [
      JSON.stringify({ custom_id: 'fine', queue: 'inference', body: { model: 'qwen2.5:7b', prompt: 'x' } }),
      '{not json',
      '',
      JSON.stringify({ custom_id: 'q', queue: 'nope', body: {} }),
      JSON.stringify({ custom_id: 'b', queue: 'inference', body: { model: 'qwen2.5:7b' } }),
      JSON.stringify({ queue: 'search', body: { query: 'x' }, extra: 1 }),
      JSON.stringify([1, 2]),
    ].join('\n');
    const r = await postBatch(fleet.url, body);
    expect(r.status).toBe(400);
    const err = r.body.error as {
      code: string;
      bad_lines: number;
      issues: { field: string; reason: string }[];
    };
    expect(err.code).toBe('CELL0_VALIDATION');
    expect(err.bad_lines).toBe(5);
    const fields = err.issues.map((i) => i.field);
    expect(fields).toEqual(
      expect.arrayContaining([
        'lines[2]',
        'lines[4].queue',
        'lines[5].body.prompt',
        'lines[6].custom_id',
        'lines[6].extra',
        'lines[7]',
      ]),
    );
    expect(fields.some((f) => f.startsWith('lines[1]') || f.startsWith('lines[3]'))).toBe(false);
    expect(await queue.getJobCounts()).toEqual(counts0);
    // A JSON array is numbered by position; a body that is neither shape is refused whole.
    const arr = await post(`${fleet.url}/v1/batches`, [{ custom_id: 'x', queue: 'search', body: {} }]);
    expect(arr.status).toBe(400);
    expect((arr.body.error as { issues: { field: string }[] }).issues[0]!.field).toBe('lines[1].body.query');
    const obj = await post(`${fleet.url}/v1/batches`, { custom_id: 'x' });
    expect(obj.status).toBe(400);
    const empty = await postBatch(fleet.url, '\n\n');
    expect(empty.status).toBe(400);
    const wrongType = await post(`${fleet.url}/v1/batches`, undefined, {
      raw: 'x',
      headers: { 'content-type': 'text/csv' },
    });
    expect(wrongType.status).toBe(415);
  });

  it('answers 404 for an unknown or malformed batch id', async () => {
    for (const id of ['batch_000000000000000000000000', 'nope', '..%2F..']) {
      expect((await get(`${fleet.url}/v1/batches/${id}`)).status).toBe(404);
      expect((await post(`${fleet.url}/v1/batches/${id}/cancel`, {})).status).toBe(404);
      const res = await fetch(`${fleet.url}/v1/batches/${id}/results`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('CELL0_BATCH_NOT_FOUND');
    }
  });
});

describe('batch jobs: limits, cancel and backpressure', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    fleet = await startTestFleet({
      batches: { concurrency: 4, maxItems: 300, maxBodyBytes: 64 * 1024, chunkSize: 50 },
      // Slow generations: a batch is still running when the test looks at it.
      sim: { ttftMs: 40, tokensPerSec: 2000 },
      workerConcurrency: 8,
    });
  });
  afterAll(async () => {
    await fleet.close();
  });

  it('refuses more items than CELL0_BATCH_MAX_ITEMS and bodies over its own limit with 413', async () => {
    const line = (i: number) => ({ custom_id: `${i}`, queue: 'search', body: { query: `q ${i}` } });
    const tooMany = await postBatch(fleet.url, jsonl(Array.from({ length: 301 }, (_, i) => line(i))));
    expect(tooMany.status).toBe(413);
    expect(tooMany.body.error).toMatchObject({ code: 'CELL0_INPUT_TOO_LARGE' });
    const big = jsonl([{ custom_id: 'x', queue: 'search', body: { query: 'y'.repeat(1000) } }]).repeat(80);
    const tooBig = await postBatch(fleet.url, big);
    expect(tooBig.status).toBe(413);
    expect((tooBig.body.error as { message: string }).message).toMatch(/CELL0_BATCH_MAX_BODY_BYTES/);
  });

  it('keeps at most `concurrency` of a batch on the work queue, and cancel stops the items not yet started', async () => {
    const lines = Array.from({ length: 300 }, (_, i) => ({
      custom_id: `c-${i}`,
      queue: 'inference',
      body: { model: 'qwen2.5:7b', prompt: `cancel me ${i}`, params: { max_tokens: 20 } },
    }));
    const calls0 = generations(fleet);
    const r = await postBatch(fleet.url, jsonl(lines));
    expect(r.status).toBe(202);
    const id = r.body.id as string;
    const queue = fleet.client.submitter.getQueue('inference');
    let maxDepth = 0;
    await until(async () => {
      const c = await queue.getJobCounts('waiting', 'active', 'prioritized', 'delayed');
      maxDepth = Math.max(maxDepth, c.waiting! + c.active! + c.prioritized! + c.delayed!);
      const v = await get(`${fleet.url}/v1/batches/${id}`);
      return (v.body.request_counts as { completed: number }).completed >= 20;
    }, 60_000);
    expect(maxDepth).toBeLessThanOrEqual(4);
    const cancel = await post(`${fleet.url}/v1/batches/${id}/cancel`, {});
    expect(cancel.status).toBe(200);
    expect(['cancelling', 'cancelled']).toContain(cancel.body.status);
    expect(cancel.body.cancelling_at).toEqual(expect.any(Number));
    const out = await results(fleet.url, id);
    expect(out).toHaveLength(300);
    const view = (await get(`${fleet.url}/v1/batches/${id}`)).body as {
      status: string;
      request_counts: { total: number; completed: number; failed: number; cancelled: number };
    };
    expect(view.status).toBe('cancelled');
    const { completed, failed, cancelled } = view.request_counts;
    expect(completed + failed + cancelled).toBe(300);
    expect(failed).toBe(0);
    // Stopped: most of the batch never ran; what ran is what the counts say, one backend call each.
    expect(cancelled).toBeGreaterThan(200);
    expect(generations(fleet) - calls0).toBe(completed);
    expect(
      out.filter((l) => l.status === 'cancelled').every((l) => l.error?.code === 'CELL0_BATCH_CANCELLED'),
    ).toBe(true);
    // A finished batch stays as it is.
    const again = await post(`${fleet.url}/v1/batches/${id}/cancel`, {});
    expect(again.body.status).toBe('cancelled');
  }, 120_000);
});

describe('batch jobs: tenants, caches and the client', () => {
  let fleet: TestFleet;
  const A = { authorization: 'Bearer key-a-123456789' };
  const B = { authorization: 'Bearer key-b-123456789' };
  beforeAll(async () => {
    fleet = await startTestFleet({
      apiKeys: ['key-a-123456789', 'key-b-123456789'],
      tenantSecret: 'a-test-secret-of-enough-length',
      caches: true,
      batches: { concurrency: 16 },
    });
  });
  afterAll(async () => {
    await fleet.close();
  });

  it("is its tenant's: another key sees an unknown batch, and each request is in the tenant's namespace", async () => {
    const body = { model: 'qwen2.5:7b', prompt: 'tenant batch' };
    const r = await postBatch(fleet.url, jsonl([{ custom_id: 'x', queue: 'inference', body }]), A);
    expect(r.status).toBe(202);
    const id = r.body.id as string;
    const out = await results(fleet.url, id, A);
    expect(out).toHaveLength(1);
    // The same request sent singly by tenant A is answered by the batch's job (same namespace, same id).
    const single = await post(`${fleet.url}/v1/inference`, body, { headers: A });
    expect(single.body.jobId).toBe(out[0]!.job_id);
    // Tenant B: the batch does not exist, and its own identical request is another job.
    const other = await get(`${fleet.url}/v1/batches/${id}`, B);
    const unknown = await get(`${fleet.url}/v1/batches/batch_000000000000000000000000`, B);
    expect(other.status).toBe(404);
    expect(JSON.stringify(other.body).replace(id, 'ID')).toBe(
      JSON.stringify(unknown.body).replace('batch_000000000000000000000000', 'ID'),
    );
    expect((await post(`${fleet.url}/v1/batches/${id}/cancel`, {}, { headers: B })).status).toBe(404);
    expect((await fetch(`${fleet.url}/v1/batches/${id}/results`, { headers: B })).status).toBe(404);
    const singleB = await post(`${fleet.url}/v1/inference`, body, { headers: B });
    expect(singleB.body.jobId).not.toBe(out[0]!.job_id);
    expect((await postBatch(fleet.url, jsonl([{ custom_id: 'x', queue: 'inference', body }]))).status).toBe(
      401,
    );
  });

  it('answers a cached request at once, marked cached', async () => {
    const body = { model: 'qwen2.5:7b', prompt: 'what is a cached batch item?' };
    const first = await post(`${fleet.url}/v1/inference`, body, { headers: A });
    expect(first.status).toBe(200);
    const calls0 = generations(fleet);
    const r = await postBatch(fleet.url, jsonl([{ custom_id: 'c', queue: 'inference', body }]), A);
    const [line] = await results(fleet.url, r.body.id as string, A);
    expect(line).toMatchObject({ status: 'completed', cached: 'exact' });
    expect((line!.result as { text: string }).text).toBe((first.body.result as { text: string }).text);
    expect(generations(fleet)).toBe(calls0);
  });

  it('client.batch() returns one line per request in order and reports progress', async () => {
    const requests = Array.from({ length: 40 }, (_, i) => ({
      custom_id: `p-${i}`,
      queue: 'search' as const,
      body: { query: `progress query ${i % 10}` },
    }));
    const progress: { completed: number; total: number }[] = [];
    const out = await fleet.client.batch(requests, { onProgress: (p) => progress.push(p) });
    expect(out.map((l) => l.custom_id)).toEqual(requests.map((r) => r.custom_id));
    expect(out.every((l) => l.status === 'completed')).toBe(true);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toMatchObject({ completed: 40, total: 40 });
    await expect(
      fleet.client.batch([{ custom_id: 'x', queue: 'inference', body: { model: 'qwen2.5:7b' } }]),
    ).rejects.toMatchObject({ code: 'CELL0_VALIDATION', badLines: 1 });
  });
});

describe('batch jobs under load shedding', () => {
  let fleet: TestFleet;
  let batches: Batches | undefined;
  beforeAll(async () => {
    fleet = await startTestFleet();
  });
  afterAll(async () => {
    await batches?.close();
    await fleet.close();
  });

  it('waits out the shedder and retries: refusals make items later, never failed', async () => {
    // The fleet's real client, refusing the first 30 submissions as an overloaded fleet's shedder would.
    let refusals = 0;
    const client: BatchClient = {
      submitter: fleet.client.submitter,
      redisUrl: fleet.client.redisUrl,
      parseFor: (q, b) => fleet.client.parseFor(q, b),
      submitTo: (q, d, o) => {
        if (refusals < 30) {
          refusals++;
          throw refusals % 2
            ? new OverloadedError('queue_depth', 'queue too deep', 20)
            : new RedisFullError('watermark', 'over the watermark', 20);
        }
        return fleet.client.submitTo(q, d, o);
      },
    };
    batches = new Batches({ client, concurrency: 8 });
    const view = await batches.create(searchItems(fleet, 20, 'o', (i) => `overloaded ${i}`));
    const lines = await resultLines(batches, view.id);
    expect(refusals).toBe(30);
    expect(lines).toHaveLength(20);
    expect(lines.map((l) => l.status)).toEqual(Array(20).fill('completed'));
    expect(await batches.get(view.id)).toMatchObject({
      status: 'completed',
      request_counts: { total: 20, completed: 20, failed: 0 },
    });
  });
});

describe('a batch cancelled while it is being added', () => {
  const block = blockFleet();

  it('never queues the rest, and every line is accounted for as cancelled', async () => {
    const { fleet, open } = block;
    // No runner in the creating instance: nothing runs until the cancel is in.
    const creator = open(new Batches({ client: fleet.client, runner: false, chunkSize: 10 }));
    const view = await creator.create(searchItems(fleet, 200, 'x', (i) => `never run ${i}`));
    expect(view.status).toBe('in_progress');
    const cancelled = await creator.cancel(view.id);
    expect(cancelled?.status).toBe('cancelling');
    const runner = open(new Batches({ client: fleet.client, concurrency: 16 }));
    await runner.start();
    const lines = await resultLines(runner, view.id);
    expect(lines).toHaveLength(200);
    expect(new Set(lines.map((l) => l.line)).size).toBe(200);
    expect(lines.every((l) => l.status === 'cancelled' && l.error?.code === 'CELL0_BATCH_CANCELLED')).toBe(
      true,
    );
    expect(await runner.get(view.id)).toMatchObject({
      status: 'cancelled',
      request_counts: { total: 200, completed: 0, failed: 0, cancelled: 200 },
    });
    // The flow's parent ran once its items were done (the gate was opened).
    await until(async () => (await runner.getQueue().getJobState(view.id)) === 'completed', 20_000);
    const search = await fleet.client.submitter.getCounts();
    expect(search.search).toMatchObject({ waiting: 0, active: 0, completed: 0 });
  });
});

describe('batch jobs: chunks and record calls', () => {
  const block = blockFleet();

  it('runs a batch as chunk jobs of itemsPerJob requests, their lines recorded many per record call', async () => {
    const { fleet, open } = block;
    const creator = open(new Batches({ client: fleet.client, runner: false, itemsPerJob: 100 }));
    const view = await creator.create(searchItems(fleet, 450, 'k', (i) => `chunked ${i % 150}`));
    // Nothing runs yet: the flow is the parent and ceil(450 / 100) = 5 chunk jobs, not 450 item jobs.
    const queue = creator.getQueue();
    const waiting = await queue.getJobs(['waiting']);
    expect(waiting.map((j) => j.name)).toEqual(Array(5).fill('items'));
    expect(waiting.map((j) => (j.data as { items: unknown[] }).items.length).sort()).toEqual([
      100, 100, 100, 100, 50,
    ]);
    const runner = open(new Batches({ client: fleet.client, concurrency: 64 }));
    await runner.start();
    const lines = await resultLines(runner, view.id);
    expect(lines).toHaveLength(450);
    expect(new Set(lines.map((l) => l.line)).size).toBe(450);
    expect(lines.every((l) => l.status === 'completed')).toBe(true);
    expect(await runner.get(view.id)).toMatchObject({
      status: 'completed',
      request_counts: { total: 450, completed: 450, failed: 0, cancelled: 0 },
    });
    // Lines that finish together share a record call (one stream entry): far fewer entries than lines.
    const entries = await fleet.client.submitter.redis.run((r) =>
      r.xlen(`${runner.prefix}:batch:${view.id}:results`),
    );
    expect(entries).toBeLessThan(450 / 4);
  });
});
