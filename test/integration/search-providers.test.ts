import { ClosedError, ConfigError, ProviderError } from '../../shared/errors';
import { HttpPoolRegistry } from '../../shared/http/pool';
import { parseSearchRequest } from '../../shared/queues/schemas';
import {
  BraveSearch,
  braveLocale,
  braveRateLimitResetSeconds,
  planBravePages,
} from '../../workers/providers/brave';
import { SearxngSearch } from '../../workers/providers/searxng';
import { startFakeBrave, type FakeBrave } from '../helpers/fake-brave';
import { startFakeSearxng, type FakeSearxng } from '../helpers/fake-searxng';
import { rejectionOf } from '../helpers/wait';

const limits = { maxPromptBytes: 10_000, maxQueryBytes: 1000 };
/** A canonical search job (validated by the real schema) from a request body. */
const job = (body: Record<string, unknown>) => parseSearchRequest(body, limits);
const ctx = () => ({ signal: new AbortController().signal });
const TYPES = ['web', 'news', 'academic', 'images', 'videos'] as const;

/** A URL where nothing listens: a fake started and closed again. */
async function deadUrl(): Promise<string> {
  const fake = await startFakeSearxng();
  await fake.close();
  return fake.url;
}

async function providerError(p: Promise<unknown>): Promise<ProviderError> {
  const err = await rejectionOf(p);
  expect(err).toBeInstanceOf(ProviderError);
  return err as ProviderError;
}

