/**
 * A Redis-backed HTTP response cache for express, shared by every API process of a cell.
 *
 * Decisions (the README of the module, in short):
 * - Only GET and HEAD on configured endpoints are looked at; everything else passes through untouched (no
 *   header, no counter). Endpoints are express-style patterns matched against the full URL path
 *   (`req.originalUrl`), so `configureEndpoint('/v1/jobs/:queue/:id', …)` works wherever the middleware is
 *   mounted. First match in configuration order wins; configuring a pattern again replaces it.
 * - Key: full path + query with parameters sorted by name + (configured `vary` headers) + (perUser: hash of
 *   Authorization and Cookie) + (the request's values of the headers the response named in Vary). The
 *   method is not in the key: HEAD is answered from the GET entry. Keys live under `<prefix>:httpcache:`.
 * - Stored: status 200 and 203 only (201/202 describe an action, e.g. a pending job; 204 has nothing worth
 *   caching; 206/3xx/4xx/5xx never), with the full body ≤ maxBodySizeBytes. Never a response with
 *   Set-Cookie (not even perUser: a cookie is a per-response credential), a `Vary: *` response, or a
 *   `private` one unless the endpoint is perUser. Requests carrying Authorization or Cookie bypass the
 *   cache unless the endpoint is perUser.
 * - X-Cache: HIT (fresh entry), STALE (served within the stale-while-revalidate window), MISS (looked up,
 *   handler ran — whether or not the answer was storable), BYPASS (configured endpoint, request not
 *   eligible: NEVER strategy, credentials without perUser, request `Cache-Control: no-store`). HIT/STALE/MISS
 *   carry Age (seconds since stored; 0 on a miss). A 200/203 answer carries a strong ETag (sha256 of the
 *   body, replacing any ETag of the handler); If-None-Match matching it gives 304 without a body, on hits
 *   and on misses. A HEAD miss is passed to the handler as is (X-Cache: MISS, nothing stored: a HEAD
 *   answer has no body to store); a HEAD hit is served from the GET entry.
 * - Large bodies: the miss path buffers the answer (needed for ETag/304) up to maxBodySizeBytes; past the
 *   limit the buffered part is flushed and the rest streams through, not stored, without ETag.
 * - Stale-while-revalidate: an entry is fresh for its TTL, then served STALE for the SWR window (Redis TTL
 *   = ttl + swr). The first stale read triggers ONE background refresh: a lock `SET NX PX` on the key *and
 *   the version* of the entry (its store time) — so every process and request that saw that version agrees
 *   on one refresher, and the lock never needs deleting (a new version has a new lock). The refresh builds
 *   a synthetic GET (same URL and headers, conditional/Cache-Control headers dropped, no body) and
 *   dispatches it through the top express app (`req.app`, up the `.parent` chain) with a fresh
 *   ServerResponse whose output is captured, never sent; the cache middleware lets that request through to
 *   the handler and stores its answer if storable. Outer middleware (logging, auth) runs again for it.
 *   Without express (no `req.app`), stale entries are served but not refreshed. A refresh that does not
 *   finish within refreshTimeoutMs is abandoned; a failed one is retried after the lock expires.
 * - Redis trouble (down, breaker open, garbage) counts an error and takes the miss path; with the
 *   fail-fast RedisClient this costs well under a millisecond. Stores are fire-and-forget.
 * - CACHE_CONTROL strategy: request no-store → BYPASS; request no-cache (or max-age=0, or Pragma: no-cache
 *   without Cache-Control) → miss path, the answer replaces the entry. Response no-store / no-cache →
 *   not stored; s-maxage, else max-age, else Expires, else the endpoint TTL gives the TTL (0 → not
 *   stored); stale-while-revalidate=N sets the window; must-revalidate/proxy-revalidate → no window.
 *   ALWAYS ignores Cache-Control on both sides and uses the endpoint TTL.
 * - Stored headers: what the handler set, minus hop-by-hop headers, Content-Length, Date, ETag, Age,
 *   X-Cache, and headers an outer middleware had set (unchanged) before the cache ran (X-Request-Id…).
 */
