import OpenAI, { type APIError, AuthenticationError, BadRequestError, NotFoundError } from 'openai';
import { startTestFleet, type TestFleet } from '../helpers/fleet';
import { expectAbortCancelsJob } from '../helpers/stream-abort';
import { until } from '../helpers/wait';
import { QueueName } from '../../shared/queues/names';
import { AccessControl } from '../../producers/api/access-control';

const KEY = 'sk-cell0-openai-test';

/** The text deltas of a chat stream, in order, and its last chunks. */
async function collect(
  stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>,
): Promise<{ deltas: string[]; finish: string | null; usage: OpenAI.CompletionUsage | null | undefined }> {
  const deltas: string[] = [];
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (c?.delta.content) deltas.push(c.delta.content);
    if (c?.finish_reason) finish = c.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  return { deltas, finish, usage };
}

describe('OpenAI-compatible API, through the official openai SDK', () => {
  let fleet: TestFleet;
  let openai: OpenAI;
  beforeAll(async () => {
    fleet = await startTestFleet({
      apiKeys: [KEY],
      tenantSecret: 'openai-test-secret',
      // As `cell0 start` publishes: the model memory manager's section, named `models`, beside the backend's list.
      workerStatus: () => ({
        models: { managers: [{ backend: 'http://127.0.0.1:11435', policy: 'LRU', resident: [] }] },
      }),
    });
    openai = new OpenAI({ baseURL: `${fleet.url}/v1`, apiKey: KEY, maxRetries: 0 });
  });
  afterAll(() => fleet.close());

  it('lists the models the fleet can route', async () => {
    const ids: string[] = [];
    for await (const m of openai.models.list()) ids.push(m.id);
    expect(ids).toEqual(expect.arrayContaining(['qwen2.5:7b', 'llama3.2:3b']));
    expect(await openai.models.retrieve('qwen2.5:7b')).toMatchObject({ id: 'qwen2.5:7b', object: 'model' });
    const unknown = await openai.models.retrieve('no-such-model:1b').catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(NotFoundError);
    expect((unknown as NotFoundError).code).toBe('model_not_found');
  });

  it('answers a chat completion in OpenAI shape, and says when an identical request joined it', async () => {
    const req = {
      model: 'qwen2.5:7b',
      messages: [
        { role: 'system' as const, content: 'Be brief.' },
        { role: 'user' as const, content: 'What is the capital of France?' },
      ],
      max_tokens: 24,
      temperature: 0,
    };
    const { data, response } = await openai.chat.completions.create(req).withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(data.choices).toHaveLength(1);
    expect(data.choices[0]!.message.role).toBe('assistant');
    expect(data.choices[0]!.message.content).toMatch(/^\[simulated qwen2\.5:7b\] \S+/);
    expect(['stop', 'length']).toContain(data.choices[0]!.finish_reason);
    expect(data.usage!.completion_tokens).toBeGreaterThan(0);
    expect(data.usage!.total_tokens).toBe(data.usage!.prompt_tokens + data.usage!.completion_tokens);
    expect(data.system_fingerprint).toBe('cell0');
    expect(response.headers.get('x-cell0-cache')).toBe('miss');
    expect(response.headers.get('x-cell0-coalesced')).toBe('new');

    const again = await openai.chat.completions.create(req).withResponse();
    expect(again.data.choices[0]!.message.content).toBe(data.choices[0]!.message.content);
    expect(again.response.headers.get('x-cell0-coalesced')).toBe('joined');

    // x-cell0-cache: no-cache runs it again instead of answering from the finished job.
    const fresh = await openai.chat.completions
      .create(req, { headers: { 'x-cell0-cache': 'no-cache' } })
      .withResponse();
    expect(fresh.response.headers.get('x-cell0-coalesced')).toBe('new');
  });

  it('embeds through the SDK (its default base64 encoding and float), one vector per input, in order', async () => {
    const input = ['the first text to embed', 'a second, different text'];
    // The SDK asks for base64 unless told otherwise, and decodes it to numbers itself.
    const viaBase64 = await openai.embeddings.create({ model: 'nomic-embed-text', input });
    expect(viaBase64.object).toBe('list');
    expect(viaBase64.data.map((d) => d.index)).toEqual([0, 1]);
    const floats = await openai.embeddings.create({
      model: 'nomic-embed-text',
      input,
      encoding_format: 'float',
    });
    for (const [i, d] of floats.data.entries()) {
      expect(d.object).toBe('embedding');
      expect(d.embedding.length).toBeGreaterThan(0);
      expect(d.embedding.every((x) => Number.isFinite(x))).toBe(true);
      // float32 on the wire in base64: the same vector to float32 precision.
      const b64 = viaBase64.data[i]!.embedding;
      expect(b64).toHaveLength(d.embedding.length);
      b64.forEach((x, k) => expect(x).toBeCloseTo(d.embedding[k]!, 5));
    }
    expect(floats.data[0]!.embedding).not.toEqual(floats.data[1]!.embedding);
    expect(floats.usage.total_tokens).toBeGreaterThan(0);
  });

  it('answers a legacy completion', async () => {
    const c = await openai.completions.create({
      model: 'llama3.2:3b',
      prompt: 'Once upon a time',
      max_tokens: 16,
    });
    expect(c.object).toBe('text_completion');
    expect(c.choices[0]!.text).toMatch(/^\[simulated llama3\.2:3b\]/);
    expect(c.usage!.completion_tokens).toBeGreaterThan(0);
  });

  it('streams a chat completion as SSE chunks, with a usage chunk and the same text as the finished job', async () => {
    const stream = await openai.chat.completions.create({
      model: 'qwen2.5:7b',
      messages: [{ role: 'user', content: 'Tell me a long story about streams' }],
      max_tokens: 120,
      stream: true,
      stream_options: { include_usage: true },
    });
    const { deltas, finish, usage } = await collect(stream);
    expect(deltas.length).toBeGreaterThan(1);
    expect(['stop', 'length']).toContain(finish);
    expect(usage!.completion_tokens).toBeGreaterThan(0);
    const jobId = fleet.client.submitter.jobIdFor(
      QueueName.INFERENCE,
      fleet.client.parseInference({
        model: 'qwen2.5:7b',
        messages: [{ role: 'user', content: 'Tell me a long story about streams' }],
        params: { max_tokens: 120 },
        cache: { namespace: await tenantOfKey() },
      }),
    );
    const job = await fleet.client.getJob(QueueName.INFERENCE, jobId);
    expect(job?.state).toBe('completed');
    expect(deltas.join('')).toBe((job!.result as { text: string }).text);
  });

  it('streams a legacy completion', async () => {
    const stream = await openai.completions.create({
      model: 'qwen2.5:7b',
      prompt: 'Count slowly',
      max_tokens: 40,
      stream: true,
    });
    let text = '';
    let chunks = 0;
    for await (const c of stream) {
      text += c.choices[0]?.text ?? '';
      chunks++;
    }
    expect(chunks).toBeGreaterThan(1);
    expect(text).toMatch(/^\[simulated qwen2\.5:7b\]/);
  });

  it('replays a finished answer as a stream', async () => {
    const req = {
      model: 'qwen2.5:7b',
      messages: [{ role: 'user' as const, content: 'replay me' }],
      max_tokens: 20,
    };
    const whole = await openai.chat.completions.create(req);
    const { data: stream, response } = await openai.chat.completions
      .create({ ...req, stream: true })
      .withResponse();
    const { deltas, finish } = await collect(stream);
    expect(response.headers.get('x-cell0-coalesced')).toBe('joined');
    expect(deltas.join('')).toBe(whole.choices[0]!.message.content);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
  });

  it('raises the SDK typed errors: 401 for a bad key, 400 naming the field, 404 for an unknown model', async () => {
    const bad = new OpenAI({ baseURL: `${fleet.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
    const e401 = await bad.models.list().catch((e: unknown) => e);
    expect(e401).toBeInstanceOf(AuthenticationError);
    expect((e401 as APIError).code).toBe('invalid_api_key');

    const e400 = await openai.chat.completions
      .create({ model: 'qwen2.5:7b', messages: [{ role: 'user', content: 'hi' }], n: 2 })
      .catch((e: unknown) => e);
    expect(e400).toBeInstanceOf(BadRequestError);
    expect((e400 as APIError).param).toBe('n');
    expect((e400 as APIError).type).toBe('invalid_request_error');

    const unknown = await openai.chat.completions
      .create({ model: 'qwen2.5:7b', messages: [{ role: 'user', content: 'hi' }], bogus: 1 } as never)
      .catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(BadRequestError);
    expect((unknown as APIError).param).toBe('bogus');

    const e404 = await openai.chat.completions
      .create({ model: 'no-such-model:1b', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(e404).toBeInstanceOf(NotFoundError);
    expect((e404 as APIError).code).toBe('model_not_found');

    // Streaming: the error comes before the first token, so it is an HTTP error too.
    const s404 = await openai.chat.completions
      .create({ model: 'no-such-model:2b', messages: [{ role: 'user', content: 'hi' }], stream: true })
      .catch((e: unknown) => e);
    expect(s404).toBeInstanceOf(NotFoundError);
  });

  it('refuses a malformed or too large JSON body in OpenAI error shape (400, 413)', async () => {
    const post = (body: string, headers: Record<string, string> = {}) =>
      fetch(`${fleet.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
        body,
      });
    const bad = await post('{"model": "qwen2.5:7b", "messages": [');
    expect(bad.status).toBe(400);
    const badBody = (await bad.json()) as { error: { type: string; message: string; code: string } };
    expect(badBody.error.type).toBe('invalid_request_error');
    expect(badBody.error.message).toMatch(/JSON/);
    // Not an object or array (strict JSON): refused the same way.
    expect((await post('"just a string"')).status).toBe(400);
    const large = await post(JSON.stringify({ model: 'qwen2.5:7b', pad: 'x'.repeat(200_000) }));
    expect(large.status).toBe(413);
    const largeBody = (await large.json()) as { error: { type: string } };
    expect(largeBody.error.type).toBe('invalid_request_error');
    // A chunked body (no declared length) is read too.
    const chunked = await fetch(`${fleet.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: new Blob([
        '{"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "hi"}], "n": 2}',
      ]).stream(),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(400);
    expect(((await chunked.json()) as { error: { param: string } }).error.param).toBe('n');
  });

  /** The tenant id of KEY (the namespace its requests run under). */
  async function tenantOfKey(): Promise<string> {
    const ac = new AccessControl({ apiKeys: [KEY], tenantSecret: 'openai-test-secret' });
    return (await ac.tenantIdOf(KEY))!;
  }
});

describe('shared streams and cancellation', () => {
  let fleet: TestFleet;
  let openai: OpenAI;
  beforeAll(async () => {
    // Slow enough that a stream lasts: 100 tokens/s.
    fleet = await startTestFleet({ sim: { ttftMs: 50, tokensPerSec: 100 } });
    openai = new OpenAI({ baseURL: `${fleet.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(() => fleet.close());

  it('200 identical concurrent streams share one backend generation and all receive every token', async () => {
    const before = fleet.sim.stats().requests.byEndpoint['/api/chat'] ?? 0;
    const req = {
      model: 'qwen2.5:0.5b',
      messages: [{ role: 'user' as const, content: 'one generation for everyone' }],
      max_tokens: 60,
      stream: true as const,
    };
    const early = Array.from({ length: 100 }, () => openai.chat.completions.create(req).then(collect));
    // The other half joins once tokens are flowing: it still receives the stream from the first token.
    await until(() => fleet.sim.stats().inFlight > 0, 10_000, 'the generation to start');
    const late = Array.from({ length: 100 }, () => openai.chat.completions.create(req).then(collect));
    const all = await Promise.all([...early, ...late]);
    expect(fleet.sim.stats().requests.byEndpoint['/api/chat']! - before).toBe(1);
    const first = all[0]!.deltas;
    expect(first.length).toBeGreaterThan(1);
    for (const r of all) expect(r.deltas).toEqual(first);
  });

  it('a client that aborts mid-stream cancels the job when nobody else reads it', async () => {
    await expectAbortCancelsJob(fleet, openai, {
      model: 'qwen2.5:0.5b',
      messages: [{ role: 'user', content: 'abandon me' }],
      max_tokens: 1000,
      stream: true,
    });
  });

  it('a client that aborts mid-stream leaves the job running for another reader', async () => {
    const req = {
      model: 'qwen2.5:0.5b',
      messages: [{ role: 'user' as const, content: 'keep me for the other one' }],
      max_tokens: 80,
      stream: true as const,
    };
    const ac = new AbortController();
    const quitter = await openai.chat.completions.create(req, { signal: ac.signal });
    const stayer = openai.chat.completions.create(req).then(collect);
    let seen = 0;
    // The SDK ends the iteration quietly when its signal aborts.
    for await (const c of quitter) {
      if (c.choices[0]?.delta.content) seen++;
      if (seen === 2) ac.abort();
    }
    expect(seen).toBe(2);
    const kept = await stayer;
    expect(kept.finish).not.toBeNull();
    const jobId = fleet.client.submitter.jobIdFor(
      QueueName.INFERENCE,
      fleet.client.parseInference({ model: req.model, messages: req.messages, params: { max_tokens: 80 } }),
    );
    const job = await fleet.client.getJob(QueueName.INFERENCE, jobId);
    expect(job!.state).toBe('completed');
    expect(kept.deltas.join('')).toBe((job!.result as { text: string }).text);
  });
});
