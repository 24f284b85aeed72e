/**
 * Small pure helpers of the HTTP response cache: express-style path patterns, cache keys, Cache-Control
 * parsing, ETag matching, and the freshness of a response (RFC 9111, through http-cache-semantics). No I/O
 * here.
 *
 * What http-cache-semantics does and what stays here: the library decides whether a response may be stored
 * and for how long (`storable()`, `maxAge()`: s-maxage for a shared cache, max-age, Expires against Date,
 * no-cache, Vary: *, Set-Cookie, private in a shared cache, authenticated responses). It is written for a
 * cache in front of an origin, so it has nothing for what a cache inside the origin's own express app also
 * needs, which stays ours: path patterns and keys, strong ETags and If-None-Match (304), the Vary names that
 * partition keys, and the request's own directives (the library evaluates a request only against a stored
 * policy object, and its evaluateRequest() treats must-revalidate as "always revalidate", which RFC 9111
 * §5.2.2.2 limits to stale responses). Where we hand it headers we adjust two things, see
 * {@link responseFreshness}.
 */
import { createHash } from 'node:crypto';
import { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import CachePolicy from 'http-cache-semantics';

/**
 * Compiles an express-5-style path pattern to a RegExp over the whole URL path: `:name` matches one
 * segment, `*name` (or a bare `*`) matches the rest, `{...}` is optional, `\` escapes the next character.
 * Like express's defaults the match ignores case and a trailing slash.
 */
export function compilePathPattern(pattern: string): RegExp {
  if (!pattern.startsWith('/')) throw new TypeError(`path pattern must start with "/", got "${pattern}"`);
  let re = '^';
  let depth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '\\' && i + 1 < pattern.length) {
      re += escapeRegExp(pattern[++i]!);
    } else if (ch === '{') {
      re += '(?:';
      depth++;
    } else if (ch === '}') {
      if (depth === 0) throw new TypeError(`unbalanced "}" in path pattern "${pattern}"`);
      re += ')?';
      depth--;
    } else if (ch === ':' || ch === '*') {
      let j = i + 1;
      while (j < pattern.length && /[\w$]/.test(pattern[j]!)) j++;
      if (ch === ':' && j === i + 1) throw new TypeError(`parameter without a name in "${pattern}"`);
      re += ch === ':' ? '[^/]+' : '.*';
      i = j - 1;
    } else {
      re += escapeRegExp(ch);
    }
  }
  if (depth !== 0) throw new TypeError(`unbalanced "{" in path pattern "${pattern}"`);
  if (!re.endsWith('/')) re += '/?';
  return new RegExp(re + '$', 'i');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Escapes the glob characters of a SCAN MATCH pattern. */
export function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/** The query string with its parameters in a stable order (sorted by name; equal names keep their order). */
export function normaliseQuery(query: string): string {
  if (query === '') return '';
  const parts = query.split('&').filter((p) => p !== '');
  if (parts.length < 2) return parts.join('&');
  const keyed = parts.map((p, i) => {
    const eq = p.indexOf('=');
    return { name: eq < 0 ? p : p.slice(0, eq), p, i };
  });
  keyed.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.i - b.i));
  return keyed.map((k) => k.p).join('&');
}

/** Short stable hash (base64url of sha256, 22 chars = 132 bits). */
export function shortHash(s: string): string {
  return createHash('sha256').update(s).digest('base64url').slice(0, 22);
}

/** A strong ETag of a body. */
export function strongEtag(body: Buffer): string {
  return `"${createHash('sha256').update(body).digest('base64url')}"`;
}

/** One request header as a single string ('' when absent). */
export function headerValue(headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name];
  if (v === undefined) return '';
  return Array.isArray(v) ? v.join(', ') : String(v);
}

/** The hash of the values of `names` in `headers`, for the key ('' when names is empty). */
export function headersHash(headers: IncomingHttpHeaders, names: readonly string[]): string {
  if (names.length === 0) return '';
  return shortHash(names.map((n) => `${n}:${headerValue(headers, n)}`).join('\n'));
}

/** Parsed Cache-Control directives (names lowercased; `value` undefined for a bare directive). */
export interface CacheControl {
  noStore: boolean;
  noCache: boolean;
  private: boolean;
  public: boolean;
  mustRevalidate: boolean;
  maxAge?: number;
  sMaxAge?: number;
  staleWhileRevalidate?: number;
}