import { type ServerResponse, type IncomingHttpHeaders } from 'node:http';
import type express from 'express';
import { type Logger, silentLogger } from '../../logger.js';
import { type RedisClient } from '../../redis/redis-client.js';
import { scanEveryMaster, unlinkFound } from '../../redis/cluster.js';
import { captureResponse } from './capture.js';
import { decodeEntry, encodeEntry, type CacheEntry, type EntryMeta } from './entry.js';
import {
  compilePathPattern,
  escapeGlob,
  headersHash,
  headerValue,
  ifNoneMatchMatches,
  normaliseQuery,
  parseCacheControl,
  shortHash,
  strongEtag,
} from './http-semantics.js';
import { withDefaults } from '../../with-defaults.js';
import { snapshotHeaders, storePlan } from './store-plan.js';
import { dispatchRefresh, REFRESH, SEEN, topApp, type Marked } from './refresh-request.js';
import {
  CacheStrategy,
  type Endpoint,
  type EndpointCacheOptions,
  type RequestCtx,
  type ResponseCacheOptions,
  type ResponseCacheStats,
  type StorePlan,
} from './response-cache-types.js';

export {
  CacheStrategy,
  type CacheConfig,
  type EndpointCacheOptions,
  type ResponseCacheOptions,
  type ResponseCacheStats,
} from './response-cache-types.js';

const DEFAULTS = {
  defaultTtlSeconds: 60,
  maxBodySizeBytes: 1024 * 1024,
  staleWhileRevalidateSeconds: 30,
  prefix: '{cell0}',
  refreshTimeoutMs: 10_000,
};

export class ResponseCache {
  private readonly redis: RedisClient;
  private readonly config: typeof DEFAULTS;
  private readonly log: Logger;
  private readonly ns: string;
  private readonly endpoints: Endpoint[] = [];
  private readonly refreshing = new Set<string>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly counters = {
    hits: 0,
    misses: 0,
    stale: 0,
    stored: 0,
    bypassed: 0,
    notModified: 0,
    revalidations: 0,
    errors: 0,
  };

  constructor(opts: ResponseCacheOptions) {
    if (!opts?.redis) throw new TypeError('ResponseCache: option "redis" is required');
    const config = withDefaults<typeof DEFAULTS>(DEFAULTS, opts.config);
    if (!(config.defaultTtlSeconds > 0))
      throw new TypeError(`ResponseCache: defaultTtlSeconds must be > 0, got ${config.defaultTtlSeconds}`);
    if (!(config.maxBodySizeBytes >= 0))
      throw new TypeError(`ResponseCache: maxBodySizeBytes must be >= 0, got ${config.maxBodySizeBytes}`);
    if (!(config.staleWhileRevalidateSeconds >= 0))
      throw new TypeError(
        `ResponseCache: staleWhileRevalidateSeconds must be >= 0, got ${config.staleWhileRevalidateSeconds}`,
      );
    if (!(config.refreshTimeoutMs > 0))
      throw new TypeError(`ResponseCache: refreshTimeoutMs must be > 0, got ${config.refreshTimeoutMs}`);
    if (typeof config.prefix !== 'string') throw new TypeError('ResponseCache: prefix must be a string');
    this.redis = opts.redis;
    this.config = config;
    this.log = opts.logger ?? silentLogger();
    this.ns = `${config.prefix}:httpcache:`;
  }

  /** Caches GET/HEAD answers of `path` (an express-style pattern over the full URL path). */
  configureEndpoint(
    path: string,
    strategy: CacheStrategy,
    ttlSeconds?: number,
    opts: Omit<EndpointCacheOptions, 'strategy' | 'ttlSeconds'> = {},
  ): void {
    if (!Object.values(CacheStrategy).includes(strategy))
      throw new TypeError(`ResponseCache: unknown strategy "${String(strategy)}"`);
    if (ttlSeconds !== undefined && !(ttlSeconds > 0))
      throw new TypeError(`ResponseCache: ttlSeconds must be > 0, got ${ttlSeconds}`);
    const ep: Endpoint = {
      path,
      re: compilePathPattern(path),
      strategy,
      ttlSeconds,
      perUser: opts.perUser === true,
      vary: [...new Set((opts.vary ?? []).map((h) => h.toLowerCase()))].sort(),
    };
    const i = this.endpoints.findIndex((e) => e.path === path);
    if (i >= 0) this.endpoints[i] = ep;
    else this.endpoints.push(ep);
  }

