import { type ServerResponse } from 'node:http';
import { startFaultServer, type FakeFault, type RecordedRequest } from './fake-fault-server';

export type { FakeFault, RecordedRequest } from './fake-fault-server';

/** Options of {@link startFakeSearxng}. */
export interface FakeSearxngOptions {
  /** Results a query has in all (over all pages). Default 45. */
  total?: number;
  /** Results per page. Default 10. */
  pageSize?: number;
  /** How many results of the previous page each page (after the first) repeats at its start. Default 0. */
  overlap?: number;
  /** Whether format=json is in search.formats; when false, every JSON request gets SearXNG's 403. Default true. */
  jsonEnabled?: boolean;
  /** `number_of_results` to report. Default 0 (what most engines give). */
  numberOfResults?: number;
  /** `unresponsive_engines` to report, as SearXNG's [engine, reason] pairs. Default none. */
  unresponsive?: Array<[string, string]>;
}

/** A running fake SearXNG. */
export interface FakeSearxng {
  /** Base URL, e.g. http://127.0.0.1:PORT */
  url: string;
  requests: RecordedRequest[];
  /** The result list a query has (all pages, before overlap), as SearXNG would rank it. */
  resultsFor(query: string, category: string): FakeSearxngResult[];
  /** Answers the next `times` requests (default: all) with `fault` instead; undefined clears it. */
  setFault(fault: FakeFault | undefined, times?: number): void;
  close(): Promise<void>;
}

/** One result as the fake's JSON carries it (SearXNG's shape). */
export interface FakeSearxngResult {
  url: string;
  title: string;
  content: string;
  engine: string;
  engines: string[];
  score: number;
  category: string;
  template: string;
  parsed_url: string[];
  positions: number[];
  publishedDate: string | null;
  img_src?: string;
  thumbnail?: string;
  thumbnail_src?: string;
  iframe_src?: string;
}

const SITES = [
  { host: 'en.wikipedia.org', name: 'Wikipedia', engines: ['wikipedia', 'duckduckgo'] },
  { host: 'developer.mozilla.org', name: 'MDN', engines: ['google', 'duckduckgo'] },
  { host: 'stackoverflow.com', name: 'Stack Overflow', engines: ['google'] },
  { host: 'www.example.org', name: 'Example', engines: ['brave', 'google', 'bing'] },
  { host: 'arxiv.org', name: 'arXiv', engines: ['arxiv'] },
  { host: 'news.ycombinator.com', name: 'Hacker News', engines: ['bing'] },
  { host: 'www.youtube.com', name: 'YouTube', engines: ['youtube'] },
];

const slug = (q: string) =>
  q
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '') || 'q';

const escapeHtml = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The deterministic result list of a query in a category. */
export function searxngResultsFor(query: string, category: string, total: number): FakeSearxngResult[] {
  const out: FakeSearxngResult[] = [];
  for (let i = 0; i < total; i++) {
    const site = SITES[i % SITES.length]!;
    const n = i + 1;
    const url = `https://${site.host}/${category}/${slug(query)}/${n}`;
    const day = String((i % 28) + 1).padStart(2, '0');
    const r: FakeSearxngResult = {
      url,
      title: `${query} – result ${n} on ${site.name}`,
      // SearXNG passes engines' HTML through: highlight spans, entities, line breaks.
      content: `  About <span class="highlight">${escapeHtml(query)}</span>:\n  notes &amp; details &#8212; part ${n}.  `,
      engine: site.engines[0]!,
      engines: site.engines,
      score: Math.round(((total - i) * 1000) / total) / 100,
      category,
      template:
        category === 'images' ? 'images.html' : category === 'videos' ? 'videos.html' : 'default.html',
      parsed_url: ['https', site.host, `/${category}/${slug(query)}/${n}`, '', '', ''],
      positions: [n],
      // Python's isoformat() of a naive datetime, or null when the engine gave no date.
      publishedDate: i % 2 === 0 ? `2024-03-${day}T10:30:00` : null,
    };
    if (category === 'images') {
      r.img_src = `https://images.${site.host}/${slug(query)}-${n}.jpg`;
      r.thumbnail_src = `https://thumbs.${site.host}/${slug(query)}-${n}.jpg`;
    }
    if (category === 'videos') {
      r.thumbnail = `https://i.ytimg.com/vi/${n}/hqdefault.jpg`;
      r.iframe_src = `https://www.youtube-nocookie.com/embed/${n}`;
    }
    out.push(r);
  }
  return out;
}

const FORBIDDEN_HTML =
  '<!doctype html>\n<html lang=en>\n<title>403 Forbidden</title>\n<h1>Forbidden</h1>\n' +
  "<p>You don't have the permission to access the requested resource. It is either read-protected or not readable by the server.</p>\n";

/**
 * A fake SearXNG on 127.0.0.1: GET `<any prefix>/search?q=&format=json&categories=&pageno=&language=`
 * answers SearXNG's JSON shape (`query`, `number_of_results`, `results[]`, `answers`, `corrections`,
 * `infoboxes`, `suggestions`, `unresponsive_engines`) from a deterministic list per query; pages hold
 * `pageSize` results, may repeat `overlap` results of the previous page, and are empty past the end. A
 * format other than html/json, or json when not enabled, gets the 403 HTML page SearXNG sends.
 */
export async function startFakeSearxng(opts: FakeSearxngOptions = {}): Promise<FakeSearxng> {
  const total = opts.total ?? 45;
  const pageSize = opts.pageSize ?? 10;
  const overlap = opts.overlap ?? 0;
  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(body);
  };

  const answer = (res: ServerResponse, path: string, query: Record<string, string>) => {
    if (!path.endsWith('/search'))
      return send(res, 404, '<h1>Not Found</h1>', { 'content-type': 'text/html' });
    const format = query.format ?? 'html';
    if (format !== 'json' || opts.jsonEnabled === false)
      return send(res, 403, FORBIDDEN_HTML, { 'content-type': 'text/html; charset=utf-8' });
    const q = query.q ?? '';
    if (q === '') return send(res, 400, JSON.stringify({ error: 'search error: empty query' }));
    const pageno = Number(query.pageno ?? '1');
    if (!Number.isInteger(pageno) || pageno < 1)
      return send(res, 400, JSON.stringify({ error: 'search error: invalid pageno' }));
    const category = (query.categories ?? 'general').split(',')[0]!;
    const all = searxngResultsFor(q, category, total);
    const from = (pageno - 1) * pageSize;
    const results =
      from >= all.length ? [] : all.slice(Math.max(0, from - (pageno > 1 ? overlap : 0)), from + pageSize);
    send(
      res,
      200,
      JSON.stringify({
        query: q,
        number_of_results: opts.numberOfResults ?? 0,
        results,
        answers:
          pageno === 1 && results.length > 0 ? [{ answer: `${q} is a test`, url: results[0]!.url }] : [],
        corrections: [],
        infoboxes: [],
        suggestions: [`${q} tutorial`, `${q} examples`],
        unresponsive_engines: opts.unresponsive ?? [],
      }),
    );
  };

  const server = await startFaultServer({
    answer: (_req, res, path, query) => answer(res, path, query),
    status: (res, f) =>
      send(
        res,
        f.status,
        f.body ?? (f.status === 403 ? FORBIDDEN_HTML : `<h1>${f.status}</h1><p>fake error</p>`),
        { 'content-type': 'text/html', ...f.headers },
      ),
    notJson: (res) =>
      send(res, 200, '<html><body>Search results</body></html>', { 'content-type': 'text/html' }),
  });
  return { ...server, resultsFor: (query, category) => searxngResultsFor(query, category, total) };
}
