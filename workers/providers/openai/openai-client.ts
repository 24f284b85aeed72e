import { performance } from 'node:perf_hooks';
import { type Dispatcher } from 'undici';
import {
  type Cell0Error,
  ConfigError,
  ModelNotFoundError,
  ProviderError,
  type FieldIssue,
} from '../../../shared/errors.js';
import { HttpEndpoint, parseHttpUrl } from '../../../shared/http/endpoint.js';
import { httpStatusError } from '../../../shared/http/errors.js';
import { HttpPoolRegistry, parseJsonText, readJson, type HttpPool } from '../../../shared/http/pool.js';
import {
  type ChatCallOptions,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type ChatCompletionResult,
  type CompletionUsage,
  type EmbeddingsRequest,
  type EmbeddingsResponse,
  type ModelsResponse,
  type RequestOptions,
} from './types.js';

/** Names the backend in errors and results. */
export const OPENAI_PROVIDER = 'openai';

/** Options of {@link OpenAIClient}. */
export interface OpenAIClientOptions {
  /**
   * The API's base URL including its version prefix, as users write it: `http://127.0.0.1:8000/v1`,
   * `https://api.openai.com/v1`. http or https; the path prefix (and a query string, e.g. an api-version)
   * is kept around every endpoint path. Required.
   */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>` when given. */
  apiKey?: string;
  /**
   * Deadline of a whole call in ms: waiting for a connection, the headers and reading the full answer (the
   * whole stream, for streamed calls). Default 120000.
   */
  timeoutMs?: number;
  /**
   * The registry whose pool (for baseUrl's origin) carries the calls, shared with other clients of the same
   * worker. Default: a private registry, closed by close().
   */
  pools?: HttpPoolRegistry;
  /** Extra headers sent with every request (e.g. `OpenAI-Organization`, a gateway's own key header). */
  headers?: Record<string, string>;
}

const DEFAULT_TIMEOUT_MS = 120_000;

interface CallSpec<T> {
  method: 'GET' | 'POST';
  /** Path below baseUrl, e.g. "/chat/completions". */
  endpoint: string;
  body?: unknown;
  /** The model the call is about, for ModelNotFoundError. */
  model?: string;
  signal?: AbortSignal;
  read: (res: Dispatcher.ResponseData) => Promise<T>;
}

function validate(opts: OpenAIClientOptions): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const url = parseHttpUrl(opts.baseUrl);
  if (url === undefined) {
    issues.push({
      field: 'baseUrl',
      reason: `expected an http:// or https:// URL such as http://127.0.0.1:8000/v1, got ${JSON.stringify(opts.baseUrl)}`,
    });
  } else if (url.username !== '' || url.password !== '') {
    issues.push({ field: 'baseUrl', reason: 'must not hold credentials; give apiKey or headers instead' });
  }
  if (opts.apiKey !== undefined && (typeof opts.apiKey !== 'string' || opts.apiKey.trim() === '')) {
    issues.push({ field: 'apiKey', reason: 'expected a non-empty string when given' });
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    issues.push({ field: 'timeoutMs', reason: `expected a number of ms > 0, got ${String(timeoutMs)}` });
  }
  if (opts.pools !== undefined && !(opts.pools instanceof HttpPoolRegistry)) {
    issues.push({ field: 'pools', reason: 'expected an HttpPoolRegistry' });
  }
  const headers: unknown = opts.headers;
  if (
    headers !== undefined &&
    (typeof headers !== 'object' ||
      headers === null ||
      Array.isArray(headers) ||
      Object.values(headers).some((v) => typeof v !== 'string'))
  ) {
    issues.push({ field: 'headers', reason: 'expected an object of header names to string values' });
  }
  return issues;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What an OpenAI-style error body says: `{"error": {...}}`, `{"error": "..."}`, vLLM's older flat form. */
export interface OpenAIErrorInfo {
  message: string | undefined;
  code: string | number | undefined;
  type: string | undefined;
}

