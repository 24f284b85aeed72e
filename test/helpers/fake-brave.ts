import { type ServerResponse } from 'node:http';
import { startFaultServer, type FakeFault, type RecordedRequest } from './fake-fault-server';

export type { FakeFault, RecordedRequest } from './fake-fault-server';

/** Options of {@link startFakeBrave}. */
export interface FakeBraveOptions {
  /** The subscription token it accepts. Default 'test-key'. */
  apiKey?: string;
  /** Results a query has in all, per vertical. Default 120. */
  total?: number;
  /** How many results of the previous page each web page (after the first) repeats at its start. Default 0. */
  overlap?: number;
}

/** A running fake Brave Search API. */
export interface FakeBrave {
  /** Base URL, e.g. http://127.0.0.1:PORT */
  url: string;
  requests: RecordedRequest[];
  /** The full result list of a query on a vertical ('web', 'news', 'images', 'videos'), in Brave's order. */
  resultsFor(query: string, vertical: string): Array<Record<string, unknown>>;
  /** Answers the next `times` requests (default: all) with `fault` instead; undefined clears it. */
  setFault(fault: FakeFault | undefined, times?: number): void;
  close(): Promise<void>;
}

/** The limits of each endpoint, as Brave documents them. */
const VERTICALS: Record<string, { maxCount: number; paged: boolean; safesearch: string[] }> = {
  web: { maxCount: 20, paged: true, safesearch: ['off', 'moderate', 'strict'] },
  news: { maxCount: 50, paged: true, safesearch: ['off', 'moderate', 'strict'] },
  videos: { maxCount: 50, paged: true, safesearch: ['off', 'moderate', 'strict'] },
  images: { maxCount: 200, paged: false, safesearch: ['off', 'strict'] },
};

const LANGS = new Set(
  (
    'ar eu bn bg ca zh-hans zh-hant hr cs da nl en en-gb et fi fr gl de el gu he hi hu is it jp kn ko lv lt ' +
    'ms ml mr nb pl pt-br pt-pt pa ro ru sr sk sl es sv ta te th tr uk vi'
  ).split(' '),
);
const COUNTRIES = new Set(
  'ALL AR AU AT BE BR CA CL DK FI FR DE GR HK IN ID IT JP KR MY MX NL NZ NO CN PL PT PH RU SA ZA ES SE CH TW TR GB US'.split(
    ' ',
  ),
);

const SITES = [
  { host: 'en.wikipedia.org', name: 'Wikipedia' },
  { host: 'developer.mozilla.org', name: 'MDN Web Docs' },
  { host: 'www.bbc.co.uk', name: 'BBC' },
  { host: 'github.com', name: 'GitHub' },
  { host: 'www.youtube.com', name: 'YouTube' },
];

const slug = (q: string) =>
  q
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '') || 'q';

/** Brave's display strings are HTML: text in them is escaped. */
const escapeHtml = (t: string) =>
  t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&#x27;');

