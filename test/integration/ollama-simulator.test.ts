import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo } from 'node:net';
import { request } from 'undici';
import {
  ClosedError,
  ConfigError,
  ErrorCode,
  ModelNotFoundError,
  ProviderError,
} from '../../shared/errors.js';
import {
  OllamaClient,
  parseRetryAfter,
  timingsFromOllama,
  type GenerateRequest,
  type RunningModel,
} from '../../workers/providers/ollama/index.js';
import { NdjsonLines } from '../../workers/providers/ollama/ndjson-lines.js';
import {
  OllamaSimulator,
  SIMULATOR_VERSION,
  type SimulatorStats,
} from '../../workers/providers/simulator/index.js';
import { freePort } from '../helpers/redis-server.js';
import { rejectionOf } from '../helpers/wait';

const SMALL = 'qwen2.5:0.5b';
const EMBED = 'nomic-embed-text';

function norm(v: readonly number[]): number {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += (a[i] ?? 0) * (b[i] ?? 0);
  return dot / (norm(a) * norm(b));
}

async function raw(
  base: string,
  path: string,
  init: { method?: 'GET' | 'POST' | 'HEAD'; body?: string } = {},
): Promise<{ status: number; text: string; contentType: string | undefined }> {
  const res = await request(base + path, {
    method: init.method ?? 'GET',
    body: init.body,
    headers: init.body !== undefined ? { 'content-type': 'application/json' } : {},
  });
  const text = await res.body.text();
  const ct = res.headers['content-type'];
  return { status: res.statusCode, text, contentType: Array.isArray(ct) ? ct[0] : ct };
}

async function simStats(sim: OllamaSimulator): Promise<SimulatorStats> {
  await sim.whenIdle();
  return sim.stats();
}

function psNames(models: RunningModel[]): string[] {
  return models.map((m) => m.name).sort();
}