  /** The express middleware. Mount it before the routes it caches. */
  middleware(): express.RequestHandler {
    return (req, res, next) => {
      try {
        this.handle(req, res, next);
      } catch (err) {
        // A bug here must not cost the request; it goes to the handler uncached.
        this.counters.errors++;
        this.log.warn({ err, path: req.path }, 'http cache: middleware error');
        if (!res.headersSent) next();
      }
    };
  }

  /**
   * Deletes the cached answers whose URL path starts with `pathPrefix` (all of this cache's when omitted);
   * resolves with how many were deleted. Rejects when Redis is unavailable.
   */
  async invalidate(pathPrefix = ''): Promise<number> {
    let deleted = 0;
    for (const space of ['e:', 'm:']) {
      const pattern = this.ns + space + escapeGlob(pathPrefix) + '*';
      // Every master of a cluster.
      await this.guard(
        this.redis.run((r) =>
          scanEveryMaster(r, pattern, 500, async (keys, node) => {
            const n = await unlinkFound(r, node, keys);
            if (space === 'e:') deleted += n;
          }),
        ),
      );
    }
    return deleted;
  }

  /** How many cached answers Redis holds for this cache right now (a SCAN: for tests and operators). */
  async countEntries(): Promise<number> {
    let count = 0;
    await this.guard(
      this.redis.run((r) =>
        scanEveryMaster(r, escapeGlob(this.ns) + 'e:*', 500, (keys) => (count += keys.length)),
      ),
    );
    return count;
  }

  getStats(): ResponseCacheStats {
    const c = this.counters;
    const looked = c.hits + c.stale + c.misses;
    return { ...c, hitRate: looked === 0 ? 0 : (c.hits + c.stale) / looked };
  }

  /** Resolves once the stores and refreshes started so far have finished (tests, graceful shutdown). */
  async whenIdle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  // ---------------------------------------------------------------------------------------------------

