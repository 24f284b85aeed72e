import { execFile } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';

/*
 * The package as a library user gets it: built (npm run build), packed (npm pack), unpacked into a consumer
 * project's node_modules, then each entry point imported from the BUILT files (not the TypeScript sources)
 * and a TypeScript consumer type-checked against the shipped .d.ts files. The dependencies are linked from
 * this checkout's node_modules, so nothing is downloaded.
 */

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  exports: Record<string, unknown>;
};

/** What a library user needs from each entry point (each also checked in the .d.ts by the consumer below). */
const SURFACE: Record<string, string[]> = {
  cell0: [
    'Cell0Client',
    'JobSubmitter',
    'createApi',
    'LoadShedder',
    'loadConfig',
    'ENV',
    'createLogger',
    'RedisClient',
    'ErrorCode',
    'Cell0Error',
    'ValidationError',
    'OverloadedError',
    'QueueName',
    'SearchProvider',
    'SearchType',
    'parseInferenceRequest',
    'jobIdFor',
  ],
  'cell0/workers': [
    'Cell0Worker',
    'OllamaBackend',
    'OllamaClient',
    'OpenAIBackend',
    'OpenAIClient',
    'SearxngSearch',
    'BraveSearch',
    'LocalSearch',
    'OllamaSimulator',
    'NoopInferenceBackend',
    'InferenceRouter',
    'GuardedSearch',
    'BackendGuard',
    'buildProviders',
    'ResourceMonitor',
    'ResourceLimiter',
    'ModelMemoryManager',
    'DiskCleanupManager',
    'ResourceManagement',
    'EvictionPolicy',
    'getFleetUsage',
    'loadConfig',
    'ProviderError',
    'ErrorCode',
  ],
  'cell0/cache': [
    'ResponseCache',
    'CacheStrategy',
    'SemanticCache',
    'withModelCache',
    'CacheMatchConfidence',
    'HashedNgramEmbedder',
    'FunctionEmbedder',
    'SearchCache',
    'inferenceCacheKey',
    'buildCaches',
    'buildResponseCache',
    'RedisClient',
  ],
};

let work: string;
let consumer: string;
let packed: string[];

beforeAll(async () => {
  await run('npm', ['run', 'build'], { cwd: ROOT, timeout: 240_000 });
  work = mkdtempSync(join(tmpdir(), 'cell0-package-'));
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], {
    cwd: ROOT,
    timeout: 120_000,
  });
  const [info] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
  packed = info.files.map((f) => f.path);
  await run('tar', ['-xzf', join(work, info.filename), '-C', work]);
  consumer = join(work, 'consumer');
  const modules = join(consumer, 'node_modules');
  mkdirSync(modules, { recursive: true });
  renameSync(join(work, 'package'), join(modules, 'cell0'));
  // The package's dependencies (and their types) as an install would provide them.
  for (const dep of [...Object.keys(pkg.dependencies), '@types']) {
    if (dep.includes('/')) mkdirSync(join(modules, dep.split('/')[0]!), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', dep), join(modules, dep), 'dir');
  }
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
}, 400_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the tarball holds the built entry points, the Lua scripts beside them, the data, and no sources', () => {
  for (const entry of Object.values(pkg.exports)) {
    if (typeof entry === 'string') continue;
    const { types, default: main } = entry as { types: string; default: string };
    expect(packed).toEqual(expect.arrayContaining([types.slice(2), main.slice(2)]));
  }
  const scripts = readdirSync(join(ROOT, 'shared', 'lua'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.lua'))
    .map((f) => `dist/shared/lua/${f}`);
  expect(scripts.length).toBeGreaterThan(0);
  expect(packed).toEqual(expect.arrayContaining(scripts));
  expect(packed.some((f) => f.startsWith('data/corpus/'))).toBe(true);
  expect(packed.filter((f) => /\.ts$/.test(f) && !f.endsWith('.d.ts'))).toEqual([]);
  expect(packed.filter((f) => f.startsWith('test/') || f.startsWith('bench/'))).toEqual([]);
});