/** Parses a Cache-Control header (request or response); unknown directives are ignored. */
export function parseCacheControl(raw: string | string[] | number | undefined): CacheControl {
  const cc: CacheControl = {
    noStore: false,
    noCache: false,
    private: false,
    public: false,
    mustRevalidate: false,
  };
  if (raw === undefined) return cc;
  const text = Array.isArray(raw) ? raw.join(',') : String(raw);
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const value =
      eq < 0
        ? undefined
        : part
            .slice(eq + 1)
            .trim()
            .replace(/^"(.*)"$/, '$1');
    const seconds = value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
    switch (name) {
      case 'no-store':
        cc.noStore = true;
        break;
      case 'no-cache':
        // `no-cache="Set-Cookie"` (with field names) only restricts those fields; treat it as no-cache anyway.
        cc.noCache = true;
        break;
      case 'private':
        cc.private = true;
        break;
      case 'public':
        cc.public = true;
        break;
      case 'must-revalidate':
      case 'proxy-revalidate':
        cc.mustRevalidate = true;
        break;
      case 'max-age':
        if (seconds !== undefined) cc.maxAge = seconds;
        break;
      case 's-maxage':
        if (seconds !== undefined) cc.sMaxAge = seconds;
        break;
      case 'stale-while-revalidate':
        if (seconds !== undefined) cc.staleWhileRevalidate = seconds;
        break;
    }
  }
  return cc;
}

/** The header names a response's Vary lists, lowercased, sorted, deduplicated ('*' kept as is). */
export function parseVary(raw: string | string[] | number | undefined): string[] {
  if (raw === undefined) return [];
  const text = Array.isArray(raw) ? raw.join(',') : String(raw);
  const names = new Set<string>();
  for (const part of text.split(',')) {
    const n = part.trim().toLowerCase();
    if (n) names.add(n);
  }
  return [...names].sort();
}

/** Whether an If-None-Match header matches `etag` (weak comparison, as RFC 9110 prescribes for it). */
export function ifNoneMatchMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  const bare = etag.startsWith('W/') ? etag.slice(2) : etag;
  for (const part of header.split(',')) {
    let t = part.trim();
    if (t.startsWith('W/')) t = t.slice(2);
    if (t === bare) return true;
  }
  return false;
}

/**
 * How long a response to a GET may be served fresh from this cache, seconds (0 = do not store), by RFC 9111
 * as http-cache-semantics reads it. `shared` is false for an endpoint cached per user (a private cache:
 * `private` responses are storable there and s-maxage does not apply). A response with no freshness of its
 * own (no max-age, s-maxage for a shared cache, or Expires) gets `defaultTtlSeconds`, the endpoint's TTL:
 * our configured heuristic, in place of the library's 10 % of the Last-Modified age.
 *
 * Two adjustments before the library sees the headers, where it differs from the RFC:
 * - directive names are lowercased: the library matches them case-sensitively, RFC 9111 §5.2 says they are
 *   case-insensitive (`Cache-Control: No-Store` must not be stored);
 * - `proxy-revalidate` is passed as `must-revalidate`, its meaning for a shared cache (RFC 9111 §5.2.2.8):
 *   the library refuses to store such a response at all, while the RFC only forbids serving it stale (the
 *   caller drops the stale window for both).
 */
export function responseFreshness(
  reqHeaders: IncomingHttpHeaders,
  status: number,
  resHeaders: OutgoingHttpHeaders,
  opts: { shared: boolean; defaultTtlSeconds: number },
): number {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(resHeaders)) {
    if (value === undefined) continue;
    headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  const directives = (headers['cache-control'] ?? '')
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '')
    .map((d) => {
      const eq = d.indexOf('=');
      const name = (eq < 0 ? d : d.slice(0, eq)).trim().toLowerCase();
      return (name === 'proxy-revalidate' ? 'must-revalidate' : name) + (eq < 0 ? '' : d.slice(eq));
    });
  const has = (name: string) => directives.some((d) => d === name || d.startsWith(`${name}=`));
  const explicit = has('max-age') || (opts.shared && has('s-maxage')) || headers.expires !== undefined;
  if (!explicit) directives.push(`max-age=${Math.max(0, Math.floor(opts.defaultTtlSeconds))}`);
  headers['cache-control'] = directives.join(', ');
  const req: Record<string, string> = {};
  for (const [name, value] of Object.entries(reqHeaders))
    if (value !== undefined) req[name] = Array.isArray(value) ? value.join(', ') : value;
  const policy = new CachePolicy(
    { method: 'GET', headers: req },
    { status, headers },
    { shared: opts.shared, cacheHeuristic: 0, immutableMinTimeToLive: 0 },
  );
  return policy.storable() ? Math.max(0, Math.floor(policy.maxAge())) : 0;
}
