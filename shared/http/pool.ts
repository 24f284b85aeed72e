import { performance } from 'node:perf_hooks';
import { Pool, type Dispatcher } from 'undici';
import { Cell0Error, ClosedError, ConfigError, ProviderError, type FieldIssue } from '../errors.js';
import { LatencyWindow, type LatencySummary } from '../latency.js';
import { connectionError, isConnectionError } from './errors.js';
import { withDefaults } from '../with-defaults.js';

/** Options of one origin's pool. */
export interface HttpPoolOptions {
  /** Keep-alive connections kept open to the origin; more concurrent calls queue in the pool. Default 16. */
  maxConnectionsPerHost?: number;
  /** Longest wait for a TCP (and TLS) connection, ms. Default 10000. */
  connectTimeoutMs?: number;
  /**
   * Longest wait for the response headers once the request is sent, ms; 0 = no limit (the call's own
   * deadline still applies). Default 0, because a non-streamed generation sends its headers only when the
   * whole text is ready.
   */
  headersTimeoutMs?: number;
  /** Longest silence between two chunks of a response body, ms; 0 = no limit. Default 60000. */
  bodyTimeoutMs?: number;
  /** How long an idle connection is kept when the server gives no keep-alive hint, ms. Default 4000. */
  keepAliveTimeoutMs?: number;
  /** Upper bound on a server's keep-alive hint, ms. Default 600000. */
  keepAliveMaxTimeoutMs?: number;
}

/** Options of {@link HttpPoolRegistry}. */
export interface HttpPoolRegistryOptions {
  /**
   * Most requests in flight at once over all origins of the registry (each holds one connection, since
   * requests are not pipelined); more wait in a FIFO queue. Default 256.
   */
  maxConnections?: number;
  /** Options of pools created without their own. */
  defaults?: HttpPoolOptions;
}

const POOL_DEFAULTS: Required<HttpPoolOptions> = {
  maxConnectionsPerHost: 16,
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 0,
  bodyTimeoutMs: 60_000,
  keepAliveTimeoutMs: 4_000,
  keepAliveMaxTimeoutMs: 600_000,
};

/** Counters of one origin's pool. */
export interface HttpPoolMetrics {
  origin: string;
  maxConnectionsPerHost: number;
  /** Sockets open now, and how many of them are idle. */
  connections: { open: number; free: number };
  /** Calls sent and not finished (their body not read to the end yet). */
  inFlight: number;
  /** Calls waiting for a connection (of this pool, or a slot of the registry's maxConnections). */
  queued: number;
  /** Calls made, and how they ended. */
  requests: number;
  /** Answers with status >= 400. */
  httpErrors: number;
  /** Calls that got no answer: connection failures, timeouts, protocol errors. */
  errors: number;
  /** Time from sending to the response headers. */
  latency: LatencySummary;
}

/** One HTTP exchange run by {@link HttpPool.call}. */
export interface HttpCall<T> {
  /** Names the backend in errors ("ollama", "openai", "brave"). */
  provider: string;
  method: 'GET' | 'POST' | 'HEAD' | 'DELETE' | 'PUT';
  /** Path and query, e.g. "/api/generate" or "/search?q=x". */
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  signal?: AbortSignal;
  /** Deadline of the whole call (connection, headers, reading the body through `read`), ms. */
  timeoutMs: number;
  /** Reads a successful (status < 400) answer. The body must be consumed (or destroyed) by `read`. */
  read: (res: Dispatcher.ResponseData) => Promise<T>;
  /** Turns an error answer (status >= 400, body text up to 64 KiB) into the error to throw. */
  onHttpError: (status: number, headers: Dispatcher.ResponseData['headers'], bodyText: string) => Error;
}

/**
 * One HTTP exchange run by {@link HttpPool.callText}: an answer read whole as text (a JSON API's answer), with
 * no stream in between.
 */
export type HttpTextCall<T = string> = Omit<HttpCall<T>, 'read'> & {
  /**
   * Turns a successful answer's text into the result (e.g. parses and checks JSON); what it throws rejects the
   * call, counted as call() counts what its `read` throws. Default: the text itself.
   */
  parse?: (text: string) => T;
};

/**
 * One HTTP exchange run by {@link HttpPool.callChunks}: a successful answer's body handed on chunk by chunk
 * as it arrives (a streamed generation's NDJSON or SSE), with no stream in between.
 */
