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

const PROVIDER = 'searxng';
const ENDPOINT = '/search';

/** Options of {@link SearxngSearch}. */
export interface SearxngSearchOptions {
  /**
   * Where SearXNG listens, e.g. `http://127.0.0.1:8888`. http or https; a path prefix (a reverse proxy's
   * mount point, `https://host/searx`) is kept in front of `/search`. Required.
   */
  baseUrl: string;
  /** Deadline of each HTTP call (one result page: connecting, headers and body), ms. Default 15000. */
  timeoutMs?: number;
  /**
   * The worker's pool registry, so every client of one origin shares its connections. Default: a registry
   * of this provider's own, closed by close().
   */
  pools?: HttpPoolRegistry;
  /**
   * Extra headers sent with every request (e.g. Authorization for a proxy in front of SearXNG). Do not set
   * Accept-Encoding: bodies are read as they come, not decompressed.
   */
  headers?: Record<string, string>;
  /** Most result pages fetched for one job (see {@link SearxngSearch}). Default 5. */
  maxPages?: number;
}

const DEFAULTS = { timeoutMs: 15_000, headers: {} as Record<string, string>, maxPages: 5 };

type ResolvedOptions = Required<Omit<SearxngSearchOptions, 'pools'>> & Pick<SearxngSearchOptions, 'pools'>;

/** The SearXNG category each search type asks for. */
export const SEARXNG_CATEGORIES: Readonly<Record<SearchType, string>> = {
  [SearchType.WEB]: 'general',
  [SearchType.NEWS]: 'news',
  [SearchType.ACADEMIC]: 'science',
  [SearchType.IMAGES]: 'images',
  [SearchType.VIDEOS]: 'videos',
};

/** One entry of `results[]` in SearXNG's JSON answer (the fields this provider reads). */
interface SearxngRawResult {
  url?: unknown;
  title?: unknown;
  content?: unknown;
  engine?: unknown;
  engines?: unknown;
  score?: unknown;
  publishedDate?: unknown;
  img_src?: unknown;
}

/** One page of SearXNG's JSON answer, checked. */
interface SearxngPage {
  numberOfResults: number;
  results: SearxngRawResult[];
  /** `[engine, reason]` pairs of engines that failed for this page. */
  unresponsive: string[];
}

/** A hit before its place in the list is known. */
type Candidate = Omit<SearchHit, 'rank' | 'score'> & { score?: number };

function validate(o: ResolvedOptions): FieldIssue[] {
  const issues: FieldIssue[] = jsonApiIssues(o);
  if (!Number.isInteger(o.maxPages) || o.maxPages < 1 || o.maxPages > 50)
    issues.push({ field: 'maxPages', reason: `expected an integer from 1 to 50, got ${String(o.maxPages)}` });
  return issues;
}

/** The message of an error answer: SearXNG's `{"error": "..."}`, else the body's text. */
function errorDetail(bodyText: string): string {
  try {
    const parsed: unknown = JSON.parse(bodyText);
    const error = (parsed as { error?: unknown } | null)?.error;
    if (typeof error === 'string') return error;
  } catch {
    // not JSON: an HTML error page, or a proxy's text
  }
  return htmlToText(bodyText).slice(0, 200);
}

/**
 * Maps an error answer of SearXNG to a ProviderError. 403 is what SearXNG answers when the JSON format is
 * not enabled (it is off by default): that is a configuration problem, not retryable, and the message says
 * how to fix it. Everything else follows the generic mapping (429, 408 and 5xx retryable with Retry-After).
 */
export function searxngHttpError(
  status: number,
  retryAfter: string | string[] | undefined,
  bodyText: string,
): ProviderError {
  if (status === 403)
    return new ProviderError(
      PROVIDER,
      `${ENDPOINT}: SearXNG refused format=json (HTTP 403). Enable it in SearXNG's settings.yml: ` +
        'add "json" to search.formats (e.g. formats: [html, json]) and restart SearXNG; ' +
        'if that is already done, check the proxy in front of it',
      403,
      false,
      { kind: 'http' },
    );
  return httpStatusError(PROVIDER, ENDPOINT, status, retryAfter, errorDetail(bodyText));
}

