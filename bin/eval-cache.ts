/*
 * `cell0 eval-cache FILE.tsv`: measures the semantic LLM-output cache on labelled prompt pairs.
 *
 * Each line of the file is `label<TAB>prompt_a<TAB>prompt_b` (label 1: same meaning, 0: different; `#`
 * starts a comment line). For every pair the command stores a value under prompt_a in a scope of its own
 * (model `eval-<run id>-<pair index>`, so pairs never see each other), looks prompt_b up with the lowest
 * minimum confidence, records the level the hit reached (or a miss), and finally invalidates every model it
 * used. "At level L" a hit whose confidence is L or better counts as a predicted positive.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Config, redactUrl } from '../shared/config/config.js';
import { type Logger } from '../shared/logger.js';
import {
  CacheMatchConfidence,
  SemanticCache,
  type Embedder,
  type SemanticThresholds,
} from '../shared/cache/semantic/index.js';
import { resolveEmbedder } from './embedder.js';
import { keyBase } from '../shared/cache/semantic/scope.js';
import { waitUntilReady } from '../shared/redis/connection.js';
import { RedisClient } from '../shared/redis/redis-client.js';
import { scanEveryMaster, unlinkFound } from '../shared/redis/cluster.js';

/** Exit code of a malformed or unreadable pairs file (the same as a configuration error). */
export const EXIT_BAD_INPUT = 2;

/** Confidence levels, best first. */
export const LEVELS = ['exact', 'high', 'medium', 'low'] as const;
export type Level = (typeof LEVELS)[number];
const RANK: Record<Level, number> = { exact: 3, high: 2, medium: 1, low: 0 };

/** The level misclassifications are listed at (`--errors`): the cache's usual minimum confidence. */
export const DEFAULT_LEVEL: Level = 'high';

/** One labelled pair; `line` is its 1-based line number in the file. */
export interface EvalPair {
  line: number;
  label: 0 | 1;
  a: string;
  b: string;
}

/** A line of the pairs file that is not a comment, a blank line or a well-formed pair. */
export class EvalFileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    detail: string,
  ) {
    super(line > 0 ? `${file}: line ${line}: ${detail}` : `${file}: ${detail}`);
    this.name = 'EvalFileError';
  }
}

/** Parses the TSV text of a pairs file; throws EvalFileError naming the first bad line. */
export function parseEvalTsv(text: string, file: string): EvalPair[] {
  const pairs: EvalPair[] = [];
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  lines.forEach((raw, i) => {
    const line = i + 1;
    const s = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (s.trim() === '' || s.startsWith('#')) return;
    const fields = s.split('\t');
    if (fields.length !== 3)
      throw new EvalFileError(
        file,
        line,
        `expected label<TAB>prompt_a<TAB>prompt_b (3 tab-separated fields), found ${fields.length}`,
      );
    const [label, a, b] = fields as [string, string, string];
    if (label !== '0' && label !== '1')
      throw new EvalFileError(file, line, `label must be 0 or 1, found ${JSON.stringify(label)}`);
    if (a.trim() === '' || b.trim() === '') throw new EvalFileError(file, line, 'empty prompt');
    pairs.push({ line, label: label === '1' ? 1 : 0, a, b });
  });
  if (pairs.length === 0) throw new EvalFileError(file, 0, 'no pairs in the file');
  return pairs;
}

/** What one lookup gave: the level of the hit, or undefined for a miss. */
export interface PairOutcome {
  pair: EvalPair;
  level: Level | undefined;
  similarity: number | undefined;
}

export interface LevelStats {
  /** tp / (tp + fp); null when nothing was predicted positive at this level. */
  precision: number | null;
  /** tp / (tp + fn); null when the file has no positive pair. */
  recall: number | null;
  tp: number;
  fp: number;
  fn: number;
}

/** A pair the cache got wrong at the default level (`--errors`). */
export interface Misclassified {
  line: number;
  label: 0 | 1;
  kind: 'false-positive' | 'false-negative';
  /** Level of the hit, or null for a miss. */
  confidence: Level | null;
  similarity: number | null;
  prompt_a: string;
  prompt_b: string;
}

export interface EvalReport {
  file: string;
  pairs: number;
  positives: number;
  negatives: number;
  byLevel: Record<Level, LevelStats>;
  defaultLevel: Level;
  guard: boolean;
  /** The embedder's name and the cut-offs of the levels. */
  embedder: string;
  thresholds: SemanticThresholds;
  /** How the lookups ended: hits per exact confidence level, and misses. */
  outcomes: Record<Level | 'miss', number>;
  /**
   * The cache's own counters: similarity candidates the guard refused, and Redis or embedder failures
   * (which the cache answers as misses; the command exits 1 when there were any).
   */
  cache: { guardRejections: number; errors: number };
  /** Models invalidated and entries they removed, and keys still found under the run's key base afterwards. */
  cleanup: { models: number; invalidated: number; leftoverKeysDeleted: number };
  errors?: Misclassified[];
}

