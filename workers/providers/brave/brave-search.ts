import { ProviderError, type FieldIssue } from '../../../shared/errors.js';
import { type HttpEndpoint } from '../../../shared/http/endpoint.js';
import { httpStatusError } from '../../../shared/http/errors.js';
import { parseJsonText, type HttpPoolRegistry } from '../../../shared/http/pool.js';
import { SearchType } from '../../../shared/queues/enums.js';
import { type SearchJobData } from '../../../shared/queues/schemas.js';
import { type SearchHit, type SearchResult } from '../../../shared/queues/results.js';
import { type CallContext, type SearchBackend } from '../provider.js';
import { jsonApiIssues, setUpJsonApi } from '../json-api.js';
import { hostnameOf, htmlToText, isHttpUrl, toIsoDate } from '../search-text.js';

const PROVIDER = 'brave';

/** Brave's SafeSearch levels. The image endpoint knows only off and strict: moderate is sent as strict. */
export type BraveSafeSearch = 'off' | 'moderate' | 'strict';

/** Options of {@link BraveSearch}. */
export interface BraveSearchOptions {
  /** The Brave Search API subscription token (sent as X-Subscription-Token). Required. */
  apiKey: string;
  /** Default `https://api.search.brave.com`; a path prefix (a proxy's mount point) is kept. */
  baseUrl?: string;
  /** Deadline of each HTTP call (one result page), ms. Default 15000. */
  timeoutMs?: number;
  /**
   * The worker's pool registry, so every client of one origin shares its connections. Default: a registry
   * of this provider's own, closed by close().
   */
  pools?: HttpPoolRegistry;
  /**
   * Extra headers sent with every request (e.g. Api-Version, Cache-Control: no-cache). They cannot replace
   * Accept or X-Subscription-Token. Do not set Accept-Encoding: bodies are read as they come.
   */
  headers?: Record<string, string>;
  /** SafeSearch level. Default moderate (strict on the image endpoint, which has no moderate). */
  safesearch?: BraveSafeSearch;
  /**
   * Goggles (a hosted Goggle's URL, or inline rules such as `$boost=3,site=arxiv.org`) sent as `goggles`
   * with academic searches, to re-rank Brave's web index towards scholarly sources. Default none: an
   * academic search is then a plain web search, since Brave has no academic vertical.
   */
  academicGoggles?: string;
}

const DEFAULTS = {
  baseUrl: 'https://api.search.brave.com',
  timeoutMs: 15_000,
  headers: {} as Record<string, string>,
  safesearch: 'moderate' as BraveSafeSearch,
};

type ResolvedOptions = Required<Omit<BraveSearchOptions, 'pools' | 'academicGoggles'>> &
  Pick<BraveSearchOptions, 'pools' | 'academicGoggles'>;

/** Highest `offset` (page index) Brave accepts on the paged endpoints. */
export const BRAVE_MAX_PAGE_INDEX = 9;

/** How one search type maps onto Brave's API. */
interface Vertical {
  /** Endpoint under the base URL. */
  path: string;
  /** Largest `count` the endpoint accepts. */
  maxCount: number;
  /** Whether the endpoint takes `offset` (a page index in units of `count`); images does not. */
  paged: boolean;
  /** The result objects of an answer. */
  results(body: Record<string, unknown>): unknown[];
  /** Brave's own word on whether more results exist (web only), when it says. */
  moreAvailable(body: Record<string, unknown>): boolean | undefined;
  /** A result object as a hit without rank and score, or undefined when it has no usable URL. */
  toCandidate(r: BraveRawResult): Candidate | undefined;
}

/** A result object of any Brave vertical (the fields this provider reads). */
interface BraveRawResult {
  title?: unknown;
  url?: unknown;
  description?: unknown;
  page_age?: unknown;
  source?: unknown;
  profile?: { name?: unknown };
  meta_url?: { hostname?: unknown };
  properties?: { url?: unknown };
  video?: { publisher?: unknown; creator?: unknown };
}

type Candidate = Omit<SearchHit, 'rank' | 'score'>;

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.trim() !== '' ? v : undefined;
}

