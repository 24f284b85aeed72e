import { IncomingMessage, ServerResponse, type IncomingHttpHeaders } from 'node:http';
import { Socket } from 'node:net';
import { type Logger } from '../../logger.js';
import { captureResponse } from './capture.js';
import { type RequestCtx } from './response-cache-types.js';

/*
 * The background refresh of a stale entry: a synthetic GET of the same URL dispatched through the top
 * express app with a response that is captured, never sent (see response-cache.ts).
 */

/** Marks the synthetic refresh request; the middleware lets it through. */
export const REFRESH = Symbol('cell0.httpcache.refresh');
/** Marks a request one cache middleware already handled (mounted twice). */
export const SEEN = Symbol('cell0.httpcache.seen');

export interface Marked {
  [REFRESH]?: { preexisting?: Map<string, unknown> };
  [SEEN]?: true;
}

export interface ExpressAppLike {
  handle(req: IncomingMessage, res: ServerResponse, done: (err?: unknown) => void): void;
  parent?: ExpressAppLike;
}

/** Request headers the synthetic refresh request does not copy. */
const NOT_COPIED = new Set([
  'if-none-match',
  'if-modified-since',
  'if-match',
  'if-unmodified-since',
  'if-range',
  'range',
  'cache-control',
  'pragma',
  'content-length',
  'transfer-encoding',
  'expect',
  'connection',
  'upgrade',
]);

/** What a refresh needs from the cache that runs it. */
export interface RefreshHooks {
  /** A refresh not finished by then is abandoned, ms. */
  timeoutMs: number;
  maxBodySizeBytes: number;
  log: Logger;
  /** Counts a failed or abandoned refresh. */
  onError(): void;
  /** The refreshed answer (undefined body: too large to store); resolves once it is stored or dropped. */
  onAnswer(ctx: RequestCtx, body: Buffer | undefined): Promise<void>;
}

/** Re-runs the express chain for a synthetic GET of the same URL; hands its answer to `hooks.onAnswer`. */
export function dispatchRefresh(rc: RequestCtx, app: ExpressAppLike, hooks: RefreshHooks): Promise<void> {
  return new Promise<void>((resolve) => {
    const freq = syntheticRequest(rc.req, rc.url);
    const fres = new ServerResponse(freq);
    const mark: { preexisting?: Map<string, unknown> } = {};
    (freq as unknown as Marked)[REFRESH] = mark;
    let settled = false;
    const settle = (ended: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ended) fres.emit('finish');
      fres.emit('close');
      resolve();
    };
    const timer = setTimeout(() => {
      hooks.onError();
      hooks.log.warn({ url: rc.url }, 'http cache: background refresh timed out; abandoned');
      settle(false);
    }, hooks.timeoutMs);
    timer.unref();
    captureResponse(fres, hooks.maxBodySizeBytes, 'sink', {
      onOverflow: () => undefined,
      onEnd: (body, cb) => {
        if (settled) return;
        // Mark the response finished (nothing is sent: it has no socket).
        fres.end();
        if (cb) process.nextTick(cb);
        const ctx: RequestCtx = {
          ...rc,
          req: freq,
          res: fres,
          preexisting: mark.preexisting ?? new Map(),
        };
        void hooks.onAnswer(ctx, body).finally(() => settle(true));
      },
    });
    try {
      app.handle(freq, fres, (err?: unknown) => {
        if (err) {
          hooks.onError();
          hooks.log.warn({ err, url: rc.url }, 'http cache: background refresh failed');
        }
        settle(false);
      });
    } catch (err) {
      hooks.onError();
      hooks.log.warn({ err, url: rc.url }, 'http cache: background refresh failed');
      settle(false);
    }
  });
}

/** The top express app of `app` (up the `.parent` chain), or undefined without express. */
export function topApp(app: unknown): ExpressAppLike | undefined {
  let a = app as ExpressAppLike | undefined;
  if (!a || typeof a.handle !== 'function') return undefined;
  while (a.parent && typeof a.parent.handle === 'function') a = a.parent;
  return a;
}

/** A GET with the URL and headers of `src` (minus conditional/cache/body headers), no body, no socket. */
export function syntheticRequest(src: IncomingMessage, url: string): IncomingMessage {
  const socket = new Socket();
  // Middleware that looks at the client address sees the original one.
  Object.defineProperty(socket, 'remoteAddress', { value: src.socket?.remoteAddress });
  const req = new IncomingMessage(socket);
  req.method = 'GET';
  req.url = url;
  req.httpVersion = '1.1';
  req.httpVersionMajor = 1;
  req.httpVersionMinor = 1;
  const headers: IncomingHttpHeaders = {};
  const raw: string[] = [];
  for (const [name, value] of Object.entries(src.headers)) {
    if (value === undefined || NOT_COPIED.has(name)) continue;
    headers[name] = value;
    for (const v of Array.isArray(value) ? value : [value]) raw.push(name, v);
  }
  req.headers = headers;
  req.rawHeaders = raw;
  req.complete = true;
  req.push(null);
  return req;
}