function parsePage(body: unknown): SearxngPage {
  if (typeof body !== 'object' || body === null || !Array.isArray((body as { results?: unknown }).results))
    throw new ProviderError(PROVIDER, `${ENDPOINT}: answer has no results list`, undefined, false, {
      kind: 'protocol',
    });
  const b = body as { number_of_results?: unknown; results: unknown[]; unresponsive_engines?: unknown };
  const unresponsive = Array.isArray(b.unresponsive_engines)
    ? b.unresponsive_engines.map((e) =>
        Array.isArray(e) ? e.filter((x) => typeof x === 'string').join(': ') : String(e),
      )
    : [];
  return {
    numberOfResults:
      typeof b.number_of_results === 'number' && Number.isFinite(b.number_of_results)
        ? b.number_of_results
        : 0,
    results: b.results.filter((r): r is SearxngRawResult => typeof r === 'object' && r !== null),
    unresponsive,
  };
}

/** A SearXNG result as a hit (without rank), or undefined when it has no usable URL. */
function toCandidate(r: SearxngRawResult, type: SearchType): Candidate | undefined {
  if (!isHttpUrl(r.url)) return undefined;
  const pageUrl = r.url;
  // An image search is asking for images: the hit points at the image, the snippet names its page.
  const url = type === SearchType.IMAGES && isHttpUrl(r.img_src) ? r.img_src : pageUrl;
  // Titles are text (engines extract them); contents may carry HTML (highlight spans, entities).
  const title = typeof r.title === 'string' ? r.title.replace(/\s+/g, ' ').trim() : '';
  let snippet = typeof r.content === 'string' ? htmlToText(r.content) : '';
  if (snippet === '' && url !== pageUrl) snippet = `From ${pageUrl}`;
  const engines = Array.isArray(r.engines) ? r.engines.filter((e): e is string => typeof e === 'string') : [];
  const source =
    engines.length > 0
      ? [...new Set(engines)].sort().join(', ')
      : typeof r.engine === 'string' && r.engine !== ''
        ? r.engine
        : hostnameOf(pageUrl);
  const publishedAt = toIsoDate(r.publishedDate);
  return {
    title: title || pageUrl,
    url,
    snippet,
    source,
    ...(typeof r.score === 'number' && Number.isFinite(r.score) ? { score: r.score } : {}),
    ...(publishedAt !== undefined ? { publishedAt } : {}),
  };
}

/**
 * The SearXNG search provider: GET `/search?format=json` of a SearXNG instance, with the job's type as
 * the SearXNG category (web → general, news → news, academic → science, images → images, videos → videos)
 * and its language as `language`.
 *
 * Paging: SearXNG has no page-size parameter (a page holds whatever its engines returned, often 10-30
 * results, and consecutive pages may repeat results). To serve `offset`/`limit`, pages are fetched one
 * after the other from pageno 1, de-duplicated by URL, until `offset + limit` results are known, a page
 * brings nothing new, or `maxPages` (default 5) pages were fetched; a window past what those pages hold
 * comes back short or empty. Ranks are 1-based positions in that de-duplicated list.
 *
 * Hits: title as SearXNG gives it (text); snippet = `content` as plain text (tags dropped, entities
 * decoded, whitespace collapsed); source = the engines that found it (else the hostname);
 * score = SearXNG's own `score` (else 1/rank); publishedAt = `publishedDate` as ISO 8601, taken as UTC
 * when it has no zone. For images, the hit's URL is the image (`img_src`). total = `number_of_results`
 * when SearXNG reports one (most engines do not), else the number of distinct results seen.
 *
 * Errors: 403 (JSON format not enabled in `search.formats`) is a non-retryable ProviderError saying so;
 * 429 (SearXNG's limiter: exempt the worker's address via `botdetection.ip_lists.pass_ip`) and 5xx are
 * retryable. A first page with no results while engines report errors (`unresponsive_engines`: CAPTCHA,
 * timeouts, …) is a retryable ProviderError of kind "protocol" naming them, rather than an empty answer.
 */
