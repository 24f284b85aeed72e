/*
 * `cell0 calibrate-cache FILE.tsv [--embedder NAME] [--precision 0.98]`: finds the semantic cache's
 * cut-offs (high, medium, low) for an embedder on labelled prompt pairs, and prints them as the
 * CELL0_SEMANTIC_THRESHOLDS value. Needs no Redis: it embeds both prompts of every pair and scores them as
 * a cache scope holding prompt_a would (calibration.ts), with the guard on unless --no-guard.
 */
import { type Config } from '../shared/config/config.js';
import { type Logger } from '../shared/logger.js';
import {
  calibrate,
  scorePairs,
  type CalibrationResult,
  type LevelCalibration,
} from '../shared/cache/semantic/calibration.js';
import { type Embedder } from '../shared/cache/semantic/index.js';
import { resolveEmbedder } from './embedder.js';
import { EXIT_BAD_INPUT, readEvalFile } from './eval-cache.js';

/** Options of the `calibrate-cache` command as commander gives them. */
export interface CalibrateCacheCommandOptions {
  embedder?: string;
  dims?: number;
  precision?: number;
  /** False with --no-guard. */
  guard: boolean;
  json?: boolean;
}

/** What the command prints with --json. */
export interface CalibrationReport extends CalibrationResult {
  file: string;
  embedder: string;
  pairs: number;
  positives: number;
  negatives: number;
  guard: boolean;
  /** The CELL0_SEMANTIC_THRESHOLDS value. */
  env: string;
  /** Time spent embedding, ms per prompt (both prompts of every pair). */
  embedMsPerPrompt: number;
  /**
   * What each guard rule refused: true pairs (false refusals), of them those the high cut-off would
   * otherwise have answered, and false pairs (the rule's catches). Rules as guard.ts names them.
   */
  refusals: { rule: string; positives: number; positivesAboveHigh: number; negatives: number }[];
}

const fmt = (x: number | null): string => (x === null ? '-' : x.toFixed(3));

function line(name: string, l: LevelCalibration): string {
  const s = l.stats;
  const w = l.withLsh;
  return (
    `${name.padEnd(6)} >= ${s.threshold.toFixed(4)}  target ${l.target.toFixed(3)}${l.reached ? '' : ' (NOT reached)'}  ` +
    `precision ${fmt(s.precision)} recall ${fmt(s.recall)} (tp ${s.tp} fp ${s.fp} fn ${s.fn}); ` +
    `with LSH search: precision ${fmt(w.precision)} recall ${fmt(w.recall)}`
  );
}

/**
 * The `cell0 calibrate-cache` command. Prints the thresholds and returns the exit code: 0; 2 for a missing
 * or malformed file or a bad option; 1 when the embedder fails or the target precision cannot be held at
 * the high level (the report is printed all the same).
 */
export async function calibrateCacheCommand(
  file: string,
  o: CalibrateCacheCommandOptions,
  cfg: Config,
  log: Logger,
): Promise<number> {
  const pairs = readEvalFile(file, 'calibrate-cache');
  if (!pairs) return EXIT_BAD_INPUT;
  const precision = o.precision ?? 0.98;
  let embedder: Embedder;
  try {
    embedder = await resolveEmbedder(cfg, o.embedder, o.dims);
  } catch (err) {
    process.stderr.write(`cell0 calibrate-cache: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof TypeError ? EXIT_BAD_INPUT : 1;
  }
  log.info({ file, pairs: pairs.length, embedder: embedder.name, precision }, 'calibrate-cache');
  let report: CalibrationReport;
  try {
    const t0 = performance.now();
    const scored = await scorePairs(pairs, embedder, { guard: o.guard });
    const embedMs = performance.now() - t0;
    const result = calibrate(scored, { precision });
    const t = result.thresholds;
    const positives = pairs.filter((p) => p.label === 1).length;
    const byRule = new Map<string, CalibrationReport['refusals'][number]>();
    for (const s of scored) {
      if (s.refusal === undefined || s.exact) continue;
      const rule = s.refusal.slice(0, s.refusal.indexOf(':'));
      const r = byRule.get(rule) ?? { rule, positives: 0, positivesAboveHigh: 0, negatives: 0 };
      if (s.pair.label === 1) {
        r.positives++;
        if (s.similarity >= t.high) r.positivesAboveHigh++;
      } else r.negatives++;
      byRule.set(rule, r);
    }
    report = {
      file,
      embedder: embedder.name,
      pairs: pairs.length,
      positives,
      negatives: pairs.length - positives,
      guard: o.guard,
      ...result,
      env: `${t.high},${t.medium},${t.low}`,
      embedMsPerPrompt: Math.round((embedMs / (2 * pairs.length)) * 1000) / 1000,
      refusals: [...byRule.values()].sort((a, b) => b.positives - a.positives || b.negatives - a.negatives),
    };
  } catch (err) {
    process.stderr.write(
      `cell0 calibrate-cache: embedding with ${embedder.name} failed: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 1;
  }
  if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else
    process.stdout.write(
      [
        `${report.file}: ${report.pairs} pairs (${report.positives} positive, ${report.negatives} negative), ` +
          `embedder ${report.embedder}, guard ${report.guard ? 'on' : 'off'}`,
        line('high', report.high),
        line('medium', report.medium),
        line('low', report.low),
        `guard refusals by rule (true pairs refused / of them above high / false pairs caught): ` +
          (report.refusals
            .map((r) => `${r.rule} ${r.positives}/${r.positivesAboveHigh}/${r.negatives}`)
            .join(', ') || 'none'),
        `CELL0_SEMANTIC_THRESHOLDS=${report.env}`,
        '',
      ].join('\n'),
    );
  if (!report.high.reached) {
    process.stderr.write(
      `cell0 calibrate-cache: no cut-off holds precision ${precision} at the high level on this set\n`,
    );
    return 1;
  }
  return 0;
}