/** Reads the message, code and type of an error body (or stream event); all undefined if it is none. */
export function openAIErrorInfo(body: unknown): OpenAIErrorInfo {
  const none: OpenAIErrorInfo = { message: undefined, code: undefined, type: undefined };
  if (!isRecord(body)) return none;
  const pick = (o: Record<string, unknown>): OpenAIErrorInfo => ({
    message: typeof o.message === 'string' ? o.message : undefined,
    code: typeof o.code === 'string' || typeof o.code === 'number' ? o.code : undefined,
    type: typeof o.type === 'string' ? o.type : undefined,
  });
  if (isRecord(body.error)) return pick(body.error);
  if (typeof body.error === 'string') return { ...none, message: body.error };
  // vLLM before its OpenAI-style errors: {"object": "error", "message", "type", "code"}.
  if (body.object === 'error') return pick(body);
  // FastAPI's own errors (a wrong path under a vLLM server): {"detail": "Not Found"}.
  if (typeof body.detail === 'string') return { ...none, message: body.detail };
  return none;
}

function parseMaybeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

const MODEL_MISSING = /\bmodel\b.*\b(does not exist|not found)\b/i;

/**
 * Maps an HTTP error answer. 404 with code `model_not_found` (or a message saying the model does not
 * exist) → ModelNotFoundError; 429 `insufficient_quota` → non-retryable (waiting does not add credit); any
 * other status → httpStatusError (429, 408 and 5xx retryable, with Retry-After or `retry-after-ms`).
 */
export function openAIHttpError(
  endpoint: string,
  status: number,
  headers: Record<string, string | string[] | undefined>,
  bodyText: string,
  model: string | undefined,
): Cell0Error {
  const info = openAIErrorInfo(parseMaybeJson(bodyText));
  if (
    status === 404 &&
    model !== undefined &&
    (info.code === 'model_not_found' || (info.message !== undefined && MODEL_MISSING.test(info.message)))
  ) {
    return new ModelNotFoundError(OPENAI_PROVIDER, model);
  }
  const detail = info.message ?? bodyText;
  if (status === 429 && info.code === 'insufficient_quota') {
    return new ProviderError(
      OPENAI_PROVIDER,
      `${endpoint}: ${detail.trim().slice(0, 300)} (HTTP ${status})`,
      status,
      false,
      { kind: 'http' },
    );
  }
  // OpenAI also sends retry-after-ms, finer than Retry-After's seconds; parseRetryAfter reads decimals.
  const ms = headers['retry-after-ms'];
  const msText = Array.isArray(ms) ? ms[0] : ms;
  const retryAfter =
    msText !== undefined && /^\d+(\.\d+)?$/.test(msText.trim())
      ? String(Number(msText) / 1000)
      : headers['retry-after'];
  return httpStatusError(OPENAI_PROVIDER, endpoint, status, retryAfter, detail);
}

/** One event of a server-sent-event stream: a `data` payload, or llama.cpp's `error:` line. */
export interface SseEvent {
  field: 'data' | 'error';
  text: string;
  /** Set on a last event the stream ended inside (no blank line after it): it may be cut short. */
  partial?: true;
}

/**
 * Splits a byte stream, handed over chunk by chunk, into server-sent events
 * (https://html.spec.whatwg.org/#event-stream-interpretation): `data:` lines of one event (up to a blank line)
 * are joined with "\n"; comments (`:` lines, sent as keep-alives by some gateways) and the `event`, `id`,
 * `retry` fields are skipped. llama.cpp server reports a failure after the headers as an `error: {json}` line,
 * given at once as an "error" event. Chunk boundaries fall anywhere, so bytes are decoded in streaming mode.
 * A last event without its blank line is still given by end(), marked `partial`: the caller decides whether
 * it is whole. Synchronous: a streamed answer comes about one chunk per token, and each event reaches its
 * reader in the call that received the chunk, with no promise or generator step between.
 */
export class SseEvents {
  private readonly decoder = new TextDecoder('utf-8');
  private pending = '';
  private data: string[] = [];

  constructor(private readonly onEvent: (event: SseEvent) => void) {}

  /** Gives every event the chunk completes, in order. */
  push(chunk: Uint8Array | string): void {
    this.pending += typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    let newline = this.pending.indexOf('\n');
    if (newline === -1) return;
    let from = 0;
    const text = this.pending;
    while (newline !== -1) {
      this.line(text.slice(from, newline));
      from = newline + 1;
      newline = text.indexOf('\n', from);
    }
    this.pending = text.slice(from);
  }

