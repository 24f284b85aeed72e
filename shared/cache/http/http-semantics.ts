/**
 * Small pure helpers of the HTTP response cache: express-style path patterns, cache keys, Cache-Control
 * parsing, ETag matching. No I/O here.
 */
import { createHash } from 'node:crypto';
import { type IncomingHttpHeaders } from 'node:http';

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
