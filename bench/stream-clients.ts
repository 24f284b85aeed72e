/* The two sides of bench:stream: one streaming chat straight to the simulator (Ollama NDJSON) or through
 * cell0 (OpenAI SSE), and the simulator's generation count. */
import { type Pool } from 'undici';
import { streamChat, type StreamResult } from './stream-read.js';

export const MODEL = 'qwen2.5:0.5b';
export const KEY = 'bench-stream-key';

export type Side = 'direct' | 'cell0';

/** One streaming chat straight to the simulator: POST /api/chat, NDJSON lines. */
export async function direct(pool: Pool, prompt: string, maxTokens: number): Promise<StreamResult> {
  const body = {
    model: MODEL,
    messages: [{ role: 'user', content: prompt }],
    stream: true,
    options: { num_predict: maxTokens },
  };
  const { result } = await streamChat(pool, '/api/chat', {}, body, (line) => {
    if (line.trim() === '') return undefined;
    const msg = JSON.parse(line) as { message?: { content?: string }; done?: boolean; eval_count?: number };
    return { text: msg.message?.content, ...(msg.done ? { tokens: msg.eval_count ?? 0 } : {}) };
  });
  return result;
}

/** One streaming chat through cell0: POST /v1/chat/completions, SSE in OpenAI's chunk format. */
export async function viaCell0(
  pool: Pool,
  prompt: string,
  maxTokens: number,
  headers: Record<string, string> = {},
): Promise<StreamResult> {
  const body = {
    model: MODEL,
    messages: [{ role: 'user', content: prompt }],
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: maxTokens,
  };
  const auth = { ...headers, authorization: `Bearer ${KEY}` };
  const { result, ok, header } = await streamChat(pool, '/v1/chat/completions', auth, body, (line) => {
    if (!line.startsWith('data: ')) return undefined;
    const data = line.slice(6);
    if (data === '[DONE]') return { end: true };
    const msg = JSON.parse(data) as {
      choices?: { delta?: { content?: string } }[];
      usage?: { completion_tokens?: number } | null;
      error?: { message?: string };
    };
    return {
      text: msg.choices?.[0]?.delta?.content,
      ...(msg.error ? { error: msg.error.message ?? 'error event' } : {}),
      ...(msg.usage ? { tokens: msg.usage.completion_tokens ?? 0 } : {}),
    };
  });
  if (!ok) return result;
  return {
    ...result,
    ...(header('x-cell0-cache') ? { cache: header('x-cell0-cache') } : {}),
    ...(header('x-cell0-coalesced') ? { coalesced: header('x-cell0-coalesced') } : {}),
  };
}

/** The simulator's generation calls and tokens so far. */
export async function simStats(pool: Pool): Promise<{ generations: number; tokens: number }> {
  const r = await pool.request({ path: '/_sim/stats', method: 'GET' });
  const s = (await r.body.json()) as {
    requests: { byEndpoint: Record<string, number> };
    tokensGenerated: number;
  };
  const by = s.requests.byEndpoint;
  return { generations: (by['/api/chat'] ?? 0) + (by['/api/generate'] ?? 0), tokens: s.tokensGenerated };
}

/**
 * Zeroes the simulator's counters (its highest number of requests in flight among them), so that
 * {@link simMaxInFlight} after a run reports that run's.
 */
export async function simReset(pool: Pool): Promise<void> {
  const r = await pool.request({ path: '/_sim/reset', method: 'POST' });
  await r.body.dump();
}

/** The most requests the simulator served at once since its last reset. */
export async function simMaxInFlight(pool: Pool): Promise<number> {
  const r = await pool.request({ path: '/_sim/stats', method: 'GET' });
  return ((await r.body.json()) as { maxInFlight: number }).maxInFlight;
}