/** The deterministic result list of a query on a vertical, with Brave's field shapes. */
export function braveResultsFor(
  query: string,
  vertical: string,
  total: number,
): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (let i = 0; i < total; i++) {
    const n = i + 1;
    const site = SITES[i % SITES.length]!;
    const path = `/${vertical}/${slug(query)}/${n}`;
    const url = `https://${site.host}${path}`;
    const metaUrl = {
      scheme: 'https',
      netloc: site.host,
      hostname: site.host,
      favicon: `https://imgs.search.brave.com/favicon/${site.host}`,
      path: `› ${vertical} › ${n}`,
    };
    const day = String((i % 28) + 1).padStart(2, '0');
    // Brave's page_age is an ISO date-time without a zone; `age` is for people.
    const dated = i % 3 !== 2 ? { age: `March ${day}, 2024`, page_age: `2024-03-${day}T08:15:00` } : {};
    const text = escapeHtml(query);
    const description = `Everything about <strong>${text}</strong> &amp; more &#8211; item ${n}.`;
    if (vertical === 'web')
      out.push({
        type: 'search_result',
        subtype: 'generic',
        title: `${text} – page ${n} | ${site.name}`,
        url,
        is_source_local: false,
        is_source_both: false,
        description,
        profile: { name: site.name, url: `https://${site.host}`, long_name: site.host, img: metaUrl.favicon },
        language: 'en',
        family_friendly: true,
        meta_url: metaUrl,
        ...dated,
      });
    else if (vertical === 'news')
      out.push({
        type: 'news_result',
        title: `${text} in the news (${n})`,
        url,
        description,
        page_fetched: '2024-03-30T00:00:00Z',
        breaking: i === 0,
        thumbnail: { src: `https://imgs.search.brave.com/news/${n}.jpg` },
        meta_url: metaUrl,
        ...dated,
      });
    else if (vertical === 'videos')
      out.push({
        type: 'video_result',
        title: `${text} explained, part ${n}`,
        url: `https://www.youtube.com/watch?v=${slug(query)}${n}`,
        description,
        page_fetched: '2024-03-30T00:00:00Z',
        thumbnail: {
          src: `https://imgs.search.brave.com/video/${n}.jpg`,
          original: `https://i.ytimg.com/vi/${n}.jpg`,
        },
        video: { duration: '12:34', views: 1000 * n, creator: `Channel ${n % 4}`, publisher: 'YouTube' },
        meta_url: { ...metaUrl, hostname: 'www.youtube.com', netloc: 'youtube.com' },
        ...dated,
      });
    else
      out.push({
        type: 'image_result',
        title: `${text} picture ${n}`,
        url,
        source: site.host,
        page_fetched: '2024-03-30T00:00:00Z',
        thumbnail: { src: `https://imgs.search.brave.com/thumb/${n}.jpg`, width: 200, height: 150 },
        properties: {
          url: `https://images.${site.host}/${slug(query)}-${n}.jpg`,
          placeholder: `https://imgs.search.brave.com/placeholder/${n}.jpg`,
          width: 1200,
          height: 900,
        },
        meta_url: metaUrl,
        confidence: 'high',
      });
  }
  return out;
}

function errorBody(status: number, code: string, detail: string, meta: Record<string, unknown> = {}): string {
  return JSON.stringify({
    type: 'ErrorResponse',
    error: { id: '6c5b0c39-7f54-4c1e-9c54-3f3f0f4b2a11', status, code, detail, meta },
    time: 1_711_800_000,
  });
}

/**
 * A fake Brave Search API on 127.0.0.1: GET `<any prefix>/res/v1/{web,news,images,videos}/search`. It
 * checks X-Subscription-Token (missing → 401, wrong → 422 SUBSCRIPTION_TOKEN_INVALID) and the parameters as
 * Brave documents them (422 VALIDATION for q empty, count over the endpoint's maximum, offset outside 0..9
 * or sent to images, a safesearch the endpoint lacks, an unknown search_lang or country). Paged endpoints
 * treat `offset` as a page index in units of `count`; images returns the first `count` results. Every
 * answer carries X-RateLimit-* headers.
 */
