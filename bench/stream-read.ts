/* How bench:stream reads one streamed answer (Ollama NDJSON or OpenAI SSE): lines as they arrive, the time
 * to the first text, tokens per second after it. */
import { performance } from 'node:perf_hooks';
import { type Pool } from 'undici';

export interface StreamResult {
  ttftMs: number;
  /** Tokens after the first, per second of streaming after the first token; NaN for one-chunk answers. */
  tokensPerSec: number;
  text: string;
  tokens: number;
  /** Text chunks received. */
  chunks: number;
  error?: string;
  cache?: string;
  coalesced?: string;
}

/**
 * Called at each stream's first text, as the client reads it (bench:stream's burst runs read cell0's event-loop
 * CPU there); undefined: nothing is called.
 */
export const firstText: { hook: (() => void) | undefined } = { hook: undefined };

/** Splits a byte stream into lines (NDJSON, SSE) as they arrive. */
async function* lines(body: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let rest = '';
  for await (const chunk of body) {
    rest += chunk.toString('utf8');
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      yield rest.slice(0, nl);
      rest = rest.slice(nl + 1);
    }
  }
  if (rest.length > 0) yield rest;
}

export function finishResult(
  t0: number,
  first: number | undefined,
  last: number,
  text: string,
  tokens: number,
  chunks: number,
): StreamResult {
  return {
    ttftMs: first === undefined ? NaN : first - t0,
    tokensPerSec:
      first !== undefined && last > first && tokens > 1 ? ((tokens - 1) * 1000) / (last - first) : NaN,
    text,
    tokens,
    chunks,
  };
}

/** What one line of a stream says; undefined for a line that says nothing (blank, an SSE comment). */
interface StreamLine {
  text?: string;
  /** The answer's token count, when the line reports it. */
  tokens?: number;
  error?: string;
  /** The last line: stop reading. */
  end?: boolean;
}

/** POSTs one streaming chat and reads its lines as they arrive, timing the first and the last text. */
export async function streamChat(
  pool: Pool,
  path: string,
  headers: Record<string, string>,
  body: unknown,
  read: (line: string) => StreamLine | undefined,
): Promise<{ result: StreamResult; ok: boolean; header(name: string): string | undefined }> {
  const t0 = performance.now();
  const r = await pool.request({
    path,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const header = (name: string) => {
    const v = r.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  if (r.statusCode !== 200) {
    const error = `${r.statusCode} ${(await r.body.text()).slice(0, 200)}`;
    return { result: { ...finishResult(t0, undefined, t0, '', 0, 0), error }, ok: false, header };
  }
  let first: number | undefined;
  let last = t0;
  let text = '';
  let tokens = 0;
  let chunks = 0;
  let error: string | undefined;
  for await (const line of lines(r.body)) {
    const msg = read(line);
    if (msg === undefined) continue;
    if (msg.error !== undefined) error = msg.error;
    if (msg.text !== undefined && msg.text.length > 0) {
      const now = performance.now();
      if (first === undefined) {
        first = now;
        firstText.hook?.();
      }
      last = now;
      text += msg.text;
      chunks++;
    }
    if (msg.tokens !== undefined) tokens = msg.tokens;
    if (msg.end) break;
  }
  const result = finishResult(t0, first, last, text, tokens, chunks);
  return { result: { ...result, ...(error ? { error } : {}) }, ok: true, header };
}
