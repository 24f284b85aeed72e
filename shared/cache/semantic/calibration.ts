import { type SemanticThresholds } from './confidence.js';
import { type Embedder } from './embedder.js';
import { analyzePrompt, compareAnalyses } from './guard.js';
import { LshHasher } from './lsh.js';
import { normalizePrompt } from './text.js';
import { cosineQuantized, quantize } from './vector-codec.js';

/** A labelled prompt pair: 1 when an answer to `a` answers `b`, 0 when it does not. */
export interface LabelledPair {
  label: 0 | 1;
  a: string;
  b: string;
  /** Where it came from (a line number), for reports. */
  line?: number;
}

/** What the cache would see for one pair stored under `a` and looked up with `b`. */
export interface ScoredPair {
  pair: LabelledPair;
  /** Same normalised prompt: an EXACT hit whatever the thresholds. */
  exact: boolean;
  /** Cosine of b's vector with a's stored (int8) vector, as the cache computes it. */
  similarity: number;
  /** The guard's reason to refuse, or undefined when it accepts (or is off). */
  refusal: string | undefined;
  /** The two vectors share an LSH band: the cache's similarity search would find a's entry. */
  found: boolean;
}

/** Options of {@link scorePairs}. */
export interface ScorePairsOptions {
  /** Run the guard (as the cache does by default). Default true. */
  guard?: boolean;
  /** Texts per embed() call. Default 64. */
  batchSize?: number;
  signal?: AbortSignal;
}

/** Embeds both prompts of every pair and scores them as a single-entry cache scope would. */
export async function scorePairs(
  pairs: readonly LabelledPair[],
  embedder: Embedder,
  opts: ScorePairsOptions = {},
): Promise<ScoredPair[]> {
  const batch = Math.max(1, opts.batchSize ?? 64);
  const texts = pairs.flatMap((p) => [p.a, p.b]);
  const vectors: Float32Array[] = [];
  for (let i = 0; i < texts.length; i += batch) {
    const chunk = texts.slice(i, i + batch);
    const out = await embedder.embed(chunk, opts.signal);
    if (out.length !== chunk.length)
      throw new TypeError(
        `embedder "${embedder.name}" returned ${out.length} vectors for ${chunk.length} texts`,
      );
    vectors.push(...out);
  }
  const lsh = new LshHasher(embedder.name, embedder.dims);
  return pairs.map((pair, i) => {
    const va = vectors[2 * i]!;
    const vb = vectors[2 * i + 1]!;
    const ba = lsh.bandValues(va);
    const bb = lsh.bandValues(vb);
    return {
      pair,
      exact: normalizePrompt(pair.a) === normalizePrompt(pair.b),
      similarity: Math.min(1, cosineQuantized(vb, quantize(va))),
      refusal:
        opts.guard === false ? undefined : compareAnalyses(analyzePrompt(pair.b), analyzePrompt(pair.a)),
      found: ba !== undefined && bb !== undefined && ba.some((v, k) => v === bb[k]),
    };
  });
}

/** Precision and recall of one cut-off (tp, fp, fn counted over the pairs). */
export interface CutoffStats {
  threshold: number;
  precision: number | null;
  recall: number | null;
  tp: number;
  fp: number;
  fn: number;
}

/** Counts at cut-off `t`: a pair is a hit when exact, or accepted by the guard at cosine >= t (and found). */
export function statsAt(scored: readonly ScoredPair[], t: number, withLsh = false): CutoffStats {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (const s of scored) {
    const hit = s.exact || (s.refusal === undefined && s.similarity >= t && (!withLsh || s.found));
    if (hit && s.pair.label === 1) tp++;
    else if (hit) fp++;
    else if (s.pair.label === 1) fn++;
  }
  const r = (x: number): number => Math.round(x * 10_000) / 10_000;
  return {
    threshold: t,
    precision: tp + fp > 0 ? r(tp / (tp + fp)) : null,
    recall: tp + fn > 0 ? r(tp / (tp + fn)) : null,
    tp,
    fp,
    fn,
  };
}

/** One level of a calibration: the precision it had to hold, the cut-off found and what it gives. */
export interface LevelCalibration {
  target: number;
  /** False when even the most similar pairs miss the target (the cut-off is then 1: near-exact only). */
  reached: boolean;
  /** Figures at the cut-off by similarity and guard alone (what the cut-off was chosen on). */
  stats: CutoffStats;
  /** The same with the cache's LSH search (what `cell0 eval-cache` would measure). */
  withLsh: CutoffStats;
}

export interface CalibrationResult {
  thresholds: SemanticThresholds;
  high: LevelCalibration;
  medium: LevelCalibration;
  low: LevelCalibration;
}

/** Options of {@link calibrate}. */
export interface CalibrateOptions {
  /** Precision the HIGH cut-off must hold. Default 0.98. */
  precision?: number;
  /** For MEDIUM and LOW. Default: 1 − 2·(1 − precision) and 1 − 4·(1 − precision) (0.96 and 0.92). */
  mediumPrecision?: number;
  lowPrecision?: number;
}

/**
 * The lowest cut-offs that hold a precision: for each level, cosines are walked from the highest down and
 * the cut-off stops just before the first one at which precision (exact hits included) would fall below
 * the target; so every cut-off above it holds the target too, and a recovery further down is not trusted.
 * Cut-offs are rounded down to 4 decimals and kept ordered high >= medium >= low.
 */
export function calibrate(scored: readonly ScoredPair[], opts: CalibrateOptions = {}): CalibrationResult {
  const p = opts.precision ?? 0.98;
  if (!(p > 0 && p <= 1)) throw new RangeError(`calibrate: precision must be in (0, 1], got ${p}`);
  const pm = opts.mediumPrecision ?? Math.max(0.5, 1 - 2 * (1 - p));
  const pl = opts.lowPrecision ?? Math.max(0.5, 1 - 4 * (1 - p));
  const high = level(scored, p, 1);
  const medium = level(scored, pm, high.stats.threshold);
  const low = level(scored, pl, medium.stats.threshold);
  return {
    thresholds: { high: high.stats.threshold, medium: medium.stats.threshold, low: low.stats.threshold },
    high,
    medium,
    low,
  };
}

function level(scored: readonly ScoredPair[], target: number, ceiling: number): LevelCalibration {
  const exactTp = scored.filter((s) => s.exact && s.pair.label === 1).length;
  const exactFp = scored.filter((s) => s.exact && s.pair.label === 0).length;
  const open = scored
    .filter((s) => !s.exact && s.refusal === undefined)
    .sort((a, b) => b.similarity - a.similarity);
  let tp = exactTp;
  let fp = exactFp;
  let chosen: number | undefined;
  let reached = exactTp + exactFp === 0 || exactTp / (exactTp + exactFp) >= target;
  for (let i = 0; i < open.length && reached;) {
    const sim = open[i]!.similarity;
    let j = i;
    for (; j < open.length && open[j]!.similarity === sim; j++) {
      if (open[j]!.pair.label === 1) tp++;
      else fp++;
    }
    if (tp / (tp + fp) < target) break;
    // a cut-off only moves down to take in a true pair
    if (open.slice(i, j).some((s) => s.pair.label === 1)) chosen = sim;
    i = j;
  }
  if (chosen === undefined) reached = false;
  const t = Math.min(ceiling, chosen === undefined ? 1 : Math.floor(chosen * 10_000) / 10_000);
  return {
    target,
    reached: reached && chosen !== undefined,
    stats: statsAt(scored, t),
    withLsh: statsAt(scored, t, true),
  };
}
