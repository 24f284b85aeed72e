import { Cell0Metrics } from '../../shared/metrics/metrics';
import { outcomeOf } from '../../shared/metrics/backend-metrics';
import { BreakerOpenError, ModelNotFoundError, ProviderError, RateLimitedError } from '../../shared/errors';
import { parseSamples, promtool, series } from '../helpers/prom';
import { MeteredInference } from '../../workers/providers/metered';
import { type InferenceBackend } from '../../workers/providers/provider';

/** The scrape-time families read their sources exactly: fake sources with known figures. */
describe('scrape-time metric families', () => {
  const scrape = async (m: Cell0Metrics) => parseSamples(await m.text());

  it("folds the caches' own lookup totals into cell0_cache_lookups_total by delta, never twice", async () => {
    const m = new Cell0Metrics({ defaultMetrics: false });
    const totals = { http: { exact: 3, miss: 5 }, l1: { exact: 0, miss: 2 } };
    m.caches.addSource({ lookups: () => totals });
    m.cacheLookup('semantic', 'high');
    let s = await scrape(m);
    expect(s.get(series('cell0_cache_lookups_total', { cache: 'http', result: 'exact' }))).toBe(3);
    expect(s.get(series('cell0_cache_lookups_total', { cache: 'http', result: 'miss' }))).toBe(5);
    // A series at 0 exists before the first hit.
    expect(s.get(series('cell0_cache_lookups_total', { cache: 'l1', result: 'exact' }))).toBe(0);
    expect(s.get(series('cell0_cache_lookups_total', { cache: 'semantic', result: 'high' }))).toBe(1);
    // Scraped again with no change: the same values (nothing added twice).
    s = await scrape(m);
    expect(s.get(series('cell0_cache_lookups_total', { cache: 'http', result: 'exact' }))).toBe(3);
    totals.http.exact = 10;
    totals.l1.exact = 4;
    s = await scrape(m);
    expect(s.get(series('cell0_cache_lookups_total', { cache: 'http', result: 'exact' }))).toBe(10);
    expect(s.get(series('cell0_cache_lookups_total', { cache: 'l1', result: 'exact' }))).toBe(4);
  });

  it('reads guard rejections by rule, false hits and entries', async () => {
    const m = new Cell0Metrics({ defaultMetrics: false });
    m.caches.addSource({
      guardRejections: () => ({ negation: 2, number: 1 }),
      falseHits: () => 3,
      entries: () => Promise.resolve({ search: 7, http: 2, l1: 1 }),
    });
    const s = await scrape(m);
    expect(s.get(series('cell0_cache_guard_rejections_total', { cache: 'semantic', rule: 'negation' }))).toBe(
      2,
    );
    expect(s.get(series('cell0_cache_guard_rejections_total', { cache: 'semantic', rule: 'number' }))).toBe(
      1,
    );
    expect(s.get(series('cell0_cache_false_hits_total', { cache: 'semantic' }))).toBe(3);
    expect(s.get(series('cell0_cache_entries', { cache: 'search' }))).toBe(7);
    expect(s.get(series('cell0_cache_entries', { cache: 'l1' }))).toBe(1);
  });

  it('reads breakers (0/1/2), retries, rate limits and pools from the guards', async () => {
    const m = new Cell0Metrics({ defaultMetrics: false });
    m.backends.addSource({
      guards: () => [
        {
          name: 'ollama@http://a:1',
          breaker: { state: 'open' },
          limiter: { granted: 10, waited: 4, refused: 2, totalWaitMs: 1500 },
          retriesBy: { '5xx': 3, connection: 1 },
        },
        { name: 'brave@https://b', breaker: { state: 'half-open' }, retriesBy: {} as Record<string, number> },
      ],
      pools: () => [
        {
          origin: 'http://a:1',
          maxConnectionsPerHost: 16,
          connections: { open: 5, free: 2 },
          inFlight: 3,
          queued: 7,
        },
      ],
    });
    const s = await scrape(m);
    expect(s.get(series('cell0_backend_breaker_state', { backend: 'ollama@http://a:1' }))).toBe(2);
    expect(s.get(series('cell0_backend_breaker_state', { backend: 'brave@https://b' }))).toBe(1);
    expect(
      s.get(series('cell0_backend_retries_total', { backend: 'ollama@http://a:1', reason: '5xx' })),
    ).toBe(3);
    expect(s.get(series('cell0_backend_rate_limit_waits_total', { backend: 'ollama@http://a:1' }))).toBe(4);
    expect(s.get(series('cell0_backend_rate_limit_refusals_total', { backend: 'ollama@http://a:1' }))).toBe(
      2,
    );
    expect(
      s.get(series('cell0_backend_rate_limit_wait_seconds_total', { backend: 'ollama@http://a:1' })),
    ).toBe(1.5);
    expect(
      s.get(series('cell0_backend_rate_limit_waits_total', { backend: 'brave@https://b' })),
    ).toBeUndefined();
    expect(s.get(series('cell0_http_pool_connections', { origin: 'http://a:1', state: 'busy' }))).toBe(3);
    expect(s.get(series('cell0_http_pool_connections', { origin: 'http://a:1', state: 'idle' }))).toBe(2);
    expect(s.get(series('cell0_http_pool_queued_requests', { origin: 'http://a:1' }))).toBe(7);
  });

  it('reads resources, pressure and model memory; fleet workers, Redis memory and shedding', async () => {
    const m = new Cell0Metrics({ defaultMetrics: false });
    m.resources.addSource({
      usage: () => ({
        memoryPercent: 61.5,
        cpuPercent: 12,
        diskPercent: 40,
        process: { eventLoopDelayMeanMs: 2, eventLoopDelayP99Ms: 25 },
      }),
      pressure: () => 2,
      models: () => [
        {
          backend: 'http://sim:11435',
          stats: {
            budgetBytes: 8e9,
            usedBytes: 5e9,
            resident: [{}, {}],
            hits: 9,
            misses: 3,
            loads: 3,
            evictionsByPolicy: { LRU: 1 },
          },
        },
      ],
    });
    m.fleet.addSource({
      workerStates: () => Promise.resolve(['running', 'paused', 'paused']),
      redisMemory: () => ({ usedBytes: 900, maxBytes: 1000 }),
      shed: () => ({ queue_depth: 4, fleet_pressure: 0, redis_memory: 1 }),
    });
    const s = await scrape(m);
    expect(s.get('cell0_memory_percent')).toBe(61.5);
    expect(s.get('cell0_cpu_percent')).toBe(12);
    expect(s.get('cell0_disk_percent')).toBe(40);
    expect(s.get('cell0_event_loop_delay_p99_seconds')).toBe(0.025);
    expect(s.get('cell0_pressure_state')).toBe(2);
    const b = { backend: 'http://sim:11435' };
    expect(s.get(series('cell0_model_resident_bytes', b))).toBe(5e9);
    expect(s.get(series('cell0_model_budget_bytes', b))).toBe(8e9);
    expect(s.get(series('cell0_models_resident', b))).toBe(2);
    expect(s.get(series('cell0_model_loads_total', b))).toBe(3);
    expect(s.get(series('cell0_model_evictions_total', { ...b, policy: 'LRU' }))).toBe(1);
    expect(s.get(series('cell0_model_lookups_total', { ...b, result: 'miss' }))).toBe(3);
    expect(s.get(series('cell0_fleet_workers', { state: 'paused' }))).toBe(2);
    expect(s.get(series('cell0_fleet_workers', { state: 'running' }))).toBe(1);
    expect(s.get(series('cell0_fleet_workers', { state: 'closing' }))).toBe(0);
    expect(s.get('cell0_redis_memory_used_bytes')).toBe(900);
    expect(s.get('cell0_redis_memory_max_bytes')).toBe(1000);
    expect(s.get(series('cell0_requests_shed_total', { reason: 'queue_depth' }))).toBe(4);
    const r = await promtool(['check', 'metrics'], await m.text());
    expect({ code: r.code, out: r.stdout + r.stderr }).toEqual({ code: 0, out: '' });
  });

  it('gives no worker figure rather than a false 0 when the fleet cannot be read', async () => {
    const m = new Cell0Metrics({ defaultMetrics: false });
    m.fleet.addSource({
      workerStates: () => Promise.reject(new Error('Redis away')),
      redisMemory: () => undefined,
      shed: () => ({}),
    });
    const s = await scrape(m);
    expect(s.get(series('cell0_fleet_workers', { state: 'running' }))).toBeUndefined();
    expect(s.get('cell0_redis_memory_used_bytes')).toBeUndefined();
  });

  it('gives no resource figure before the first sample', async () => {
    const m = new Cell0Metrics({ defaultMetrics: false });
    m.resources.addSource({ usage: () => undefined, pressure: () => 0, models: () => [] });
    const s = await scrape(m);
    expect(s.get('cell0_memory_percent')).toBeUndefined();
    expect(s.get('cell0_pressure_state')).toBe(0);
  });

  it('counts batches, items and backend calls by batcher', async () => {
    const m = new Cell0Metrics({ defaultMetrics: false });
    m.batches.addSource(() => [
      { batcher: 'enqueue', batches: 4, items: 10 },
      { batcher: 'embedding', batches: 2, items: 64, backendCalls: 3 },
    ]);
    const s = await scrape(m);
    expect(s.get(series('cell0_batch_items_total', { batcher: 'enqueue' }))).toBe(10);
    expect(s.get(series('cell0_batch_backend_calls_total', { batcher: 'enqueue' }))).toBe(4);
    expect(s.get(series('cell0_batch_backend_calls_total', { batcher: 'embedding' }))).toBe(3);
  });

  it('gives the batch sizes as a histogram by batcher, summed over sources, the same at every scrape', async () => {
    const m = new Cell0Metrics({ defaultMetrics: false });
    // Bins of BATCH_SIZE_BOUNDS (1, 2, 4, 8, ..., 512, then larger): sizes 1, 3, 3, 8 and 600.
    const bins = [1, 0, 2, 1, 0, 0, 0, 0, 0, 0, 1];
    m.batches.addSource(() => [
      { batcher: 'enqueue', batches: 5, items: 615, sizes: bins },
      { batcher: 'embedding', batches: 2, items: 64 },
    ]);
    m.batches.addSource(() => [{ batcher: 'enqueue', batches: 1, items: 2, sizes: [0, 1] }]);
    for (let i = 0; i < 2; i++) {
      const s = await scrape(m);
      const b = (le: string) => s.get(series('cell0_batch_size_bucket', { batcher: 'enqueue', le }));
      expect([b('1'), b('2'), b('4'), b('8'), b('512'), b('+Inf')]).toEqual([1, 2, 4, 5, 5, 6]);
      expect(s.get(series('cell0_batch_size_sum', { batcher: 'enqueue' }))).toBe(617);
      expect(s.get(series('cell0_batch_size_count', { batcher: 'enqueue' }))).toBe(6);
      // A source without sizes gives no histogram series.
      expect(s.get(series('cell0_batch_size_count', { batcher: 'embedding' }))).toBeUndefined();
    }
  });

  it('sorts backend failures into a fixed set of outcomes', () => {
    const http = (status: number) => new ProviderError('ollama', 'x', status, status >= 500);
    expect(outcomeOf(http(404))).toBe('client_error');
    expect(outcomeOf(http(429))).toBe('throttled');
    expect(outcomeOf(http(503))).toBe('server_error');
    expect(outcomeOf(new ProviderError('ollama', 'x', undefined, true, { kind: 'connection' }))).toBe(
      'connection',
    );
    expect(outcomeOf(new ModelNotFoundError('ollama', 'nope'))).toBe('client_error');
    expect(outcomeOf(new BreakerOpenError('ollama', 1000))).toBe('breaker_open');
    expect(outcomeOf(new RateLimitedError('ollama', 1000))).toBe('rate_limited');
    expect(outcomeOf(new Error('?'))).toBe('error');
  });

  it('meters an inference backend: inputs per embedding call, outcomes, tokens in', async () => {
    const m = new Cell0Metrics({ defaultMetrics: false });
    const inner: InferenceBackend = {
      name: 'ollama',
      origin: 'http://sim:1',
      run: () => Promise.reject(new Error('not used')),
      embed: (model, input) =>
        input.length > 4
          ? Promise.reject(new ProviderError('ollama', 'too big', 400, false))
          : Promise.resolve({ model, embeddings: input.map(() => [1, 0]), promptTokens: input.length * 2 }),
      close: () => Promise.resolve(),
    };
    const metered = new MeteredInference(inner, m.backends);
    const signal = new AbortController().signal;
    await metered.embed!('e5', ['a', 'b', 'c'], { signal });
    await metered.embed!('e5', ['d'], { signal });
    await expect(metered.embed!('e5', ['1', '2', '3', '4', '5'], { signal })).rejects.toThrow('too big');
    const s = await scrape(m);
    const l = { provider: 'ollama', origin: 'http://sim:1', model: '*' };
    expect(s.get(series('cell0_backend_call_inputs_count', l))).toBe(3);
    expect(s.get(series('cell0_backend_call_inputs_sum', l))).toBe(9);
    expect(s.get(series('cell0_backend_call_inputs_bucket', { ...l, le: '4' }))).toBe(2);
    expect(s.get(series('cell0_backend_requests_total', { ...l, outcome: 'ok' }))).toBe(2);
    expect(s.get(series('cell0_backend_requests_total', { ...l, outcome: 'client_error' }))).toBe(1);
    expect(s.get(series('cell0_backend_tokens_total', { ...l, direction: 'in' }))).toBe(8);
  });
});
