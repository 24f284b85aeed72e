import { ConfigError, ModelNotFoundError, ProviderError } from '../../shared/errors';
import { HttpPoolRegistry } from '../../shared/http/pool';
import { parseInferenceRequest, type InferenceJobData } from '../../shared/queues/schemas';
import { OpenAIBackend } from '../../workers/providers/openai-backend';
import { OpenAIClient, sseEvents, type ChatCompletionRequest } from '../../workers/providers/openai/index';
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai';
import { freePort } from '../helpers/redis-server';
import { rejectionOf } from '../helpers/wait';

const MODEL = 'gpt-fake';
const EMBED = 'text-embedding-fake';
const KEY = 'sk-test-123';
const LIMITS = { maxPromptBytes: 1_000_000, maxQueryBytes: 10_000 };

const ctx = (): { signal: AbortSignal } => ({ signal: new AbortController().signal });
const job = (input: unknown): InferenceJobData => parseInferenceRequest(input, LIMITS);
const hello = (extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model: MODEL,
  messages: [{ role: 'user', content: 'Say hello' }],
  ...extra,
});

async function providerError(p: Promise<unknown>): Promise<ProviderError> {
  const err = await rejectionOf(p);
  expect(err).toBeInstanceOf(ProviderError);
  return err as ProviderError;
}