describe('SearxngSearch', () => {
  let fake: FakeSearxng;
  let searx: SearxngSearch;
  beforeEach(async () => {
    fake = await startFakeSearxng({ total: 45, pageSize: 10 });
    searx = new SearxngSearch({ baseUrl: fake.url });
  });
  afterEach(async () => {
    await searx.close();
    await fake.close();
  });

  it('maps each search type to its SearXNG category and asks for JSON', async () => {
    const expected = {
      web: 'general',
      news: 'news',
      academic: 'science',
      images: 'images',
      videos: 'videos',
    };
    for (const type of TYPES) {
      const res = await searx.search(
        job({ query: 'rust async', provider: 'searxng', type, limit: 3 }),
        ctx(),
      );
      expect(res).toMatchObject({ provider: 'searxng', type, query: 'rust async' });
      expect(res.hits).toHaveLength(3);
    }
    expect(fake.requests.map((r) => [r.path, r.query.categories])).toEqual(
      TYPES.map((t) => ['/search', expected[t]]),
    );
    expect(fake.requests[0]!.query).toEqual({
      q: 'rust async',
      format: 'json',
      categories: 'general',
      pageno: '1',
    });
    expect(fake.requests[0]!.headers.accept).toBe('application/json');
  });

  it('keeps a path prefix of the base URL and sends extra headers', async () => {
    const s = new SearxngSearch({ baseUrl: `${fake.url}/searx/`, headers: { Authorization: 'Bearer x' } });
    try {
      await s.search(job({ query: 'q', provider: 'searxng' }), ctx());
      expect(fake.requests[0]!.path).toBe('/searx/search');
      expect(fake.requests[0]!.headers.authorization).toBe('Bearer x');
      expect(s.origin).toBe(fake.url);
    } finally {
      await s.close();
    }
  });

  it('normalises results: plain-text snippets, engines as source, SearXNG score, ISO dates, 1-based ranks', async () => {
    const res = await searx.search(job({ query: 'café <b>', provider: 'searxng', limit: 4 }), ctx());
    const raw = fake.resultsFor('café <b>', 'general');
    expect(res.hits.map((h) => h.rank)).toEqual([1, 2, 3, 4]);
    const [first, second] = res.hits;
    expect(first).toEqual({
      title: 'café <b> – result 1 on Wikipedia',
      url: raw[0]!.url,
      snippet: 'About café <b>: notes & details — part 1.',
      source: 'duckduckgo, wikipedia',
      rank: 1,
      score: raw[0]!.score,
      publishedAt: '2024-03-01T10:30:00.000Z',
    });
    expect(second!.publishedAt).toBeUndefined();
    expect(second!.source).toBe('duckduckgo, google');
    for (const h of res.hits) expect(h.snippet).not.toMatch(/<span|&amp;|\s{2}/);
    // number_of_results is 0 here (as most engines report): total is what is known.
    expect(res.total).toBe(10);
  });

  it('uses number_of_results as total when SearXNG reports one', async () => {
    const f = await startFakeSearxng({ numberOfResults: 123_000 });
    const s = new SearxngSearch({ baseUrl: f.url });
    try {
      expect((await s.search(job({ query: 'q', provider: 'searxng' }), ctx())).total).toBe(123_000);
    } finally {
      await s.close();
      await f.close();
    }
  });

  it('points image hits at the image and names the page in the snippet', async () => {
    const res = await searx.search(
      job({ query: 'cat', provider: 'searxng', type: 'images', limit: 2 }),
      ctx(),
    );
    const raw = fake.resultsFor('cat', 'images');
    expect(res.hits[0]!.url).toBe(raw[0]!.img_src);
    expect(res.hits[0]!.snippet).toMatch(/^About cat/);
  });

  it('pages through SearXNG pages for an offset window, with ranks across the full list', async () => {
    const res = await searx.search(
      job({ query: 'paging', provider: 'searxng', offset: 15, limit: 10 }),
      ctx(),
    );
    expect(fake.requests.map((r) => r.query.pageno)).toEqual(['1', '2', '3']);
    expect(res.hits.map((h) => h.rank)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    expect(res.hits.map((h) => h.url)).toEqual(
      fake
        .resultsFor('paging', 'general')
        .slice(15, 25)
        .map((r) => r.url),
    );
  });

  it('de-duplicates results that consecutive pages repeat', async () => {
    const f = await startFakeSearxng({ total: 40, pageSize: 10, overlap: 3 });
    const s = new SearxngSearch({ baseUrl: f.url });
    try {
      const res = await s.search(job({ query: 'dup', provider: 'searxng', offset: 5, limit: 20 }), ctx());
      const urls = res.hits.map((h) => h.url);
      expect(new Set(urls).size).toBe(20);
      expect(urls).toEqual(
        f
          .resultsFor('dup', 'general')
          .slice(5, 25)
          .map((r) => r.url),
      );
      expect(f.requests.map((r) => r.query.pageno)).toEqual(['1', '2', '3']);
    } finally {
      await s.close();
      await f.close();
    }
  });

  it('stops at the first empty page', async () => {
    const f = await startFakeSearxng({ total: 12, pageSize: 10 });
    const s = new SearxngSearch({ baseUrl: f.url });
    try {
      const res = await s.search(job({ query: 'few', provider: 'searxng', limit: 50 }), ctx());
      expect(res.hits).toHaveLength(12);
      expect(res.total).toBe(12);
      expect(f.requests.map((r) => r.query.pageno)).toEqual(['1', '2', '3']);
    } finally {
      await s.close();
      await f.close();
    }
  });

  it('fetches at most maxPages pages (default 5)', async () => {
    const f = await startFakeSearxng({ total: 200, pageSize: 10 });
    const s = new SearxngSearch({ baseUrl: f.url });
    const s2 = new SearxngSearch({ baseUrl: f.url, maxPages: 2 });
    try {
      const res = await s.search(job({ query: 'deep', provider: 'searxng', offset: 45, limit: 10 }), ctx());
      expect(f.requests).toHaveLength(5);
      expect(res.hits.map((h) => h.rank)).toEqual([46, 47, 48, 49, 50]);
      expect(res.total).toBe(50);
      const res2 = await s2.search(job({ query: 'deep', provider: 'searxng', offset: 30, limit: 10 }), ctx());
      expect(res2.hits).toEqual([]);
      expect(f.requests).toHaveLength(7);
    } finally {
      await s.close();
      await s2.close();
      await f.close();
    }
  });

  it('passes the language tag through, and sends none without one', async () => {
    await searx.search(job({ query: 'q', provider: 'searxng', language: 'de-DE' }), ctx());
    await searx.search(job({ query: 'q', provider: 'searxng', language: 'fr' }), ctx());
    await searx.search(job({ query: 'q', provider: 'searxng' }), ctx());
    expect(fake.requests.map((r) => r.query.language)).toEqual(['de-DE', 'fr', undefined]);
  });

  it('maps 403 (JSON format not enabled) to a non-retryable error telling the operator what to change', async () => {
    const f = await startFakeSearxng({ jsonEnabled: false });
    const s = new SearxngSearch({ baseUrl: f.url });
    try {
      const err = await providerError(s.search(job({ query: 'q', provider: 'searxng' }), ctx()));
      expect(err).toMatchObject({ provider: 'searxng', status: 403, retryable: false, kind: 'http' });
      expect(err.message).toMatch(/search\.formats/);
      expect(err.message).toMatch(/json/);
    } finally {
      await s.close();
      await f.close();
    }
  });

  it('maps 429 to retryable with retryAfterMs, and 5xx to retryable', async () => {
    fake.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '7' } }, 1);
    const e429 = await providerError(searx.search(job({ query: 'q', provider: 'searxng' }), ctx()));
    expect(e429).toMatchObject({
      status: 429,
      retryable: true,
      retryAfterMs: 7000,
      backendUnavailable: true,
    });
    fake.setFault({ kind: 'status', status: 502 }, 1);
    const e502 = await providerError(searx.search(job({ query: 'q', provider: 'searxng' }), ctx()));
    expect(e502).toMatchObject({ status: 502, retryable: true, kind: 'http' });
    expect(e502.message).toMatch(/502/);
    fake.setFault(
      { kind: 'status', status: 400, body: JSON.stringify({ error: 'search error: bad language' }) },
      1,
    );
    const e400 = await providerError(searx.search(job({ query: 'q', provider: 'searxng' }), ctx()));
    expect(e400).toMatchObject({ status: 400, retryable: false });
    expect(e400.message).toMatch(/bad language/);
  });

  it('reports an answer that is not JSON as kind protocol', async () => {
    fake.setFault({ kind: 'not-json' });
    const err = await providerError(searx.search(job({ query: 'q', provider: 'searxng' }), ctx()));
    expect(err).toMatchObject({ kind: 'protocol', retryable: false });
  });

  it('treats no results with failing engines as a retryable failure naming them', async () => {
    const f = await startFakeSearxng({
      total: 0,
      unresponsive: [
        ['google', 'CAPTCHA'],
        ['duckduckgo', 'timeout'],
      ],
    });
    const s = new SearxngSearch({ baseUrl: f.url });
    try {
      const err = await providerError(s.search(job({ query: 'q', provider: 'searxng' }), ctx()));
      expect(err).toMatchObject({ retryable: true, kind: 'protocol' });
      expect(err.message).toMatch(/google: CAPTCHA; duckduckgo: timeout/);
    } finally {
      await s.close();
      await f.close();
    }
  });

  it('reports connection refused as kind connection', async () => {
    const s = new SearxngSearch({ baseUrl: await deadUrl() });
    try {
      const err = await providerError(s.search(job({ query: 'q', provider: 'searxng' }), ctx()));
      expect(err).toMatchObject({ kind: 'connection', retryable: true });
    } finally {
      await s.close();
    }
  });

  it('rejects with the abort reason when the signal aborts, and times out slow pages', async () => {
    fake.setFault({ kind: 'slow', delayMs: 5_000 });
    const ac = new AbortController();
    const reason = new Error('job cancelled');
    setTimeout(() => ac.abort(reason), 50);
    expect(
      await rejectionOf(searx.search(job({ query: 'q', provider: 'searxng' }), { signal: ac.signal })),
    ).toBe(reason);
    const quick = new SearxngSearch({ baseUrl: fake.url, timeoutMs: 100 });
    try {
      const err = await providerError(quick.search(job({ query: 'q', provider: 'searxng' }), ctx()));
      expect(err).toMatchObject({ kind: 'timeout', retryable: true });
    } finally {
      await quick.close();
    }
  });

  it('uses a shared registry pool for its origin, validates options, and refuses searches after close', async () => {
    const pools = new HttpPoolRegistry();
    const s = new SearxngSearch({ baseUrl: fake.url, pools });
    await s.search(job({ query: 'q', provider: 'searxng' }), ctx());
    expect(pools.metrics().map((m) => [m.origin, m.requests])).toEqual([[fake.url, 1]]);
    await s.close();
    expect(await rejectionOf(s.search(job({ query: 'q', provider: 'searxng' }), ctx()))).toBeInstanceOf(
      ClosedError,
    );
    await pools.close();
    expect(() => new SearxngSearch({ baseUrl: 'ftp://x' })).toThrow(ConfigError);
    expect(() => new SearxngSearch({ baseUrl: fake.url, maxPages: 0 })).toThrow(/maxPages/);
  });
});