export type HttpChunksCall<T> = Omit<HttpCall<T>, 'read'> & {
  /**
   * Sees a successful answer's headers before its first chunk (names lower-cased), e.g. to choose how to read
   * the body by its content type; what it throws rejects the call.
   */
  onHeaders?: (headers: Dispatcher.ResponseData['headers']) => void;
  /** Takes each chunk of a successful answer's body, in order; what it throws rejects the call. */
  onChunk: (chunk: Buffer) => void;
  /** Makes the result once the whole body has been handed on; what it throws rejects the call. */
  onEnd: () => T;
};

/** Error bodies are only read for their message; a proxy's HTML page must not be buffered whole. */
const ERROR_BODY_LIMIT = 64 * 1024;

function checkPoolOptions(o: Required<HttpPoolOptions>): FieldIssue[] {
  const issues: FieldIssue[] = [];
  if (!Number.isInteger(o.maxConnectionsPerHost) || o.maxConnectionsPerHost < 1)
    issues.push({
      field: 'maxConnectionsPerHost',
      reason: `expected an integer >= 1, got ${String(o.maxConnectionsPerHost)}`,
    });
  for (const k of [
    'headersTimeoutMs',
    'bodyTimeoutMs',
    'keepAliveTimeoutMs',
    'keepAliveMaxTimeoutMs',
  ] as const)
    if (typeof o[k] !== 'number' || !(o[k] >= 0))
      issues.push({ field: k, reason: `expected a number of ms >= 0, got ${String(o[k])}` });
  if (typeof o.connectTimeoutMs !== 'number' || !(o.connectTimeoutMs > 0))
    issues.push({
      field: 'connectTimeoutMs',
      reason: `expected a number of ms > 0, got ${String(o.connectTimeoutMs)}`,
    });
  return issues;
}

/** The origin (scheme://host:port) of an http(s) URL; throws ConfigError for anything else. */
export function originOf(url: string): string {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    // reported below
  }
  if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:'))
    throw new ConfigError([
      { field: 'url', reason: `expected an http:// or https:// URL, got ${JSON.stringify(url)}` },
    ]);
  return parsed.origin;
}

/** A FIFO counting semaphore whose waiters can give up (abort). */
class Slots {
  private used = 0;
  private readonly waiters: Array<{ grant: () => void }> = [];
  constructor(readonly size: number) {}

  get waiting(): number {
    return this.waiters.length;
  }

  /** Takes a slot when one is free now (no promise, no turn of the event loop); false when none is. */
  tryTake(): boolean {
    if (this.used >= this.size) return false;
    this.used++;
    return true;
  }

  async take(signal: AbortSignal): Promise<void> {
    if (this.tryTake()) return;
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  give(): void {
    const next = this.waiters.shift();
    if (next) next.grant();
    else this.used--;
  }
}

/**
 * The keep-alive connection pool of one origin (an undici Pool), with a whole-call deadline, the caller's
 * abort signal, typed errors and metrics. Get pools from an {@link HttpPoolRegistry}, never construct them
 * per call: reusing connections is the point.
 */
export class HttpPool {
  readonly origin: string;
  readonly options: Required<HttpPoolOptions>;
  private readonly pool: Pool;
  private inFlight = 0;
  private waiting = 0;
  private requests = 0;
  private httpErrors = 0;
  private errors = 0;
  private readonly latency = new LatencyWindow();
  private closing: Promise<void> | undefined;

  constructor(
    url: string,
    options: HttpPoolOptions = {},
    private readonly slots?: Slots,
  ) {
    this.origin = originOf(url);
    const merged = withDefaults<Required<HttpPoolOptions>>(POOL_DEFAULTS, options);
    const issues = checkPoolOptions(merged);
    if (issues.length > 0) throw new ConfigError(issues.map((i) => ({ ...i, field: `HttpPool.${i.field}` })));
    this.options = merged;
    this.pool = new Pool(this.origin, {
      connections: merged.maxConnectionsPerHost,
      connectTimeout: merged.connectTimeoutMs,
      headersTimeout: merged.headersTimeoutMs,
      bodyTimeout: merged.bodyTimeoutMs,
      keepAliveTimeout: merged.keepAliveTimeoutMs,
      keepAliveMaxTimeout: merged.keepAliveMaxTimeoutMs,
    });
  }

