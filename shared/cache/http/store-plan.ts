import { type ServerResponse } from 'node:http';
import { parseCacheControl, parseVary, responseFreshness } from './http-semantics.js';
import { CacheStrategy, type RequestCtx, type StorePlan } from './response-cache-types.js';

/* Which answers the HTTP response cache stores, with which headers, for how long. */

/** Response headers never stored. */
const NOT_STORED = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'date',
  'etag',
  'age',
  'x-cache',
  'set-cookie',
]);

/**
 * What to store of `res`, the answer to `rc`, or undefined when it must not be stored (status, Set-Cookie,
 * Vary: *, private, no freshness): its status, the headers worth keeping, its Vary and its windows.
 */
export function storePlan(
  rc: RequestCtx,
  res: ServerResponse,
  config: { defaultTtlSeconds: number; staleWhileRevalidateSeconds: number },
): StorePlan | undefined {
  const { ep } = rc;
  const status = res.statusCode;
  if (status !== 200 && status !== 203) return undefined;
  if (res.hasHeader('Set-Cookie')) return undefined;
  const vary = parseVary(res.getHeader('Vary'));
  if (vary.includes('*')) return undefined;
  const cc = parseCacheControl(res.getHeader('Cache-Control'));
  if (cc.private && !ep.perUser) return undefined;
  let ttl = ep.ttlSeconds ?? config.defaultTtlSeconds;
  let swr = config.staleWhileRevalidateSeconds;
  if (ep.strategy === CacheStrategy.CACHE_CONTROL) {
    // Storable, and for how long: RFC 9111 through http-cache-semantics (see responseFreshness).
    ttl = responseFreshness(rc.req.headers, status, res.getHeaders(), {
      shared: !ep.perUser,
      defaultTtlSeconds: ttl,
    });
    if (cc.staleWhileRevalidate !== undefined) swr = cc.staleWhileRevalidate;
    if (cc.mustRevalidate) swr = 0;
  }
  if (!(ttl > 0)) return undefined;
  const headers: Array<[string, string | string[]]> = [];
  for (const name of res.getHeaderNames()) {
    if (NOT_STORED.has(name)) continue;
    const value = res.getHeader(name);
    if (value === undefined) continue;
    if (rc.preexisting.has(name) && sameValue(rc.preexisting.get(name), value)) continue;
    headers.push([name, typeof value === 'number' ? String(value) : value]);
  }
  return { status, headers, vary, freshMs: ttl * 1000, swrMs: swr * 1000 };
}

/** The headers set on `res` so far, with their values. */
export function snapshotHeaders(res: ServerResponse): Map<string, unknown> {
  const m = new Map<string, unknown>();
  for (const name of res.getHeaderNames()) m.set(name, res.getHeader(name));
  return m;
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => v === b[i]);
  return String(a) === String(b);
}