/** A page-like result (web, news, videos): title, URL, description, page_age. */
function pageCandidate(r: BraveRawResult, source: string | undefined): Candidate | undefined {
  if (!isHttpUrl(r.url)) return undefined;
  const publishedAt = toIsoDate(r.page_age);
  return {
    title: htmlToText(str(r.title) ?? '') || r.url,
    url: r.url,
    snippet: htmlToText(str(r.description) ?? ''),
    source: source ?? str(r.meta_url?.hostname) ?? hostnameOf(r.url),
    ...(publishedAt !== undefined ? { publishedAt } : {}),
  };
}

const listOf = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

const WEB: Vertical = {
  path: '/res/v1/web/search',
  maxCount: 20,
  paged: true,
  results: (b) => listOf((b.web as { results?: unknown } | undefined)?.results),
  moreAvailable: (b) => {
    const more = (b.query as { more_results_available?: unknown } | undefined)?.more_results_available;
    return typeof more === 'boolean' ? more : undefined;
  },
  toCandidate: (r) => pageCandidate(r, str(r.profile?.name)),
};

const VERTICALS: Readonly<Record<SearchType, Vertical>> = {
  [SearchType.WEB]: WEB,
  // Brave has no academic vertical: academic is a web search (re-ranked by `academicGoggles` when set).
  [SearchType.ACADEMIC]: WEB,
  [SearchType.NEWS]: {
    path: '/res/v1/news/search',
    maxCount: 50,
    paged: true,
    results: (b) => listOf(b.results),
    moreAvailable: () => undefined,
    toCandidate: (r) => pageCandidate(r, str(r.profile?.name)),
  },
  [SearchType.VIDEOS]: {
    path: '/res/v1/videos/search',
    maxCount: 50,
    paged: true,
    results: (b) => listOf(b.results),
    moreAvailable: () => undefined,
    toCandidate: (r) => pageCandidate(r, str(r.video?.publisher) ?? str(r.video?.creator)),
  },
  [SearchType.IMAGES]: {
    path: '/res/v1/images/search',
    maxCount: 200,
    paged: false,
    results: (b) => listOf(b.results),
    moreAvailable: () => undefined,
    toCandidate: (r) => {
      // An image search is asking for images: the hit points at the image, the snippet names its page.
      const pageUrl = isHttpUrl(r.url) ? r.url : undefined;
      const url = isHttpUrl(r.properties?.url) ? r.properties.url : pageUrl;
      if (url === undefined) return undefined;
      return {
        title: htmlToText(str(r.title) ?? '') || url,
        url,
        snippet: pageUrl !== undefined && pageUrl !== url ? `From ${pageUrl}` : '',
        source: str(r.source) ?? str(r.meta_url?.hostname) ?? hostnameOf(pageUrl ?? url),
      };
    },
  },
};

/** The Brave endpoint (path under the base URL) a search type is sent to. */
export function braveEndpoint(type: SearchType): string {
  return VERTICALS[type].path;
}

/** Which result pages of size `count` to fetch: page indexes `firstPage`..`lastPage` (Brave's `offset`). */
export interface BravePagePlan {
  count: number;
  firstPage: number;
  lastPage: number;
}

/**
 * The cheapest way to cover results `offset`..`offset + limit - 1` (0-based) with Brave's paging, where
 * `offset` is a page index in units of `count` (0..maxPageIndex) and `count` is at most `maxCount`: the
 * page size that reaches the most of the window, then with the fewest requests, then with the fewest
 * results transferred. E.g. offset 15, limit 10 on web (max 20) → count 13, page 1 (results 13..25): one
 * request. Undefined when the window starts past the last reachable result (maxCount × (maxPageIndex + 1)).
 */