  /**
   * Runs one exchange. Rejects with: the caller's abort reason; ProviderError kind "timeout" after
   * `timeoutMs`; ProviderError kind "connection" when the server cannot be reached or drops the
   * connection; `onHttpError`'s error for status >= 400; ClosedError after close(). Every path consumes or
   * destroys the response body, so the socket returns to the pool (or is dropped).
   */
  async call<T>(spec: HttpCall<T>): Promise<T> {
    if (this.closing !== undefined) throw new ClosedError(`HTTP pool for ${this.origin}`);
    const { signal } = spec;
    signal?.throwIfAborted();
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`timed out after ${spec.timeoutMs} ms`));
    }, spec.timeoutMs);
    timer.unref();
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });

    this.requests++;
    let body: Dispatcher.ResponseData['body'] | undefined;
    let holdsSlot = false;
    let counted = false;
    let answerError: Error | undefined;
    try {
      if (this.slots) {
        this.waiting++;
        try {
          await this.slots.take(controller.signal);
        } finally {
          this.waiting--;
        }
        holdsSlot = true;
      }
      this.inFlight++;
      counted = true;
      const sent = performance.now();
      const res = await this.pool.request({
        path: spec.path,
        method: spec.method,
        headers: spec.headers,
        body: spec.body,
        signal: controller.signal,
      });
      this.latency.record(performance.now() - sent);
      body = res.body;
      if (res.statusCode >= 400) {
        this.httpErrors++;
        const text = await readLimited(res.body, ERROR_BODY_LIMIT);
        answerError = spec.onHttpError(res.statusCode, res.headers, text);
        throw answerError;
      }
      return await spec.read(res);
    } catch (err) {
      throw this.failure(spec, err, answerError, timedOut);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (body !== undefined && !body.destroyed && !body.readableEnded) body.destroy();
      if (counted) this.inFlight--;
      if (holdsSlot) this.slots?.give();
    }
  }

  /**
   * Runs one exchange whose answer is read whole as text, through undici's dispatcher with a handler that
   * gathers the body's chunks: no response stream, no per-call AbortController unless the call has to wait
   * for a slot. Resolves with the body (UTF-8, a leading byte order mark dropped, as undici's `body.text()`
   * does) of an answer with status < 400, or with what `parse` makes of it; rejects exactly as {@link call}
   * does (the caller's abort reason, a timeout, a connection error, `onHttpError`'s error, what `parse` throws,
   * ClosedError). For bodies read as they arrive (NDJSON, SSE), use callChunks() or call().
   */
  callText<T = string>(spec: HttpTextCall<T>): Promise<T> {
    const chunks: Buffer[] = [];
    let size = 0;
    const { parse, ...rest } = spec;
    return this.callChunks<T>({
      ...rest,
      onChunk: (chunk) => {
        chunks.push(chunk);
        size += chunk.length;
      },
      onEnd: () => {
        const text = bodyText(chunks, size);
        return parse ? parse(text) : (text as T);
      },
    });
  }

  /**
   * Runs one exchange whose successful answer's body is handed to `onChunk` chunk by chunk as it arrives
   * (then `onEnd` makes the result), through undici's dispatcher with a handler of its own: no response
   * stream, no async iteration, no per-call AbortController unless the call has to wait for a slot. A streamed
   * generation's body comes as one chunk per token or so, and each chunk read through a response stream and
   * an async iterator cost the worker several promises and stream callbacks; here it is one call. What
   * `onChunk` or `onEnd` throws rejects the call (and drops the connection); no chunk reaches `onChunk` once
   * the call is settled or cut (the caller's abort, the deadline). Rejects exactly as {@link call} does.
   */
  callChunks<T>(spec: HttpChunksCall<T>): Promise<T> {
    if (this.closing !== undefined) return Promise.reject(new ClosedError(`HTTP pool for ${this.origin}`));
    const { signal } = spec;
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    this.requests++;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let timedOut = false;
      let counted = false;
      let answerError: Error | undefined;
      /** Set once the request is handed to undici: aborts it (the socket is dropped, not reused). */
      let abortRequest: ((reason: Error) => void) | undefined;
      /** Why the call was cut before undici gave it a connection (onConnect aborts it at once). */
      let cutReason: Error | undefined;
      /** Cut (aborted, timed out, a chunk refused): chunks still coming are not handed on. */
      let cutting = false;
      // A free slot of the registry is taken now; only a call that must wait for one gets an AbortController.
      const slots = this.slots;
      let holdsSlot = slots !== undefined && slots.tryTake();
      const slotWait = slots !== undefined && !holdsSlot ? new AbortController() : undefined;

      const finish = (err: unknown, value?: T): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (counted) this.inFlight--;
        if (holdsSlot) this.slots?.give();
        if (err === undefined) resolve(value as T);
        else reject(this.failure(spec, err, answerError, timedOut));
      };
      // A call cut before undici gave it a connection settles at once; undici aborts it when its turn comes.
      const cut = (reason: Error): void => {
        if (settled) return;
        cutting = true;
        if (abortRequest !== undefined) return abortRequest(reason);
        cutReason = reason;
        slotWait?.abort(reason);
        finish(reason);
      };
      const timer = setTimeout(() => {
        timedOut = true;
        cut(new Error(`timed out after ${spec.timeoutMs} ms`));
      }, spec.timeoutMs);
      timer.unref();
      const onAbort = (): void => cut(signal!.reason as Error);
      signal?.addEventListener('abort', onAbort, { once: true });

      const send = (): void => {
        this.inFlight++;
        counted = true;
        const sent = performance.now();
        let status = 0;
        let errorHeaders: Buffer[] | undefined;
        /** An error answer's body (its first 64 KiB, for the message). */
        const chunks: Buffer[] = [];
        let size = 0;
        /** What a hook threw: the call rejects with it, and the rest of the body is not read (the connection is dropped). */
        const refuse = (err: unknown): void => {
          const reason = err instanceof Error ? err : new Error(String(err));
          cutting = true;
          finish(reason);
          abortRequest?.(reason);
        };
        const handler: Dispatcher.DispatchHandler = {
          onConnect: (abort) => {
            if (cutReason !== undefined) abort(cutReason);
            else abortRequest = abort;
          },
          onHeaders: (statusCode, rawHeaders) => {
            // 1xx (informational) answers come before the real one.
            if (statusCode < 200) return true;
            this.latency.record(performance.now() - sent);
            status = statusCode;
            if (statusCode >= 400) {
              this.httpErrors++;
              errorHeaders = rawHeaders as Buffer[];
            } else if (spec.onHeaders !== undefined && !settled && !cutting) {
              try {
                spec.onHeaders(headersOf(rawHeaders as Buffer[]));
              } catch (err) {
                refuse(err);
              }
            }
            return true;
          },
          onData: (chunk) => {
            if (settled || cutting) return true;
            if (errorHeaders === undefined) {
              try {
                spec.onChunk(chunk);
              } catch (err) {
                refuse(err);
              }
            } else if (size < ERROR_BODY_LIMIT) {
              // An error body is read for its message only (the first 64 KiB).
              chunks.push(chunk);
              size += chunk.length;
            }
            return true;
          },
          onComplete: () => {
            if (settled) return;
            if (errorHeaders === undefined) {
              let value: T;
              try {
                value = spec.onEnd();
              } catch (err) {
                return finish(err);
              }
              return finish(undefined, value);
            }
            const text = bodyText(chunks, size);
            try {
              answerError = spec.onHttpError(
                status,
                headersOf(errorHeaders),
                text.slice(0, ERROR_BODY_LIMIT),
              );
            } catch (err) {
              return finish(err);
            }
            finish(answerError);
          },
          onError: (err) => finish(err),
        };
        try {
          this.pool.dispatch(
            { path: spec.path, method: spec.method, headers: spec.headers ?? null, body: spec.body ?? null },
            handler,
          );
        } catch (err) {
          finish(err);
        }
      };

      if (slots === undefined || slotWait === undefined) return send();
      this.waiting++;
      slots.take(slotWait.signal).then(
        () => {
          this.waiting--;
          // Granted as the call was being cut: the slot goes back.
          if (settled) return slots.give();
          holdsSlot = true;
          send();
        },
        (err: unknown) => {
          this.waiting--;
          finish(err);
        },
      );
    });
  }

  /** The error a failed call rejects with (see call()); counts it in `errors` when no answer came. */
  private failure(
    spec: Omit<HttpCall<unknown>, 'read'>,
    err: unknown,
    answerError: Error | undefined,
    timedOut: boolean,
  ): unknown {
    if (spec.signal?.aborted) return spec.signal.reason;
    // The server answered (counted in httpErrors), whatever error onHttpError made of it: a
    // ModelNotFoundError or a plain Error is no failure to get an answer.
    if (answerError !== undefined && err === answerError) return err;
    if (timedOut) {
      this.errors++;
      return new ProviderError(
        spec.provider,
        `${spec.path}: timed out after ${spec.timeoutMs} ms`,
        undefined,
        true,
        {
          cause: err,
          kind: 'timeout',
        },
      );
    }
    if (err instanceof Cell0Error) {
      if (!(err instanceof ProviderError && err.kind === 'http')) this.errors++;
      return err;
    }
    this.errors++;
    if (isConnectionError(err))
      return connectionError(spec.provider, spec.path.split('?')[0] ?? spec.path, err);
    return err;
  }

  metrics(): HttpPoolMetrics {
    const s = this.pool.stats;
    return {
      origin: this.origin,
      maxConnectionsPerHost: this.options.maxConnectionsPerHost,
      connections: { open: s.connected, free: s.free },
      inFlight: this.inFlight,
      queued: this.waiting + s.queued,
      requests: this.requests,
      httpErrors: this.httpErrors,
      errors: this.errors,
      latency: this.latency.summary(),
    };
  }

  /** Closes the pool once calls in flight have finished; later calls reject with ClosedError. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.pool.close();
    return this.closing;
  }
}

/**
 * One {@link HttpPool} per origin, created on first use, and a cap on requests in flight across all of
 * them. A worker process keeps one registry and hands it to every provider client, so two clients of the
 * same server share connections.
 */
