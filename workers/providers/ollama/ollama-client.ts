import { performance } from 'node:perf_hooks';
import { ConfigError, ProviderError, type FieldIssue } from '../../../shared/errors.js';
import { HttpEndpoint, parseHttpUrl } from '../../../shared/http/endpoint.js';
import { withDefaults } from '../../../shared/with-defaults.js';
import { type HttpPoolRegistry } from '../../../shared/http/pool.js';
import { PROVIDER, httpError } from './http-errors.js';
import { NdjsonLines } from './ndjson-lines.js';
import {
  type ChatRequest,
  type ChatResponse,
  type ChatResult,
  type ClientTimings,
  type EmbedRequest,
  type EmbedResponse,
  type GenerateCallOptions,
  type GenerateRequest,
  type GenerateResponse,
  type GenerateResult,
  type KeepAlive,
  type PsResponse,
  type TagsResponse,
  type ToolCall,
  type VersionResponse,
} from './types.js';

/** Options of {@link OllamaClient}. */
export interface OllamaClientOptions {
  /**
   * Where Ollama listens, e.g. `http://127.0.0.1:11434`. http or https; a path prefix (a reverse proxy's
   * mount point) is kept in front of `/api/...`. Required.
   */
  baseUrl: string;
  /**
   * Deadline of a whole call in ms: connecting, waiting for headers and reading the full answer (the whole
   * stream, for streaming calls). Default 120000.
   */
  timeoutMs?: number;
  /**
   * Maximum keep-alive connections to the server; more concurrent calls queue in the pool. Used when this
   * client creates the origin's pool (a registry's existing pool keeps its own setting). Default: the
   * registry's default (16 unless configured).
   */
  connections?: number;
  /** Extra headers sent with every request (e.g. Authorization for a proxy in front of Ollama). */
  headers?: Record<string, string>;
  /**
   * The worker's pool registry, so every client of one origin shares its connections. Default: a registry
   * of this client's own, closed by close().
   */
  pools?: HttpPoolRegistry;
}

const DEFAULTS = {
  timeoutMs: 120_000,
  headers: {} as Record<string, string>,
} satisfies Omit<Required<OllamaClientOptions>, 'baseUrl' | 'pools' | 'connections'>;

type ResolvedOptions = Required<Omit<OllamaClientOptions, 'pools' | 'connections'>> &
  Pick<OllamaClientOptions, 'pools' | 'connections'>;

type HttpMethod = 'GET' | 'POST';

function validate(opts: ResolvedOptions): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const url = parseHttpUrl(opts.baseUrl);
  if (url === undefined) {
    issues.push({
      field: 'baseUrl',
      reason: `expected an http:// or https:// URL, got ${JSON.stringify(opts.baseUrl)}`,
    });
  }
  if (typeof opts.timeoutMs !== 'number' || !Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) {
    issues.push({ field: 'timeoutMs', reason: `expected a number of ms > 0, got ${String(opts.timeoutMs)}` });
  }
  if (opts.connections !== undefined && (!Number.isInteger(opts.connections) || opts.connections < 1)) {
    issues.push({
      field: 'connections',
      reason: `expected an integer >= 1, got ${String(opts.connections)}`,
    });
  }
  if (typeof opts.headers !== 'object' || opts.headers === null) {
    issues.push({ field: 'headers', reason: 'expected an object of header names to string values' });
  }
  return issues;
}

function parseObject(text: string, endpoint: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ProviderError(
      PROVIDER,
      `${endpoint}: answer is not JSON: ${text.slice(0, 200)}`,
      undefined,
      false,
      {
        cause: err,
        kind: 'protocol',
      },
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ProviderError(PROVIDER, `${endpoint}: answer is not a JSON object`, undefined, false, {
      kind: 'protocol',
    });
  }
  const error = (parsed as { error?: unknown }).error;
  if (typeof error === 'string') {
    // Ollama reports failures that happen after the 200 header (e.g. the runner died) as an error line.
    throw new ProviderError(PROVIDER, `${endpoint}: ${error}`, undefined, true, { kind: 'protocol' });
  }
  return parsed as Record<string, unknown>;
}

/** How to read the pieces of a chunk that add up over a stream. */
interface StreamParts<C> {
  text(chunk: C): string | undefined;
  thinking(chunk: C): string | undefined;
  /** Sees every chunk, for anything else that adds up (chat tool calls). */
  each?(chunk: C): void;
}

interface Aggregate<C> {
  final: C;
  text: string;
  thinking: string;
  ttftMs: number | undefined;
}

/**
 * A client of one Ollama server. Connections are kept alive in an undici Pool for the server's origin.
 * Errors are typed (see shared/errors.ts): ModelNotFoundError, ProviderError (with `retryable` and
 * `retryAfterMs`), ClosedError; a caller's abort rejects with the signal's reason.
 */
