import {
  HashedNgramEmbedder,
  LexicalEmbedder,
  LSH_BANDS,
  LSH_ROWS,
  LshHasher,
  lshCandidateProbability,
} from '../../shared/cache/semantic';
import { seededRandom } from '../../shared/cache/semantic/lsh';
import { rankSlots } from '../../shared/cache/semantic/semantic-cache';

/** A random unit vector, and one at exactly `cos` from it. */
function pairAt(cos: number, dims: number, rand: () => number): [Float32Array, Float32Array] {
  const gauss = (): number =>
    Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
  const x = Float64Array.from({ length: dims }, gauss);
  const n = Float64Array.from({ length: dims }, gauss);
  const norm = (v: Float64Array): void => {
    const l = Math.sqrt(v.reduce((s, a) => s + a * a, 0));
    for (let i = 0; i < v.length; i++) v[i]! /= l;
  };
  norm(x);
  // Gram–Schmidt: noise orthogonal to x
  const d = x.reduce((s, a, i) => s + a * n[i]!, 0);
  for (let i = 0; i < dims; i++) n[i]! -= d * x[i]!;
  norm(n);
  const s = Math.sqrt(1 - cos * cos);
  return [Float32Array.from(x), Float32Array.from(x, (a, i) => cos * a + s * n[i]!)];
}

function shareABand(h: LshHasher, a: Float32Array, b: Float32Array): boolean {
  const ba = h.bandValues(a)!;
  const bb = h.bandValues(b)!;
  return ba.some((v, i) => v === bb[i]);
}