describe('OllamaClient against OllamaSimulator', () => {
  let sim: OllamaSimulator;
  let client: OllamaClient;

  beforeAll(async () => {
    sim = new OllamaSimulator({ ttftMs: 30, tokensPerSec: 400, loadMsPerGb: 20 });
    await sim.start();
    client = new OllamaClient({ baseUrl: sim.url });
  });

  afterAll(async () => {
    await client.close();
    await sim.close();
  });

  beforeEach(async () => {
    await sim.whenIdle();
    sim.reset({ models: true });
  });

  test('root, version and tags answer like Ollama', async () => {
    const root = await raw(sim.url, '/');
    expect(root).toMatchObject({ status: 200, text: 'Ollama is running' });
    const head = await raw(sim.url, '/', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.text).toBe('');

    expect(await client.version()).toEqual({ version: SIMULATOR_VERSION });

    const tags = await client.tags();
    const names = tags.models.map((m) => m.name);
    expect(names).toEqual(
      expect.arrayContaining(['qwen2.5:7b', 'llama3.2:3b', 'nomic-embed-text:latest', 'all-minilm:latest']),
    );
    const qwen = tags.models.find((m) => m.name === 'qwen2.5:7b');
    expect(qwen?.size).toBeGreaterThan(4_500_000_000);
    expect(qwen?.size).toBeLessThan(5_000_000_000);
    expect(qwen?.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(qwen?.details).toMatchObject({
      format: 'gguf',
      family: 'qwen2',
      parameter_size: '7.6B',
      quantization_level: 'Q4_K_M',
    });
  });

  test('streaming generate calls onToken per chunk and aggregates the text and final fields', async () => {
    const tokens: string[] = [];
    const res = await client.generate(
      { model: SMALL, prompt: 'Why is the sky blue?' },
      { onToken: (t) => tokens.push(t) },
    );
    expect(res.done).toBe(true);
    expect(res.model).toBe(SMALL);
    expect(res.response.startsWith(`[simulated ${SMALL}] `)).toBe(true);
    expect(tokens.join('')).toBe(res.response);
    expect(tokens.length).toBe(res.eval_count);
    expect(['stop', 'length']).toContain(res.done_reason);
    expect(res.prompt_eval_count).toBe(Math.round(5 * 1.3));
    expect(Array.isArray(res.context)).toBe(true);
    expect(res.context?.length).toBeGreaterThan(0);
    expect(res.clientTimings.ttftMs).toBeGreaterThan(0);
    expect(res.clientTimings.ttftMs).toBeLessThan(res.clientTimings.totalMs);
  });

  test('non-streaming generate gives the same text as streaming for the same request', async () => {
    const req: GenerateRequest = { model: SMALL, prompt: 'Tell me about queues', options: { seed: 7 } };
    const streamed = await client.generate(req);
    let calls = 0;
    const whole = await client.generate({ ...req, stream: false }, { onToken: () => calls++ });
    expect(whole.response).toBe(streamed.response);
    expect(whole.eval_count).toBe(streamed.eval_count);
    expect(whole.done_reason).toBe(streamed.done_reason);
    expect(calls).toBe(0);
    expect(whole.clientTimings.ttftMs).toBe(whole.clientTimings.totalMs);
    expect(whole.clientTimings.totalMs).toBeGreaterThan(0);
  });

  test('chat streams message content and matches its non-streamed answer', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'Name a colour.' },
    ];
    const tokens: string[] = [];
    const streamed = await client.chat({ model: SMALL, messages }, { onToken: (t) => tokens.push(t) });
    expect(streamed.message.role).toBe('assistant');
    expect(streamed.message.content.startsWith(`[simulated ${SMALL}] `)).toBe(true);
    expect(tokens.join('')).toBe(streamed.message.content);
    expect(streamed.eval_count).toBe(tokens.length);
    expect(streamed.clientTimings.ttftMs).toBeLessThan(streamed.clientTimings.totalMs);

    const whole = await client.chat({ model: SMALL, messages, stream: false });
    expect(whole.message.content).toBe(streamed.message.content);
    expect(whole.done).toBe(true);
  });

  test('text is deterministic per request and differs between prompts, seeds and models', async () => {
    const req = { model: SMALL, prompt: 'alpha', options: { num_predict: 20 } };
    const [a1, a2, b, seeded, other] = await Promise.all([
      client.generate(req),
      client.generate(req),
      client.generate({ ...req, prompt: 'beta' }),
      client.generate({ ...req, options: { num_predict: 20, seed: 42 } }),
      client.generate({ ...req, model: 'llama3.2:3b' }),
    ]);
    expect(a2.response).toBe(a1.response);
    expect(b.response).not.toBe(a1.response);
    expect(seeded.response).not.toBe(a1.response);
    expect(other.response.startsWith('[simulated llama3.2:3b] ')).toBe(true);
    expect(other.response.slice(other.response.indexOf(']'))).not.toBe(
      a1.response.slice(a1.response.indexOf(']')),
    );
  });

  test('num_predict cuts the answer with done_reason "length"; a high cap lets it stop naturally', async () => {
    const cut = await client.generate({
      model: SMALL,
      prompt: 'long answer please',
      options: { num_predict: 5 },
    });
    expect(cut.eval_count).toBe(5);
    expect(cut.done_reason).toBe('length');
    expect(cut.response.startsWith(`[simulated ${SMALL}]`)).toBe(true);

    const free = await client.generate({
      model: SMALL,
      prompt: 'long answer please',
      options: { num_predict: 1000 },
    });
    expect(free.done_reason).toBe('stop');
    expect(free.eval_count).toBeGreaterThanOrEqual(24);
    expect(free.eval_count).toBeLessThanOrEqual(160);
    expect(free.response.startsWith(cut.response)).toBe(true);
  });

  test('embed returns unit vectors of the model dims, equal for equal input', async () => {
    const res = await client.embed({
      model: EMBED,
      input: ['the cat sat on the mat', 'the cat sat on the mat'],
    });
    expect(res.model).toBe(EMBED);
    expect(res.embeddings).toHaveLength(2);
    const [v1, v2] = res.embeddings as [number[], number[]];
    expect(v1).toHaveLength(768);
    expect(v2).toEqual(v1);
    expect(norm(v1)).toBeCloseTo(1, 6);
    expect(res.prompt_eval_count).toBe(2 * Math.round(6 * 1.3));

    const more = await client.embed({
      model: EMBED,
      input: ['the cat sat on the mat', 'the cat sat on a mat', 'quarterly revenue grew in europe'],
    });
    const [same, similar, far] = more.embeddings as [number[], number[], number[]];
    expect(same).toEqual(v1);
    expect(cosine(same, similar)).toBeGreaterThan(cosine(same, far));
    expect(cosine(same, similar)).toBeGreaterThan(0.5);

    const mini = await client.embed({ model: 'all-minilm', input: 'hello' });
    expect(mini.embeddings[0]).toHaveLength(384);
  });

  test('ps shows a model after load and not after unload', async () => {
    const loaded = await client.load(SMALL);
    expect(loaded).toMatchObject({ model: SMALL, done: true, done_reason: 'load', response: '' });
    const ps = await client.ps();
    expect(psNames(ps.models)).toEqual([SMALL]);
    const entry = ps.models[0];
    expect(entry?.size_vram).toBe(entry?.size);
    expect(entry?.details.family).toBe('qwen2');
    const expiresIn = Date.parse(entry?.expires_at ?? '') - Date.now();
    expect(expiresIn).toBeGreaterThan(4 * 60_000);
    expect(expiresIn).toBeLessThanOrEqual(5 * 60_000);

    const unloaded = await client.unload(SMALL);
    expect(unloaded.done_reason).toBe('unload');
    expect((await client.ps()).models).toEqual([]);
    const stats = await simStats(sim);
    expect(stats.loads).toBe(1);
    expect(stats.unloads).toBe(1);
    expect(stats.evictions).toBe(0);
  });

  test('a bare name resolves to the Ollama library default tag', async () => {
    const res = await client.generate({ model: 'llama3.2', prompt: 'hi', options: { num_predict: 3 } });
    expect(res.model).toBe('llama3.2');
    expect(res.response.startsWith('[simulated llama3.2:3b] ')).toBe(true);
    expect(psNames((await client.ps()).models)).toEqual(['llama3.2:3b']);
  });

  test('keep_alive 0 unloads right after the request; a duration or negative value sets expires_at', async () => {
    await client.generate({ model: SMALL, prompt: 'hi', keep_alive: 0, options: { num_predict: 3 } });
    await sim.whenIdle();
    expect((await client.ps()).models).toEqual([]);

    await client.load(SMALL, '1h');
    const hour = Date.parse((await client.ps()).models[0]?.expires_at ?? '') - Date.now();
    expect(hour).toBeGreaterThan(59 * 60_000);
    expect(hour).toBeLessThanOrEqual(60 * 60_000);

    await client.load(SMALL, -1);
    const forever = Date.parse((await client.ps()).models[0]?.expires_at ?? '');
    expect(new Date(forever).getUTCFullYear()).toBeGreaterThan(2200);

    const bad = await rejectionOf(client.load(SMALL, 'soon'));
    expect(bad).toBeInstanceOf(ProviderError);
    expect(bad).toMatchObject({ status: 400, retryable: false });
    expect((bad as Error).message).toContain('invalid duration');
  });

  test('an idle model is dropped once its keep_alive has run out', async () => {
    // keep_alive counts on the simulator's clock: this one moves only when the test moves it, so a busy
    // host's stalls cannot expire the model before the first /api/ps.
    let now = Date.UTC(2026, 0, 1);
    const timed = new OllamaSimulator({ ttftMs: 1, tokensPerSec: 1000, loadMsPerGb: 1, now: () => now });
    const { url } = await timed.start();
    const c = new OllamaClient({ baseUrl: url });
    try {
      await c.load(SMALL, '50ms');
      const [listed] = (await c.ps()).models;
      expect(listed?.name).toBe(SMALL);
      expect(Date.parse(listed?.expires_at ?? '')).toBe(now + 50);
      now += 49;
      expect(psNames((await c.ps()).models)).toEqual([SMALL]);
      now += 1;
      expect((await c.ps()).models).toEqual([]);
      const stats = await simStats(timed);
      expect(stats.unloads).toBe(1);
      expect(stats.evictions).toBe(0);
    } finally {
      await c.close();
      await timed.close();
    }
  });

  test('a load is paid by the first request only, and concurrent requests share one load', async () => {
    // A load of ~0.9 s (4.68 GB × 200 ms/GB): the second request, sent with the first, reaches the
    // simulator while the model is loading even when a busy host delays it by much of that.
    const slow = new OllamaSimulator({ ttftMs: 5, tokensPerSec: 400, loadMsPerGb: 200 });
    const { url } = await slow.start();
    const c = new OllamaClient({ baseUrl: url });
    try {
      const model = 'qwen2.5:7b';
      const [first, concurrent] = await Promise.all([
        c.generate({ model, prompt: 'one', options: { num_predict: 2 } }),
        c.generate({ model, prompt: 'two', options: { num_predict: 2 } }),
      ]);
      const second = await c.generate({ model, prompt: 'three', options: { num_predict: 2 } });
      const firstLoad = first.load_duration ?? 0;
      // A timer-driven wait is never shorter than asked (lower bound only).
      expect(firstLoad).toBeGreaterThanOrEqual(0.9 * 936 * 1e6);
      // The concurrent request waited on the same load (it paid part of it; no load of its own)...
      expect(concurrent.load_duration ?? 0).toBeGreaterThan(0);
      expect(concurrent.load_duration ?? 0).toBeLessThanOrEqual(firstLoad);
      expect((await simStats(slow)).loads).toBe(1);
      // ...and a later one found the model resident.
      expect(second.load_duration ?? Number.NaN).toBeLessThan(firstLoad / 10);
    } finally {
      await c.close();
      await slow.close();
    }
  });

  test('timing fields are consistent with the configured speed', async () => {
    await client.load(SMALL);
    const res = await client.generate({ model: SMALL, prompt: 'measure me', options: { num_predict: 60 } });
    const t = timingsFromOllama(res);
    expect(t.completionTokens).toBe(res.eval_count);
    expect(t.tokensPerSec).toBeGreaterThan(0.3 * 400);
    expect(t.tokensPerSec).toBeLessThan(1.5 * 400);
    expect(t.promptEvalMs).toBeGreaterThanOrEqual(0);
    expect(t.totalMs).toBeGreaterThan(0);
    // The parts fit in the whole, give or take rounding.
    const parts = (t.loadMs ?? 0) + (t.promptEvalMs ?? 0) + (t.evalMs ?? 0);
    expect(parts).toBeLessThanOrEqual((t.totalMs ?? 0) + 5);
    expect(t.totalMs).toBeLessThanOrEqual(res.clientTimings.totalMs + 1);
  });

  test('unknown models reject with ModelNotFoundError', async () => {
    const gen = await rejectionOf(client.generate({ model: 'nope:1b', prompt: 'x' }));
    expect(gen).toBeInstanceOf(ModelNotFoundError);
    expect(gen).toMatchObject({ code: ErrorCode.MODEL_NOT_FOUND, model: 'nope:1b', provider: 'ollama' });
    const chat = await rejectionOf(
      client.chat({ model: 'nope:1b', messages: [{ role: 'user', content: 'x' }] }),
    );
    expect((chat as ModelNotFoundError).code).toBe(ErrorCode.MODEL_NOT_FOUND);
    const embed = await rejectionOf(client.embed({ model: 'nope:1b', input: 'x' }));
    expect((embed as ModelNotFoundError).code).toBe(ErrorCode.MODEL_NOT_FOUND);
    const stats = await simStats(sim);
    expect(stats.errors).toBe(3);
  });

  test('embedding models refuse generate, as in Ollama', async () => {
    const err = await rejectionOf(client.generate({ model: EMBED, prompt: 'x' }));
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ status: 400, retryable: false });
    expect((err as Error).message).toContain('does not support generate');
  });

  test('stats count exactly the requests made', async () => {
    await client.generate({ model: SMALL, prompt: 'a', options: { num_predict: 3 } });
    await client.generate({ model: SMALL, prompt: 'b', stream: false, options: { num_predict: 3 } });
    await client.chat({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'c' }],
      options: { num_predict: 4 },
    });
    await client.embed({ model: EMBED, input: 'd' });
    await client.ps();
    await client.tags();
    await raw(sim.url, '/');
    await raw(sim.url, '/_sim/stats');
    await rejectionOf(client.generate({ model: 'missing', prompt: 'x' }));

    const stats = await simStats(sim);
    expect(stats.requests.total).toBe(8);
    expect(stats.requests.byEndpoint).toEqual({
      '/api/generate': 3,
      '/api/chat': 1,
      '/api/embed': 1,
      '/api/ps': 1,
      '/api/tags': 1,
      '/': 1,
    });
    expect(stats.requests.byModel).toEqual({
      [SMALL]: 2,
      'llama3.2:latest': 1,
      'nomic-embed-text:latest': 1,
      'missing:latest': 1,
    });
    expect(stats.tokensGenerated).toBe(3 + 3 + 4);
    expect(stats.errors).toBe(1);
    expect(stats.aborted).toBe(0);
    expect(stats.inFlight).toBe(0);
    expect(stats.maxInFlight).toBe(1);
    expect(stats.loads).toBe(3);
    expect(Date.parse(stats.startedAt)).not.toBeNaN();

    const overHttp = JSON.parse((await raw(sim.url, '/_sim/stats')).text) as SimulatorStats;
    expect(overHttp.requests.total).toBe(8);
    const reset = await raw(sim.url, '/_sim/reset?models=1', { method: 'POST' });
    expect(reset.status).toBe(200);
    const after = await simStats(sim);
    expect(after.requests.total).toBe(0);
    expect(after.tokensGenerated).toBe(0);
    expect((await client.ps()).models).toEqual([]);
  });

  test('the simulator answers bad requests the way Ollama does', async () => {
    const invalid = await raw(sim.url, '/api/generate', { method: 'POST', body: '{"model": ' });
    expect(invalid.status).toBe(400);
    expect(JSON.parse(invalid.text)).toEqual({ error: expect.stringContaining('invalid JSON') });

    const noModel = await raw(sim.url, '/api/chat', { method: 'POST', body: '{"messages": []}' });
    expect(noModel.status).toBe(400);
    expect(JSON.parse(noModel.text)).toEqual({ error: 'model is required' });

    const empty = await raw(sim.url, '/api/generate', { method: 'POST', body: '' });
    expect(empty.status).toBe(400);
    expect(JSON.parse(empty.text)).toEqual({ error: 'missing request body' });

    const wrongMethod = await raw(sim.url, '/api/generate');
    expect(wrongMethod.status).toBe(405);
    expect(JSON.parse(wrongMethod.text)).toEqual({ error: 'method not allowed' });

    const unknownPath = await raw(sim.url, '/api/nothing-here');
    expect(unknownPath.status).toBe(404);
    expect(unknownPath.text).toBe('404 page not found');

    const unknownModel = await raw(sim.url, '/api/generate', {
      method: 'POST',
      body: JSON.stringify({ model: 'ghost', prompt: 'x' }),
    });
    expect(unknownModel.status).toBe(404);
    expect(JSON.parse(unknownModel.text)).toEqual({ error: 'model "ghost" not found, try pulling it first' });

    const badType = await raw(sim.url, '/api/generate', {
      method: 'POST',
      body: JSON.stringify({ model: SMALL, prompt: 3 }),
    });
    expect(badType.status).toBe(400);

    const stream = await raw(sim.url, '/api/generate', {
      method: 'POST',
      body: JSON.stringify({ model: SMALL, prompt: 'x', options: { num_predict: 2 } }),
    });
    expect(stream.contentType).toBe('application/x-ndjson');
    const lines = stream.text.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[2] ?? '')).toMatchObject({ done: true, done_reason: 'length', eval_count: 2 });

    const legacy = await raw(sim.url, '/api/embeddings', {
      method: 'POST',
      body: JSON.stringify({ model: 'all-minilm', prompt: 'hello' }),
    });
    expect((JSON.parse(legacy.text) as { embedding: number[] }).embedding).toHaveLength(384);

    const stats = await simStats(sim);
    expect(stats.errors).toBe(7);
    expect(stats.requests.total).toBe(9);
  });

  test('an aborted signal rejects with the AbortError and the simulator counts the abort', async () => {
    const slow = new OllamaSimulator({ ttftMs: 5, tokensPerSec: 20, loadMsPerGb: 0 });
    await slow.start();
    const slowClient = new OllamaClient({ baseUrl: slow.url });
    try {
      const controller = new AbortController();
      const tokens: string[] = [];
      const err = await rejectionOf(
        slowClient.generate(
          { model: SMALL, prompt: 'take your time', options: { num_predict: 100 } },
          {
            signal: controller.signal,
            onToken: (t) => {
              tokens.push(t);
              if (tokens.length === 2) controller.abort();
            },
          },
        ),
      );
      expect(err).not.toBeInstanceOf(ProviderError);
      expect((err as Error).name).toBe('AbortError');
      expect(tokens).toHaveLength(2);

      const stats = await simStats(slow);
      expect(stats.aborted).toBe(1);
      expect(stats.requests.total).toBe(1);
      expect(stats.tokensGenerated).toBeGreaterThanOrEqual(2);
      // It stopped before the 100 asked for; how many more than 2 it made depends on how soon a loaded host
      // lets it see the closed connection (at 20 tokens/s a 1 s stall is 20 tokens).
      expect(stats.tokensGenerated).toBeLessThan(100);

      const already = await rejectionOf(
        slowClient
          .version()
          .then(() => slowClient.generate({ model: SMALL, prompt: 'x' }, { signal: AbortSignal.abort() })),
      );
      expect((already as Error).name).toBe('AbortError');
      expect((await simStats(slow)).requests.total).toBe(2);
    } finally {
      await slowClient.close();
      await slow.close();
    }
  });

  test('LRU eviction keeps at most maxLoaded models', async () => {
    const small = new OllamaSimulator({ maxLoaded: 2, loadMsPerGb: 1, ttftMs: 1, tokensPerSec: 1000 });
    await small.start();
    const c = new OllamaClient({ baseUrl: small.url });
    try {
      await c.load('qwen2.5:0.5b');
      await c.load('llama3.2:3b');
      await c.load('qwen2.5:0.5b'); // touch: llama3.2 is now the least recently used
      await c.load('phi3:mini');
      expect(psNames((await c.ps()).models)).toEqual(['phi3:mini', 'qwen2.5:0.5b']);
      const stats = await simStats(small);
      expect(stats.loads).toBe(3);
      expect(stats.evictions).toBe(1);
      expect(stats.unloads).toBe(1);
    } finally {
      await c.close();
      await small.close();
    }
  });

  test('allowAnyModel serves unknown names and maxBodyBytes refuses large bodies', async () => {
    const any = new OllamaSimulator({ allowAnyModel: true, maxBodyBytes: 1024, loadMsPerGb: 0, ttftMs: 1 });
    const { url, port } = await any.start();
    expect(url).toBe(`http://127.0.0.1:${port}`);
    const c = new OllamaClient({ baseUrl: url });
    try {
      const res = await c.generate({ model: 'made-up:13b', prompt: 'hi', options: { num_predict: 4 } });
      expect(res.response.startsWith('[simulated made-up:13b]')).toBe(true);
      expect((await c.ps()).models[0]).toMatchObject({ name: 'made-up:13b', size: 4_000_000_000 });

      const big = await rejectionOf(c.generate({ model: 'x', prompt: 'y'.repeat(4096) }));
      expect(big).toBeInstanceOf(ProviderError);
      expect(big).toMatchObject({ status: 413, retryable: false });
    } finally {
      await c.close();
      await any.close();
    }
  });

  test('simulator close is idempotent and ends streams in progress', async () => {
    const s = new OllamaSimulator({ tokensPerSec: 10, loadMsPerGb: 0, ttftMs: 1 });
    await s.start();
    const c = new OllamaClient({ baseUrl: s.url });
    try {
      let firstToken: () => void = () => undefined;
      const gotToken = new Promise<void>((resolve) => (firstToken = resolve));
      const pending = rejectionOf(c.generate({ model: SMALL, prompt: 'x' }, { onToken: () => firstToken() }));
      await gotToken;
      const closing = s.close();
      expect(s.close()).toBe(closing);
      await closing;
      const err = await pending;
      expect(err).toBeInstanceOf(ProviderError);
      expect(err).toMatchObject({ retryable: true, status: undefined });
      expect(await rejectionOf(s.start())).toBeInstanceOf(ClosedError);
    } finally {
      await c.close();
    }
  });
});