export class OllamaClient {
  private readonly opts: ResolvedOptions;
  private readonly endpoint: HttpEndpoint;
  /** The request headers of a call without and with a JSON body, made once (undici does not change them). */
  private readonly getHeaders: Record<string, string>;
  private readonly postHeaders: Record<string, string>;

  constructor(opts: OllamaClientOptions) {
    const merged = withDefaults<ResolvedOptions>(DEFAULTS, opts);
    const issues = validate(merged);
    if (issues.length > 0)
      throw new ConfigError(issues.map((i) => ({ ...i, field: `OllamaClient.${i.field}` })));
    this.opts = merged;
    this.getHeaders = { ...merged.headers, accept: 'application/json' };
    this.postHeaders = { ...this.getHeaders, 'content-type': 'application/json' };
    this.endpoint = new HttpEndpoint(
      merged.baseUrl,
      merged.pools,
      merged.connections !== undefined ? { maxConnectionsPerHost: merged.connections } : {},
    );
  }

  /** The server's origin (scheme://host:port). */
  get origin(): string {
    return this.endpoint.origin;
  }

  /** The server's base URL, as configured. */
  get baseUrl(): string {
    return this.opts.baseUrl;
  }

  /** One non-streamed generate/chat call; ttft equals the whole call, as nothing arrives earlier. */
  private async callUnstreamed<R extends object>(
    endpoint: '/api/generate' | '/api/chat',
    req: { model: string },
    signal: AbortSignal | undefined,
  ): Promise<R & { clientTimings: ClientTimings }> {
    const started = performance.now();
    const res = (await this.callJson('POST', endpoint, { ...req, stream: false }, req.model, signal)) as R;
    const totalMs = performance.now() - started;
    return { ...res, clientTimings: { ttftMs: totalMs, totalMs } };
  }

  /**
   * POST /api/generate. Streams by default (as Ollama does): each chunk with text goes to `onToken`, and
   * the result is the final chunk with `response` holding the whole text, plus client-side timings.
   */
  async generate(req: GenerateRequest, opts: GenerateCallOptions = {}): Promise<GenerateResult> {
    if (req.stream === false) return this.callUnstreamed<GenerateResponse>('/api/generate', req, opts.signal);
    const started = performance.now();
    const agg = await this.streamed<GenerateResponse>(
      '/api/generate',
      { ...req, stream: true },
      req.model,
      started,
      { text: (c) => c.response, thinking: (c) => c.thinking },
      opts.onToken,
      opts.signal,
    );
    const clientTimings = timingsOf(agg, started);
    const result: GenerateResult = { ...agg.final, response: agg.text, clientTimings };
    if (agg.thinking.length > 0) result.thinking = agg.thinking;
    return result;
  }

  /**
   * POST /api/chat. Streams by default; the result is the final chunk with `message.content` holding the
   * whole text (and tool calls of every chunk gathered), plus client-side timings.
   */
  async chat(req: ChatRequest, opts: GenerateCallOptions = {}): Promise<ChatResult> {
    if (req.stream === false) return this.callUnstreamed<ChatResponse>('/api/chat', req, opts.signal);
    const started = performance.now();
    const toolCalls: ToolCall[] = [];
    const agg = await this.streamed<ChatResponse>(
      '/api/chat',
      { ...req, stream: true },
      req.model,
      started,
      {
        text: (c) => c.message?.content,
        thinking: (c) => c.message?.thinking,
        each: (c) => toolCalls.push(...(c.message?.tool_calls ?? [])),
      },
      opts.onToken,
      opts.signal,
    );
    const message = { ...agg.final.message, role: agg.final.message?.role ?? 'assistant', content: agg.text };
    if (agg.thinking.length > 0) message.thinking = agg.thinking;
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    return { ...agg.final, message, clientTimings: timingsOf(agg, started) };
  }

  /** POST /api/embed: one vector per input. */
  async embed(req: EmbedRequest, signal?: AbortSignal): Promise<EmbedResponse> {
    return this.postJson<EmbedResponse>('/api/embed', req, req.model, signal);
  }

  /** GET /api/ps: the models loaded in memory. */
  async ps(signal?: AbortSignal): Promise<PsResponse> {
    return this.getJson<PsResponse>('/api/ps', signal);
  }

  /** GET /api/tags: the models available locally. */
  async tags(signal?: AbortSignal): Promise<TagsResponse> {
    return this.getJson<TagsResponse>('/api/tags', signal);
  }

  /** GET /api/version */
  async version(): Promise<VersionResponse> {
    return this.getJson<VersionResponse>('/api/version');
  }