describe('BraveSearch', () => {
  const KEY = 'test-key';
  let fake: FakeBrave;
  let brave: BraveSearch;
  beforeEach(async () => {
    fake = await startFakeBrave({ apiKey: KEY, total: 120 });
    brave = new BraveSearch({ apiKey: KEY, baseUrl: fake.url });
  });
  afterEach(async () => {
    await brave.close();
    await fake.close();
  });

  it('sends each search type to its endpoint (academic: web search), with the token and Accept', async () => {
    const expected = {
      web: '/res/v1/web/search',
      news: '/res/v1/news/search',
      academic: '/res/v1/web/search',
      images: '/res/v1/images/search',
      videos: '/res/v1/videos/search',
    };
    for (const type of TYPES) {
      const res = await brave.search(job({ query: 'solar power', provider: 'brave', type, limit: 5 }), ctx());
      expect(res).toMatchObject({ provider: 'brave', type });
      expect(res.hits).toHaveLength(5);
    }
    expect(fake.requests.map((r) => r.path)).toEqual(TYPES.map((t) => expected[t]));
    for (const r of fake.requests) {
      expect(r.headers['x-subscription-token']).toBe(KEY);
      expect(r.headers.accept).toBe('application/json');
      expect(r.query.goggles).toBeUndefined();
    }
    expect(fake.requests[0]!.query).toEqual({
      q: 'solar power',
      count: '5',
      offset: '0',
      safesearch: 'moderate',
    });
    // Images: no offset parameter, and no moderate level (strict instead).
    expect(fake.requests[3]!.query).toEqual({ q: 'solar power', count: '5', safesearch: 'strict' });
  });

  it('re-ranks academic searches with the configured Goggles', async () => {
    const b = new BraveSearch({
      apiKey: KEY,
      baseUrl: `${fake.url}/proxy`,
      academicGoggles: '$boost=3,site=arxiv.org',
    });
    try {
      await b.search(job({ query: 'q', provider: 'brave', type: 'academic' }), ctx());
      await b.search(job({ query: 'q', provider: 'brave', type: 'web' }), ctx());
      expect(fake.requests.map((r) => [r.path, r.query.goggles])).toEqual([
        ['/proxy/res/v1/web/search', '$boost=3,site=arxiv.org'],
        ['/proxy/res/v1/web/search', undefined],
      ]);
    } finally {
      await b.close();
    }
  });

  it('normalises web results: <strong> stripped, profile name as source, page_age as ISO, score 1/rank', async () => {
    const res = await brave.search(job({ query: 'tea', provider: 'brave', limit: 3 }), ctx());
    const raw = fake.resultsFor('tea', 'web');
    expect(res.hits[0]).toEqual({
      title: 'tea – page 1 | Wikipedia',
      url: raw[0]!.url,
      snippet: 'Everything about tea & more – item 1.',
      source: 'Wikipedia',
      rank: 1,
      score: 1,
      publishedAt: '2024-03-01T08:15:00.000Z',
    });
    expect(res.hits.map((h) => h.score)).toEqual([1, 0.5, 0.3333]);
    expect(res.hits[2]!.publishedAt).toBeUndefined();
    const escaped = await brave.search(job({ query: "R&D <x> it's", provider: 'brave', limit: 1 }), ctx());
    expect(escaped.hits[0]).toMatchObject({
      title: "R&D <x> it's – page 1 | Wikipedia",
      snippet: "Everything about R&D <x> it's & more – item 1.",
    });
  });

  it('normalises news, videos and images', async () => {
    const news = await brave.search(job({ query: 'tea', provider: 'brave', type: 'news', limit: 2 }), ctx());
    expect(news.hits[0]).toMatchObject({
      title: 'tea in the news (1)',
      snippet: 'Everything about tea & more – item 1.',
      source: 'en.wikipedia.org',
      publishedAt: '2024-03-01T08:15:00.000Z',
    });
    const videos = await brave.search(
      job({ query: 'tea', provider: 'brave', type: 'videos', limit: 2 }),
      ctx(),
    );
    expect(videos.hits[0]).toMatchObject({ url: 'https://www.youtube.com/watch?v=tea1', source: 'YouTube' });
    const images = await brave.search(
      job({ query: 'tea', provider: 'brave', type: 'images', limit: 2 }),
      ctx(),
    );
    const raw = fake.resultsFor('tea', 'images');
    expect(images.hits[0]).toEqual({
      title: 'tea picture 1',
      url: (raw[0]!.properties as { url: string }).url,
      snippet: `From ${String(raw[0]!.url)}`,
      source: 'en.wikipedia.org',
      rank: 1,
      score: 1,
    });
  });

  it('maps an item offset onto Brave page offsets: one request when a page size fits the window', async () => {
    const res = await brave.search(job({ query: 'p', provider: 'brave', offset: 15, limit: 10 }), ctx());
    expect(fake.requests.map((r) => [r.query.count, r.query.offset])).toEqual([['13', '1']]);
    expect(res.hits.map((h) => h.rank)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    expect(res.hits.map((h) => h.url)).toEqual(
      fake
        .resultsFor('p', 'web')
        .slice(15, 25)
        .map((r) => r.url),
    );
    expect(res.hits[0]!.score).toBe(0.0625);
  });

  it('fetches several pages when needed (web count max 20, news max 50) and slices the window', async () => {
    const web = await brave.search(job({ query: 'p', provider: 'brave', limit: 50 }), ctx());
    expect(fake.requests.map((r) => [r.query.count, r.query.offset])).toEqual([
      ['17', '0'],
      ['17', '1'],
      ['17', '2'],
    ]);
    expect(web.hits.map((h) => h.url)).toEqual(
      fake
        .resultsFor('p', 'web')
        .slice(0, 50)
        .map((r) => r.url),
    );
    fake.requests.length = 0;
    const news = await brave.search(
      job({ query: 'p', provider: 'brave', type: 'news', offset: 40, limit: 50 }),
      ctx(),
    );
    expect(fake.requests.map((r) => [r.query.count, r.query.offset])).toEqual([
      ['30', '1'],
      ['30', '2'],
    ]);
    expect(news.hits.map((h) => h.rank)[0]).toBe(41);
    expect(news.hits.map((h) => h.url)).toEqual(
      fake
        .resultsFor('p', 'news')
        .slice(40, 90)
        .map((r) => r.url),
    );
  });

  it('de-duplicates overlapping pages and stops when Brave has no more results', async () => {
    const f = await startFakeBrave({ apiKey: KEY, total: 25, overlap: 2 });
    const b = new BraveSearch({ apiKey: KEY, baseUrl: f.url });
    try {
      const res = await b.search(job({ query: 'few', provider: 'brave', limit: 50 }), ctx());
      expect(f.requests.map((r) => r.query.offset)).toEqual(['0', '1']);
      expect(res.hits.map((h) => h.url)).toEqual(f.resultsFor('few', 'web').map((r) => r.url));
      expect(res.total).toBe(25);
    } finally {
      await b.close();
      await f.close();
    }
  });

  it("stays within Brave's reach: the last reachable page, and no call past it", async () => {
    const f = await startFakeBrave({ apiKey: KEY, total: 300 });
    const b = new BraveSearch({ apiKey: KEY, baseUrl: f.url });
    try {
      const tail = await b.search(job({ query: 'far', provider: 'brave', offset: 190, limit: 20 }), ctx());
      expect(f.requests.map((r) => [r.query.count, r.query.offset])).toEqual([['20', '9']]);
      expect(tail.hits.map((h) => h.rank)).toEqual([191, 192, 193, 194, 195, 196, 197, 198, 199, 200]);
      const past = await b.search(job({ query: 'far', provider: 'brave', offset: 200, limit: 10 }), ctx());
      expect(past).toMatchObject({ hits: [], total: 0 });
      const images = await b.search(
        job({ query: 'far', provider: 'brave', type: 'images', offset: 30, limit: 20 }),
        ctx(),
      );
      expect(f.requests).toHaveLength(2);
      expect(f.requests[1]!.query).toMatchObject({ count: '50' });
      expect(images.hits.map((h) => h.rank)[0]).toBe(31);
    } finally {
      await b.close();
      await f.close();
    }
  });

  it('plans pages as cheaply as possible', () => {
    expect(planBravePages(0, 10, 20)).toEqual({ count: 10, firstPage: 0, lastPage: 0 });
    expect(planBravePages(15, 10, 20)).toEqual({ count: 13, firstPage: 1, lastPage: 1 });
    expect(planBravePages(195, 10, 20)).toEqual({ count: 20, firstPage: 9, lastPage: 9 });
    expect(planBravePages(200, 10, 20)).toBeUndefined();
    expect(planBravePages(1000, 50, 50)).toBeUndefined();
    // Every window inside the reach is covered exactly, with pages inside 0..9 and count inside 1..max.
    for (const max of [20, 50])
      for (let offset = 0; offset < max * 10; offset += 7)
        for (const limit of [1, 10, 33, 50]) {
          const p = planBravePages(offset, limit, max)!;
          expect(p.count).toBeLessThanOrEqual(max);
          expect(p.lastPage).toBeLessThanOrEqual(9);
          expect(p.firstPage * p.count).toBeLessThanOrEqual(offset);
          expect((p.lastPage + 1) * p.count).toBeGreaterThanOrEqual(Math.min(offset + limit, max * 10));
        }
  });

  it("maps the job's language to search_lang and country in Brave's codes", async () => {
    for (const language of ['en-US', 'ja-JP', 'pt-BR', 'zh-TW', 'de', 'xx-ZZ', 'en-GB'])
      await brave.search(job({ query: 'q', provider: 'brave', language, limit: 1 }), ctx());
    expect(fake.requests.map((r) => [r.query.search_lang, r.query.country])).toEqual([
      ['en', 'US'],
      ['jp', 'JP'],
      ['pt-br', 'BR'],
      ['zh-hant', 'TW'],
      ['de', undefined],
      [undefined, undefined],
      ['en-gb', 'GB'],
    ]);
    expect(braveLocale(undefined)).toEqual({});
    expect(braveLocale('no')).toEqual({ search_lang: 'nb' });
  });

  it('refuses a missing apiKey with ConfigError', () => {
    expect(() => new BraveSearch({ apiKey: '' })).toThrow(ConfigError);
    expect(() => new BraveSearch({ apiKey: undefined as unknown as string })).toThrow(/apiKey/);
    const defaults = new BraveSearch({ apiKey: 'k' });
    expect(defaults.origin).toBe('https://api.search.brave.com');
    return defaults.close();
  });

  it("maps 401, 403 and 422 to non-retryable errors carrying Brave's detail", async () => {
    const wrong = new BraveSearch({ apiKey: 'wrong', baseUrl: fake.url });
    try {
      const e422 = await providerError(wrong.search(job({ query: 'q', provider: 'brave' }), ctx()));
      expect(e422).toMatchObject({ status: 422, retryable: false, kind: 'http' });
      expect(e422.message).toMatch(
        /The provided subscription token is invalid\. \[SUBSCRIPTION_TOKEN_INVALID\]/,
      );
    } finally {
      await wrong.close();
    }
    fake.setFault({ kind: 'status', status: 401 }, 1);
    const e401 = await providerError(brave.search(job({ query: 'q', provider: 'brave' }), ctx()));
    expect(e401).toMatchObject({ status: 401, retryable: false });
    expect(e401.message).toMatch(/Request rejected with status 401/);
    fake.setFault({ kind: 'status', status: 403 }, 1);
    expect(await providerError(brave.search(job({ query: 'q', provider: 'brave' }), ctx()))).toMatchObject({
      status: 403,
      retryable: false,
    });
  });

  it('maps 429 to retryable, with Retry-After or else X-RateLimit-Reset as retryAfterMs', async () => {
    fake.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '3' } }, 1);
    expect(await providerError(brave.search(job({ query: 'q', provider: 'brave' }), ctx()))).toMatchObject({
      status: 429,
      retryable: true,
      retryAfterMs: 3000,
    });
    // The per-second window is exhausted ("0, 14000"): its reset (1 s) applies.
    fake.setFault({ kind: 'status', status: 429 }, 1);
    const e = await providerError(brave.search(job({ query: 'q', provider: 'brave' }), ctx()));
    expect(e).toMatchObject({ status: 429, retryable: true, retryAfterMs: 1000 });
    expect(e.message).toMatch(/rate limit exceeded.*\[RATE_LIMITED\]/);
    // The monthly quota is exhausted: wait for the monthly reset.
    fake.setFault(
      {
        kind: 'status',
        status: 429,
        headers: { 'x-ratelimit-remaining': '1, 0', 'x-ratelimit-reset': '1, 86400' },
      },
      1,
    );
    expect(await providerError(brave.search(job({ query: 'q', provider: 'brave' }), ctx()))).toMatchObject({
      retryAfterMs: 86_400_000,
    });
    expect(braveRateLimitResetSeconds('1, 1419704', undefined)).toBe(1);
    expect(braveRateLimitResetSeconds(undefined, '0')).toBeUndefined();
  });

  it('maps 5xx to retryable, a non-JSON answer to kind protocol, a refused connection to kind connection', async () => {
    fake.setFault({ kind: 'status', status: 500 }, 1);
    expect(await providerError(brave.search(job({ query: 'q', provider: 'brave' }), ctx()))).toMatchObject({
      status: 500,
      retryable: true,
    });
    fake.setFault({ kind: 'not-json' }, 1);
    expect(await providerError(brave.search(job({ query: 'q', provider: 'brave' }), ctx()))).toMatchObject({
      kind: 'protocol',
    });
    const dead = new BraveSearch({ apiKey: KEY, baseUrl: await deadUrl() });
    try {
      expect(await providerError(dead.search(job({ query: 'q', provider: 'brave' }), ctx()))).toMatchObject({
        kind: 'connection',
        retryable: true,
      });
    } finally {
      await dead.close();
    }
  });

  it('rejects with the abort reason when the signal aborts', async () => {
    fake.setFault({ kind: 'slow', delayMs: 5_000 });
    const ac = new AbortController();
    const reason = new Error('shutting down');
    setTimeout(() => ac.abort(reason), 50);
    expect(
      await rejectionOf(brave.search(job({ query: 'q', provider: 'brave' }), { signal: ac.signal })),
    ).toBe(reason);
  });
});