describe('OllamaClient options and lifecycle', () => {
  test('bad options throw ConfigError naming the option; the caller object is not changed', () => {
    expect(() => new OllamaClient({ baseUrl: 'ftp://example.com' })).toThrow(ConfigError);
    expect(() => new OllamaClient({ baseUrl: 'ftp://example.com' })).toThrow(/baseUrl/);
    expect(() => new OllamaClient({ baseUrl: 'not a url' })).toThrow(/baseUrl/);
    expect(() => new OllamaClient({ baseUrl: 'http://127.0.0.1:1', timeoutMs: 0 })).toThrow(/timeoutMs/);
    expect(() => new OllamaClient({ baseUrl: 'http://127.0.0.1:1', connections: 0 })).toThrow(/connections/);
    const opts = { baseUrl: 'http://127.0.0.1:1', timeoutMs: undefined };
    const c = new OllamaClient(opts); // undefined means the default, not an invalid value
    expect(opts).toEqual({ baseUrl: 'http://127.0.0.1:1', timeoutMs: undefined });
    return c.close();
  });

  test('close is idempotent and later calls reject with ClosedError', async () => {
    const c = new OllamaClient({ baseUrl: 'http://127.0.0.1:1' });
    const first = c.close();
    expect(c.close()).toBe(first);
    await first;
    const err = await rejectionOf(c.version());
    expect(err).toBeInstanceOf(ClosedError);
    expect((err as ClosedError).code).toBe(ErrorCode.CLOSED);
  });

  test('simulator close during start leaves nothing listening', async () => {
    const s = new OllamaSimulator();
    const starting = s.start();
    await s.close();
    const { url } = await starting;
    const err = await rejectionOf(request(url + '/'));
    expect((err as { code?: string }).code).toBe('ECONNREFUSED');
  });

  test('simulator options are validated', () => {
    expect(() => new OllamaSimulator({ tokensPerSec: 0 })).toThrow(/tokensPerSec/);
    expect(() => new OllamaSimulator({ maxLoaded: 0 })).toThrow(/maxLoaded/);
    expect(() => new OllamaSimulator({ defaultKeepAlive: 'later' })).toThrow(/defaultKeepAlive/);
  });
});