const round = (x: number): number => Math.round(x * 10_000) / 10_000;

/** Precision, recall and counts at every level, from the outcomes of all pairs. */
export function scoreOutcomes(outcomes: readonly PairOutcome[]): Record<Level, LevelStats> {
  const byLevel = {} as Record<Level, LevelStats>;
  for (const level of LEVELS) {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (const o of outcomes) {
      const predicted = o.level !== undefined && RANK[o.level] >= RANK[level];
      if (predicted && o.pair.label === 1) tp++;
      else if (predicted) fp++;
      else if (o.pair.label === 1) fn++;
    }
    byLevel[level] = {
      precision: tp + fp > 0 ? round(tp / (tp + fp)) : null,
      recall: tp + fn > 0 ? round(tp / (tp + fn)) : null,
      tp,
      fp,
      fn,
    };
  }
  return byLevel;
}

function toLevel(confidence: CacheMatchConfidence): Level {
  const v = String(confidence);
  if ((LEVELS as readonly string[]).includes(v)) return v as Level;
  throw new Error(`semantic cache returned an unknown confidence ${JSON.stringify(v)}`);
}

/** The cache logs every invalidate() at info; for 300 pairs that is noise unless debugging. */
function quiet(log: Logger): Logger {
  return log.isLevelEnabled('debug') ? log : log.child({}, { level: 'warn' });
}

/** Runs `fn` over `items` with at most `limit` calls in flight. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>) {
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  });
  await Promise.all(lanes);
}

/** Deletes every key matching `pattern` (SCAN, not KEYS); returns how many it deleted. */
async function deleteMatching(redis: RedisClient, pattern: string): Promise<number> {
  let deleted = 0;
  // Every master of a cluster; the keys of different scopes sit in different slots.
  await redis.run((r) =>
    scanEveryMaster(r, pattern, 500, async (keys, node) => {
      deleted += await unlinkFound(r, node, keys);
    }),
  );
  return deleted;
}

export interface EvaluateOptions {
  file: string;
  pairs: readonly EvalPair[];
  redis: RedisClient;
  /** The SemanticCache's prefix for this run; every key under its key base is deleted at the end. */
  keyPrefix: string;
  guard: boolean;
  /** Default: the cache's default (LexicalEmbedder). */
  embedder?: Embedder;
  /** Default: the embedder's own. */
  thresholds?: SemanticThresholds;
  listErrors?: boolean;
  concurrency?: number;
  log?: Logger;
}

/** Stores prompt_a and looks up prompt_b for every pair; cleans up whatever it stored, even on failure. */
export async function evaluateSemanticCache(opts: EvaluateOptions): Promise<EvalReport> {
  const runId = randomBytes(4).toString('hex');
  const cache = new SemanticCache<{ answerTo: string }>({
    redis: opts.redis,
    prefix: opts.keyPrefix,
    guard: opts.guard,
    ...(opts.embedder ? { embedder: opts.embedder } : {}),
    ...(opts.thresholds ? { thresholds: opts.thresholds } : {}),
    ...(opts.log ? { logger: quiet(opts.log) } : {}),
  });
  const models = opts.pairs.map((_, i) => `eval-${runId}-${i}`);
  const used = new Set<string>();
  const outcomes: PairOutcome[] = new Array<PairOutcome>(opts.pairs.length);
  let invalidated = 0;
  let leftoverKeysDeleted = 0;
  try {
    await pool(opts.pairs, opts.concurrency ?? 4, async (pair, i) => {
      const scope = { model: models[i]! };
      used.add(scope.model);
      await cache.set(pair.a, { answerTo: pair.a }, scope, { ttlSeconds: 600 });
      const hit = await cache.get(pair.b, scope, { minConfidence: CacheMatchConfidence.LOW });
      outcomes[i] = {
        pair,
        level: hit ? toLevel(hit.confidence) : undefined,
        similarity: hit ? hit.similarity : undefined,
      };
    });
  } finally {
    for (const model of used) {
      try {
        invalidated += await cache.invalidate({ model });
      } catch (err) {
        opts.log?.warn({ err, model }, 'eval-cache: invalidate failed');
      }
    }
    try {
      // Each scope's slot counter outlives invalidate() by the slot hold time (semantic-drop.lua): not a
      // leftover, deleted here all the same.
      await deleteMatching(opts.redis, `${keyBase(opts.keyPrefix)}:{*}:next`);
      leftoverKeysDeleted = await deleteMatching(opts.redis, `${keyBase(opts.keyPrefix)}*`);
    } catch (err) {
      opts.log?.warn({ err }, 'eval-cache: sweeping leftover keys failed');
    }
    if (leftoverKeysDeleted > 0)
      opts.log?.warn({ leftoverKeysDeleted }, 'eval-cache: keys were left after invalidate; deleted them');
  }

  const stats = cache.getStats();
  const counts: Record<Level | 'miss', number> = { exact: 0, high: 0, medium: 0, low: 0, miss: 0 };
  for (const o of outcomes) counts[o.level ?? 'miss']++;
  const positives = opts.pairs.filter((p) => p.label === 1).length;
  const report: EvalReport = {
    file: opts.file,
    pairs: opts.pairs.length,
    positives,
    negatives: opts.pairs.length - positives,
    byLevel: scoreOutcomes(outcomes),
    defaultLevel: DEFAULT_LEVEL,
    guard: opts.guard,
    embedder: cache.embedder.name,
    thresholds: cache.thresholds,
    outcomes: counts,
    cache: { guardRejections: stats.guardRejections, errors: stats.errors },
    cleanup: { models: used.size, invalidated, leftoverKeysDeleted },
  };
  if (opts.listErrors) {
    report.errors = outcomes.flatMap((o): Misclassified[] => {
      const predicted = o.level !== undefined && RANK[o.level] >= RANK[DEFAULT_LEVEL];
      if (predicted === (o.pair.label === 1)) return [];
      return [
        {
          line: o.pair.line,
          label: o.pair.label,
          kind: predicted ? 'false-positive' : 'false-negative',
          confidence: o.level ?? null,
          similarity: o.similarity === undefined ? null : round(o.similarity),
          prompt_a: o.pair.a,
          prompt_b: o.pair.b,
        },
      ];
    });
  }
  return report;
}

