import { createHash } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { listenLocal } from './listen';
import { sleep } from '../../shared/sleep';

/** One request the fake server received. */
export interface RecordedRequest {
  method: string;
  /** Path and query, e.g. "/v1/chat/completions". */
  path: string;
  headers: IncomingHttpHeaders;
  /** The JSON body, parsed; undefined when there was none (or it was not JSON). */
  body: unknown;
}

/**
 * What the server does with one request, set with setNext(). Applies to the next request to any
 * endpoint, except "cut", "reset", "stream-error" and "reply", which wait for a chat completion.
 */
export type FakeOpenAIMode =
  /** Answer with this status and an OpenAI error body (or `body` as given). */
  | { kind: 'status'; status: number; retryAfter?: string; retryAfterMs?: string; body?: unknown }
  /**
   * Stream `afterChunks` content chunks, then end the response cleanly without `data: [DONE]`; with
   * `midEvent`, after half of the next event's line.
   */
  | { kind: 'cut'; afterChunks: number; midEvent?: boolean }
  /** Stream `afterChunks` content chunks, then destroy the socket. */
  | { kind: 'reset'; afterChunks: number }
  /** Stream `afterChunks` content chunks, then an error event `data: {"error": {...}}` (or llama.cpp's `error:` line). */
  | { kind: 'stream-error'; afterChunks: number; message?: string; llamaCpp?: boolean }
  /** Never answer (the headers never come). */
  | { kind: 'hang' }
  /** Answer this chat completion with this text (and finish reason). */
  | { kind: 'reply'; text: string; finishReason?: string }
  /** Answer this chat completion with one JSON completion even when it asks for a stream (some servers do). */
  | { kind: 'unstreamed' };

/** Options of {@link startFakeOpenAI}. */
export interface FakeOpenAIOptions {
  /** When set, every request must carry `Authorization: Bearer <apiKey>`; else 401. */
  apiKey?: string;
  /** Ids /v1/models lists and the endpoints accept. Default ["gpt-fake", "text-embedding-fake"]. */
  models?: string[];
  /** Default answer text of chat completions; split into one chunk per word when streamed. */
  reply?: string;
  /** Pause before each streamed chunk, ms. Default 0. */
  chunkDelayMs?: number;
  /** Length of embedding vectors. Default 8. */
  embeddingDims?: number;
  /**
   * Accept `top_k`, `repetition_penalty` and `min_p` as vLLM and llama.cpp do. Default false: refuse them
   * with 400 as OpenAI does ("Unrecognized request argument supplied").
   */
  extraParams?: boolean;
  /** Path prefix of the API. Default "/v1". */
  prefix?: string;
}

/** A running fake server. */
export interface FakeOpenAI {
  /** Base URL including the prefix, e.g. "http://127.0.0.1:41234/v1". */
  url: string;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Queues modes for the coming requests, one each, in order. */
  setNext(...modes: FakeOpenAIMode[]): void;
  /** Stops the server, dropping open connections (hanging calls included). */
  close(): Promise<void>;
}

const KNOWN_CHAT_FIELDS = new Set([
  'model',
  'messages',
  'temperature',
  'top_p',
  'max_tokens',
  'max_completion_tokens',
  'seed',
  'stop',
  'presence_penalty',
  'frequency_penalty',
  'n',
  'stream',
  'stream_options',
  'response_format',
  'user',
  'logprobs',
  'top_logprobs',
  'tools',
  'tool_choice',
]);
const EXTRA_FIELDS = new Set(['top_k', 'repetition_penalty', 'min_p']);