  /** The stream is over: gives its last line's event, and a last event without its blank line (partial). */
  end(): void {
    const rest = this.pending + this.decoder.decode();
    this.pending = '';
    if (rest !== '') this.line(rest);
    if (this.data.length > 0) {
      const text = this.data.join('\n');
      this.data = [];
      this.onEvent({ field: 'data', text, partial: true });
    }
  }

  private line(raw: string): void {
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text === '') {
      if (this.data.length > 0) {
        const data = this.data.join('\n');
        this.data = [];
        this.onEvent({ field: 'data', text: data });
      }
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'error') this.onEvent({ field: 'error', text: value });
  }
}

/** The events of a byte stream read to its end (see {@link SseEvents}). */
export async function* sseEvents(chunks: AsyncIterable<Uint8Array | string>): AsyncGenerator<SseEvent> {
  let ready: SseEvent[] = [];
  const split = new SseEvents((e) => ready.push(e));
  for await (const chunk of chunks) {
    split.push(chunk);
    const now = ready;
    ready = [];
    yield* now;
  }
  split.end();
  yield* ready;
}

/** A failure the server reported after its 200 header (a stream event or a 200 body holding an error). */
function reportedError(endpoint: string, info: OpenAIErrorInfo, raw: string): ProviderError {
  const code = info.code !== undefined ? ` [${String(info.code)}]` : '';
  return new ProviderError(
    OPENAI_PROVIDER,
    `${endpoint}: server reported an error${code}: ${(info.message ?? raw).slice(0, 300)}`,
    undefined,
    true,
    { kind: 'protocol' },
  );
}

function protocolError(
  endpoint: string,
  message: string,
  retryable: boolean,
  cause?: unknown,
): ProviderError {
  return new ProviderError(OPENAI_PROVIDER, `${endpoint}: ${message}`, undefined, retryable, {
    kind: 'protocol',
    ...(cause !== undefined ? { cause } : {}),
  });
}

/** Parses one JSON answer, refusing a 200 that holds an error and anything not an object. */
async function readObject(endpoint: string, res: Dispatcher.ResponseData): Promise<Record<string, unknown>> {
  return objectOf(endpoint, await readJson(OPENAI_PROVIDER, endpoint, res));
}

/** A parsed JSON answer as an object, refusing a 200 that holds an error and anything not an object. */
function objectOf(endpoint: string, body: unknown): Record<string, unknown> {
  if (!isRecord(body)) throw protocolError(endpoint, 'answer is not a JSON object', false);
  const info = openAIErrorInfo(body);
  if (body.error != null || body.object === 'error')
    throw reportedError(endpoint, info, JSON.stringify(body));
  return body;
}

function checkCompletion(endpoint: string, body: Record<string, unknown>): ChatCompletion {
  if (!Array.isArray(body.choices)) throw protocolError(endpoint, 'answer has no "choices" array', false);
  return body as unknown as ChatCompletion;
}

/**
 * A client of one OpenAI-compatible server (OpenAI, vLLM, llama.cpp server, hosted gateways). Every call
 * goes through the {@link HttpPool} of the server's origin, so connections are kept alive and shared with
 * other clients of the same registry. Errors are typed (see shared/errors.ts): ModelNotFoundError,
 * ProviderError (`kind`, `retryable`, `retryAfterMs`), ConfigError, ClosedError; a caller's abort rejects
 * with the signal's reason.
 */
export class OpenAIClient {
  /** The pool of the server's origin. */
  readonly pool: HttpPool;
  private readonly opts: OpenAIClientOptions & { timeoutMs: number };
  private readonly endpoint: HttpEndpoint;
  private readonly query: string;
  private readonly headers: Record<string, string>;

  constructor(opts: OpenAIClientOptions) {
    const issues = validate(opts);
    if (issues.length > 0)
      throw new ConfigError(issues.map((i) => ({ ...i, field: `OpenAIClient.${i.field}` })));
    this.opts = { ...opts, timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS };
    this.query = new URL(opts.baseUrl).search;
    // Lower-cased so a caller's "Authorization" cannot sit next to ours as a second header.
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = v;
    if (opts.apiKey !== undefined) headers.authorization = `Bearer ${opts.apiKey}`;
    this.headers = headers;
    this.endpoint = new HttpEndpoint(opts.baseUrl, opts.pools);
    this.pool = this.endpoint.pool;
  }