export function planBravePages(
  offset: number,
  limit: number,
  maxCount: number,
  maxPageIndex = BRAVE_MAX_PAGE_INDEX,
): BravePagePlan | undefined {
  let best: (BravePagePlan & { covered: number; pages: number; fetched: number }) | undefined;
  for (let count = 1; count <= maxCount; count++) {
    const firstPage = Math.floor(offset / count);
    if (firstPage > maxPageIndex) continue;
    const end = Math.min(offset + limit, (maxPageIndex + 1) * count);
    const lastPage = Math.floor((end - 1) / count);
    const covered = end - offset;
    const pages = lastPage - firstPage + 1;
    const fetched = pages * count;
    if (
      best === undefined ||
      covered > best.covered ||
      (covered === best.covered && (pages < best.pages || (pages === best.pages && fetched < best.fetched)))
    )
      best = { count, firstPage, lastPage, covered, pages, fetched };
  }
  return best && { count: best.count, firstPage: best.firstPage, lastPage: best.lastPage };
}

/** Languages Brave's `search_lang` accepts (its Language Codes table). */
const BRAVE_LANGS = new Set(
  (
    'ar eu bn bg ca zh-hans zh-hant hr cs da nl en en-gb et fi fr gl de el gu he hi hu is it jp kn ko lv lt ' +
    'ms ml mr nb pl pt-br pt-pt pa ro ru sr sk sl es sv ta te th tr uk vi'
  ).split(' '),
);

/** Countries Brave's `country` accepts (its Country Codes table). */
const BRAVE_COUNTRIES = new Set(
  'AR AU AT BE BR CA CL DK FI FR DE GR HK IN ID IT JP KR MY MX NL NZ NO CN PL PT PH RU SA ZA ES SE CH TW TR GB US'.split(
    ' ',
  ),
);

/**
 * Brave's `search_lang` and `country` for a job's language tag (`en`, `en-US`). Brave's codes differ from
 * BCP 47 in places: ja → jp, zh → zh-hans (zh-TW, zh-HK → zh-hant), pt → pt-pt (pt-BR → pt-br),
 * en-GB → en-gb, no/nn → nb. A language or region Brave does not list is left out (Brave would refuse
 * the whole request with 422), so Brave's defaults apply to it.
 */
export function braveLocale(language: string | undefined): { search_lang?: string; country?: string } {
  if (language === undefined) return {};
  const [lang = '', region] = language.split('-');
  let code: string;
  if (lang === 'ja') code = 'jp';
  else if (lang === 'zh')
    code = region === 'TW' || region === 'HK' || region === 'MO' ? 'zh-hant' : 'zh-hans';
  else if (lang === 'pt') code = region === 'BR' ? 'pt-br' : 'pt-pt';
  else if (lang === 'en' && region === 'GB') code = 'en-gb';
  else if (lang === 'no' || lang === 'nn') code = 'nb';
  else code = lang;
  return {
    ...(BRAVE_LANGS.has(code) ? { search_lang: code } : {}),
    ...(region !== undefined && BRAVE_COUNTRIES.has(region) ? { country: region } : {}),
  };
}