export class HttpPoolRegistry {
  private readonly pools = new Map<string, HttpPool>();
  private readonly slots: Slots;
  private readonly defaults: HttpPoolOptions;
  private closing: Promise<void> | undefined;

  constructor(opts: HttpPoolRegistryOptions = {}) {
    const max = opts.maxConnections ?? 256;
    if (!Number.isInteger(max) || max < 1)
      throw new ConfigError([
        { field: 'HttpPoolRegistry.maxConnections', reason: `expected an integer >= 1, got ${max}` },
      ]);
    this.slots = new Slots(max);
    this.defaults = opts.defaults ?? {};
  }

  /** Most requests in flight at once across all origins. */
  get maxConnections(): number {
    return this.slots.size;
  }

  /**
   * The pool of `url`'s origin. `options` apply when this call creates the pool; a pool that exists keeps
   * the options it was created with.
   */
  get(url: string, options?: HttpPoolOptions): HttpPool {
    if (this.closing !== undefined) throw new ClosedError('HttpPoolRegistry');
    const origin = originOf(url);
    let pool = this.pools.get(origin);
    if (pool === undefined) {
      // An option given as undefined keeps the registry's default (not the pool's built-in one).
      pool = new HttpPool(origin, withDefaults<HttpPoolOptions>(this.defaults, options), this.slots);
      this.pools.set(origin, pool);
    }
    return pool;
  }

