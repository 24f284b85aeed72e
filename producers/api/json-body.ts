import { type IncomingMessage } from 'node:http';
import express, { type RequestHandler } from 'express';

/**
 * A JSON body reader that answers exactly as `express.json({ limit, strict: true, type: () => true })`,
 * with a lean path for the usual request: a declared length within the limit, no content encoding, no
 * transfer encoding, UTF-8 (the default charset, or named). That path collects the body's chunks and parses
 * them itself, without body-parser's per-request machinery (content-type and charset parsing, the iconv
 * decoder, raw-body's stream handling, on-finished). Every other request
 * (compressed, chunked, another charset, too large, empty, already read) goes to express.json, so its
 * answers, refusals included, are body-parser's own. On the lean path the errors are body-parser's too:
 * malformed JSON (400 `entity.parse.failed`, the same message), a body shorter or longer than declared
 * (400 `request.size.invalid`), an aborted request (400 `request.aborted`).
 *
 * A body that has already arrived whole (`req.complete`, its bytes still unread) takes the lean path too:
 * the API hands a request to its route a turn or more after it came (see request-turns.ts), so by then a
 * small body usually has. Only a request that body-parser counts as finished (on-finished's `isFinished`:
 * an upgrade, no readable socket, or complete and fully read) goes to express.json, which answers it
 * without reading.
 *
 * `fallback` is the reader for every other request (default: that express.json).
 */
export function jsonBody(limit: number, fallback?: RequestHandler): RequestHandler {
  const full = fallback ?? express.json({ limit, strict: true, type: () => true });
  return (req, res, next) => {
    const n = leanBodyLength(req, limit);
    if (n === undefined) return full(req, res, next);
    readJson(req, n, next);
  };
}

/**
 * The declared length of a body the lean path reads (a declared length from 1 to `limit`, no content or
 * transfer encoding, UTF-8, not read or finished yet), else undefined: such a body goes to express.json.
 */
export function leanBodyLength(req: IncomingMessage, limit: number): number | undefined {
  const h = req.headers;
  const declared = h['content-length'];
  const n = declared === undefined ? NaN : leanLength(declared);
  if (
    !(n > 0 && n <= limit) ||
    h['content-encoding'] !== undefined ||
    h['transfer-encoding'] !== undefined ||
    !utf8(h['content-type']) ||
    req.readableEnded ||
    (req.complete && !req.readable) ||
    (req as { upgrade?: boolean }).upgrade === true ||
    !req.socket?.readable
  )
    return undefined;
  return n;
}

/** A Content-Length of plain digits (no sign, space or exponent), else NaN. */
function leanLength(v: string): number {
  if (v.length === 0 || v.length > 15) return NaN;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 48 || c > 57) return NaN;
  }
  return Number(v);
}

/** A content type whose body is UTF-8: no parameters, or exactly one, `charset=utf-8` (any case, unquoted). */
function utf8(type: string | undefined): boolean {
  if (type === undefined) return false;
  const semi = type.indexOf(';');
  if (semi < 0) return true;
  return /^;[ \t]*charset=utf-8[ \t]*$/i.test(type.slice(semi));
}

/**
 * Reads a body of `length` declared bytes that {@link leanBodyLength} let through, parses it as
 * express.json would into `req.body`, then calls `next` (with body-parser's error on failure).
 */
export function readJson(req: IncomingMessage, length: number, next: (err?: unknown) => void): void {
  const r = req as IncomingMessage & { body?: unknown };
  if (!('body' in r)) r.body = undefined;
  let first: Buffer | undefined;
  let chunks: Buffer[] | undefined;
  let received = 0;
  let done = false;
  // Stops listening; false when the read had already ended (answered or abandoned).
  const detach = (): boolean => {
    if (done) return false;
    done = true;
    req.removeListener('data', onData);
    req.removeListener('end', onEnd);
    req.removeListener('error', onError);
    req.removeListener('aborted', onAborted);
    req.removeListener('close', cleanup);
    return true;
  };
  const finish = (err?: unknown): void => {
    if (detach()) next(err);
  };
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    if (first === undefined) first = chunk;
    else (chunks ??= [first]).push(chunk);
  };
  const onEnd = (): void => {
    if (received !== length) {
      finish(
        readError(400, 'request size did not match content length', 'request.size.invalid', {
          expected: length,
          length,
          received,
        }),
      );
      return;
    }
    const body = chunks ? Buffer.concat(chunks, received) : first!;
    let text = body.toString('utf8');
    // The UTF-8 decoder body-parser uses drops a byte-order mark.
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    try {
      r.body = parseStrict(text);
    } catch (err) {
      const e = err as Error & { status?: number; statusCode?: number; expose?: boolean; type?: string };
      e.status = e.statusCode = 400;
      e.expose = true;
      e.type = 'entity.parse.failed';
      (e as { body?: string }).body = text;
      finish(e);
      return;
    }
    finish();
  };
  const onError = (err: unknown): void => {
    finish(readError(400, (err as Error)?.message ?? 'request error', 'request.error', {}));
  };
  const onAborted = (): void => {
    finish(
      readError(400, 'request aborted', 'request.aborted', {
        code: 'ECONNABORTED',
        expected: length,
        length,
        received,
      }),
    );
  };
  // Closed before its end (the caller went away): nothing more will come, and nobody waits for an answer.
  const cleanup = (): void => {
    detach();
  };
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onError);
  req.on('aborted', onAborted);
  req.on('close', cleanup);
}

function readError(status: number, message: string, type: string, extra: Record<string, unknown>): Error {
  return Object.assign(new Error(message), { status, statusCode: status, expose: true, type, ...extra });
}

/** body-parser's strict JSON parse: an object or array at the top, its error messages. */
function parseStrict(body: string): unknown {
  if (body.length === 0) return {};
  if (body[0] !== '{' && body[0] !== '[') {
    // eslint-disable-next-line no-control-regex -- JSON whitespace: space, tab, line feed, carriage return
    const first = /^[\x20\x09\x0a\x0d]*([^\x20\x09\x0a\x0d]|$)/.exec(body)?.[1] || undefined;
    if (first !== '{' && first !== '[') throw strictSyntaxError(body, first);
  }
  return JSON.parse(body);
}

/** The error body-parser makes for a body that is not an object or array: JSON.parse's, at that character. */
function strictSyntaxError(str: string, char: string | undefined): Error {
  const index = char === undefined ? -1 : str.indexOf(char);
  const partial = index !== -1 ? str.substring(0, index) + '#'.repeat(str.length - index) : '';
  try {
    JSON.parse(partial);
    return new SyntaxError('strict violation');
  } catch (e) {
    const err = e as SyntaxError;
    const message = err.message.replace(/#+/g, (p) => str.substring(index, index + p.length));
    err.stack = (err.stack ?? '').replace(err.message, message);
    err.message = message;
    return err;
  }
}