describe('LSH (random hyperplanes, 20 bands x 12 rows)', () => {
  it('draws the same hyperplanes in every instance for one embedder name and dims', () => {
    const e = new HashedNgramEmbedder();
    const v = e.embedOne('How do I reset my password?');
    const a = new LshHasher(e.name, e.dims).bandValues(v);
    const b = new LshHasher(e.name, e.dims).bandValues(v);
    expect(a).toEqual(b);
    expect(a).toHaveLength(LSH_BANDS);
    expect(a!.every((x) => x >= 0 && x < 2 ** LSH_ROWS)).toBe(true);
    expect(new LshHasher('another-embedder', e.dims).bandValues(v)).not.toEqual(a);
    expect(new LshHasher(e.name, e.dims).bandValues(new Float32Array(e.dims))).toBeUndefined();
  });

  it('gives the band values entries were stored under (pinned: a change would hide every stored entry)', () => {
    const lx = new LexicalEmbedder();
    const h = new LshHasher(lx.name, lx.dims);
    expect(h.bandValues(lx.embedOne('How do I reset my password?'))).toEqual([
      1627, 2949, 3269, 1707, 2822, 2652, 368, 2738, 3318, 876, 3517, 3210, 2308, 2788, 3310, 1819, 3725,
      1352, 3627, 3832,
    ]);
    expect(h.bandValues(lx.embedOne('Request ab12-7: tell me about 1a2b3c4d5e6f and 55433'))).toEqual([
      3437, 2414, 2624, 2583, 571, 3581, 643, 3505, 3773, 883, 798, 684, 2281, 454, 1909, 424, 1812, 425,
      3826, 3964,
    ]);
    const hn = new HashedNgramEmbedder();
    expect(new LshHasher(hn.name, hn.dims).bandValues(hn.embedOne('How do I reset my password?'))).toEqual([
      2221, 3185, 3695, 397, 3258, 3742, 1079, 2403, 2556, 1376, 2933, 3207, 1947, 2185, 2380, 3941, 373, 337,
      221, 896,
    ]);
  });

  it.each([
    [5, 12],
    [20, 12],
    [3, 5],
    [1, 1],
  ])(
    'projects exactly as one dimension at a time, in dimension order (bit-identical band values, %i x %i)',
    (bands, rows) => {
      // the plain sum per plane, dimension by dimension: what the band values of stored entries came from
      const dims = 64;
      const h = new LshHasher('reference', dims, bands, rows);
      const planes = h.project(Float32Array.from({ length: dims }, (_, j) => (j === 0 ? 1 : 0))).length;
      const unit = (j: number): Float64Array =>
        h.project(Float32Array.from({ length: dims }, (_, i) => (i === j ? 1 : 0)));
      const columns = Array.from({ length: dims }, (_, j) => unit(j)); // plane weights of dimension j
      const projection = (v: Float32Array): Float64Array => {
        const acc = new Float64Array(planes);
        for (let j = 0; j < dims; j++) {
          if (v[j] === 0) continue;
          for (let p = 0; p < planes; p++) acc[p]! += v[j]! * columns[j]![p]!;
        }
        return acc;
      };
      const reference = (v: Float32Array): number[] | undefined => {
        const acc = projection(v);
        if (acc.every((a) => a === 0)) return undefined;
        return Array.from({ length: bands }, (_, b) => {
          let x = 0;
          for (let r = 0; r < rows; r++) if (acc[b * rows + r]! >= 0) x |= 1 << r;
          return x;
        });
      };
      const rand = seededRandom('lsh-reference');
      let compared = 0;
      for (let i = 0; i < 3000; i++) {
        const v = new Float32Array(dims);
        const nnz = 1 + (i % 23);
        for (let k = 0; k < nnz; k++)
          v[Math.floor(rand() * dims)] = (rand() - 0.5) * (i % 5 === 0 ? 1e-30 : 1);
        if (i % 7 === 0) v[3] = -0;
        // every bit of every projection, not only their signs: a sum taken in another order differs in its
        // last bits long before a sign flips
        expect(Array.from(h.project(v))).toEqual(Array.from(projection(v)));
        expect(h.bandValues(v)).toEqual(reference(v));
        compared++;
      }
      expect(h.bandValues(new Float32Array(dims))).toBeUndefined();
      expect(compared).toBe(3000);
      // the same for the JavaScript loop, used where WebAssembly SIMD is not available (lsh-simd.ts)
      const js = new LshHasher('reference', dims, bands, rows);
      (js as unknown as { simd: undefined }).simd = undefined;
      for (let i = 0; i < 500; i++) {
        const v = new Float32Array(dims);
        for (let k = 0; k < 1 + (i % 23); k++) v[Math.floor(rand() * dims)] = rand() - 0.5;
        expect(Array.from(js.project(v))).toEqual(Array.from(projection(v)));
        expect(js.bandValues(v)).toEqual(reference(v));
      }
    },
  );

  it('projects in WebAssembly SIMD here, with the non-zero dimensions given or found (lsh-simd.ts)', () => {
    const e = new LexicalEmbedder();
    const h = new LshHasher(e.name, e.dims);
    expect((h as unknown as { simd: unknown }).simd).toBeDefined(); // Node 24 has it: the fast path is taken
    const js = new LshHasher(e.name, e.dims);
    (js as unknown as { simd: undefined }).simd = undefined;
    for (let i = 0; i < 200; i++) {
      const nonZero: number[] = [];
      const v = e.embedOne(
        `Request ab${i % 9}-${i}: tell me about ${(i * 99991).toString(16)} and ${i * 7919}`,
        nonZero,
      );
      const want = js.bandValues(v);
      expect(h.bandValues(v)).toEqual(want);
      expect(h.bandValues(v, nonZero)).toEqual(want);
      expect(Array.from(h.project(v))).toEqual(Array.from(js.project(v)));
    }
  });

  it('has the documented theoretical recall', () => {
    expect(lshCandidateProbability(0.9)).toBeGreaterThanOrEqual(0.95);
    expect(lshCandidateProbability(0.9)).toBeCloseTo(0.966, 2);
    expect(lshCandidateProbability(0.3)).toBeCloseTo(0.04, 2);
    expect(lshCandidateProbability(0)).toBeCloseTo(0.0049, 3);
  });

  it('finds pairs at cosine 0.9 as candidates (measured on synthetic vectors), and few at 0 and 0.3', () => {
    const dims = 256;
    const h = new LshHasher('synthetic', dims);
    const rand = seededRandom('lsh-recall-test');
    const rate = (cos: number, n: number): number => {
      let hits = 0;
      for (let i = 0; i < n; i++) if (shareABand(h, ...pairAt(cos, dims, rand))) hits++;
      return hits / n;
    };
    expect(rate(0.9, 1500)).toBeGreaterThanOrEqual(0.93); // theory 0.966
    expect(rate(0.95, 500)).toBeGreaterThanOrEqual(0.98); // theory 0.9985
    expect(rate(0.3, 1500)).toBeLessThan(0.08); // theory 0.040
    expect(rate(0, 1500)).toBeLessThan(0.02); // theory 0.0049
  });
});

