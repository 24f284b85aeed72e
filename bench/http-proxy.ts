/*
 * The baseline of bench:http: a minimal pass-through proxy. POST /v1/inference {model, prompt, params} is
 * forwarded as one Ollama /api/generate call (stream false) over one undici pool, and the answer is
 * returned as JSON. No queue, no cache, no limits: what a caller would pay with nothing in between.
 *
 *   node --import tsx bench/http-proxy.ts PORT BACKEND_URL CONNECTIONS
 */
import express from 'express';
import { Pool } from 'undici';

const [port, backend, connections] = [
  Number(process.argv[2] ?? 0),
  process.argv[3] ?? 'http://127.0.0.1:11434',
  Number(process.argv[4] ?? 64),
];
const pool = new Pool(backend, { connections, pipelining: 1 });
const app = express();
app.use(express.json({ limit: '1mb' }));
app.post('/v1/inference', async (req, res) => {
  const body = req.body as { model?: string; prompt?: string; params?: { max_tokens?: number } };
  try {
    const r = await pool.request({
      path: '/api/generate',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: body.model,
        prompt: body.prompt,
        stream: false,
        options: { num_predict: body.params?.max_tokens ?? 128 },
      }),
    });
    const answer = (await r.body.json()) as { response?: string };
    res.status(r.statusCode === 200 ? 200 : 502).json({ status: 'completed', result: answer });
  } catch (err) {
    res.status(502).json({ error: String(err) });
  }
});
const server = app.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`proxy ready ${typeof addr === 'object' && addr ? addr.port : port}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  void pool.close().then(() => process.exit(0));
});
