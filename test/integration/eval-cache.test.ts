import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { spawnCell0, type Cell0Process } from '../helpers/cli';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';

const LEVELS = ['exact', 'high', 'medium', 'low'] as const;

interface LevelStats {
  precision: number | null;
  recall: number | null;
  tp: number;
  fp: number;
  fn: number;
}
interface Report {
  file: string;
  pairs: number;
  positives: number;
  negatives: number;
  byLevel: Record<(typeof LEVELS)[number], LevelStats>;
  defaultLevel: string;
  guard: boolean;
  outcomes: Record<(typeof LEVELS)[number] | 'miss', number>;
  embedder: string;
  thresholds: { high: number; medium: number; low: number };
  cache: { guardRejections: number; errors: number };
  cleanup: { models: number; invalidated: number; leftoverKeysDeleted: number };
  errors?: { line: number; label: 0 | 1; kind: string; confidence: string | null }[];
}

const PAIRS = [
  '# a comment, then a blank line',
  '',
  '1\tWhat is the capital of France?\tWhat is the capital of France?',
  '1\tHow do I reverse a list in Python?\tHow can I reverse a list in Python?',
  "1\tWhat is the boiling point of water?\tWhat's the boiling point of water?",
  '0\tFlights from Paris to Rome\tFlights from Rome to Paris',
  '0\tIs ibuprofen safe during pregnancy?\tIs ibuprofen not safe during pregnancy?',
  '0\tHow do I bake banana bread?\tWho won the World Cup in 2014?',
].join('\n');

