/**
 * Buffers what a handler writes to a ServerResponse, so the cache can look at the whole response (status,
 * headers, body) before anything reaches the socket: it adds the ETag, answers 304, and stores the entry.
 *
 * The handler's writeHead / write / end / flushHeaders are intercepted; nothing is sent until end(), or until
 * the body passes `limitBytes`:
 * - `live` mode (a real client): the buffered part is flushed and the rest streams through untouched
 *   (`onOverflow` runs first, to add headers), so a large response is never held in memory in full;
 * - `sink` mode (the internal refresh request): the body is dropped and `onEnd` gets `undefined`.
 */
import { type OutgoingHttpHeaders, type ServerResponse } from 'node:http';

type Callback = (err?: Error | null) => void;
type Chunk = string | Buffer | Uint8Array;

/** The methods of a response this module replaces (loosely typed: node's overloads do not compose). */
interface Patchable {
  write: (...args: unknown[]) => boolean;
  end: (...args: unknown[]) => unknown;
  writeHead: (...args: unknown[]) => unknown;
  flushHeaders: (...args: unknown[]) => unknown;
}

export interface CaptureHooks {
  /** Live mode: the body passed the limit; called just before the buffered part is sent. */
  onOverflow(): void;
  /**
   * The handler ended the response. The original methods are back in place; in live mode the hook sends
   * the response itself (and must call `callback` through res.end). `body` is undefined after an overflow
   * in sink mode.
   */
  onEnd(body: Buffer | undefined, callback: Callback | undefined): void;
}

function toBuffer(chunk: Chunk, encoding: BufferEncoding | undefined): Buffer {
  if (typeof chunk === 'string') return Buffer.from(chunk, encoding ?? 'utf8');
  if (Buffer.isBuffer(chunk)) return chunk;
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** Splits the optional (encoding, callback) arguments of write/end. */
function splitArgs(
  a: unknown,
  b: unknown,
): { encoding: BufferEncoding | undefined; cb: Callback | undefined } {
  if (typeof a === 'function') return { encoding: undefined, cb: a as Callback };
  return {
    encoding: typeof a === 'string' ? (a as BufferEncoding) : undefined,
    cb: typeof b === 'function' ? (b as Callback) : undefined,
  };
}

/** Applies writeHead(status, [message], [headers]) to the response without sending anything. */
function applyWriteHead(res: ServerResponse, status: unknown, a: unknown, b: unknown): void {
  if (typeof status === 'number') res.statusCode = status;
  let headers = b;
  if (typeof a === 'string') res.statusMessage = a;
  else if (a !== undefined) headers = a;
  if (headers == null) return;
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      for (const [k, v] of headers as Array<[string, string]>) res.appendHeader(k, v);
    } else {
      for (let i = 0; i + 1 < headers.length; i += 2)
        res.setHeader(String(headers[i]), headers[i + 1] as string | string[]);
    }
    return;
  }
  for (const [k, v] of Object.entries(headers as OutgoingHttpHeaders)) {
    if (v !== undefined) res.setHeader(k, v);
  }
}

/** Starts capturing `res`. */
export function captureResponse(
  res: ServerResponse,
  limitBytes: number,
  mode: 'live' | 'sink',
  hooks: CaptureHooks,
): void {
  const r = res as unknown as Patchable;
  const orig = { write: r.write, end: r.end, writeHead: r.writeHead, flushHeaders: r.flushHeaders };
  const chunks: Buffer[] = [];
  let size = 0;
  let state: 'buffering' | 'overflow' | 'done' = 'buffering';

  const restore = (): void => {
    r.write = orig.write;
    r.end = orig.end;
    r.writeHead = orig.writeHead;
    r.flushHeaders = orig.flushHeaders;
  };

  /** Past the limit. Live: send what is buffered and stream on. Sink: drop it and swallow the rest. */
  const overflow = (): void => {
    state = 'overflow';
    if (mode === 'live') {
      restore();
      hooks.onOverflow();
      for (const c of chunks) orig.write.call(res, c);
    }
    chunks.length = 0;
    size = 0;
  };

  r.writeHead = function writeHead(status: unknown, a?: unknown, b?: unknown) {
    if (state === 'done') return orig.writeHead.call(res, status, a, b);
    applyWriteHead(res, status, a, b);
    return res;
  };
  r.flushHeaders = function flushHeaders() {
    // Headers go out with the body.
  };
  r.write = function write(chunk: unknown, a?: unknown, b?: unknown): boolean {
    const { encoding, cb } = splitArgs(a, b);
    if (state === 'buffering') {
      const buf = toBuffer(chunk as Chunk, encoding);
      if (size + buf.length <= limitBytes) {
        chunks.push(buf);
        size += buf.length;
        if (cb) process.nextTick(cb);
        return true;
      }
      overflow();
      if (mode === 'live') return orig.write.call(res, chunk, a, b);
    }
    // Sink after an overflow: swallow.
    if (cb) process.nextTick(cb);
    return true;
  };
  r.end = function end(chunk?: unknown, a?: unknown, b?: unknown) {
    if (typeof chunk === 'function') {
      b = chunk;
      chunk = undefined;
      a = undefined;
    }
    const { encoding, cb } = splitArgs(a, b);
    if (state === 'buffering' && chunk != null) {
      const buf = toBuffer(chunk as Chunk, encoding);
      if (size + buf.length <= limitBytes) {
        chunks.push(buf);
        size += buf.length;
      } else {
        overflow();
        if (mode === 'live') return orig.end.call(res, chunk, a, b);
      }
    }
    if (state === 'done') return res;
    const overflowed = state === 'overflow';
    state = 'done';
    restore();
    const body = overflowed ? undefined : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    hooks.onEnd(body, cb);
    return res;
  };
}