export class SearxngSearch implements SearchBackend {
  readonly name = PROVIDER;
  private readonly opts: ResolvedOptions;
  private readonly endpoint: HttpEndpoint;
  private readonly headers: Record<string, string>;

  constructor(opts: SearxngSearchOptions) {
    ({
      opts: this.opts,
      endpoint: this.endpoint,
      headers: this.headers,
    } = setUpJsonApi<ResolvedOptions>('SearxngSearch', DEFAULTS, opts, validate));
  }

  /** The server's origin (scheme://host:port): breakers and rate limits are kept per origin. */
  get origin(): string {
    return this.endpoint.origin;
  }

  /** Runs one search job (one or more page requests); rejects with ProviderError, ClosedError or the abort reason. */
  async search(job: SearchJobData, ctx: CallContext): Promise<Omit<SearchResult, 'servedBy' | 'tookMs'>> {
    this.endpoint.assertOpen('SearxngSearch');
    const wanted = job.offset + job.limit;
    const seen = new Set<string>();
    const list: Candidate[] = [];
    let reported = 0;
    for (let pageno = 1; pageno <= this.opts.maxPages && list.length < wanted; pageno++) {
      const page = await this.fetchPage(job, pageno, ctx.signal);
      reported = Math.max(reported, page.numberOfResults);
      if (pageno === 1 && page.results.length === 0 && page.unresponsive.length > 0)
        throw new ProviderError(
          PROVIDER,
          `${ENDPOINT}: no results, and engines failed: ${page.unresponsive.join('; ').slice(0, 300)}`,
          undefined,
          true,
          { kind: 'protocol' },
        );
      let added = 0;
      for (const raw of page.results) {
        const c = toCandidate(raw, job.type);
        if (c === undefined || seen.has(c.url)) continue;
        seen.add(c.url);
        list.push(c);
        added++;
      }
      if (added === 0) break;
    }
    const hits: SearchHit[] = list.slice(job.offset, wanted).map((c, i) => {
      const rank = job.offset + i + 1;
      const { score, ...rest } = c;
      return { ...rest, rank, score: score ?? Math.round(10_000 / rank) / 10_000 };
    });
    return {
      query: job.query,
      provider: this.name,
      type: job.type,
      total: reported > 0 ? Math.max(reported, list.length) : list.length,
      hits,
    };
  }

  /**
   * Closes this provider's own pool (when it made one) once calls in flight have finished; a registry
   * passed in is left to its owner. Idempotent. Searches afterwards reject with ClosedError.
   */
  close(): Promise<void> {
    return this.endpoint.close();
  }

  private fetchPage(job: SearchJobData, pageno: number, signal: AbortSignal): Promise<SearxngPage> {
    const params = new URLSearchParams({
      q: job.query,
      format: 'json',
      categories: SEARXNG_CATEGORIES[job.type],
      pageno: String(pageno),
    });
    if (job.language !== undefined) params.set('language', job.language);
    return this.endpoint.pool.callText({
      provider: PROVIDER,
      method: 'GET',
      path: `${this.endpoint.basePath}${ENDPOINT}?${params.toString()}`,
      headers: this.headers,
      signal,
      timeoutMs: this.opts.timeoutMs,
      parse: (text) => parsePage(parseJsonText(PROVIDER, ENDPOINT, text)),
      onHttpError: (status, headers, text) => searxngHttpError(status, headers['retry-after'], text),
    });
  }
}