describe('cell0 eval-cache', () => {
  let dir: string;
  let prefix: string;
  let redis: Redis;
  let proc: Cell0Process | undefined;

  const run = (args: string[]) => {
    proc = spawnCell0(['eval-cache', ...args], {
      REDIS_URL: testRedisUrl(),
      CELL0_QUEUE_PREFIX: prefix,
      CELL0_LOG_LEVEL: 'warn',
      // The test is about the counts, not Redis latency: a command held up on a busy shared machine must not
      // turn into a cache error (which makes the command exit 1).
      CELL0_REDIS_COMMAND_TIMEOUT_MS: '30000',
    });
    return proc;
  };
  // The exit code with stderr beside it, so a failure shows why the command exited.
  const exitOf = async (p: Cell0Process) => ({ code: await p.exited, stderr: p.stderr() });
  // The semantic cache drops the braces of its prefix ("{p}" -> "p:sem..."): look under both spellings.
  const keysLeft = async () => [
    ...(await redis.keys(`${prefix}*`)),
    ...(await redis.keys(`${prefix.replace(/[{}]/g, '')}*`)),
  ];

  beforeAll(() => {
    redis = new Redis(testRedisUrl());
  });
  afterAll(async () => {
    await redis.quit();
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'cell0-eval-'));
    prefix = uniquePrefix('eval');
  });
  afterEach(async () => {
    proc?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    const keys = await keysLeft();
    if (keys.length > 0) await redis.del(...keys);
  });

  function checkCounts(r: Report) {
    expect(r.pairs).toBe(6);
    expect(r.positives).toBe(3);
    expect(r.negatives).toBe(3);
    expect(r.defaultLevel).toBe('high');
    expect(Object.keys(r.byLevel).sort()).toEqual([...LEVELS].sort());
    expect(Object.values(r.outcomes).reduce((a, b) => a + b, 0)).toBe(6);
    let lastPredicted = -1;
    for (const level of LEVELS) {
      const s = r.byLevel[level];
      expect(s.tp + s.fn).toBe(r.positives);
      expect(s.fp).toBeLessThanOrEqual(r.negatives);
      expect(s.recall).toBeCloseTo(s.tp / r.positives, 3);
      if (s.tp + s.fp > 0) expect(s.precision).toBeCloseTo(s.tp / (s.tp + s.fp), 3);
      else expect(s.precision).toBeNull();
      // A lower level accepts everything a higher one does.
      expect(s.tp + s.fp).toBeGreaterThanOrEqual(lastPredicted);
      lastPredicted = s.tp + s.fp;
    }
    // Hits at "low" or better are every lookup that was not a miss.
    expect(r.byLevel.low.tp + r.byLevel.low.fp).toBe(6 - r.outcomes.miss);
  }

  it('prints precision and recall per level as JSON and removes what it stored', async () => {
    const file = join(dir, 'pairs.tsv');
    writeFileSync(file, PAIRS);
    const p = run([file]);
    expect(await exitOf(p)).toMatchObject({ code: 0 });
    const r = JSON.parse(p.stdout()) as Report;
    expect(r.file).toBe(file);
    expect(r.guard).toBe(true);
    expect(r.errors).toBeUndefined();
    checkCounts(r);
    // The identical pair is found with the highest confidence.
    expect(r.outcomes.exact).toBeGreaterThanOrEqual(1);
    expect(r.cache.errors).toBe(0);
    expect(r.cleanup.models).toBe(6);
    expect(await keysLeft()).toEqual([]);
  }, 60_000);

  it('--no-guard --errors: reports the guard off and lists the misclassified pairs with their lines', async () => {
    const file = join(dir, 'pairs.tsv');
    writeFileSync(file, PAIRS);
    const p = run([file, '--no-guard', '--errors', '--json']);
    expect(await exitOf(p)).toMatchObject({ code: 0 });
    const r = JSON.parse(p.stdout()) as Report;
    expect(r.guard).toBe(false);
    checkCounts(r);
    expect(r.errors).toHaveLength(r.byLevel.high.fp + r.byLevel.high.fn);
    for (const e of r.errors!) {
      expect(e.line).toBeGreaterThanOrEqual(3);
      expect(e.line).toBeLessThanOrEqual(8);
      expect(e.kind).toBe(e.label === 1 ? 'false-negative' : 'false-positive');
    }
    expect(await keysLeft()).toEqual([]);
  }, 60_000);

  it('exits 2 naming the line of a malformed pair, before touching Redis', async () => {
    const file = join(dir, 'bad.tsv');
    writeFileSync(file, '# header comment\n1\ta\tb\n1\tonly two fields\n');
    const p = run([file]);
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toMatch(/line 3: expected label<TAB>prompt_a<TAB>prompt_b/);
    expect(p.stdout()).toBe('');

    writeFileSync(file, '1\ta\tb\nyes\tc\td\n');
    const q = run([file]);
    expect(await q.exited).toBe(2);
    expect(q.stderr()).toMatch(/line 2: label must be 0 or 1/);
    expect(await keysLeft()).toEqual([]);
  }, 60_000);

  // The figures docs/benchmarks.md reports, on a set the rules were not written from (floors a little
  // under the measured 1.000 / 0.722, so a change that costs precision or recall fails here).
  it('on the holdout set: precision >= 0.98 and recall >= 0.65 at high with the default (lexical) embedder', async () => {
    const file = join(__dirname, '..', 'fixtures', 'cache-eval-holdout.tsv');
    const p = run([file]);
    expect(await exitOf(p)).toMatchObject({ code: 0 });
    const r = JSON.parse(p.stdout()) as Report;
    expect(r.embedder).toMatch(/^lexical-v1-/);
    expect(r.thresholds).toEqual({ high: 0.85, medium: 0.8, low: 0.75 });
    expect(r.cache.errors).toBe(0);
    expect(r.byLevel.high.precision).toBeGreaterThanOrEqual(0.98);
    expect(r.byLevel.high.recall).toBeGreaterThanOrEqual(0.65);
    expect(r.byLevel.low.precision).toBeGreaterThanOrEqual(0.95);

    // the former default, for comparison: same guard, no synonyms
    const q = run([file, '--embedder', 'hashed']);
    expect(await exitOf(q)).toMatchObject({ code: 0 });
    const h = JSON.parse(q.stdout()) as Report;
    expect(h.embedder).toBe('hashed-ngram-v1');
    expect(h.thresholds).toEqual({ high: 0.9, medium: 0.82, low: 0.75 });
    expect(h.byLevel.high.recall!).toBeLessThan(r.byLevel.high.recall!);
    expect(await keysLeft()).toEqual([]);
  }, 120_000);

  it('exits 2 when the file cannot be read', async () => {
    const p = run([join(dir, 'missing.tsv')]);
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toMatch(/cannot read .*missing\.tsv/);
  }, 30_000);
});