  /** The server's base URL, as configured. */
  get baseUrl(): string {
    return this.opts.baseUrl;
  }

  /** The server's origin (scheme://host:port). */
  get origin(): string {
    return this.pool.origin;
  }

  /**
   * POST /chat/completions. Streams unless `req.stream` is false: each chunk with text goes to `onToken`,
   * usage is asked for (`stream_options.include_usage`), and the chunks are gathered into one
   * {@link ChatCompletionResult}. A stream that ends without `data: [DONE]` rejects with a retryable
   * ProviderError of kind "protocol", as does an error event inside the stream.
   */
  async chatCompletions(
    req: ChatCompletionRequest,
    opts: ChatCallOptions = {},
  ): Promise<ChatCompletionResult> {
    const endpoint = '/chat/completions';
    const started = performance.now();
    if (req.stream === false) {
      const body: ChatCompletionRequest = { ...req, stream: false };
      delete body.stream_options;
      const res = await this.call({
        method: 'POST',
        endpoint,
        body,
        model: req.model,
        signal: opts.signal,
        read: async (r) => checkCompletion(endpoint, await readObject(endpoint, r)),
      });
      const totalMs = performance.now() - started;
      return { ...res, clientTimings: { ttftMs: totalMs, totalMs } };
    }
    const body: ChatCompletionRequest = {
      ...req,
      stream: true,
      stream_options: { ...req.stream_options, include_usage: true },
    };
    return this.gather(body, endpoint, started, opts.onToken, opts.signal);
  }

  /** POST /embeddings: one vector per input, in `data[i].index` order as the server sends it. */
  async embeddings(req: EmbeddingsRequest, opts: RequestOptions = {}): Promise<EmbeddingsResponse> {
    const endpoint = '/embeddings';
    return this.call({
      method: 'POST',
      endpoint,
      body: req,
      model: req.model,
      signal: opts.signal,
      read: async (r) => {
        const body = await readObject(endpoint, r);
        if (
          !Array.isArray(body.data) ||
          !body.data.every((d: unknown) => isRecord(d) && Array.isArray(d.embedding))
        )
          throw protocolError(endpoint, 'answer has no "data" array of embeddings', false);
        return body as unknown as EmbeddingsResponse;
      },
    });
  }

  /** GET /models: the models the server can serve. */
  async models(opts: RequestOptions = {}): Promise<ModelsResponse> {
    const endpoint = '/models';
    return this.call({
      method: 'GET',
      endpoint,
      signal: opts.signal,
      read: async (r) => {
        const body = await readObject(endpoint, r);
        if (
          !Array.isArray(body.data) ||
          !body.data.every((d: unknown) => isRecord(d) && typeof d.id === 'string')
        )
          throw protocolError(endpoint, 'answer has no "data" array of models', false);
        return body as unknown as ModelsResponse;
      },
    });
  }

  /**
   * Refuses further calls. Closes the pool only when the client made its own registry; a shared registry
   * belongs to whoever passed it. Idempotent.
   */
  close(): Promise<void> {
    return this.endpoint.close();
  }

  private call<T>(spec: CallSpec<T>): Promise<T> {
    this.endpoint.assertOpen('OpenAIClient');
    const headers: Record<string, string> = { ...this.headers, accept: 'application/json' };
    let payload: string | undefined;
    if (spec.body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(spec.body);
    }
    return this.pool.call({
      provider: OPENAI_PROVIDER,
      method: spec.method,
      path: this.endpoint.basePath + spec.endpoint + this.query,
      headers,
      body: payload,
      signal: spec.signal,
      timeoutMs: this.opts.timeoutMs,
      read: spec.read,
      onHttpError: (status, resHeaders, text) =>
        openAIHttpError(spec.endpoint, status, resHeaders, text, spec.model),
    });
  }