/** Options of the `eval-cache` command as commander gives them. */
export interface EvalCacheCommandOptions {
  /** False with --no-guard. */
  guard: boolean;
  json?: boolean;
  errors?: boolean;
  concurrency?: number;
  /** lexical, hashed, ollama:<model> or openai:<model>; default CELL0_SEMANTIC_EMBEDDER. */
  embedder?: string;
}

/**
 * The labelled pairs of a TSV file, or undefined (the reason written to stderr as `cell0 <command>: …`)
 * when the file is missing or malformed.
 */
export function readEvalFile(file: string, command: string): EvalPair[] | undefined {
  try {
    return parseEvalTsv(readFileSync(file, 'utf8'), file);
  } catch (err) {
    const message =
      err instanceof EvalFileError
        ? err.message
        : `cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`;
    process.stderr.write(`cell0 ${command}: ${message}\n`);
    return undefined;
  }
}

/**
 * The `cell0 eval-cache` command: prints the report as JSON on stdout and returns the exit code (0; 2 for
 * a missing or malformed file; 1 when Redis does not answer or the cache reported failures).
 */
export async function evalCacheCommand(
  file: string,
  o: EvalCacheCommandOptions,
  cfg: Config,
  log: Logger,
): Promise<number> {
  const pairs = readEvalFile(file, 'eval-cache');
  if (!pairs) return EXIT_BAD_INPUT;

  let embedder: Embedder;
  try {
    embedder = await resolveEmbedder(cfg, o.embedder, undefined);
  } catch (err) {
    process.stderr.write(`cell0 eval-cache: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof TypeError ? EXIT_BAD_INPUT : 1;
  }
  // CELL0_SEMANTIC_THRESHOLDS applies to the configured embedder, not to another named with --embedder.
  const thresholds =
    o.embedder === undefined || o.embedder === cfg.cache.semanticEmbedder
      ? cfg.cache.semanticThresholds
      : undefined;
  const prefix = cfg.redis.prefix;
  const redis = new RedisClient({
    url: cfg.redis.url,
    keyPrefix: `${prefix}:kv:`,
    commandTimeoutMs: Math.max(cfg.redis.commandTimeoutMs, 2000),
    breakerThreshold: cfg.redis.breakerThreshold,
    breakerResetMs: cfg.redis.breakerResetMs,
    name: 'redis',
  });
  try {
    try {
      await waitUntilReady(redis.connection, 5000);
    } catch {
      process.stderr.write(`cell0 eval-cache: Redis at ${redactUrl(cfg.redis.url)} does not answer\n`);
      return 1;
    }
    log.info({ file, pairs: pairs.length, guard: o.guard, redis: redactUrl(cfg.redis.url) }, 'eval-cache');
    const report = await evaluateSemanticCache({
      file,
      pairs,
      redis,
      keyPrefix: `${prefix}:semantic-eval-${randomBytes(4).toString('hex')}`,
      guard: o.guard,
      embedder,
      ...(thresholds ? { thresholds } : {}),
      listErrors: o.errors === true,
      ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
      log,
    });
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    if (report.cache.errors > 0) {
      process.stderr.write(
        `cell0 eval-cache: the cache had ${report.cache.errors} Redis/embedder failures (counted as misses); the figures are not reliable\n`,
      );
      return 1;
    }
    return 0;
  } catch (err) {
    process.stderr.write(`cell0 eval-cache: ${err instanceof Error ? err.message : String(err)}\n`);
    log.error({ err }, 'eval-cache failed');
    return 1;
  } finally {
    await redis.close();
  }
}