  /** Metrics of every pool, by origin. */
  metrics(): HttpPoolMetrics[] {
    return [...this.pools.values()].map((p) => p.metrics());
  }

  /** Closes every pool (after their calls in flight). Idempotent. */
  close(): Promise<void> {
    this.closing ??= Promise.all([...this.pools.values()].map((p) => p.close())).then(() => undefined);
    return this.closing;
  }
}

let defaultRegistry: HttpPoolRegistry | undefined;

/** The process-wide registry's pool for `url` (the seed's `get_http_pool(url)`). */
export function getHttpPool(url: string, options?: HttpPoolOptions): HttpPool {
  defaultRegistry ??= new HttpPoolRegistry();
  return defaultRegistry.get(url, options);
}

/** A gathered body as UTF-8 text, without a leading byte order mark (as undici's `body.text()`). */
function bodyText(chunks: Buffer[], size: number): string {
  const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
  const bom = buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf;
  return buf.toString('utf8', bom ? 3 : 0);
}

/** Raw response headers (name, value, name, value, …) as an object of lower-case names, as undici's. */
function headersOf(raw: Buffer[]): Dispatcher.ResponseData['headers'] {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    const value = raw[i + 1]!.toString('latin1');
    const had = out[name];
    if (had === undefined) out[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else out[name] = [had, value];
  }
  return out;
}

/** Reads at most `limit` bytes of a body as UTF-8 and drops the rest. */
export async function readLimited(body: Dispatcher.ResponseData['body'], limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= limit) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).toString('utf8').slice(0, limit);
}

/** Reads a whole body as JSON; a body that is not JSON becomes a ProviderError of kind "protocol". */
export async function readJson(
  provider: string,
  endpoint: string,
  res: Dispatcher.ResponseData,
): Promise<unknown> {
  return parseJsonText(provider, endpoint, await res.body.text());
}

/** A whole body's text as JSON; text that is not JSON becomes a ProviderError of kind "protocol". */
export function parseJsonText(provider: string, endpoint: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ProviderError(
      provider,
      `${endpoint}: answer is not JSON: ${text.slice(0, 200)}`,
      undefined,
      false,
      {
        cause: err,
        kind: 'protocol',
      },
    );
  }
}