  /**
   * One streamed chat call: its SSE body read as it arrives (HttpPool.callChunks: each chunk split into
   * events and each event parsed in the call that received it, with no response stream or async iteration
   * per chunk), choice 0 gathered into one completion. A server that ignores `stream: true` answers one JSON
   * completion (by its content type), read whole.
   */
  private gather(
    body: ChatCompletionRequest,
    endpoint: string,
    started: number,
    onToken: ((text: string) => void) | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ChatCompletionResult> {
    this.endpoint.assertOpen('OpenAIClient');
    /** The chunks of a whole JSON answer (a server that does not stream), else undefined. */
    let whole: Buffer[] | undefined;
    let first: ChatCompletionChunk | undefined;
    let text = '';
    let reasoning = '';
    let finishReason: string | null = null;
    let usage: CompletionUsage | undefined;
    let ttftMs: number | undefined;
    let done = false;
    const events = new SseEvents((event) => {
      // Events of a chunk already read keep coming after an abort: none reaches onToken once the caller
      // has aborted.
      signal?.throwIfAborted();
      if (event.field === 'error') {
        throw reportedError(endpoint, openAIErrorInfo(parseMaybeJson(event.text)), event.text);
      }
      if (done) return; // nothing follows [DONE]; read on so the connection can be reused
      if (event.text.trim() === '[DONE]') {
        done = true;
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(event.text);
      } catch (err) {
        // An event the stream ended inside is a cut stream, worth a retry; a whole event is a server bug.
        if (event.partial) throw protocolError(endpoint, 'stream ended inside an event', true, err);
        throw protocolError(endpoint, `stream event is not JSON: ${event.text.slice(0, 200)}`, false, err);
      }
      if (!isRecord(parsed)) throw protocolError(endpoint, 'stream event is not a JSON object', false);
      if (parsed.error != null || parsed.object === 'error')
        throw reportedError(endpoint, openAIErrorInfo(parsed), event.text);
      const chunk = parsed as unknown as ChatCompletionChunk;
      first ??= chunk;
      if (isRecord(chunk.usage)) usage = chunk.usage as unknown as CompletionUsage;
      const choice = Array.isArray(chunk.choices) ? chunk.choices.find((c) => c.index === 0) : undefined;
      if (choice === undefined) return;
      const piece = choice.delta?.content;
      if (typeof piece === 'string' && piece.length > 0) {
        ttftMs ??= performance.now() - started;
        text += piece;
        onToken?.(piece);
      }
      const thought = choice.delta?.reasoning_content;
      if (typeof thought === 'string') reasoning += thought;
      if (choice.finish_reason != null) finishReason = choice.finish_reason;
    });
    return this.pool.callChunks({
      provider: OPENAI_PROVIDER,
      method: 'POST',
      path: this.endpoint.basePath + endpoint + this.query,
      headers: { ...this.headers, accept: 'text/event-stream', 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal,
      timeoutMs: this.opts.timeoutMs,
      onHttpError: (status, resHeaders, errorText) =>
        openAIHttpError(endpoint, status, resHeaders, errorText, body.model),
      onHeaders: (headers) => {
        if (String(headers['content-type'] ?? '').includes('application/json')) whole = [];
      },
      onChunk: (chunk) => {
        if (whole) whole.push(chunk);
        else events.push(chunk);
      },
      onEnd: () => {
        if (whole) {
          const answer = new TextDecoder('utf-8').decode(Buffer.concat(whole));
          const completion = checkCompletion(
            endpoint,
            objectOf(endpoint, parseJsonText(OPENAI_PROVIDER, endpoint, answer)),
          );
          const totalMs = performance.now() - started;
          return { ...completion, clientTimings: { ttftMs: totalMs, totalMs } };
        }
        events.end();
        if (!done) throw protocolError(endpoint, 'stream ended without "data: [DONE]"', true);
        const totalMs = performance.now() - started;
        const message: ChatCompletionResult['choices'][number]['message'] = {
          role: 'assistant',
          content: text,
        };
        if (reasoning.length > 0) message.reasoning_content = reasoning;
        return {
          id: first?.id ?? '',
          object: 'chat.completion',
          created: first?.created ?? Math.floor(Date.now() / 1000),
          model: first?.model ?? '',
          ...(first?.system_fingerprint != null ? { system_fingerprint: first.system_fingerprint } : {}),
          choices: [{ index: 0, message, finish_reason: finishReason }],
          ...(usage !== undefined ? { usage } : {}),
          clientTimings: { ttftMs: ttftMs ?? totalMs, totalMs },
        };
      },
    });
  }
}
