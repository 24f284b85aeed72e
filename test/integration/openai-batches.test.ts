import OpenAI, { BadRequestError, NotFoundError, toFile } from 'openai';
import { startTestFleet, type TestFleet } from '../helpers/fleet';
import { isCluster } from '../../shared/redis/cluster';
import { until } from '../helpers/wait';

const KEY_A = 'sk-cell0-batches-a';
const KEY_B = 'sk-cell0-batches-b';
const MAX_BODY = 64 * 1024;

/** One input-file line of OpenAI's Batch API. */
const line = (custom_id: string, url: string, body: Record<string, unknown>) =>
  JSON.stringify({ custom_id, method: 'POST', url, body });

const chat = (content: string, model = 'qwen2.5:0.5b') => ({
  model,
  messages: [{ role: 'user', content }],
  max_tokens: 8,
});

/** A line of a batch's output or error file; `body` is walked as JSON. */
interface OutLine {
  id: string;
  custom_id: string;
  error: { code: string; message: string } | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON, walked by the assertions
  response: { status_code: number; request_id: string | null; body: any };
}

/** The lines of a JSONL text, parsed. */
const parseLines = (text: string): OutLine[] =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as OutLine);

const FINAL = ['completed', 'failed', 'cancelled'];

describe("OpenAI's Batch API (files and batches), through the official openai SDK", () => {
  let fleet: TestFleet;
  let a: OpenAI;
  let b: OpenAI;
  beforeAll(async () => {
    fleet = await startTestFleet({
      apiKeys: [KEY_A, KEY_B],
      tenantSecret: 'openai-batches-secret',
      batches: { maxBodyBytes: MAX_BODY, maxItems: 100 },
    });
    a = new OpenAI({ baseURL: `${fleet.url}/v1`, apiKey: KEY_A, maxRetries: 0 });
    b = new OpenAI({ baseURL: `${fleet.url}/v1`, apiKey: KEY_B, maxRetries: 0 });
  });
  afterAll(() => fleet.close());

  /** The batches stored under the fleet's prefix (on every master of a Redis Cluster). */
  async function batchKeys(): Promise<string[]> {
    const conn = fleet.client.submitter.redis.connection;
    const nodes = isCluster(conn) ? conn.nodes('master') : [conn];
    const keys = (
      await Promise.all(nodes.map((n) => n.keys(`${fleet.batches!.prefix}:batch:batch_*`)))
    ).flat();
    return keys.filter((k) => !/:(done|results)$/.test(k)).sort();
  }

  async function upload(client: OpenAI, lines: string[]) {
    return client.files.create({
      file: await toFile(Buffer.from(lines.join('\n')), 'in.jsonl'),
      purpose: 'batch',
    });
  }

  async function finished(client: OpenAI, id: string) {
    let batch = await client.batches.retrieve(id);
    await until(async () => {
      batch = await client.batches.retrieve(id);
      return FINAL.includes(batch.status);
    }, 20_000);
    return batch;
  }

  /** Makes a batch of an uploaded file and waits until it is final. */
  async function runFile(
    client: OpenAI,
    fileId: string,
    endpoint: '/v1/chat/completions' | '/v1/completions' | '/v1/embeddings',
  ) {
    const made = await client.batches.create({ input_file_id: fileId, endpoint, completion_window: '24h' });
    return finished(client, made.id);
  }

  it('runs a chat batch from an uploaded file: output and error files in OpenAI shape, duplicates sharing one job', async () => {
    const tag = `chat-${Date.now()}`;
    const file = await upload(a, [
      line('q1', '/v1/chat/completions', chat(`${tag} first`)),
      line('q2', '/v1/chat/completions', chat(`${tag} second`)),
      line('q2-again', '/v1/chat/completions', chat(`${tag} second`)),
      line('unknown-model', '/v1/chat/completions', chat(`${tag} x`, 'no-such-model-here')),
    ]);
    expect(file).toMatchObject({
      object: 'file',
      purpose: 'batch',
      filename: 'in.jsonl',
      status: 'processed',
    });
    expect(file.bytes).toBeGreaterThan(100);
    expect((await a.files.retrieve(file.id)).id).toBe(file.id);
    expect(await (await a.files.content(file.id)).text()).toContain(`${tag} first`);

    const created = await a.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      metadata: { run: tag },
    });
    expect(created).toMatchObject({
      object: 'batch',
      endpoint: '/v1/chat/completions',
      input_file_id: file.id,
      completion_window: '24h',
      metadata: { run: tag },
      output_file_id: null,
    });
    expect(created.request_counts?.total).toBe(4);

    const batch = await finished(a, created.id);
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: 4, completed: 3, failed: 1 });
    expect(batch.completed_at).toEqual(expect.any(Number));

    const out = parseLines(await (await a.files.content(batch.output_file_id!)).text());
    expect(out.map((l) => l.custom_id).sort()).toEqual(['q1', 'q2', 'q2-again']);
    for (const l of out) {
      expect(l.id).toMatch(/^batch_req_[0-9a-f]{24}$/);
      expect(l.error).toBeNull();
      expect(l.response.status_code).toBe(200);
      expect(l.response.body).toMatchObject({ object: 'chat.completion', system_fingerprint: 'cell0' });
      expect(l.response.body.choices[0].message.content).toEqual(expect.any(String));
      expect(l.response.body.choices[0].message.content.length).toBeGreaterThan(0);
      expect(l.response.body.usage.completion_tokens).toBeGreaterThan(0);
    }
    const byId = Object.fromEntries(out.map((l) => [l.custom_id, l])) as Record<string, OutLine>;
    // identical requests: one job, one answer
    expect(byId['q2-again']!.response.request_id).toBe(byId.q2!.response.request_id);
    expect(byId['q2-again']!.response.body.choices[0].message.content).toBe(
      byId.q2!.response.body.choices[0].message.content,
    );
    expect(byId.q1!.response.request_id).not.toBe(byId.q2!.response.request_id);

    const errors = parseLines(await (await a.files.content(batch.error_file_id!)).text());
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      custom_id: 'unknown-model',
      error: null,
      response: { status_code: 404, body: { error: { code: 'model_not_found', param: 'model' } } },
    });

    const outFile = await a.files.retrieve(batch.output_file_id!);
    expect(outFile).toMatchObject({ id: batch.output_file_id, object: 'file', purpose: 'batch_output' });
  });

  it('runs legacy completions and embeddings batches', async () => {
    const tag = `ce-${Date.now()}`;
    const cf = await upload(a, [
      line('c1', '/v1/completions', { model: 'qwen2.5:0.5b', prompt: `${tag} once`, max_tokens: 8 }),
    ]);
    const cb = await runFile(a, cf.id, '/v1/completions');
    expect(cb.error_file_id).toBeNull();
    const [c] = parseLines(await (await a.files.content(cb.output_file_id!)).text());
    expect(c!.response.body).toMatchObject({ object: 'text_completion' });
    expect(c!.response.body.choices[0].text.length).toBeGreaterThan(0);

    const ef = await upload(a, [
      line('e1', '/v1/embeddings', { model: 'nomic-embed-text', input: [`${tag} one`, `${tag} two`] }),
    ]);
    const eb = await runFile(a, ef.id, '/v1/embeddings');
    expect(eb.request_counts).toEqual({ total: 1, completed: 1, failed: 0 });
    const [e] = parseLines(await (await a.files.content(eb.output_file_id!)).text());
    expect(e!.response.body.object).toBe('list');
    expect(e!.response.body.data).toHaveLength(2);
    expect(e!.response.body.data[1]).toMatchObject({ object: 'embedding', index: 1 });
    expect(e!.response.body.data[1].embedding.length).toBeGreaterThan(8);
  });

  it('refuses bad requests with the SDK typed errors, naming the fields and lines, and runs nothing', async () => {
    const good = await upload(a, [line('x', '/v1/chat/completions', chat('fine'))]);
    const bad = await a.batches
      .create({
        input_file_id: good.id,
        endpoint: '/v1/responses',
        completion_window: '1h',
      } as unknown as OpenAI.Batches.BatchCreateParams)
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(BadRequestError);
    expect((bad as BadRequestError).message).toMatch(/endpoint: expected one of/);
    expect((bad as BadRequestError).message).toMatch(/completion_window: expected "24h"/);

    const missing = await a.batches
      .create({
        input_file_id: 'file-000000000000000000000000',
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NotFoundError);

    const badLines = await upload(a, [
      JSON.stringify({ custom_id: 'a', method: 'GET', url: '/v1/chat/completions', body: chat('x') }),
      'not json',
      line('b', '/v1/chat/completions', { model: 'm' }),
      line('c', '/v1/completions', chat('x')),
      line('d', '/v1/chat/completions', { ...chat('x'), stream: true }),
      line('fine', '/v1/chat/completions', chat('a good line among bad ones')),
    ]);
    // the helper sees batches: one made here from the good file is among them
    const made = await a.batches.create({
      input_file_id: good.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const before = await batchKeys();
    expect(before.some((k) => k.endsWith(`:batch:${made.id}`))).toBe(true);
    const refused = await a.batches
      .create({ input_file_id: badLines.id, endpoint: '/v1/chat/completions', completion_window: '24h' })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BadRequestError);
    const msg = (refused as BadRequestError).message;
    expect(msg).toMatch(/lines\[1\]: method: expected "POST"/);
    expect(msg).toMatch(/lines\[2\]: not JSON/);
    expect(msg).toMatch(/lines\[3\]\.body\.messages/);
    expect(msg).toMatch(/lines\[4\]: url: expected "\/v1\/chat\/completions"/);
    expect(msg).toMatch(/lines\[5\]\.body\.stream: a batch request cannot stream/);
    // no batch was made: nothing of the file ran, the good line included
    expect(await batchKeys()).toEqual(before);

    const purpose = await a.files
      .create({ file: await toFile(Buffer.from('{}'), 'f.jsonl'), purpose: 'fine-tune' })
      .catch((e: unknown) => e);
    expect(purpose).toBeInstanceOf(BadRequestError);
    expect((purpose as BadRequestError).message).toMatch(/purpose/);

    const big = await a.files
      .create({ file: await toFile(Buffer.alloc(MAX_BODY + 10, 'x'), 'big.jsonl'), purpose: 'batch' })
      .catch((e: unknown) => e);
    expect((big as { status?: number }).status).toBe(413);

    const notMultipart = await fetch(`${fleet.url}/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(notMultipart.status).toBe(415);
    expect(((await notMultipart.json()) as { error: { type: string } }).error.type).toBe(
      'invalid_request_error',
    );
  });

  it("keeps one tenant's files and batches from another, lists and deletes files", async () => {
    const file = await upload(a, [line('t', '/v1/chat/completions', chat(`tenant ${Date.now()}`))]);
    await expect(b.files.retrieve(file.id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(b.files.content(file.id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(
      b.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      }),
    ).rejects.toBeInstanceOf(NotFoundError);
    const batch = await runFile(a, file.id, '/v1/chat/completions');
    await expect(b.batches.retrieve(batch.id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(b.files.content(batch.output_file_id!)).rejects.toBeInstanceOf(NotFoundError);

    // batches listed newest first, OpenAI's pages (limit, after), each tenant its own
    const newest = (await a.batches.list({ limit: 1 })).data;
    expect(newest.map((x) => x.id)).toEqual([batch.id]);
    expect(newest[0]).toMatchObject({
      object: 'batch',
      endpoint: '/v1/chat/completions',
      status: 'completed',
    });
    const older = await a.batches.list({ limit: 100, after: batch.id });
    expect(older.data.length).toBeGreaterThan(0);
    expect(older.data.map((x) => x.id)).not.toContain(batch.id);
    const times = older.data.map((x) => x.created_at);
    expect([...times].sort((x, y) => y - x)).toEqual(times);
    expect((await b.batches.list()).data.map((x) => x.id)).not.toContain(batch.id);

    const listed = (await a.files.list()).data.map((f) => f.id);
    expect(listed).toContain(file.id);
    expect((await b.files.list()).data.map((f) => f.id)).not.toContain(file.id);

    expect(await a.files.delete(file.id)).toEqual({ id: file.id, object: 'file', deleted: true });
    await expect(a.files.retrieve(file.id)).rejects.toBeInstanceOf(NotFoundError);
    expect((await a.files.list()).data.map((f) => f.id)).not.toContain(file.id);
  });
});

describe("OpenAI's Batch API while the batch runs (no worker: nothing finishes)", () => {
  let fleet: TestFleet;
  let a: OpenAI;
  beforeAll(async () => {
    fleet = await startTestFleet({ worker: false, batches: {} });
    a = new OpenAI({ baseURL: `${fleet.url}/v1`, apiKey: 'none', maxRetries: 0 });
  });
  afterAll(() => fleet.close());

  it('has no output file before the batch ends, and cancels in OpenAI shape', async () => {
    const file = await a.files.create({
      file: await toFile(
        Buffer.from(
          Array.from({ length: 3 }, (_, i) => line(`k${i}`, '/v1/chat/completions', chat(`waits ${i}`))).join(
            '\n',
          ),
        ),
        'in.jsonl',
      ),
      purpose: 'batch',
    });
    const created = await a.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    expect(created.status).toBe('in_progress');
    expect(created.output_file_id).toBeNull();
    await expect(a.files.content(`file-${created.id}-output`)).rejects.toBeInstanceOf(NotFoundError);
    await expect(a.files.retrieve(`file-${created.id}-errors`)).rejects.toBeInstanceOf(NotFoundError);
    // every line's job queued (and none can run): the cancel then waits for them, so the batch stays cancelling
    await until(async () => {
      const q = (await (await fetch(`${fleet.url}/v1/queues`)).json()) as {
        queues: { inference: { waiting: number } };
      };
      return q.queues.inference.waiting >= 3;
    }, 10_000);
    const cancelled = await a.batches.cancel(created.id);
    expect(cancelled).toMatchObject({
      id: created.id,
      object: 'batch',
      endpoint: '/v1/chat/completions',
      status: 'cancelling',
      request_counts: { total: 3 },
    });
    expect(cancelled.cancelling_at).toEqual(expect.any(Number));
    expect((await a.batches.retrieve(created.id)).status).toBe('cancelling');
  });
});