type Mode =
  | 'json-500'
  | '429'
  | '429-date'
  | '400'
  | 'missing-model'
  | 'destroy'
  | 'hang'
  | 'stream-error'
  | 'split-stream'
  | 'truncated-stream'
  | 'text-502';

describe('OllamaClient error mapping', () => {
  let server: Server;
  let base: string;
  let mode: Mode = 'json-500';
  let client: OllamaClient;

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    req.resume();
    const json = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    switch (mode) {
      case 'json-500':
        json(500, { error: 'llama runner process has terminated' });
        return;
      case '429':
        json(429, { error: 'server busy, please try again' }, { 'retry-after': '2' });
        return;
      case '429-date':
        json(429, { error: 'busy' }, { 'retry-after': new Date(Date.now() + 30_000).toUTCString() });
        return;
      case '400':
        json(400, { error: 'invalid options' });
        return;
      case 'missing-model':
        json(404, { error: 'model "ghost" not found, try pulling it first' });
        return;
      case 'text-502':
        res.writeHead(502, { 'content-type': 'text/html' });
        res.end('<html>bad gateway</html>');
        return;
      case 'destroy':
        req.socket.destroy();
        return;
      case 'hang':
        return;
      case 'stream-error':
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.write(JSON.stringify({ model: 'm', created_at: '', response: 'partial', done: false }) + '\n');
        res.end(JSON.stringify({ error: 'an error was encountered while running the model' }) + '\n');
        return;
      case 'truncated-stream':
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.end(JSON.stringify({ model: 'm', created_at: '', response: 'only', done: false }) + '\n');
        return;
      case 'split-stream': {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        const body = Buffer.from(
          [
            { model: 'm', created_at: '', response: 'Grüße ', done: false },
            { model: 'm', created_at: '', response: '→ 你好', done: false },
            { model: 'm', created_at: '', response: '', done: true, done_reason: 'stop', eval_count: 2 },
          ]
            .map((c) => JSON.stringify(c))
            .join('\n'),
        );
        // Cut inside lines and inside multi-byte characters; flush each piece separately.
        const cuts = [3, 17, 18, 19, 60, 61, 62, 63, 100, body.length];
        let from = 0;
        const writeNext = (): void => {
          const to = cuts.shift();
          if (to === undefined) {
            res.end();
            return;
          }
          res.write(body.subarray(from, to));
          from = to;
          setImmediate(writeNext);
        };
        writeNext();
        return;
      }
    }
  };

  beforeAll(async () => {
    server = createServer(handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    client = new OllamaClient({ baseUrl: base, timeoutMs: 2000 });
  });

  afterAll(async () => {
    await client.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  test('500 → retryable ProviderError with Ollama’s message', async () => {
    mode = 'json-500';
    const err = await rejectionOf(client.generate({ model: 'm', prompt: 'x' }));
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({
      code: ErrorCode.PROVIDER_ERROR,
      status: 500,
      retryable: true,
      provider: 'ollama',
    });
    expect((err as Error).message).toContain('llama runner process has terminated');
  });

  test('502 with an HTML body → retryable, message from the body text', async () => {
    mode = 'text-502';
    const err = await rejectionOf(client.ps());
    expect(err).toMatchObject({ status: 502, retryable: true });
    expect((err as Error).message).toContain('bad gateway');
  });

  test('429 → retryable with retryAfterMs from Retry-After (seconds or date)', async () => {
    mode = '429';
    const err = await rejectionOf(client.chat({ model: 'm', messages: [{ role: 'user', content: 'x' }] }));
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ status: 429, retryable: true, retryAfterMs: 2000 });
    expect((err as Error).message).toContain('server busy');

    mode = '429-date';
    const dated = (await rejectionOf(client.embed({ model: 'm', input: 'x' }))) as ProviderError;
    expect(dated.retryAfterMs).toBeGreaterThan(25_000);
    expect(dated.retryAfterMs).toBeLessThanOrEqual(30_000);
  });

  test('400 → non-retryable ProviderError', async () => {
    mode = '400';
    const err = await rejectionOf(client.generate({ model: 'm', prompt: 'x', stream: false }));
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ status: 400, retryable: false, retryAfterMs: undefined });
    expect((err as Error).message).toContain('invalid options');
  });

  test('404 "not found" → ModelNotFoundError for the requested model', async () => {
    mode = 'missing-model';
    const err = await rejectionOf(client.load('ghost'));
    expect(err).toBeInstanceOf(ModelNotFoundError);
    expect(err).toMatchObject({ code: ErrorCode.MODEL_NOT_FOUND, model: 'ghost' });
  });

  test('a destroyed socket → retryable ProviderError without status, with cause', async () => {
    mode = 'destroy';
    const err = await rejectionOf(client.generate({ model: 'm', prompt: 'x' }));
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ status: undefined, retryable: true });
    expect((err as Error).cause).toBeInstanceOf(Error);
    expect(((err as Error).cause as { code?: string }).code).toMatch(/^(UND_ERR_|ECONNRESET)/);
  });

  test('a stalled server → retryable timeout error naming the deadline', async () => {
    mode = 'hang';
    const quick = new OllamaClient({ baseUrl: base, timeoutMs: 150 });
    try {
      const err = await rejectionOf(quick.generate({ model: 'm', prompt: 'x' }));
      expect(err).toBeInstanceOf(ProviderError);
      expect(err).toMatchObject({ retryable: true, status: undefined });
      expect((err as Error).message).toContain('timed out after 150 ms');
    } finally {
      await quick.close();
    }
  });

  test('an error line inside a stream → retryable ProviderError', async () => {
    mode = 'stream-error';
    const tokens: string[] = [];
    const err = await rejectionOf(
      client.generate({ model: 'm', prompt: 'x' }, { onToken: (t) => tokens.push(t) }),
    );
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ retryable: true });
    expect((err as Error).message).toContain('an error was encountered while running the model');
    expect(tokens).toEqual(['partial']);
  });

  test('a stream without a final chunk → retryable ProviderError', async () => {
    mode = 'truncated-stream';
    const err = await rejectionOf(client.generate({ model: 'm', prompt: 'x' }));
    expect(err).toMatchObject({ retryable: true });
    expect((err as Error).message).toContain('before the final chunk');
  });

  test('NDJSON lines split across chunks and inside characters are reassembled', async () => {
    mode = 'split-stream';
    const tokens: string[] = [];
    const res = await client.generate({ model: 'm', prompt: 'x' }, { onToken: (t) => tokens.push(t) });
    expect(tokens).toEqual(['Grüße ', '→ 你好']);
    expect(res.response).toBe('Grüße → 你好');
    expect(res).toMatchObject({ done: true, done_reason: 'stop', eval_count: 2 });
  });

  test('a closed port (ECONNREFUSED) → retryable ProviderError', async () => {
    const port = await freePort();
    const nobody = new OllamaClient({ baseUrl: `http://127.0.0.1:${port}` });
    try {
      const err = await rejectionOf(nobody.tags());
      expect(err).toBeInstanceOf(ProviderError);
      expect(err).toMatchObject({ status: undefined, retryable: true });
      expect((err as Error).message).toContain('ECONNREFUSED');
      expect(((err as Error).cause as { code?: string }).code).toBe('ECONNREFUSED');
    } finally {
      await nobody.close();
    }
  });
});

