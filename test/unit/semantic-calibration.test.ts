import { LexicalEmbedder } from '../../shared/cache/semantic';
import {
  calibrate,
  scorePairs,
  statsAt,
  type LabelledPair,
  type ScoredPair,
} from '../../shared/cache/semantic/calibration';

/** A scored pair without embedding anything: the label, the cosine, and whether the guard refuses it. */
const s = (label: 0 | 1, similarity: number, refusal?: string): ScoredPair => ({
  pair: { label, a: 'a', b: 'b' },
  exact: false,
  similarity,
  refusal,
  found: true,
});

describe('calibrate', () => {
  it('stops each level just above the first cosine at which precision falls below its target', () => {
    const scored = [
      s(1, 0.99),
      s(1, 0.95),
      s(1, 0.93),
      s(1, 0.9),
      s(1, 0.9),
      s(0, 0.88), // precision 5/6 = 0.83 from here down
      s(1, 0.85),
      s(1, 0.8),
      s(0, 0.79, 'negation: 1 vs 0 negation words'), // refused: never a hit
      s(1, 0.7),
      s(0, 0.6),
    ];
    const r = calibrate(scored, { precision: 0.98, mediumPrecision: 0.8, lowPrecision: 0.75 });
    expect(r.thresholds.high).toBe(0.9);
    expect(r.high).toMatchObject({ reached: true, stats: { tp: 5, fp: 0, fn: 3, precision: 1 } });
    // 0.8 allows the false pair at 0.88: down to 0.7 (7 true, 1 false = 0.875), not to 0.6 (7/9)
    expect(r.thresholds.medium).toBe(0.7);
    expect(r.medium.stats).toMatchObject({ tp: 8, fp: 1, fn: 0 });
    expect(r.thresholds.low).toBe(0.7);
    expect(r.thresholds.high).toBeGreaterThanOrEqual(r.thresholds.medium);
  });

  it('says so when no cut-off holds the target, and then answers only the most similar', () => {
    const r = calibrate([s(0, 0.99), s(1, 0.95), s(1, 0.9)], { precision: 0.98 });
    expect(r.high.reached).toBe(false);
    expect(r.thresholds.high).toBe(1);
    expect(() => calibrate([], { precision: 1.5 })).toThrow(/precision/);
  });

  it('counts exact pairs as hits at every cut-off, and LSH misses only in the withLsh figures', () => {
    const exact: ScoredPair = { ...s(1, 1), exact: true };
    const lost: ScoredPair = { ...s(1, 0.95), found: false };
    expect(statsAt([exact, lost], 0.9)).toMatchObject({ tp: 2, fn: 0 });
    expect(statsAt([exact, lost], 0.9, true)).toMatchObject({ tp: 1, fn: 1 });
  });
});

describe('scorePairs', () => {
  it('scores pairs as the cache would: exact key, quantised cosine, guard, LSH', async () => {
    const pairs: LabelledPair[] = [
      { label: 1, a: 'How do I reset my password?', b: 'how do i reset my password' },
      { label: 1, a: 'How do I fix a wobbly table?', b: 'What is the way to repair a wobbly table?' },
      { label: 0, a: 'Flights from Paris to Rome', b: 'Flights from Rome to Paris' },
    ];
    const [same, para, rev] = await scorePairs(pairs, new LexicalEmbedder());
    expect(same).toMatchObject({ exact: true, refusal: undefined });
    expect(para!.exact).toBe(false);
    expect(para!.similarity).toBeGreaterThan(0.85);
    expect(para!.found).toBe(true);
    expect(rev!.refusal).toMatch(/^order/);
    const off = await scorePairs(pairs, new LexicalEmbedder(), { guard: false, batchSize: 1 });
    expect(off[2]!.refusal).toBeUndefined();
  });
});
