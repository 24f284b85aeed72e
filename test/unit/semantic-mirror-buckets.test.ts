import { ScopeKeys } from '../../shared/cache/semantic/scope';
import { BandMirror } from '../../shared/cache/semantic/semantic-mirror';
import { type RedisClient } from '../../shared/redis/redis-client';
import { seededRandom } from '../../shared/cache/semantic/lsh';

/**
 * A mirror's buckets (semantic-mirror.ts GenBuckets: runs in one typed-array pool, moved when they grow,
 * the pool compacted when dead runs outweigh live slots) hold exactly the slots joined and not left since,
 * each bucket in join order, through many joins and leaves: checked against a plain model.
 */
const BANDS = 4;

/** A client whose mirror build answers an empty scope with one generation, "h10.1". */
const fakeRedis = {
  run: <T>(fn: (c: unknown) => Promise<T>) =>
    fn({ defineCommand: () => undefined, cell0SemanticMirror: async () => ['1-0', 1, 'h10.1'] }),
} as unknown as RedisClient;

describe('BandMirror buckets', () => {
  // 14 rows: 65,536 bucket numbers, the ~1,200 used stay in the map of non-empty buckets; 8 rows: 1,024, the
  // buckets move to typed arrays once more than 64 are used (both kinds, and the move, checked)
  it.each([14, 8])(
    'match a plain model through 20,000 joins and leaves, in join order, compactions included (%i rows)',
    async (ROWS) => {
      const keys = new ScopeKeys('t:sem', 'f'.repeat(32));
      const mirror = new BandMirror(fakeRedis, BANDS, ROWS);
      await mirror.build(keys);
      const model = new Map<number, number[]>(); // bucket -> slots in join order
      const rand = seededRandom('mirror-buckets');
      const where = new Map<number, number[]>(); // slot -> its bands' values
      let id = 2;
      for (let step = 0; step < 20_000; step++) {
        const slot = Math.floor(rand() * 300);
        const values = where.get(slot);
        // phases: mostly joins (the pool grows), mostly leaves (its runs die), then both (it is compacted)
        const keep = step < 8000 ? 0.9 : step < 14_000 ? 0.1 : 0.5;
        if (values ? rand() < keep : rand() >= keep) continue;
        let line: string;
        if (values) {
          // leave
          line = `-${slot} h10.1 ${values.map((v, i) => `${i}:${v.toString(36)}`).join(',')}`;
          values.forEach((v, i) => {
            const b = model.get(v * BANDS + i)!;
            b.splice(b.indexOf(slot), 1);
          });
          where.delete(slot);
        } else {
          const vs = Array.from({ length: BANDS }, () => Math.floor(rand() * 2 ** ROWS));
          line = `+${slot} h10.1 ${vs.map((v, i) => `${i}:${v.toString(36)}`).join(',')}`;
          vs.forEach((v, i) => {
            const b = model.get(v * BANDS + i) ?? [];
            b.push(slot);
            model.set(v * BANDS + i, b);
          });
          where.set(slot, vs);
        }
        mirror.apply(keys, `#${id++}-0\n${line}`);
        if (step % 997 === 0 || step === 19_999) {
          const expected: string[] = [];
          for (const [b, slots] of model) for (const s of slots) expected.push(`h10.1 ${b} ${s}`);
          expect(mirror.contents(keys)).toEqual(expected.sort());
          // a lookup's list: each bucket in join order
          const values = [1, 2, 3, 4].map(() => Math.floor(rand() * 2 ** ROWS));
          const want: number[] = [];
          values.forEach((v, i) => want.push(...(model.get(v * BANDS + i) ?? [])));
          expect([...mirror.buckets(keys, values, 'h10.1')]).toEqual(want);
        }
      }
      // typed arrays (12 bytes per bucket number) only where the buckets became many
      if (ROWS === 8) expect(mirror.bytes()).toBeGreaterThanOrEqual(12 * BANDS * 2 ** ROWS);
      else expect(mirror.bytes()).toBeLessThan(12 * BANDS * 2 ** ROWS);
    },
  );

  it('keeps many small scopes (a scope per tenant or conversation) without a 960 KB array each', async () => {
    const mirror = new BandMirror(fakeRedis, 20, 12);
    const keys = Array.from(
      { length: 400 },
      (_, i) => new ScopeKeys('t:sem', i.toString(16).padStart(32, '0')),
    );
    for (const [i, k] of keys.entries()) {
      await mirror.build(k);
      mirror.apply(
        k,
        `#2-0\n+${i} h10.1 ${Array.from({ length: 20 }, (_, b) => `${b}:${(i % 4096).toString(36)}`).join(',')}`,
      );
    }
    expect(keys.every((k) => mirror.has(k))).toBe(true);
    expect(mirror.rebuilds).toBe(400);
    // each: one entry's 20 buckets in a map and a pool of 256 slots, a few KB
    expect(mirror.bytes()).toBeLessThan(400 * 4 * 1024);
  });

  it('drops the least recently looked-up-in mirrors when their memory passes the budget', async () => {
    const budget = 1024 * 1024;
    const mirror = new BandMirror(fakeRedis, 20, 12, 4096, budget);
    const big = new ScopeKeys('t:sem', 'a'.repeat(32));
    const small = new ScopeKeys('t:sem', 'b'.repeat(32));
    await mirror.build(big);
    // 1,000 entries of random bands: buckets in typed arrays, 960 KB, plus the pool
    const rand = seededRandom('mirror-budget');
    for (let slot = 0; slot < 1000; slot++) {
      const fields = Array.from({ length: 20 }, (_, b) => `${b}:${Math.floor(rand() * 4096).toString(36)}`);
      mirror.apply(big, `#${slot + 2}-0\n+${slot} h10.1 ${fields.join(',')}`);
    }
    expect(mirror.bytes()).toBeGreaterThan(budget);
    expect(mirror.has(big)).toBe(true); // one mirror alone is kept whatever its size
    await mirror.build(small);
    expect(mirror.has(small)).toBe(true);
    expect(mirror.has(big)).toBe(false);
    expect(mirror.bytes()).toBeLessThan(budget);
  });
});
