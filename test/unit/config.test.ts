import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ENV, loadConfig, redactUrl } from '../../shared/config/config';
import { ConfigError } from '../../shared/errors';

const ROOT = join(__dirname, '..', '..');

function issuesOf(env: Record<string, string>): { field: string; reason: string }[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('has the seed defaults', () => {
    const c = loadConfig({});
    expect(c.limits.maxMemoryPercent).toBe(85);
    expect(c.limits.maxCpuPercent).toBe(90);
    expect(c.redis.host).toBe('localhost');
    expect(c.redis.port).toBe(6379);
    expect(c.redis.url).toBe('redis://localhost:6379');
    expect(c.redis.explicitUrl).toBe(false);
    expect(c.redis.prefix).toBe('{cell0}');
    expect(c.cache.ttlSeconds).toBe(300);
    expect(c.api.port).toBe(3000);
    expect(c.api.apiKeys).toEqual([]);
    expect(c.limits.maxPromptBytes).toBe(32 * 1024);
    expect(c.providers.ollamaUrl).toBeUndefined();
  });

  it('lets REDIS_URL win over host and port, with password, db and TLS', () => {
    const c = loadConfig({
      REDIS_URL: 'rediss://:s3cret@cache.example:6380/2',
      CELL0_REDIS_HOST: 'other',
      CELL0_REDIS_PORT: '1',
    });
    expect(c.redis.url).toBe('rediss://:s3cret@cache.example:6380/2');
    expect(c.redis.explicitUrl).toBe(true);
    expect(c.redis.host).toBe('cache.example');
    expect(c.redis.port).toBe(6380);
    expect(redactUrl(c.redis.url)).toBe('rediss://:***@cache.example:6380/2');
  });

  it('builds the URL from host and port, bracketing IPv6', () => {
    expect(loadConfig({ CELL0_REDIS_HOST: 'redis.internal', CELL0_REDIS_PORT: '7000' }).redis.url).toBe(
      'redis://redis.internal:7000',
    );
    expect(loadConfig({ CELL0_REDIS_HOST: '::1' }).redis.url).toBe('redis://[::1]:6379');
  });

  it('names every bad variable and what it expected, in one error', () => {
    const issues = issuesOf({
      CELL0_PORT: 'abc',
      CELL0_MAX_CPU_PERCENT: '150',
      REDIS_URL: 'http://x',
      CELL0_DASHBOARD_WRITE: 'maybe',
    });
    const byField = Object.fromEntries(issues.map((i) => [i.field, i.reason]));
    expect(Object.keys(byField).sort()).toEqual([
      'CELL0_DASHBOARD_WRITE',
      'CELL0_MAX_CPU_PERCENT',
      'CELL0_PORT',
      'REDIS_URL',
    ]);
    expect(byField.CELL0_PORT).toMatch(/integer between 0 and 65535.*"abc"/);
    expect(byField.CELL0_MAX_CPU_PERCENT).toMatch(/<= 100/);
    expect(byField.REDIS_URL).toMatch(/redis:\/\/ or rediss:\/\//);
  });

  it.each([
    ['CELL0_MAX_MEMORY_PERCENT', 'maxMemoryPercent'],
    ['CELL0_MAX_CPU_PERCENT', 'maxCpuPercent'],
    ['CELL0_MAX_DISK_PERCENT', 'maxDiskPercent'],
    ['CELL0_MAX_HEAP_PERCENT', 'maxHeapPercent'],
    ['CELL0_MAX_EVENT_LOOP_DELAY_MS', 'maxEventLoopDelayMs'],
  ] as const)('%s=0 turns that limit off (accepted, passed on as 0)', (name, key) => {
    expect(loadConfig({ [name]: '0' }).limits[key]).toBe(0);
    // 0 is "off", not a limit at or under the hysteresis: only a small non-zero value is refused.
    if (key !== 'maxEventLoopDelayMs')
      expect(issuesOf({ [name]: '3' })[0]).toMatchObject({
        field: name,
        reason: expect.stringMatching(/or 0 for no limit/),
      });
  });

  it('CELL0_MAX_QUEUE_DEPTH=0 is no bound; the CPU and behind windows have their defaults', () => {
    const c = loadConfig({ CELL0_MAX_QUEUE_DEPTH: '0' });
    expect(c.resources.maxQueueDepth).toBe(0);
    expect(c.resources).toMatchObject({
      cpuWindowMs: 10_000,
      behindWindowMs: 10_000,
      behindWaitAgeMs: 30_000,
    });
    expect(loadConfig({ CELL0_CPU_WINDOW_MS: '0', CELL0_BEHIND_WAIT_AGE_MS: '0' }).resources).toMatchObject({
      cpuWindowMs: 0,
      behindWaitAgeMs: 0,
    });
    expect(issuesOf({ CELL0_BEHIND_WINDOW_MS: '0' })[0]?.field).toBe('CELL0_BEHIND_WINDOW_MS');
  });

  it('never echoes a secret value back', () => {
    const issues = issuesOf({ REDIS_URL: 'not a url with hunter2' });
    expect(JSON.stringify(issues)).not.toContain('hunter2');
  });

  it('refuses a body limit below the prompt limit and a prefix without a hash tag', () => {
    expect(issuesOf({ CELL0_MAX_PROMPT_BYTES: '100000', CELL0_MAX_BODY_BYTES: '50000' })[0]?.field).toBe(
      'CELL0_MAX_BODY_BYTES',
    );
    expect(issuesOf({ CELL0_QUEUE_PREFIX: 'cell0' })[0]?.field).toBe('CELL0_QUEUE_PREFIX');
  });

  it('parses lists and booleans', () => {
    const c = loadConfig({
      CELL0_API_KEYS: ' a , b,,c ',
      CELL0_DASHBOARD_WRITE: 'yes',
      CELL0_OLLAMA_URL: 'http://gpu:11434/',
    });
    expect(c.api.apiKeys).toEqual(['a', 'b', 'c']);
    expect(c.api.dashboardWrite).toBe(true);
    expect(c.providers.ollamaUrl).toBe('http://gpu:11434');
  });

  it('reads admin keys and the tenant secret; refuses a key in both lists, a short secret, and never echoes them', () => {
    const c = loadConfig({
      CELL0_API_KEYS: 'tenant-1,tenant-2',
      CELL0_ADMIN_KEYS: 'admin-1',
      CELL0_TENANT_SECRET: 'sixteen-chars-ok',
    });
    expect(c.api).toMatchObject({ adminKeys: ['admin-1'], tenantSecret: 'sixteen-chars-ok' });
    expect(loadConfig({}).api).toMatchObject({ adminKeys: [], tenantSecret: undefined });
    const both = issuesOf({ CELL0_API_KEYS: 'tenant-1,shared-key', CELL0_ADMIN_KEYS: 'shared-key' });
    expect(both).toEqual([
      { field: 'CELL0_ADMIN_KEYS', reason: expect.stringContaining('also in CELL0_API_KEYS') },
    ]);
    expect(JSON.stringify(both)).not.toContain('shared-key');
    const short = issuesOf({ CELL0_TENANT_SECRET: 'short-secret' });
    expect(short).toEqual([{ field: 'CELL0_TENANT_SECRET', reason: expect.stringContaining('at least 16') }]);
    expect(JSON.stringify(short)).not.toContain('short-secret');
  });

  it('reads backends, routes and rate limits', () => {
    const c = loadConfig({
      CELL0_OPENAI_URL: 'http://gpu1:8000/v1/',
      CELL0_OPENAI_API_KEY: 'sk-1',
      CELL0_MODEL_ROUTES: 'qwen2.5:*=ollama, big-*=openai@https://api.example.com/v1, *=openai',
      CELL0_RATE_LIMITS: 'brave=50/50, http://gpu1:8000=20/40/512',
      CELL0_SIM_FAULT_RATE_429: '0.33',
      CELL0_SIM_RATE_LIMIT_RPS: '20',
    });
    expect(c.providers.openaiUrl).toBe('http://gpu1:8000/v1');
    expect(c.providers.modelRoutes).toEqual([
      { pattern: 'qwen2.5:*', kind: 'ollama' },
      { pattern: 'big-*', kind: 'openai', url: 'https://api.example.com/v1' },
      { pattern: '*', kind: 'openai' },
    ]);
    expect(c.providers.rateLimits).toEqual([
      { target: 'brave', rate: 50, capacity: 50, maxInFlight: 0 },
      { target: 'http://gpu1:8000', rate: 20, capacity: 40, maxInFlight: 512 },
    ]);
    expect(c.providers.rateLimitScope).toBe('fleet');
    expect(c.simulator.faults).toMatchObject({ rate429: 0.33, rateLimit: { rate: 20, capacity: 20 } });
    expect(loadConfig({}).providers.rateLimits).toEqual([
      { target: 'brave', rate: 1, capacity: 1, maxInFlight: 0 },
    ]);
  });

  it('reads where the adaptive backend limit starts, 4 by default and never above its cap', () => {
    expect(loadConfig({}).providers.backendLimit).toMatchObject({ mode: 'adaptive', initial: 4, max: 64 });
    expect(loadConfig({ CELL0_BACKEND_LIMIT_INITIAL: '32' }).providers.backendLimit.initial).toBe(32);
    expect(
      loadConfig({ CELL0_BACKEND_LIMIT_INITIAL: '100', CELL0_BACKEND_LIMIT_MAX: '16' }).providers.backendLimit
        .initial,
    ).toBe(16);
    expect(issuesOf({ CELL0_BACKEND_LIMIT_INITIAL: '0' })).toEqual([
      { field: 'CELL0_BACKEND_LIMIT_INITIAL', reason: expect.any(String) },
    ]);
  });

  it('names the variable and the entry when a backend setting is wrong', () => {
    expect(issuesOf({ CELL0_MODEL_ROUTES: 'qwen*=vllm' })).toEqual([
      { field: 'CELL0_MODEL_ROUTES', reason: expect.stringContaining('backend must be ollama or openai') },
    ]);
    expect(issuesOf({ CELL0_MODEL_ROUTES: '*=openai' })).toEqual([
      { field: 'CELL0_MODEL_ROUTES', reason: expect.stringContaining('needs CELL0_OPENAI_URL') },
    ]);
    expect(issuesOf({ CELL0_RATE_LIMITS: 'brave=fast' })[0]).toMatchObject({
      field: 'CELL0_RATE_LIMITS',
      reason: expect.stringContaining('"brave=fast": rate must be'),
    });
    expect(issuesOf({ CELL0_SIM_FAULT_RATE_429: '0.6', CELL0_SIM_FAULT_RATE_500: '0.6' })[0]).toMatchObject({
      field: 'CELL0_SIM_FAULT_RATE_429',
      reason: expect.stringContaining('more than 1'),
    });
    const secret = issuesOf({ CELL0_OPENAI_API_KEY: ' ', CELL0_RATE_LIMIT_SCOPE: 'global' });
    expect(secret).toEqual([
      { field: 'CELL0_RATE_LIMIT_SCOPE', reason: expect.stringContaining('expected fleet or process') },
    ]);
  });

  it('takes the jobs of cell0 start locally unless CELL0_LOCAL_TAKE turns it off, and refuses anything else', () => {
    expect(loadConfig({}).workers.localTake).toBe(true);
    expect(loadConfig({ CELL0_LOCAL_TAKE: '0' }).workers.localTake).toBe(false);
    expect(loadConfig({ CELL0_LOCAL_TAKE: 'off' }).workers.localTake).toBe(false);
    expect(issuesOf({ CELL0_LOCAL_TAKE: 'sometimes' })).toEqual([
      { field: 'CELL0_LOCAL_TAKE', reason: expect.stringContaining('expected 1/0') },
    ]);
  });

  it('reads the cache settings, and refuses a provider embedder without its vector length', () => {
    const c = loadConfig({
      CELL0_SEARCH_CACHE_TTLS: 'news=120, web=1800',
      CELL0_SEMANTIC_THRESHOLDS: '0.97,0.92,0.85',
      CELL0_SEMANTIC_MIN_CONFIDENCE: 'medium',
    });
    expect(c.cache).toMatchObject({
      enabled: true,
      http: true,
      semanticEmbedder: 'lexical',
      semanticMinConfidence: 'medium',
      searchTtls: { news: 120, web: 1800 },
      semanticThresholds: { high: 0.97, medium: 0.92, low: 0.85 },
    });
    expect(issuesOf({ CELL0_SEMANTIC_EMBEDDER: 'ollama:nomic-embed-text' })).toEqual([
      { field: 'CELL0_SEMANTIC_EMBED_DIMS', reason: expect.stringContaining('required') },
    ]);
    expect(issuesOf({ CELL0_SEARCH_CACHE_TTLS: 'blogs=5' })[0]).toMatchObject({
      field: 'CELL0_SEARCH_CACHE_TTLS',
      reason: expect.stringContaining('type must be one of'),
    });
    expect(issuesOf({ CELL0_SEMANTIC_THRESHOLDS: '0.8,0.9,0.95' })[0]).toMatchObject({
      field: 'CELL0_SEMANTIC_THRESHOLDS',
      reason: expect.stringContaining('high >= medium >= low'),
    });
  });

  it('.env.example and the configuration reference list every variable', () => {
    const example = readFileSync(join(ROOT, '.env.example'), 'utf8');
    const reference = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');
    for (const name of Object.keys(ENV)) {
      expect({ name, inExample: new RegExp(`^#? ?${name}=`, 'm').test(example) }).toEqual({
        name,
        inExample: true,
      });
      expect({ name, inReference: reference.includes(`\`${name}\``) }).toEqual({ name, inReference: true });
    }
    // and nothing stale: every variable named in .env.example exists
    for (const m of example.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)) expect(Object.keys(ENV)).toContain(m[1]);
  });
});