  /** Loads a model into memory (a generate call with no prompt); Ollama answers done_reason "load". */
  async load(model: string, keepAlive?: KeepAlive, signal?: AbortSignal): Promise<GenerateResponse> {
    const body: GenerateRequest = { model, stream: false };
    if (keepAlive !== undefined) body.keep_alive = keepAlive;
    return this.postJson<GenerateResponse>('/api/generate', body, model, signal);
  }

  /** Unloads a model from memory (keep_alive 0); Ollama answers done_reason "unload". */
  async unload(model: string, signal?: AbortSignal): Promise<GenerateResponse> {
    return this.postJson<GenerateResponse>(
      '/api/generate',
      { model, stream: false, keep_alive: 0 },
      model,
      signal,
    );
  }

  /**
   * Closes the connection pool once the calls in flight have finished. Idempotent: every call returns the
   * same promise. Calls made afterwards reject with ClosedError.
   */
  close(): Promise<void> {
    return this.endpoint.close();
  }

  private async postJson<T>(
    endpoint: string,
    body: unknown,
    model: string,
    signal?: AbortSignal,
  ): Promise<T> {
    return (await this.callJson('POST', endpoint, body, model, signal)) as T;
  }

  private async getJson<T>(endpoint: string, signal?: AbortSignal): Promise<T> {
    return (await this.callJson('GET', endpoint, undefined, undefined, signal)) as T;
  }

  /**
   * One exchange whose answer is one JSON object, read whole (HttpPool.callText: no response stream); the
   * same deadline, abort and typed errors as call().
   */
  private async callJson(
    method: HttpMethod,
    endpoint: string,
    body: unknown,
    model: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Record<string, unknown>> {
    this.endpoint.assertOpen('OllamaClient');
    return this.endpoint.pool.callText({
      provider: PROVIDER,
      method,
      path: this.endpoint.basePath + endpoint,
      headers: body === undefined ? this.getHeaders : this.postHeaders,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal,
      timeoutMs: this.opts.timeoutMs,
      onHttpError: (status, resHeaders, errorText) =>
        httpError(endpoint, status, resHeaders['retry-after'], errorText, model),
      parse: (text) => parseObject(text, endpoint),
    });
  }

  /**
   * One streamed call: its NDJSON body read as it arrives (HttpPool.callChunks: each chunk split into lines
   * and each line parsed in the call that received it, with no response stream or async iteration per
   * chunk), text gathered; returns the final (done) chunk. The same deadline, abort and typed errors as the
   * unstreamed calls.
   */
  private streamed<C extends { done?: boolean }>(
    endpoint: '/api/generate' | '/api/chat',
    body: unknown,
    model: string,
    started: number,
    parts: StreamParts<C>,
    onToken: ((text: string) => void) | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Aggregate<C>> {
    this.endpoint.assertOpen('OllamaClient');
    let text = '';
    let thinking = '';
    let ttftMs: number | undefined;
    let final: C | undefined;
    const lines = new NdjsonLines((line) => {
      // Lines of a chunk already read keep coming after an abort (a stalled host reads several chunks at
      // once): none reaches onToken once the caller has aborted.
      signal?.throwIfAborted();
      const chunk = parseObject(line, endpoint) as unknown as C;
      parts.each?.(chunk);
      const piece = parts.text(chunk);
      if (typeof piece === 'string' && piece.length > 0) {
        ttftMs ??= performance.now() - started;
        text += piece;
        onToken?.(piece);
      }
      const thought = parts.thinking(chunk);
      if (typeof thought === 'string') thinking += thought;
      if (chunk.done === true) final = chunk;
    });
    return this.endpoint.pool.callChunks({
      provider: PROVIDER,
      method: 'POST',
      path: this.endpoint.basePath + endpoint,
      headers: this.postHeaders,
      body: JSON.stringify(body),
      signal,
      timeoutMs: this.opts.timeoutMs,
      onHttpError: (status, resHeaders, errorText) =>
        httpError(endpoint, status, resHeaders['retry-after'], errorText, model),
      onChunk: (chunk) => lines.push(chunk),
      onEnd: () => {
        lines.end();
        if (final === undefined) {
          throw new ProviderError(
            PROVIDER,
            `${endpoint}: stream ended before the final chunk`,
            undefined,
            true,
            {
              kind: 'protocol',
            },
          );
        }
        return { final, text, thinking, ttftMs };
      },
    });
  }
}

function timingsOf(agg: { ttftMs: number | undefined }, started: number): ClientTimings {
  const totalMs = performance.now() - started;
  return { ttftMs: agg.ttftMs ?? totalMs, totalMs };
}