describe('rankSlots (band-collision counting)', () => {
  const pack = (...slots: number[]): Buffer =>
    Buffer.from(slots.flatMap((s) => [(s >> 16) & 255, (s >> 8) & 255, s & 255]));

  it('orders slots by shared bands, first seen first among equals', () => {
    const r = rankSlots([pack(7, 1, 70000), null, pack(1, 9), pack(9, 1, 16777215)], 4, 10);
    expect(r.ranked).toEqual([1, 9, 7, 70000, 16777215]);
    expect(r.visited).toBe(8);
    expect(r.distinct).toBe(5);
    expect(rankSlots([pack(5, 6, 7)], 4, 2).ranked).toEqual([5, 6]);
    // the shared table is cleared between calls
    expect(rankSlots([pack(7)], 4, 10)).toEqual({ ranked: [7], visited: 1, distinct: 1 });
  });

  it('handles more slots than the initial table', () => {
    const many = Array.from({ length: 20 }, (_, b) =>
      pack(...Array.from({ length: 500 }, (_, i) => i * 20 + b)),
    );
    many.push(pack(123456));
    many.push(pack(123456));
    const r = rankSlots(many, 22, 3);
    expect(r.ranked[0]).toBe(123456);
    expect(r.visited).toBe(10002);
    expect(r.distinct).toBe(10001);
  });

  it("ranks the mirror's slot lists as the same slots packed, by slot and past the by-slot range", () => {
    // lists of slot numbers (Int32Array, as the mirror gives them, and plain arrays) are counted by slot
    // below 2^20 (growing the counts as larger slots come), in the table from a slot at or above it;
    // whichever way, the ranking is the packed buckets' (the table's) ranking
    const rand = seededRandom('rankSlots/lists');
    for (let trial = 0; trial < 300; trial++) {
      const bands = 1 + Math.floor(rand() * 24);
      const top = [300, 20_000, 2 ** 20 - 1, 2 ** 20 + 5, 2 ** 24 - 1][trial % 5]!;
      const pool = Array.from({ length: 1 + Math.floor(rand() * 300) }, () => Math.floor(rand() * (top + 1)));
      const lists = Array.from({ length: bands + Math.floor(rand() * 3) }, () =>
        Array.from({ length: Math.floor(rand() * 80) }, () => pool[Math.floor(rand() ** 3 * pool.length)]!),
      );
      const packed = lists.map((l) => pack(...l));
      for (const limit of [1, 3, 24, 40, 1000]) {
        const want = rankSlots(packed, bands, limit);
        expect(
          rankSlots(
            lists.map((l) => Int32Array.from(l)),
            bands,
            limit,
          ),
        ).toEqual(want);
        expect(rankSlots(lists, bands, limit)).toEqual(want);
      }
    }
    // a slot the by-slot counts cannot hold, after others were counted there: counted again in the table
    const r = rankSlots([Int32Array.of(4, 5, 6), Int32Array.of(5, 2 ** 20), Int32Array.of(5, 6)], 3, 10);
    expect(r).toEqual({ ranked: [5, 6, 4, 2 ** 20], visited: 7, distinct: 4 });
    // and the by-slot counts were left clear: the next call counts from zero
    expect(rankSlots([Int32Array.of(4, 6), Int32Array.of(6)], 3, 10)).toEqual({
      ranked: [6, 4],
      visited: 3,
      distinct: 2,
    });
  });

  it('ranks as a stable sort by shared bands (capped at the band count) would, at every limit', () => {
    // Reference: count each slot's buckets, sort by min(count, bands) descending, first seen first among
    // equals, take `limit`. Slots that sit in more buckets than there are bands (repeats) are capped.
    const rand = seededRandom('rankSlots/reference');
    for (let trial = 0; trial < 200; trial++) {
      const bands = 1 + Math.floor(rand() * 24);
      const pool = Array.from({ length: 1 + Math.floor(rand() * 300) }, () => Math.floor(rand() * 2 ** 24));
      const buckets = Array.from({ length: bands + Math.floor(rand() * 3) }, () =>
        rand() < 0.1
          ? null
          : pack(
              ...Array.from(
                { length: Math.floor(rand() * 80) },
                () => pool[Math.floor(rand() ** 3 * pool.length)]!,
              ),
            ),
      );
      const count = new Map<number, number>();
      for (const b of buckets)
        for (let o = 0; b && o + 2 < b.length; o += 3) {
          const slot = (b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]!;
          count.set(slot, (count.get(slot) ?? 0) + 1);
        }
      const order = [...count.keys()];
      const sorted = order
        .map((slot, i) => ({ slot, i, c: Math.min(count.get(slot)!, bands) }))
        .sort((x, y) => y.c - x.c || x.i - y.i)
        .map((x) => x.slot);
      for (const limit of [1, 3, 24, 40, 1000]) {
        const r = rankSlots(buckets, bands, limit);
        expect(r.ranked).toEqual(sorted.slice(0, limit));
        expect(r.distinct).toBe(order.length);
      }
    }
  });
});
