import { type LatencySummary } from '../../latency.js';
import { CacheMatchConfidence } from './confidence.js';
import { type SemanticCacheStats } from './semantic-cache-options.js';

/** The counters of one SemanticCache (this process), and the stats they add up to. */
export class SemanticCounters {
  exactHits = 0;
  high = 0;
  medium = 0;
  low = 0;
  misses = 0;
  guardRejections = 0;
  falseHitReports = 0;
  sets = 0;
  evictions = 0;
  expiredRemoved = 0;
  errors = 0;
  searches = 0;
  visited = 0;
  distinct = 0;
  /** Guard refusals by rule (negation, number, quoted, entity, question, order, contrast). */
  readonly rejectedBy: Record<string, number> = {};

  /** Counts a guard refusal under its rule: the reason's head ("number: [2] vs [3]" → "number"). */
  guardRejected(reason: string): void {
    this.guardRejections++;
    const i = reason.indexOf(':');
    // Bounded: a rule name, never the prompts' words.
    const rule = i > 0 && i <= 16 ? reason.slice(0, i) : 'other';
    this.rejectedBy[rule] = (this.rejectedBy[rule] ?? 0) + 1;
  }

  /** Counts a hit at its level. */
  hit(confidence: CacheMatchConfidence): void {
    switch (confidence) {
      case CacheMatchConfidence.EXACT:
        this.exactHits++;
        break;
      case CacheMatchConfidence.HIGH:
        this.high++;
        break;
      case CacheMatchConfidence.MEDIUM:
        this.medium++;
        break;
      case CacheMatchConfidence.LOW:
        this.low++;
        break;
    }
  }

  stats(latency: LatencySummary): SemanticCacheStats {
    const hits = this.exactHits + this.high + this.medium + this.low;
    const lookups = hits + this.misses;
    const n = this.searches;
    return {
      lookups,
      exactHits: this.exactHits,
      semanticHits: { high: this.high, medium: this.medium, low: this.low },
      misses: this.misses,
      guardRejections: this.guardRejections,
      guardRejectionsByRule: { ...this.rejectedBy },
      falseHitReports: this.falseHitReports,
      sets: this.sets,
      evictions: this.evictions,
      expiredRemoved: this.expiredRemoved,
      errors: this.errors,
      hitRate: lookups === 0 ? 0 : hits / lookups,
      search: {
        count: n,
        meanBandMembersVisited: n === 0 ? 0 : Math.round(this.visited / n),
        meanDistinctCandidates: n === 0 ? 0 : Math.round(this.distinct / n),
      },
      latency,
    };
  }
}