describe('OpenAI-compatible provider', () => {
  let fake: FakeOpenAI;
  let client: OpenAIClient;

  beforeEach(async () => {
    fake = await startFakeOpenAI({ apiKey: KEY });
    client = new OpenAIClient({ baseUrl: fake.url, apiKey: KEY, timeoutMs: 5_000 });
  });
  afterEach(async () => {
    await client.close();
    await fake.close();
  });

  describe('client', () => {
    it('streams a chat completion, gathering deltas, usage and client timings', async () => {
      const tokens: string[] = [];
      const r = await client.chatCompletions(hello(), { onToken: (t) => tokens.push(t) });
      expect(r.object).toBe('chat.completion');
      expect(r.model).toBe(MODEL);
      expect(r.id).toMatch(/^chatcmpl-/);
      expect(r.choices[0]?.message).toEqual({
        role: 'assistant',
        content: 'Hello from the fake OpenAI server.',
      });
      expect(r.choices[0]?.finish_reason).toBe('stop');
      expect(tokens.join('')).toBe('Hello from the fake OpenAI server.');
      expect(tokens.length).toBe(6);
      expect(r.usage).toEqual({ prompt_tokens: 2, completion_tokens: 6, total_tokens: 8 });
      expect(r.clientTimings.ttftMs).toBeGreaterThan(0);
      expect(r.clientTimings.totalMs).toBeGreaterThanOrEqual(r.clientTimings.ttftMs);

      const sent = fake.requests[0];
      expect(sent?.method).toBe('POST');
      expect(sent?.path).toBe('/v1/chat/completions');
      expect(sent?.headers.accept).toBe('text/event-stream');
      expect(sent?.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    });

    it('reads a whole JSON completion from a server that ignores stream: true, with no token handed on', async () => {
      fake.setNext({ kind: 'unstreamed' });
      const tokens: string[] = [];
      const r = await client.chatCompletions(hello(), { onToken: (t) => tokens.push(t) });
      expect(fake.requests[0]?.body).toMatchObject({ stream: true });
      expect(r.object).toBe('chat.completion');
      expect(r.choices[0]?.message.content).toBe('Hello from the fake OpenAI server.');
      expect(r.usage).toEqual({ prompt_tokens: 2, completion_tokens: 6, total_tokens: 8 });
      expect(tokens).toEqual([]);
      expect(r.clientTimings.ttftMs).toBe(r.clientTimings.totalMs);
      // The connection is reused for the next (streamed) call.
      expect((await client.chatCompletions(hello())).choices[0]?.message.content).toBe(
        'Hello from the fake OpenAI server.',
      );
    });

    it('answers a non-streamed chat completion as the server sent it', async () => {
      const tokens: string[] = [];
      const r = await client.chatCompletions(hello({ stream: false }), { onToken: (t) => tokens.push(t) });
      expect(r.object).toBe('chat.completion');
      expect(r.choices[0]?.message.content).toBe('Hello from the fake OpenAI server.');
      expect(r.choices[0]?.finish_reason).toBe('stop');
      expect(r.usage?.completion_tokens).toBe(6);
      expect(r.clientTimings.ttftMs).toBe(r.clientTimings.totalMs);
      expect(tokens).toEqual([]);
      const body = fake.requests[0]?.body as Record<string, unknown>;
      expect(body.stream).toBe(false);
      expect(body).not.toHaveProperty('stream_options');
    });

    it('reports finish_reason "length" when max_tokens cuts the answer', async () => {
      const r = await client.chatCompletions(hello({ max_tokens: 2 }));
      expect(r.choices[0]?.message.content).toBe('Hello from');
      expect(r.choices[0]?.finish_reason).toBe('length');
    });

    it('lists models and embeds texts', async () => {
      const models = await client.models();
      expect(models.object).toBe('list');
      expect(models.data.map((m) => m.id)).toEqual([MODEL, EMBED]);
      const e = await client.embeddings({ model: EMBED, input: ['a', 'b c'] });
      expect(e.data).toHaveLength(2);
      expect(e.data[1]?.index).toBe(1);
      expect(e.data[0]?.embedding).toHaveLength(8);
      expect(e.usage).toEqual({ prompt_tokens: 3, total_tokens: 3 });
      expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
        'GET /v1/models',
        'POST /v1/embeddings',
      ]);
    });

    it('sends the API key as a Bearer token, and no Authorization header without a key', async () => {
      await client.models();
      expect(fake.requests[0]?.headers.authorization).toBe(`Bearer ${KEY}`);

      const open = await startFakeOpenAI();
      const anon = new OpenAIClient({ baseUrl: open.url, headers: { 'X-Extra': 'yes' } });
      try {
        await anon.models();
        expect(open.requests[0]?.headers.authorization).toBeUndefined();
        expect(open.requests[0]?.headers['x-extra']).toBe('yes');
      } finally {
        await anon.close();
        await open.close();
      }
    });

    it('keeps the path prefix and query string of baseUrl', async () => {
      const proxied = await startFakeOpenAI({ prefix: '/proxy/openai/v1' });
      const c = new OpenAIClient({ baseUrl: `${proxied.url}/?api-version=2024-06-01` });
      try {
        await c.models();
        expect(proxied.requests[0]?.path).toBe('/proxy/openai/v1/models?api-version=2024-06-01');
      } finally {
        await c.close();
        await proxied.close();
      }
    });

    it('refuses a wrong API key with a non-retryable error', async () => {
      const bad = new OpenAIClient({ baseUrl: fake.url, apiKey: 'sk-wrong' });
      try {
        const err = await providerError(bad.chatCompletions(hello()));
        expect(err.status).toBe(401);
        expect(err.retryable).toBe(false);
        expect(err.kind).toBe('http');
        expect(err.message).toMatch(/Incorrect API key provided/);
      } finally {
        await bad.close();
      }
    });

    it('maps 404 model_not_found to ModelNotFoundError (chat and embeddings)', async () => {
      const err = await rejectionOf(client.chatCompletions(hello({ model: 'gpt-nope' })));
      expect(err).toBeInstanceOf(ModelNotFoundError);
      expect(err).toMatchObject({ provider: 'openai', model: 'gpt-nope' });
      const err2 = await rejectionOf(client.embeddings({ model: 'embed-nope', input: 'x' }));
      expect(err2).toMatchObject({ provider: 'openai', model: 'embed-nope' });
    });

    it('maps a vLLM-style 404 message to ModelNotFoundError, but not a 404 for a wrong path', async () => {
      fake.setNext({
        kind: 'status',
        status: 404,
        body: {
          object: 'error',
          message: 'The model `m` does not exist.',
          type: 'NotFoundError',
          param: null,
          code: 404,
        },
      });
      expect(await rejectionOf(client.chatCompletions(hello()))).toBeInstanceOf(ModelNotFoundError);
      fake.setNext({ kind: 'status', status: 404, body: { detail: 'Not Found' } });
      const err = await providerError(client.chatCompletions(hello()));
      expect(err.status).toBe(404);
      expect(err.retryable).toBe(false);
      expect(err.message).toMatch(/Not Found/);
    });

    it('makes 429 retryable with retryAfterMs from Retry-After (or retry-after-ms)', async () => {
      fake.setNext({ kind: 'status', status: 429, retryAfter: '2' });
      const err = await providerError(client.chatCompletions(hello()));
      expect(err.status).toBe(429);
      expect(err.retryable).toBe(true);
      expect(err.retryAfterMs).toBe(2000);
      expect(err.backendUnavailable).toBe(true);
      expect(err.message).toMatch(/Rate limit reached/);

      fake.setNext({ kind: 'status', status: 429, retryAfter: '2', retryAfterMs: '350' });
      expect((await providerError(client.models())).retryAfterMs).toBe(350);
    });

    it('makes 429 insufficient_quota non-retryable', async () => {
      fake.setNext({
        kind: 'status',
        status: 429,
        body: {
          error: {
            message: 'You exceeded your current quota.',
            type: 'insufficient_quota',
            param: null,
            code: 'insufficient_quota',
          },
        },
      });
      const err = await providerError(client.chatCompletions(hello()));
      expect(err.status).toBe(429);
      expect(err.retryable).toBe(false);
    });

    it('makes 500 retryable', async () => {
      fake.setNext({ kind: 'status', status: 500 });
      const err = await providerError(client.chatCompletions(hello()));
      expect(err).toMatchObject({ status: 500, retryable: true, kind: 'http' });
      expect(err.message).toMatch(/server had an error/);
    });

    it('rejects a stream that ends without [DONE] with a retryable protocol error', async () => {
      fake.setNext({ kind: 'cut', afterChunks: 2 });
      const tokens: string[] = [];
      const err = await providerError(client.chatCompletions(hello(), { onToken: (t) => tokens.push(t) }));
      expect(err).toMatchObject({ kind: 'protocol', retryable: true, status: undefined });
      expect(err.message).toMatch(/\[DONE\]/);
      expect(tokens).toEqual(['Hello', ' from']);

      fake.setNext({ kind: 'cut', afterChunks: 1, midEvent: true });
      const err2 = await providerError(client.chatCompletions(hello()));
      expect(err2).toMatchObject({ kind: 'protocol', retryable: true });
      expect(err2.message).toMatch(/inside an event/);
    });

    it('marks a last event without its blank line as partial', async () => {
      async function* body(): AsyncGenerator<string> {
        yield 'data: {"choices":[]}\n\ndata: [DONE]';
      }
      const events = [];
      for await (const e of sseEvents(body())) events.push(e);
      expect(events).toEqual([
        { field: 'data', text: '{"choices":[]}' },
        { field: 'data', text: '[DONE]', partial: true },
      ]);
    });

    it('rejects a stream whose socket is reset with a retryable connection error', async () => {
      fake.setNext({ kind: 'reset', afterChunks: 1 });
      const err = await providerError(client.chatCompletions(hello()));
      expect(err).toMatchObject({ kind: 'connection', retryable: true });
    });

    it('rejects an error event inside the stream (OpenAI data: and llama.cpp error: forms)', async () => {
      fake.setNext({ kind: 'stream-error', afterChunks: 1, message: 'engine overloaded' });
      const err = await providerError(client.chatCompletions(hello()));
      expect(err.retryable).toBe(true);
      expect(err.message).toMatch(/engine overloaded/);

      fake.setNext({ kind: 'stream-error', afterChunks: 0, message: 'kv cache full', llamaCpp: true });
      const err2 = await providerError(client.chatCompletions(hello()));
      expect(err2.retryable).toBe(true);
      expect(err2.message).toMatch(/kv cache full/);
    });

    it('rejects with the abort reason when the signal fires mid-stream', async () => {
      const slow = await startFakeOpenAI({ chunkDelayMs: 50 });
      const c = new OpenAIClient({ baseUrl: slow.url });
      try {
        const ac = new AbortController();
        const reason = new Error('job cancelled');
        const tokens: string[] = [];
        const p = c.chatCompletions(hello(), {
          signal: ac.signal,
          onToken: (t) => {
            tokens.push(t);
            ac.abort(reason);
          },
        });
        expect(await rejectionOf(p)).toBe(reason);
        expect(tokens).toEqual(['Hello']);
        // An already-aborted signal refuses the call at once.
        expect(await rejectionOf(c.models({ signal: ac.signal }))).toBe(reason);
      } finally {
        await c.close();
        await slow.close();
      }
    });

    it('times out with kind "timeout" when the server does not answer', async () => {
      const quick = new OpenAIClient({ baseUrl: fake.url, apiKey: KEY, timeoutMs: 200 });
      try {
        fake.setNext({ kind: 'hang' });
        const started = Date.now();
        const err = await providerError(quick.chatCompletions(hello()));
        expect(err).toMatchObject({ kind: 'timeout', retryable: true });
        expect(Date.now() - started).toBeLessThan(3_000);
      } finally {
        await quick.close();
      }
    });

    it('fails with kind "connection" when nothing listens', async () => {
      const port = await freePort();
      const c = new OpenAIClient({ baseUrl: `http://127.0.0.1:${port}/v1` });
      try {
        const err = await providerError(c.chatCompletions(hello()));
        expect(err).toMatchObject({ kind: 'connection', retryable: true, backendUnavailable: true });
      } finally {
        await c.close();
      }
    });

    it('refuses bad options with ConfigError naming the field', () => {
      const fields = (f: () => unknown): string[] => {
        try {
          f();
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          return (err as ConfigError).issues.map((i) => i.field);
        }
        throw new Error('expected a ConfigError');
      };
      expect(fields(() => new OpenAIClient({ baseUrl: 'not a url' }))).toEqual(['OpenAIClient.baseUrl']);
      expect(fields(() => new OpenAIClient({ baseUrl: 'ftp://x/v1' }))).toEqual(['OpenAIClient.baseUrl']);
      expect(fields(() => new OpenAIClient({ baseUrl: fake.url, timeoutMs: 0 }))).toEqual([
        'OpenAIClient.timeoutMs',
      ]);
      expect(
        fields(() => new OpenAIClient({ baseUrl: fake.url, timeoutMs: Number.NaN, apiKey: '' })),
      ).toEqual(['OpenAIClient.apiKey', 'OpenAIClient.timeoutMs']);
    });

    it('refuses calls after close()', async () => {
      await client.close();
      expect(await rejectionOf(client.models())).toMatchObject({ code: 'CELL0_CLOSED' });
    });

    it('parses SSE events split anywhere, with CRLF, comments and multi-line data', async () => {
      const text = ': keep-alive\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: x\ndata: [DONE]\n\ndata: tail';
      async function* bytes(): AsyncGenerator<Uint8Array> {
        const all = Buffer.from(text);
        for (let i = 0; i < all.length; i += 3) yield all.subarray(i, i + 3);
      }
      const events = [];
      for await (const e of sseEvents(bytes())) events.push(e);
      expect(events).toEqual([
        { field: 'data', text: '{"a":\n1}' },
        { field: 'data', text: '[DONE]' },
        { field: 'data', text: 'tail', partial: true },
      ]);
    });
  });

  describe('backend', () => {
    let backend: OpenAIBackend;
    beforeEach(() => {
      backend = new OpenAIBackend(client);
    });

    it('runs a prompt job as [system, user] messages and maps params', async () => {
      const r = await backend.run(
        job({
          model: MODEL,
          system: 'Be brief.',
          prompt: 'Say hello',
          params: {
            temperature: 0.2,
            top_p: 0.5,
            max_tokens: 64,
            seed: 7,
            stop: ['\n\n'],
            top_k: 5,
            num_ctx: 4096,
          },
        }),
        ctx(),
      );
      expect(r.text).toBe('Hello from the fake OpenAI server.');
      const body = fake.requests[0]?.body as Record<string, unknown>;
      expect(body).toEqual({
        model: MODEL,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Say hello' },
        ],
        temperature: 0.2,
        top_p: 0.5,
        max_tokens: 64,
        seed: 7,
        stop: ['\n\n'],
        stream: true,
        stream_options: { include_usage: true },
      });
    });

    it('sends a messages job as is', async () => {
      const messages = [
        { role: 'system' as const, content: 'You are terse.' },
        { role: 'user' as const, content: 'Hi' },
        { role: 'assistant' as const, content: 'Hello.' },
        { role: 'user' as const, content: 'Again' },
      ];
      await backend.run(job({ model: MODEL, messages }), ctx());
      expect((fake.requests[0]?.body as { messages: unknown }).messages).toEqual(messages);
    });

    it('sends top_k and repetition_penalty only with extraSamplingParams', async () => {
      const vllm = await startFakeOpenAI({ extraParams: true });
      const c = new OpenAIClient({ baseUrl: vllm.url });
      try {
        const b = new OpenAIBackend(c, { extraSamplingParams: true });
        await b.run(job({ model: MODEL, prompt: 'x', params: { top_k: 20, repeat_penalty: 1.3 } }), ctx());
        expect(vllm.requests[0]?.body).toMatchObject({ top_k: 20, repetition_penalty: 1.3 });
        await new OpenAIBackend(c).run(job({ model: MODEL, prompt: 'x' }), ctx());
        expect(vllm.requests[1]?.body).not.toHaveProperty('top_k');
        expect(vllm.requests[1]?.body).not.toHaveProperty('repetition_penalty');
      } finally {
        await c.close();
        await vllm.close();
      }
    });

    it('fills the result: text, doneReason, usage, timings, provider, model', async () => {
      const slow = await startFakeOpenAI({ chunkDelayMs: 5 });
      const c = new OpenAIClient({ baseUrl: slow.url });
      try {
        const b = new OpenAIBackend(c);
        expect(b.name).toBe('openai');
        expect(b.origin).toBe(new URL(slow.url).origin);
        const r = await b.run(job({ model: MODEL, prompt: 'one two three' }), ctx());
        expect(r).toMatchObject({
          model: MODEL,
          text: 'Hello from the fake OpenAI server.',
          doneReason: 'stop',
          usage: { promptTokens: 3, completionTokens: 6, totalTokens: 9 },
          provider: 'openai',
        });
        expect(r.timings.ttftMs).toBeGreaterThan(0);
        expect(r.timings.totalMs).toBeGreaterThan(r.timings.ttftMs ?? 0);
        const expected = (6 / (r.timings.totalMs - (r.timings.ttftMs ?? 0))) * 1000;
        expect(r.timings.tokensPerSec).toBeCloseTo(expected, -1);

        const cut = await b.run(job({ model: MODEL, prompt: 'x', params: { max_tokens: 1 } }), ctx());
        expect(cut).toMatchObject({ text: 'Hello', doneReason: 'length' });

        const whole = await new OpenAIBackend(c, { stream: false }).run(
          job({ model: MODEL, prompt: 'x' }),
          ctx(),
        );
        expect(whole.timings.ttftMs).toBe(whole.timings.totalMs);
        expect(whole.timings.tokensPerSec).toBeUndefined();
        expect(whole.usage.completionTokens).toBe(6);
      } finally {
        await c.close();
        await slow.close();
      }
    });

    it('embeds in input order and lists models', async () => {
      const e = await backend.embed(EMBED, ['alpha', 'beta', 'alpha'], ctx());
      expect(e.model).toBe(EMBED);
      expect(e.embeddings).toHaveLength(3);
      expect(e.embeddings[0]).toEqual(e.embeddings[2]);
      expect(e.embeddings[0]).not.toEqual(e.embeddings[1]);
      expect(await backend.embed(EMBED, [], ctx())).toEqual({ model: EMBED, embeddings: [] });
      expect(await backend.listModels(ctx())).toEqual([MODEL, EMBED]);
      expect(backend).not.toHaveProperty('load');
      expect(backend).not.toHaveProperty('unload');
      expect(backend).not.toHaveProperty('listLoaded');
    });

    it('passes typed errors through (unknown model)', async () => {
      const err = await rejectionOf(backend.run(job({ model: 'nope', prompt: 'x' }), ctx()));
      expect(err).toBeInstanceOf(ModelNotFoundError);
    });
  });

  describe('pooling', () => {
    it('shares one pool of the registry among clients, counting every call', async () => {
      const registry = new HttpPoolRegistry();
      const a = new OpenAIClient({ baseUrl: fake.url, apiKey: KEY, pools: registry });
      const b = new OpenAIBackend(new OpenAIClient({ baseUrl: fake.url, apiKey: KEY, pools: registry }));
      try {
        expect(a.pool).toBe(registry.get(fake.url));
        await Promise.all([
          a.chatCompletions(hello()),
          b.run(job({ model: MODEL, prompt: 'x' }), ctx()),
          a.models(),
        ]);
        await b.embed(EMBED, ['x'], ctx());
        fake.setNext({ kind: 'status', status: 500 });
        await rejectionOf(a.models());

        const metrics = registry.metrics();
        expect(metrics).toHaveLength(1);
        expect(metrics[0]).toMatchObject({
          origin: new URL(fake.url).origin,
          requests: 5,
          httpErrors: 1,
          errors: 0,
          inFlight: 0,
        });
        expect(metrics[0]?.connections.open).toBeGreaterThanOrEqual(1);

        // Closing a client leaves a shared registry open for the others.
        await a.close();
        expect(await b.listModels(ctx())).toContain(MODEL);
        expect(registry.metrics()[0]?.requests).toBe(6);
      } finally {
        await a.close();
        await b.close();
        await registry.close();
      }
    });
  });
});
