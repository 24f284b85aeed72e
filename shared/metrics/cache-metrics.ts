import { Counter, Gauge, type Registry } from 'prom-client';

/** What the cache families read at each scrape (a process's caches: their getStats() and sizes). */
export interface CacheSource {
  /** Lookups counted by the caches themselves, as running totals: cache (http, l1) → result → count. */
  lookups?(): Record<string, Record<string, number>>;
  /** Semantic cache guard refusals by rule, running totals. */
  guardRejections?(): Record<string, number>;
  /** False hits reported (POST /v1/cache/false-hits), running total. */
  falseHits?(): number;
  /** Entries now, by cache; may read Redis (throttled by the caller). */
  entries?(): Promise<Record<string, number>>;
}

/** Entry counts SCAN Redis: read at most this often, the scrape in between gets the last figures. */
const ENTRIES_EVERY_MS = 60_000;

/**
 * Cache families besides `cell0_cache_lookups_total` (counted as lookups happen): guard rejections by rule,
 * false hits reported, entries by cache. {@link lookupCollector} folds the totals the HTTP response cache
 * and the search cache's in-process tier keep themselves into the lookup counter at scrape time, so their
 * hot paths gain nothing.
 */
export class CacheMetrics {
  private readonly sources = new Set<CacheSource>();
  /** What was last folded into the lookup counter, per source, cache and result. */
  private readonly folded = new WeakMap<CacheSource, Map<string, number>>();

  constructor(registry: Registry) {
    const registers = [registry];
    const sources = this.sources;
    new Counter({
      name: 'cell0_cache_guard_rejections_total',
      help: 'Semantic cache candidates above the similarity threshold that the guard refused, by rule (negation, number, quoted, entity, question, order, contrast)',
      labelNames: ['cache', 'rule'],
      registers,
      collect() {
        this.reset();
        for (const s of sources)
          for (const [rule, n] of Object.entries(s.guardRejections?.() ?? {}))
            this.inc({ cache: 'semantic', rule }, n);
      },
    });
    new Counter({
      name: 'cell0_cache_false_hits_total',
      help: 'Semantic cache hits reported wrong by callers (POST /v1/cache/false-hits); each removes its entry',
      labelNames: ['cache'],
      registers,
      collect() {
        this.reset();
        let n = 0;
        for (const s of sources) n += s.falseHits?.() ?? 0;
        this.inc({ cache: 'semantic' }, n);
      },
    });
    let last: Record<string, number> = {};
    let readAt = -Infinity;
    new Gauge({
      name: 'cell0_cache_entries',
      help: 'Entries held by each cache (search, http, semantic: in Redis, counted at most once a minute; l1: in this process)',
      labelNames: ['cache'],
      registers,
      async collect() {
        if (performance.now() - readAt >= ENTRIES_EVERY_MS) {
          readAt = performance.now();
          const next: Record<string, number> = {};
          for (const s of sources) {
            const e = await s.entries?.().catch(() => undefined);
            for (const [cache, n] of Object.entries(e ?? {})) next[cache] = (next[cache] ?? 0) + n;
          }
          last = next;
        }
        this.reset();
        for (const [cache, n] of Object.entries(last)) this.set({ cache }, n);
      },
    });
  }

  /** Reads `source` at each scrape; returns the function that stops it. */
  addSource(source: CacheSource): () => void {
    this.sources.add(source);
    return () => this.sources.delete(source);
  }

  /**
   * Adds to `counter` (cell0_cache_lookups_total) what the sources' own lookup totals grew by since the last
   * scrape. Called from the counter's collect().
   */
  foldLookups(counter: Counter<'cache' | 'result'>): void {
    for (const s of this.sources) {
      const totals = s.lookups?.();
      if (!totals) continue;
      let folded = this.folded.get(s);
      if (!folded) this.folded.set(s, (folded = new Map()));
      for (const [cache, results] of Object.entries(totals))
        for (const [result, n] of Object.entries(results)) {
          const key = `${cache}\u0000${result}`;
          const delta = n - (folded.get(key) ?? 0);
          if (delta > 0) counter.inc({ cache, result }, delta);
          // Pre-create the series at 0 so dashboards see it before the first hit.
          else if (!folded.has(key)) counter.inc({ cache, result }, 0);
          folded.set(key, n);
        }
    }
  }
}
