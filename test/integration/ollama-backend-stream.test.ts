import { createServer, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';
import { OllamaBackend } from '../../workers/providers/ollama-backend';

/*
 * The Ollama backend streams a call only when the job's tokens are wanted (ctx.onToken); otherwise it asks for
 * one unstreamed answer, and derives the time to first token from the backend's generation time. A local
 * server answering Ollama's real shapes (NDJSON chunks, or one JSON object for stream: false) records what
 * each request asked for.
 */
describe('OllamaBackend: streamed only when someone streams the job', () => {
  let server: Server;
  let backend: OllamaBackend;
  const asked: { path: string; stream: unknown }[] = [];
  const stats = {
    done: true,
    done_reason: 'stop',
    total_duration: 30e6,
    load_duration: 1e6,
    prompt_eval_count: 4,
    prompt_eval_duration: 2e6,
    eval_count: 3,
    eval_duration: 20e6,
  };

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const r = JSON.parse(body) as { model: string; stream?: boolean };
        asked.push({ path: req.url!, stream: r.stream });
        const chat = req.url === '/api/chat';
        const piece = (text: string) =>
          chat ? { message: { role: 'assistant', content: text } } : { response: text };
        const base = { model: r.model, created_at: new Date().toISOString() };
        if (r.stream === false) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ...base, ...piece('one two three'), ...stats }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        for (const t of ['one', ' two', ' three'])
          res.write(JSON.stringify({ ...base, ...piece(t), done: false }) + '\n');
        res.end(JSON.stringify({ ...base, ...piece(''), ...stats }) + '\n');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    backend = new OllamaBackend(new OllamaClient({ baseUrl: `http://127.0.0.1:${port}` }));
  });

  afterAll(async () => {
    await backend.close();
    await new Promise((resolve) => server.close(resolve));
  });

  const params = { temperature: 0.7, top_p: 0.9, top_k: 40, repeat_penalty: 1.1, max_tokens: 8 };

  test.each([
    ['generate', { model: 'm', prompt: 'hi', params }],
    ['chat', { model: 'm', messages: [{ role: 'user' as const, content: 'hi' }], params }],
  ])('%s: unstreamed without onToken, streamed with it; same text and usage', async (_kind, job) => {
    asked.length = 0;
    const signal = new AbortController().signal;
    const whole = await backend.run(job, { signal });
    const tokens: string[] = [];
    const streamed = await backend.run(job, { signal, onToken: (t) => tokens.push(t) });
    expect(asked.map((a) => a.stream)).toEqual([false, true]);
    expect(tokens.join('')).toBe('one two three');
    for (const r of [whole, streamed]) {
      expect(r.text).toBe('one two three');
      expect(r.usage).toEqual({ promptTokens: 4, completionTokens: 3, totalTokens: 7 });
      expect(r.timings.tokensPerSec).toBe(150);
    }
    // Unstreamed: the call's time less the backend's 20 ms of generation, never negative.
    expect(whole.timings.ttftMs).toBe(Math.round(Math.max(0, whole.timings.totalMs - 20) * 100) / 100);
    expect(streamed.timings.ttftMs).toBeGreaterThan(0);
    expect(streamed.timings.ttftMs).toBeLessThanOrEqual(streamed.timings.totalMs);
  });

  test.each([
    ['generate', { model: 'm', prompt: 'hi', params }],
    ['chat', { model: 'm', messages: [{ role: 'user' as const, content: 'hi' }], params }],
  ])(
    '%s: reports the time the backend says it spent (total_duration) to onBackendTime, streamed or not',
    async (_kind, job) => {
      const signal = new AbortController().signal;
      const reported: number[] = [];
      await backend.run(job, { signal, onBackendTime: (ms) => reported.push(ms) });
      await backend.run(job, { signal, onBackendTime: (ms) => reported.push(ms), onToken: () => undefined });
      expect(reported).toEqual([30, 30]);
    },
  );
});