export async function startFakeBrave(opts: FakeBraveOptions = {}): Promise<FakeBrave> {
  const apiKey = opts.apiKey ?? 'test-key';
  const total = opts.total ?? 120;
  const overlap = opts.overlap ?? 0;
  const rateHeaders = {
    'x-ratelimit-limit': '20, 15000',
    'x-ratelimit-policy': '20;w=1, 15000;w=2592000',
    'x-ratelimit-remaining': '19, 14000',
    'x-ratelimit-reset': '1, 1419704',
  };

  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...rateHeaders, ...headers });
    res.end(body);
  };
  const invalid = (res: ServerResponse, detail: string, loc: string) =>
    send(
      res,
      422,
      errorBody(422, 'VALIDATION', 'Unable to validate request parameter(s)', {
        errors: [{ loc: ['query', loc], msg: detail }],
      }),
    );

  const answer = (
    res: ServerResponse,
    path: string,
    query: Record<string, string>,
    token: string | undefined,
  ) => {
    const m = /\/res\/v1\/(web|news|images|videos)\/search$/.exec(path);
    if (!m) return send(res, 404, errorBody(404, 'NOT_FOUND', 'Resource not found'));
    if (token === undefined)
      return send(res, 401, errorBody(401, 'UNAUTHORIZED', 'The request requires a subscription token.'));
    if (token !== apiKey)
      return send(
        res,
        422,
        errorBody(422, 'SUBSCRIPTION_TOKEN_INVALID', 'The provided subscription token is invalid.'),
      );
    const name = m[1]!;
    const v = VERTICALS[name]!;
    const q = query.q ?? '';
    if (q.trim() === '') return invalid(res, 'field required', 'q');
    const count = query.count === undefined ? (name === 'images' ? 50 : 20) : Number(query.count);
    if (!Number.isInteger(count) || count < 1 || count > v.maxCount)
      return invalid(res, `ensure this value is between 1 and ${v.maxCount}`, 'count');
    if (!v.paged && query.offset !== undefined) return invalid(res, 'extra fields not permitted', 'offset');
    const offset = query.offset === undefined ? 0 : Number(query.offset);
    if (!Number.isInteger(offset) || offset < 0 || offset > 9)
      return invalid(res, 'ensure this value is between 0 and 9', 'offset');
    if (query.safesearch !== undefined && !v.safesearch.includes(query.safesearch))
      return invalid(
        res,
        `value is not a valid enumeration member; permitted: ${v.safesearch.join(', ')}`,
        'safesearch',
      );
    if (query.search_lang !== undefined && !LANGS.has(query.search_lang))
      return invalid(res, 'unknown language', 'search_lang');
    if (query.country !== undefined && !COUNTRIES.has(query.country))
      return invalid(res, 'unknown country', 'country');

    const all = braveResultsFor(q, name, total);
    const from = offset * count;
    const results =
      from >= all.length ? [] : all.slice(Math.max(0, from - (offset > 0 ? overlap : 0)), from + count);
    const queryInfo = { original: q, show_strict_warning: false, spellcheck_off: true };
    let body: Record<string, unknown>;
    if (name === 'web')
      body = {
        type: 'search',
        query: { ...queryInfo, is_navigational: false, more_results_available: from + count < all.length },
        mixed: { type: 'mixed', main: results.map((_, index) => ({ type: 'web', index, all: false })) },
        ...(results.length > 0 ? { web: { type: 'search', family_friendly: true, results } } : {}),
      };
    else
      body = {
        type: name,
        query: queryInfo,
        results,
        ...(name === 'news' ? {} : { extra: { might_be_offensive: false } }),
      };
    send(res, 200, JSON.stringify(body));
  };

  const server = await startFaultServer({
    answer: (req, res, path, query) => {
      const token = req.headers['x-subscription-token'];
      answer(res, path, query, typeof token === 'string' ? token : undefined);
    },
    status: (res, f) => {
      const code =
        f.status === 429 ? 'RATE_LIMITED' : f.status >= 500 ? 'INTERNAL_ERROR' : 'REQUEST_REJECTED';
      const detail =
        f.status === 429
          ? 'Request rate limit exceeded for plan.'
          : f.status >= 500
            ? 'Internal server error.'
            : `Request rejected with status ${f.status}.`;
      const limitHeaders: Record<string, string> =
        f.status === 429 ? { 'x-ratelimit-remaining': '0, 14000', 'x-ratelimit-reset': '1, 1419704' } : {};
      return send(res, f.status, f.body ?? errorBody(f.status, code, detail), {
        ...limitHeaders,
        ...f.headers,
      });
    },
    notJson: (res) =>
      send(res, 200, '<html><body>Service maintenance</body></html>', { 'content-type': 'text/html' }),
  });
  return { ...server, resultsFor: (query, vertical) => braveResultsFor(query, vertical, total) };
}