  private async guard<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      this.counters.errors++;
      throw err;
    }
  }

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private match(path: string): Endpoint | undefined {
    for (const ep of this.endpoints) if (ep.re.test(path)) return ep;
    return undefined;
  }

  private bypass(res: ServerResponse, next: () => void): void {
    this.counters.bypassed++;
    res.setHeader('X-Cache', 'BYPASS');
    next();
  }

  private handle(req: express.Request, res: express.Response, next: express.NextFunction): void {
    const marked = req as unknown as Marked;
    const refresh = marked[REFRESH];
    if (refresh) {
      // The synthetic refresh request: its response is already captured; let it reach the handler.
      refresh.preexisting ??= snapshotHeaders(res);
      return next();
    }
    const method = req.method;
    if ((method !== 'GET' && method !== 'HEAD') || marked[SEEN]) return next();
    const url = req.originalUrl ?? req.url;
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const ep = this.match(path);
    if (!ep) return next();
    marked[SEEN] = true;
    if (ep.strategy === CacheStrategy.NEVER) return this.bypass(res, next);
    const h = req.headers;
    if ((h.authorization !== undefined || h.cookie !== undefined) && !ep.perUser)
      return this.bypass(res, next);
    let revalidate = false;
    if (ep.strategy === CacheStrategy.CACHE_CONTROL) {
      const rawCc = h['cache-control'];
      const rcc = parseCacheControl(rawCc);
      if (rcc.noStore) return this.bypass(res, next);
      revalidate =
        rcc.noCache ||
        rcc.maxAge === 0 ||
        (rawCc === undefined && /no-cache/i.test(headerValue(h, 'pragma')));
    }
    const rc: RequestCtx = {
      ep,
      base: this.baseKey(path, q < 0 ? '' : url.slice(q + 1), ep, h),
      req,
      res,
      preexisting: snapshotHeaders(res),
      app: req.app,
      url,
    };
    let passed = false;
    const pass = (): void => {
      passed = true;
      next();
    };
    if (revalidate) {
      this.counters.misses++;
      return this.missPath(rc, pass);
    }
    const onFailure = (err: unknown): void => {
      this.counters.errors++;
      this.log.warn({ err, path }, 'http cache: middleware error; serving uncached');
      if (!passed && !res.headersSent) pass();
    };
    this.lookup(rc.base, h)
      .then(
        (found) => {
          const entry = found?.entry;
          const age = entry ? Date.now() - entry.t : 0;
          if (!found || !entry || age >= entry.f + entry.w) {
            this.counters.misses++;
            return this.missPath(rc, pass);
          }
          const fresh = age < entry.f;
          if (fresh) this.counters.hits++;
          else this.counters.stale++;
          this.serve(rc, entry, fresh ? 'HIT' : 'STALE', age);
          if (!fresh) this.refresh(rc, found.key, entry);
        },
        (err: unknown) => {
          this.counters.errors++;
          this.counters.misses++;
          this.log.debug({ err, path }, 'http cache: lookup failed; serving uncached');
          this.missPath(rc, pass);
        },
      )
      .catch(onFailure);
  }

  private baseKey(path: string, query: string, ep: Endpoint, h: IncomingHttpHeaders): string {
    let q = normaliseQuery(query);
    if (q.length > 512) q = '#' + shortHash(q);
    let key = `${path}?${q}`;
    if (ep.vary.length > 0) key += `#h=${headersHash(h, ep.vary)}`;
    if (ep.perUser) {
      const cred = `${headerValue(h, 'authorization')}\n${headerValue(h, 'cookie')}`;
      key += `#u=${cred === '\n' ? '-' : shortHash(cred)}`;
    }
    return key;
  }

  /** The entry for this request (following a Vary marker), with its Redis key. */
  private async lookup(
    base: string,
    h: IncomingHttpHeaders,
  ): Promise<{ entry: CacheEntry | undefined; key: string } | undefined> {
    const eKey = this.ns + 'e:' + base;
    const [eBuf, mBuf] = await this.redis.run((r) => r.mgetBuffer(eKey, this.ns + 'm:' + base));
    if (mBuf) {
      const vary = JSON.parse(mBuf.toString()) as string[];
      const vKey = `${eKey}#v=${headersHash(h, vary)}`;
      const vBuf = await this.redis.run((r) => r.getBuffer(vKey));
      return vBuf ? { entry: decodeEntry(vBuf), key: vKey } : undefined;
    }
    return eBuf ? { entry: decodeEntry(eBuf), key: eKey } : undefined;
  }

  private serve(rc: RequestCtx, entry: CacheEntry, label: 'HIT' | 'STALE', ageMs: number): void {
    const { req, res } = rc;
    for (const [name, value] of entry.h) res.setHeader(name, value);
    res.setHeader('ETag', entry.e);
    res.setHeader('X-Cache', label);
    res.setHeader('Age', String(Math.floor(ageMs / 1000)));
    if (ifNoneMatchMatches(headerValue(req.headers, 'if-none-match'), entry.e)) {
      this.counters.notModified++;
      res.statusCode = 304;
      res.removeHeader('Content-Type');
      res.end();
      return;
    }
    res.statusCode = entry.s;
    res.setHeader('Content-Length', String(entry.body.length));
    if (req.method === 'HEAD') res.end();
    else res.end(entry.body);
  }

  /** Runs the handler with its answer captured; adds ETag/X-Cache, answers 304 when it can, stores. */
  private missPath(rc: RequestCtx, next: () => void): void {
    const { req, res } = rc;
    if (req.method === 'HEAD') {
      res.setHeader('X-Cache', 'MISS');
      return next();
    }
    captureResponse(res, this.config.maxBodySizeBytes, 'live', {
      onOverflow: () => {
        res.setHeader('X-Cache', 'MISS');
        res.setHeader('Age', '0');
      },
      onEnd: (body, cb) => {
        const out = body ?? Buffer.alloc(0);
        let plan: StorePlan | undefined;
        let etag: string | undefined;
        try {
          plan = storePlan(rc, res, this.config);
          if (res.statusCode === 200 || res.statusCode === 203) {
            etag = strongEtag(out);
            res.setHeader('ETag', etag);
          }
          res.setHeader('X-Cache', 'MISS');
          res.setHeader('Age', '0');
        } catch (err) {
          this.counters.errors++;
          this.log.warn({ err }, 'http cache: could not inspect a response; not stored');
          plan = undefined;
        }
        if (etag && ifNoneMatchMatches(headerValue(req.headers, 'if-none-match'), etag)) {
          this.counters.notModified++;
          res.statusCode = 304;
          res.removeHeader('Content-Length');
          res.removeHeader('Content-Type');
          res.end(cb);
        } else {
          if (!res.hasHeader('Transfer-Encoding')) res.setHeader('Content-Length', String(out.length));
          res.end(out, cb);
        }
        if (plan && etag) this.track(this.store(rc, plan, out, etag));
      },
    });
    next();
  }

  /** Whether (and how long) to store the response in `res`; undefined = do not store. */
  private async store(rc: RequestCtx, plan: StorePlan, body: Buffer, etag: string): Promise<void> {
    try {
      const meta: EntryMeta = {
        s: plan.status,
        h: plan.headers,
        e: etag,
        t: Date.now(),
        f: plan.freshMs,
        w: plan.swrMs,
      };
      const px = Math.max(1, Math.round(plan.freshMs + plan.swrMs));
      const buf = encodeEntry(meta, body);
      const eKey = this.ns + 'e:' + rc.base;
      const mKey = this.ns + 'm:' + rc.base;
      const results = await this.redis.run((r) =>
        plan.vary.length > 0
          ? r
              .multi()
              .set(mKey, JSON.stringify(plan.vary), 'PX', px)
              .set(`${eKey}#v=${headersHash(rc.req.headers, plan.vary)}`, buf, 'PX', px)
              .exec()
          : r.multi().set(eKey, buf, 'PX', px).del(mKey).exec(),
      );
      const failed = results?.find(([err]) => err);
      if (!results || failed) throw failed?.[0] ?? new Error('MULTI was discarded');
      this.counters.stored++;
    } catch (err) {
      this.counters.errors++;
      this.log.debug({ err, key: rc.base }, 'http cache: store failed');
    }
  }

  /** Starts at most one refresh of a stale entry version across processes (see the module comment). */
  private refresh(rc: RequestCtx, key: string, entry: CacheEntry): void {
    const version = `${key}@${entry.t}`;
    if (this.refreshing.has(version)) return;
    const app = topApp(rc.app);
    if (!app) return;
    this.refreshing.add(version);
    const lockKey = `${this.ns}l:${key.slice(this.ns.length + 2)}@${entry.t}`;
    this.track(
      (async () => {
        try {
          const ok = await this.redis.run((r) =>
            r.set(lockKey, String(process.pid), 'PX', this.config.refreshTimeoutMs, 'NX'),
          );
          if (ok !== 'OK') return;
          this.counters.revalidations++;
          await dispatchRefresh(rc, app, {
            timeoutMs: this.config.refreshTimeoutMs,
            maxBodySizeBytes: this.config.maxBodySizeBytes,
            log: this.log,
            onError: () => {
              this.counters.errors++;
            },
            onAnswer: (ctx, body) => this.storeRefreshed(ctx, body),
          });
        } catch (err) {
          this.counters.errors++;
          this.log.debug({ err, key }, 'http cache: refresh failed');
        } finally {
          this.refreshing.delete(version);
        }
      })(),
    );
  }

  /** Stores the answer of a background refresh when it is storable. */
  private storeRefreshed(ctx: RequestCtx, body: Buffer | undefined): Promise<void> {
    let plan: StorePlan | undefined;
    try {
      plan = body ? storePlan(ctx, ctx.res, this.config) : undefined;
    } catch (err) {
      this.counters.errors++;
      this.log.warn({ err }, 'http cache: could not inspect a refreshed response');
    }
    if (!plan || !body) {
      this.log.debug({ url: ctx.url, status: ctx.res.statusCode }, 'http cache: refresh answer not stored');
      return Promise.resolve();
    }
    return this.store(ctx, plan, body, strongEtag(body));
  }
}
