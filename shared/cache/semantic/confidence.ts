/** How sure the cache is that a stored answer answers the prompt. */
export enum CacheMatchConfidence {
  /** The same prompt after normalisation (case, whitespace, trailing punctuation), in the same scope. */
  EXACT = 'exact',
  HIGH = 'high',
  MEDIUM = 'medium',
  LOW = 'low',
}

/** Cosine cut-offs of the similarity levels: high >= medium >= low. */
export interface SemanticThresholds {
  high: number;
  medium: number;
  low: number;
}

/**
 * Cut-offs for the default LexicalEmbedder (lexical-embedder.ts), from `cell0 calibrate-cache` on the four
 * labelled sets of test/fixtures (690 pairs; docs/benchmarks.md): with the guard on, precision stays at 1.0
 * down to about 0.82 at every level, and the first false hits appear near 0.80. Kept above that, with a
 * margin for prompts unlike the sets:
 * - high 0.85: LSH finds ~87% of pairs at 0.85 and ~97% at 0.9 (lsh.ts);
 * - medium 0.80, low 0.75: more hits on the sets, and the first false ones; LSH finds 59–74% there.
 * Another embedder needs its own: run `cell0 calibrate-cache FILE.tsv --embedder NAME`.
 */
export const DEFAULT_THRESHOLDS: Readonly<SemanticThresholds> = Object.freeze({
  high: 0.85,
  medium: 0.8,
  low: 0.75,
});

/**
 * Cut-offs for the HashedNgramEmbedder (the default before the lexical one). Measured on it (test/unit/semantic-embedder.test.ts and
 * bench:semantic): rephrasings that keep every content word (function words swapped, "how do I" ↔ "how
 * can I", politeness added, inflections, reordering, punctuation) score 0.88–0.98; replacing one content
 * word scores 0.55–0.80 ("reverse" ↔ "sort a linked list" 0.78, "capital of France" ↔ "Spain" 0.55);
 * unrelated prompts ~0 (signed hashing). Hence:
 * - high 0.90: rephrasings of the same words only; LSH recall is >= 0.95 from here up (lsh.ts);
 * - medium 0.82: also bigger function-word edits ("how do I reset…" ↔ "how to reset…" 0.85), still above
 *   the single-substitution band of most prompts;
 * - low 0.75: near misses; a caller that accepts LOW accepts some wrong answers (the guard removes the
 *   dangerous kinds: negation, numbers, entities, swapped roles, antonyms, added qualifiers), and LSH
 *   finds only ~60% of pairs at 0.75.
 * A neural embedder scores unrelated prompts of one topic at 0.6–0.8: give it higher thresholds.
 */
export const HASHED_NGRAM_THRESHOLDS: Readonly<SemanticThresholds> = Object.freeze({
  high: 0.9,
  medium: 0.82,
  low: 0.75,
});

/** The similarity level of a cosine, or undefined below `low`. */
export function confidenceOf(similarity: number, t: SemanticThresholds): CacheMatchConfidence | undefined {
  if (similarity >= t.high) return CacheMatchConfidence.HIGH;
  if (similarity >= t.medium) return CacheMatchConfidence.MEDIUM;
  if (similarity >= t.low) return CacheMatchConfidence.LOW;
  return undefined;
}

/** The lowest cosine a lookup with `min` accepts (Infinity for EXACT: no similarity search at all). */
export function thresholdOf(min: CacheMatchConfidence, t: SemanticThresholds): number {
  switch (min) {
    case CacheMatchConfidence.EXACT:
      return Infinity;
    case CacheMatchConfidence.HIGH:
      return t.high;
    case CacheMatchConfidence.MEDIUM:
      return t.medium;
    case CacheMatchConfidence.LOW:
      return t.low;
  }
}