function errorBody(message: string, type: string, code: string | null, param: string | null = null): unknown {
  return { error: { message, type, param, code } };
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function words(text: string): number {
  return text.split(/\s+/).filter((w) => w.length > 0).length;
}

/** Splits a text into stream pieces: each word with the space before it. */
function pieces(text: string): string[] {
  return text.match(/\s*\S+/g) ?? [];
}

/** A deterministic unit vector for a text. */
function vectorOf(text: string, dims: number): number[] {
  const v: number[] = [];
  for (let i = 0; v.length < dims; i++) {
    const h = createHash('sha256').update(`${i}:${text}`).digest();
    for (let j = 0; j + 4 <= h.length && v.length < dims; j += 4) v.push(h.readInt32BE(j) / 2 ** 31);
  }
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  return v.map((x) => x / norm);
}

/**
 * Starts an OpenAI-compatible fake on 127.0.0.1 (a free port) that speaks the real shapes of
 * /v1/chat/completions (SSE and JSON), /v1/embeddings and /v1/models, checks the API key, answers 404
 * `model_not_found` for unknown models, and fails on demand (setNext).
 */
export async function startFakeOpenAI(opts: FakeOpenAIOptions = {}): Promise<FakeOpenAI> {
  const models = opts.models ?? ['gpt-fake', 'text-embedding-fake'];
  const defaultReply = opts.reply ?? 'Hello from the fake OpenAI server.';
  const chunkDelayMs = opts.chunkDelayMs ?? 0;
  const dims = opts.embeddingDims ?? 8;
  const prefix = opts.prefix ?? '/v1';
  const requests: RecordedRequest[] = [];
  const queue: FakeOpenAIMode[] = [];
  let counter = 0;

  const takeMode = (isChat: boolean): FakeOpenAIMode | undefined => {
    const next = queue[0];
    if (next === undefined) return undefined;
    if (!isChat && next.kind !== 'status' && next.kind !== 'hang') return undefined;
    return queue.shift();
  };

  async function chat(res: ServerResponse, body: Record<string, unknown>, mode: FakeOpenAIMode | undefined) {
    const model = body.model as string;
    const stream = body.stream === true && mode?.kind !== 'unstreamed';
    const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
    const messages = Array.isArray(body.messages) ? (body.messages as Array<{ content?: unknown }>) : [];
    const promptTokens = messages.reduce(
      (n, m) => n + (typeof m.content === 'string' ? words(m.content) : 0),
      0,
    );
    let all = pieces(mode?.kind === 'reply' ? mode.text : defaultReply);
    let finish = mode?.kind === 'reply' ? (mode.finishReason ?? 'stop') : 'stop';
    const maxTokens = typeof body.max_tokens === 'number' ? body.max_tokens : undefined;
    if (maxTokens !== undefined && all.length > maxTokens) {
      all = all.slice(0, maxTokens);
      finish = 'length';
    }
    const text = all.join('');
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: all.length,
      total_tokens: promptTokens + all.length,
    };
    const id = `chatcmpl-fake${++counter}`;
    const created = Math.floor(Date.now() / 1000);
    if (!stream) {
      sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model,
        system_fingerprint: 'fp_fake',
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: text, refusal: null },
            logprobs: null,
            finish_reason: finish,
          },
        ],
        usage,
      });
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
    });
    const send = async (data: unknown): Promise<void> => {
      if (chunkDelayMs > 0) await sleep(chunkDelayMs);
      if (res.destroyed) return;
      res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    };
    const chunk = (delta: Record<string, unknown>, finishReason: string | null): unknown => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      system_fingerprint: 'fp_fake',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(includeUsage ? { usage: null } : {}),
    });
    await send(chunk({ role: 'assistant', content: '', refusal: null }, null));
    for (let i = 0; i < all.length; i++) {
      if (res.destroyed) return;
      if (mode !== undefined && 'afterChunks' in mode && i === mode.afterChunks) {
        if (mode.kind === 'cut') {
          if (mode.midEvent === true) {
            const line = `data: ${JSON.stringify(chunk({ content: all[i] }, null))}`;
            res.write(line.slice(0, Math.floor(line.length / 2)));
          }
          res.end();
        } else if (mode.kind === 'reset') {
          res.socket?.destroy();
        } else if (mode.kind === 'stream-error') {
          const err = errorBody(
            mode.message ?? 'The server had an error while processing your request.',
            'server_error',
            null,
          );
          if (mode.llamaCpp) res.write(`error: ${JSON.stringify(err)}\n\n`);
          else res.write(`data: ${JSON.stringify(err)}\n\n`);
          res.end();
        }
        return;
      }
      await send(chunk({ content: all[i] }, null));
    }
    await send(chunk({}, finish));
    if (includeUsage)
      await send({
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        system_fingerprint: 'fp_fake',
        choices: [],
        usage,
      });
    await send('[DONE]');
    res.end();
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: unknown;
    try {
      body = raw.length > 0 ? (JSON.parse(raw) as unknown) : undefined;
    } catch {
      body = undefined;
    }
    const path = req.url ?? '/';
    requests.push({ method: req.method ?? 'GET', path, headers: req.headers, body });

    if (opts.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`) {
      const given = req.headers.authorization?.replace(/^Bearer\s+/i, '') ?? '';
      const message =
        given === ''
          ? "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
          : `Incorrect API key provided: ${given.slice(0, 3)}***. You can find your API key at https://platform.openai.com/account/api-keys.`;
      sendJson(
        res,
        401,
        errorBody(message, 'invalid_request_error', given === '' ? null : 'invalid_api_key'),
      );
      return;
    }

    const pathname = path.split('?')[0] ?? path;
    const route = pathname.startsWith(prefix + '/') ? pathname.slice(prefix.length) : undefined;
    const isChat = route === '/chat/completions' && req.method === 'POST';
    const mode = takeMode(isChat);
    if (mode?.kind === 'hang') return; // the socket stays open until close()
    if (mode?.kind === 'status') {
      const headers: Record<string, string> = {};
      if (mode.retryAfter !== undefined) headers['retry-after'] = mode.retryAfter;
      if (mode.retryAfterMs !== undefined) headers['retry-after-ms'] = mode.retryAfterMs;
      const fallback =
        mode.status === 429
          ? errorBody(
              'Rate limit reached for requests. Please try again later.',
              'requests',
              'rate_limit_exceeded',
            )
          : mode.status >= 500
            ? errorBody(
                'The server had an error while processing your request. Sorry about that!',
                'server_error',
                null,
              )
            : errorBody(`HTTP ${mode.status}`, 'invalid_request_error', null);
      sendJson(res, mode.status, mode.body ?? fallback, headers);
      return;
    }

    if (route === '/models' && req.method === 'GET') {
      sendJson(res, 200, {
        object: 'list',
        data: models.map((id) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'fake' })),
      });
      return;
    }
    if ((route === '/chat/completions' || route === '/embeddings') && req.method === 'POST') {
      if (!isRecord(body)) {
        sendJson(
          res,
          400,
          errorBody('We could not parse the JSON body of your request.', 'invalid_request_error', null),
        );
        return;
      }
      const model = body.model;
      if (typeof model !== 'string') {
        sendJson(res, 400, errorBody('you must provide a model parameter', 'invalid_request_error', null));
        return;
      }
      if (!models.includes(model)) {
        sendJson(
          res,
          404,
          errorBody(
            `The model \`${model}\` does not exist or you do not have access to it.`,
            'invalid_request_error',
            'model_not_found',
          ),
        );
        return;
      }
      if (route === '/embeddings') {
        const input = body.input;
        const inputs =
          typeof input === 'string' ? [input] : Array.isArray(input) ? (input as unknown[]) : undefined;
        if (inputs === undefined || inputs.length === 0 || !inputs.every((s) => typeof s === 'string')) {
          sendJson(
            res,
            400,
            errorBody(
              "'input' must be a string or an array of strings",
              'invalid_request_error',
              null,
              'input',
            ),
          );
          return;
        }
        const tokens = inputs.reduce((n, s) => n + words(s), 0);
        sendJson(res, 200, {
          object: 'list',
          data: inputs.map((s, index) => ({ object: 'embedding', index, embedding: vectorOf(s, dims) })),
          model,
          usage: { prompt_tokens: tokens, total_tokens: tokens },
        });
        return;
      }
      for (const key of Object.keys(body)) {
        if (!KNOWN_CHAT_FIELDS.has(key) && !(opts.extraParams === true && EXTRA_FIELDS.has(key))) {
          sendJson(
            res,
            400,
            errorBody(`Unrecognized request argument supplied: ${key}`, 'invalid_request_error', null),
          );
          return;
        }
      }
      if (body.stream_options !== undefined && body.stream !== true) {
        sendJson(
          res,
          400,
          errorBody(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            'invalid_request_error',
            null,
            'stream_options',
          ),
        );
        return;
      }
      if (!Array.isArray(body.messages) || body.messages.length === 0) {
        sendJson(
          res,
          400,
          errorBody(
            "'messages' must contain at least one message",
            'invalid_request_error',
            null,
            'messages',
          ),
        );
        return;
      }
      await chat(res, body, mode);
      return;
    }
    sendJson(
      res,
      404,
      errorBody(`Invalid URL (${req.method ?? 'GET'} ${pathname})`, 'invalid_request_error', null),
    );
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, errorBody(String(err), 'server_error', null));
      else res.destroy();
    });
  });
  const { url, close } = await listenLocal(server);
  return {
    url: `${url}${prefix}`,
    requests,
    setNext: (...modes) => {
      queue.push(...modes);
    },
    close,
  };
}