test('each entry point, imported from the built package, has its named exports', async () => {
  const script = `
    const surface = ${JSON.stringify(SURFACE)};
    const out = {};
    for (const [entry, names] of Object.entries(surface)) {
      const m = require(entry);
      out[entry] = names.filter((n) => m[n] === undefined);
    }
    console.log(JSON.stringify(out));`;
  const { stdout } = await run(process.execPath, ['-e', script], { cwd: consumer, timeout: 60_000 });
  const missing = JSON.parse(stdout) as Record<string, string[]>;
  expect(missing).toEqual({ cell0: [], 'cell0/workers': [], 'cell0/cache': [] });
  // ESM consumers get the same names.
  const esm = await run(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      "const m = await import('cell0/cache'); console.log(typeof m.SemanticCache);",
    ],
    { cwd: consumer, timeout: 60_000 },
  );
  expect(esm.stdout.trim()).toBe('function');
}, 120_000);

test('the built package runs its Lua scripts: a semantic cache stores and answers on Redis', async () => {
  const script = `
    const { RedisClient, SemanticCache } = require('cell0/cache');
    (async () => {
      const redis = new RedisClient({ url: ${JSON.stringify(testRedisUrl())} });
      // Fail-fast client (no offline queue): wait for the connection first.
      if (redis.connection.status !== 'ready') await new Promise((r) => redis.connection.once('ready', r));
      const cache = new SemanticCache({ redis, prefix: ${JSON.stringify(uniquePrefix('pkg'))} });
      const scope = { model: 'm' };
      await cache.set('what is the package surface', { ok: 1 }, scope);
      const hit = await cache.get('what is the package surface', scope);
      console.log(JSON.stringify({ hit: hit && hit.value, errors: cache.getStats().errors }));
      await redis.close();
    })().catch((err) => { console.error(err); process.exit(1); });`;
  const { stdout } = await run(process.execPath, ['-e', script], { cwd: consumer, timeout: 60_000 });
  expect(JSON.parse(stdout)).toEqual({ hit: { ok: 1 }, errors: 0 });
}, 120_000);

test('a TypeScript consumer type-checks against the shipped .d.ts files', async () => {
  writeFileSync(
    join(consumer, 'consumer.ts'),
    `import { Cell0Client, createApi, loadConfig, ValidationError, ErrorCode, type Cell0ClientOptions, type Config } from 'cell0';
import { Cell0Worker, NoopInferenceBackend, InferenceRouter, type Cell0WorkerOptions, type InferenceBackend } from 'cell0/workers';
import { ResponseCache, CacheStrategy, SemanticCache, type SemanticCacheOptions, type SearchCacheOptions } from 'cell0/cache';

const config: Config = loadConfig({});
const clientOptions: Cell0ClientOptions = { waitMs: 1000 };
const client = new Cell0Client(clientOptions);
const app = createApi({ client });
app.listen;
const workerOptions: Cell0WorkerOptions = { redisUrl: config.redis.url, queues: [] };
const backend: InferenceBackend = new NoopInferenceBackend();
const router = new InferenceRouter([{ pattern: '*', backend }]);
const strategy: CacheStrategy = CacheStrategy.ALWAYS;
const semantic: Partial<SemanticCacheOptions> = { ttlSeconds: 60 };
const search: Partial<SearchCacheOptions> = { prefix: '{x}' };
const isValidation = (e: unknown): boolean => e instanceof ValidationError && e.code === ErrorCode.VALIDATION;
export { client, router, strategy, semantic, search, isValidation, workerOptions, Cell0Worker, ResponseCache, SemanticCache };

// The types are real, not any: these must be errors.
// @ts-expect-error waitMs is a number
const wrong: Cell0ClientOptions = { waitMs: 'soon' };
// @ts-expect-error not a cache strategy
const wrongStrategy: CacheStrategy = 'sometimes';
export { wrong, wrongStrategy };
`,
  );
  writeFileSync(
    join(consumer, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'es2023',
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: ['node'],
      },
      files: ['consumer.ts'],
    }),
  );
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = await run(process.execPath, [tsc, '-p', consumer], { cwd: consumer, timeout: 120_000 }).then(
    () => 'ok',
    (err: { stdout?: string }) => err.stdout ?? String(err),
  );
  expect(result).toBe('ok');
}, 180_000);