describe('client helpers', () => {
  test('parseRetryAfter reads seconds and HTTP dates', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('3', now)).toBe(3000);
    expect(parseRetryAfter(['1.5'], now)).toBe(1500);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:10 GMT', now)).toBe(10_000);
    expect(parseRetryAfter('Tue, 31 Dec 2024 00:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  test('timingsFromOllama converts nanoseconds and is undefined-safe', () => {
    expect(
      timingsFromOllama({
        load_duration: 2_000_000,
        prompt_eval_duration: 10_000_000,
        eval_duration: 500_000_000,
        total_duration: 520_000_000,
        prompt_eval_count: 12,
        eval_count: 100,
      }),
    ).toEqual({
      loadMs: 2,
      promptEvalMs: 10,
      evalMs: 500,
      totalMs: 520,
      promptTokens: 12,
      completionTokens: 100,
      tokensPerSec: 200,
    });
    expect(timingsFromOllama({})).toEqual({
      loadMs: undefined,
      promptEvalMs: undefined,
      evalMs: undefined,
      totalMs: undefined,
      promptTokens: undefined,
      completionTokens: undefined,
      tokensPerSec: undefined,
    });
    expect(timingsFromOllama({ eval_count: 5, eval_duration: 0 }).tokensPerSec).toBeUndefined();
  });

  test('NdjsonLines keeps a last line without newline and skips blank lines', () => {
    const lines: string[] = [];
    const split = new NdjsonLines((line) => lines.push(line));
    split.push(new TextEncoder().encode('{"a":1}\n\n{"b"'));
    split.push(new TextEncoder().encode(':2}\n{"c":3}'));
    expect(lines).toEqual(['{"a":1}', '{"b":2}']);
    split.end();
    expect(lines).toEqual(['{"a":1}', '{"b":2}', '{"c":3}']);
  });

  test('NdjsonLines joins a line cut across chunks, inside a multi-byte character too', () => {
    const bytes = new TextEncoder().encode('{"t":"é€"}\r\n{"t":"x"}\n  \n{"t":"😀"}\n');
    // Every cut of the bytes into three chunks gives the same lines.
    for (let i = 0; i <= bytes.length; i++)
      for (let j = i; j <= bytes.length; j += 3) {
        const lines: string[] = [];
        const split = new NdjsonLines((line) => lines.push(line));
        split.push(bytes.subarray(0, i));
        split.push(bytes.subarray(i, j));
        split.push(bytes.subarray(j));
        split.end();
        expect(lines).toEqual(['{"t":"é€"}', '{"t":"x"}', '{"t":"😀"}']);
      }
  });
});