function headerText(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

/**
 * Seconds until Brave's rate limit lets a call through, from its X-RateLimit-Reset header (seconds until
 * each window resets, one per window: `1, 1419704` = per second and per month) and X-RateLimit-Remaining
 * (what is left in each). The longest reset among exhausted windows; when none is shown exhausted, the
 * shortest reset. Undefined when the header is absent or unreadable.
 */
export function braveRateLimitResetSeconds(
  reset: string | string[] | undefined,
  remaining: string | string[] | undefined,
): number | undefined {
  const parse = (v: string | string[] | undefined): number[] =>
    (headerText(v) ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .map(Number);
  const resets = parse(reset);
  if (resets.length === 0 || resets.some((n) => !Number.isFinite(n) || n < 0)) return undefined;
  const left = parse(remaining);
  const exhausted = left.length === resets.length ? resets.filter((_, i) => left[i] === 0) : [];
  return exhausted.length > 0 ? Math.max(...exhausted) : Math.min(...resets);
}

/** `detail` (and `code`) of a Brave ErrorResponse body, else the body as text. */
function errorDetail(bodyText: string): string {
  try {
    const parsed = JSON.parse(bodyText) as { error?: { detail?: unknown; code?: unknown } } | null;
    const detail = str(parsed?.error?.detail);
    const code = str(parsed?.error?.code);
    if (detail !== undefined || code !== undefined)
      return [detail, code !== undefined ? `[${code}]` : undefined].filter(Boolean).join(' ');
  } catch {
    // not JSON: a proxy's page
  }
  return htmlToText(bodyText).slice(0, 200);
}

/**
 * Maps an error answer of the Brave API to a ProviderError whose message carries Brave's `detail` and
 * `code`. 401, 403 and 422 (bad or missing subscription token, plan without this endpoint, invalid
 * parameter) are not retryable; 429 and 5xx are, with retryAfterMs from Retry-After or, when Brave sends
 * none, from X-RateLimit-Reset (see {@link braveRateLimitResetSeconds}).
 */
export function braveHttpError(
  endpoint: string,
  status: number,
  headers: Record<string, string | string[] | undefined>,
  bodyText: string,
): ProviderError {
  let retryAfter = headers['retry-after'];
  if (retryAfter === undefined && status === 429) {
    const seconds = braveRateLimitResetSeconds(
      headers['x-ratelimit-reset'],
      headers['x-ratelimit-remaining'],
    );
    if (seconds !== undefined) retryAfter = String(seconds);
  }
  return httpStatusError(PROVIDER, endpoint, status, retryAfter, errorDetail(bodyText));
}

function validate(o: ResolvedOptions): FieldIssue[] {
  const issues: FieldIssue[] = [];
  if (typeof o.apiKey !== 'string' || o.apiKey.trim() === '')
    issues.push({ field: 'apiKey', reason: 'required: the Brave Search API subscription token' });
  issues.push(...jsonApiIssues(o));
  if (!['off', 'moderate', 'strict'].includes(o.safesearch))
    issues.push({
      field: 'safesearch',
      reason: `expected off, moderate or strict, got ${String(o.safesearch)}`,
    });
  if (o.academicGoggles !== undefined && (typeof o.academicGoggles !== 'string' || o.academicGoggles === ''))
    issues.push({ field: 'academicGoggles', reason: 'expected a non-empty string' });
  return issues;
}

/**
 * The Brave Search API provider. Endpoints: web `/res/v1/web/search`, news `/res/v1/news/search`, images
 * `/res/v1/images/search`, videos `/res/v1/videos/search`; academic goes to web search (Brave has no
 * academic vertical), with `academicGoggles` as `goggles` when configured. Sends `q`, `count`, `offset`,
 * `safesearch` and `search_lang`/`country` from the job's language (see {@link braveLocale}).
 *
 * Paging: Brave's `offset` is not an item offset but a page index in units of `count` (0..9), and `count`
 * is at most 20 (web) or 50 (news, videos); images takes no offset and up to 200 results. The job's item
 * window is mapped with {@link planBravePages} (often one request; pages fetched one after the other,
 * stopping at a short or empty page or when Brave says no more results are available), results are
 * de-duplicated by URL (Brave's pages may overlap) and the window is sliced out. Brave serves at most the
 * first 200 web, 500 news/videos and 200 image results: a window past that comes back short or empty
 * (without a call when it starts past it).
 *
 * Hits: title and snippet (`description`) as plain text (the <strong> marks removed); source =
 * `profile.name` (videos: publisher or creator; images: `source`) else `meta_url.hostname`; publishedAt =
 * `page_age` as ISO 8601 (UTC). For images the hit's URL is the image (`properties.url`). Brave gives no
 * relevance score: score = 1/rank, so it falls with rank like the other providers' scores. Brave gives no
 * result count either: total is the number of results known, a lower bound.
 *
 * Errors: see {@link braveHttpError}; a missing apiKey is a ConfigError at construction.
 */
export class BraveSearch implements SearchBackend {
  readonly name = PROVIDER;
  private readonly opts: ResolvedOptions;
  private readonly endpoint: HttpEndpoint;
  private readonly headers: Record<string, string>;

  constructor(opts: BraveSearchOptions) {
    ({
      opts: this.opts,
      endpoint: this.endpoint,
      headers: this.headers,
    } = setUpJsonApi<ResolvedOptions>('BraveSearch', DEFAULTS, opts, validate));
    this.headers['x-subscription-token'] = this.opts.apiKey;
  }

  /** The API's origin (scheme://host:port): breakers and rate limits are kept per origin. */
  get origin(): string {
    return this.endpoint.origin;
  }

  /** Runs one search job (one or more page requests); rejects with ProviderError, ClosedError or the abort reason. */
  async search(job: SearchJobData, ctx: CallContext): Promise<Omit<SearchResult, 'servedBy' | 'tookMs'>> {
    this.endpoint.assertOpen('BraveSearch');
    const vertical = VERTICALS[job.type];
    const plan: BravePagePlan | undefined = vertical.paged
      ? planBravePages(job.offset, job.limit, vertical.maxCount)
      : job.offset < vertical.maxCount
        ? { count: Math.min(vertical.maxCount, job.offset + job.limit), firstPage: 0, lastPage: 0 }
        : undefined;
    const result = { query: job.query, provider: this.name, type: job.type };
    if (plan === undefined) return { ...result, total: 0, hits: [] };

    const seen = new Set<string>();
    const list: Candidate[] = [];
    for (let page = plan.firstPage; page <= plan.lastPage; page++) {
      const body = await this.fetchPage(
        job,
        vertical,
        plan.count,
        vertical.paged ? page : undefined,
        ctx.signal,
      );
      const results = vertical.results(body);
      for (const raw of results) {
        if (typeof raw !== 'object' || raw === null) continue;
        const c = vertical.toCandidate(raw as BraveRawResult);
        if (c === undefined || seen.has(c.url)) continue;
        seen.add(c.url);
        list.push(c);
      }
      const more = vertical.moreAvailable(body) ?? results.length >= plan.count;
      if (results.length === 0 || !more) break;
    }
    const start = plan.firstPage * plan.count;
    const hits: SearchHit[] = list.slice(job.offset - start, job.offset - start + job.limit).map((c, i) => {
      const rank = job.offset + i + 1;
      return { ...c, rank, score: Math.round(10_000 / rank) / 10_000 };
    });
    return { ...result, total: start + list.length, hits };
  }

  /**
   * Closes this provider's own pool (when it made one) once calls in flight have finished; a registry
   * passed in is left to its owner. Idempotent. Searches afterwards reject with ClosedError.
   */
  close(): Promise<void> {
    return this.endpoint.close();
  }

  private fetchPage(
    job: SearchJobData,
    vertical: Vertical,
    count: number,
    page: number | undefined,
    signal: AbortSignal,
  ): Promise<Record<string, unknown>> {
    const params = new URLSearchParams({ q: job.query, count: String(count) });
    if (page !== undefined) params.set('offset', String(page));
    const safesearch =
      !vertical.paged && this.opts.safesearch === 'moderate' ? 'strict' : this.opts.safesearch;
    params.set('safesearch', safesearch);
    const { search_lang, country } = braveLocale(job.language);
    if (search_lang !== undefined) params.set('search_lang', search_lang);
    if (country !== undefined) params.set('country', country);
    if (job.type === SearchType.ACADEMIC && this.opts.academicGoggles !== undefined)
      params.set('goggles', this.opts.academicGoggles);
    return this.endpoint.pool.callText({
      provider: PROVIDER,
      method: 'GET',
      path: `${this.endpoint.basePath}${vertical.path}?${params.toString()}`,
      headers: this.headers,
      signal,
      timeoutMs: this.opts.timeoutMs,
      parse: (text) => {
        const body = parseJsonText(PROVIDER, vertical.path, text);
        if (typeof body !== 'object' || body === null || Array.isArray(body))
          throw new ProviderError(
            PROVIDER,
            `${vertical.path}: answer is not a JSON object`,
            undefined,
            false,
            {
              kind: 'protocol',
            },
          );
        return body as Record<string, unknown>;
      },
      onHttpError: (status, headers, text) => braveHttpError(vertical.path, status, headers, text),
    });
  }
}
