import {
  EXPIRY_MARGIN_MS,
  expiryOf,
  LookupRecords,
  NOT_KEPT,
} from '../../shared/cache/semantic/lookup-records';
import { seededRandom } from '../../shared/cache/semantic/lsh';
import { cosineStoredKnown, squaredNorm, storedQuantized } from '../../shared/cache/semantic/vector-codec';

describe('LookupRecords (candidate records a lookup read lately)', () => {
  // a record: 15 digits of expiry (ms), the id, LF, vector and prompt
  const record = (expiresAt: number, rest = '123\nabc') =>
    Buffer.from(String(expiresAt).padStart(15, '0') + rest);

  it('gives a kept record back within the trust time from its read, by scope and slot, and not after', () => {
    const kept = new LookupRecords(1000, 8);
    const rec = record(99_999);
    kept.keep('vec-a', 7, rec, 5000);
    expect(kept.get('vec-a', 7, 5000)?.equals(rec)).toBe(true);
    expect(kept.get('vec-a', 7, 5999)?.equals(rec)).toBe(true);
    expect(kept.get('vec-a', 7, 6000)).toBeUndefined(); // trusted until the read + 1000 ms only
    expect(kept.get('vec-a', 8, 5000)).toBeUndefined();
    expect(kept.get('vec-b', 7, 5000)).toBeUndefined();
  });

  it('never gives back a record within EXPIRY_MARGIN_MS of its expiry, nor one without an expiry', () => {
    const kept = new LookupRecords(60_000, 8);
    kept.keep('vec', 1, record(10_000), 5000);
    expect(kept.get('vec', 1, 8999)).toBeDefined();
    expect(kept.get('vec', 1, 10_000 - EXPIRY_MARGIN_MS)).toBeUndefined();
    kept.keep('vec', 2, record(5500), 5000); // expiring
    expect(kept.get('vec', 2, 5000)).toBeUndefined();
    kept.keep('vec', 3, Buffer.from('no expiry here'), 5000);
    expect(kept.get('vec', 3, 5000)).toBeUndefined();
    expect(expiryOf(record(1_796_431_946_897))).toBe(1_796_431_946_897);
    expect(expiryOf(Buffer.from('12345'))).toBe(-1);
  });

  it('keeps a copy, not the reply buffer it was read into', () => {
    const kept = new LookupRecords(1000, 8);
    const reply = record(99_999, 'record one');
    kept.keep('vec', 1, reply, 0);
    reply.write('XXXXXX', 15);
    expect(kept.get('vec', 1, 1)?.toString()).toBe(record(99_999, 'record one').toString());
  });

  it('finds what was kept between finds: a scope first kept, a new generation, another scope', () => {
    // find() remembers the scope it was asked about last and its maps in both generations: asked in turns
    // with keep(), it must see each new scope map and each change of generation
    const kept = new LookupRecords(1000, 2);
    expect(kept.get('vec', 1, 1)).toBeUndefined(); // no map of 'vec' yet
    kept.keep('vec', 1, record(99_999, 'one'), 0);
    expect(kept.get('vec', 1, 1)?.toString()).toBe(record(99_999, 'one').toString());
    kept.keep('vec', 2, record(99_999, 'two'), 0); // the first generation is full
    expect(kept.get('vec', 2, 1)?.toString()).toBe(record(99_999, 'two').toString());
    kept.keep('vec', 3, record(99_999, 'three'), 0); // a second generation: 1 and 2 are the older one
    expect(kept.get('vec', 3, 1)?.toString()).toBe(record(99_999, 'three').toString());
    expect(kept.get('vec', 1, 1)?.toString()).toBe(record(99_999, 'one').toString());
    expect(kept.get('vec-other', 3, 1)).toBeUndefined();
    kept.keep('vec', 4, record(99_999, 'four'), 0);
    kept.keep('vec-other', 5, record(99_999, 'five'), 0); // a third: 1 and 2 are gone, 3 and 4 older
    expect(kept.get('vec', 1, 1)).toBeUndefined();
    expect(kept.get('vec', 4, 1)?.toString()).toBe(record(99_999, 'four').toString());
    expect(kept.get('vec-other', 5, 1)?.toString()).toBe(record(99_999, 'five').toString());
    expect(kept.get('vec', 5, 1)).toBeUndefined();
  });

  it('is bounded: two generations of perGeneration records over all scopes, the older dropped whole', () => {
    const kept = new LookupRecords(1000, 4);
    for (let slot = 0; slot < 2; slot++) kept.keep('vec-other', slot, record(99_999), 0);
    kept.keep('vec-other', 1, record(99_999), 0); // again: not counted twice
    for (let slot = 2; slot < 9; slot++) kept.keep('vec', slot, record(99_999, `r${slot}`), 0);
    // other 0, 1 and 2, 3 filled the first generation, 4..7 the second; 8 started a third: the first is gone
    for (let slot = 0; slot < 2; slot++) expect(kept.get('vec-other', slot, 1)).toBeUndefined();
    for (let slot = 2; slot < 4; slot++) expect(kept.get('vec', slot, 1)).toBeUndefined();
    for (let slot = 4; slot < 9; slot++)
      expect(kept.get('vec', slot, 1)?.toString()).toBe(record(99_999, `r${slot}`).toString());
  });

  it('finds records by slot whether the slots are dense, sparse, high or above every array bound', () => {
    // A scope's table indexes its slots in an array while they are dense, and in a map otherwise: every
    // slot must be found the same way, counted once, and moved into the array when the array grows past it.
    const kept = new LookupRecords(1000, 100_000);
    const slots = [0, 1, 5, 63, 64, 200, 5000, 3, 70_000, (1 << 18) + 7, 16_777_215, 300];
    for (const slot of slots) kept.keep('vec', slot, record(99_999, `s${slot}`), 0);
    for (const slot of slots)
      expect(kept.get('vec', slot, 1)?.toString()).toBe(record(99_999, `s${slot}`).toString());
    for (const slot of [2, 4, 65, 4999, 5001, 69_999, 1 << 18])
      expect(kept.get('vec', slot, 1)).toBeUndefined();
    // dense slots up to 6000: the array grows past 5000 and 300 (kept while it was small: in the map)
    for (let slot = 0; slot < 6000; slot++) kept.keep('vec', slot, record(99_999, `d${slot}`), 0);
    for (let slot = 0; slot < 6000; slot++)
      expect(kept.get('vec', slot, 1)?.toString()).toBe(record(99_999, `d${slot}`).toString());
    for (const slot of [70_000, (1 << 18) + 7, 16_777_215])
      expect(kept.get('vec', slot, 1)?.toString()).toBe(record(99_999, `s${slot}`).toString());
    expect(kept.get('vec', 6000, 1)).toBeUndefined();
  });

  it('counts each slot of a scope once towards a generation, whether in the array or the map', () => {
    const kept = new LookupRecords(1000, 3);
    kept.keep('vec', 1, record(99_999, 'a'), 0);
    kept.keep('vec', 1, record(99_999, 'b'), 0); // again: not counted
    kept.keep('vec', 100_000, record(99_999, 'c'), 0); // a high slot (the map)
    kept.keep('vec', 100_000, record(99_999, 'd'), 0); // again: not counted
    expect(kept.get('vec', 1, 1)?.toString()).toBe(record(99_999, 'b').toString());
    expect(kept.get('vec', 100_000, 1)?.toString()).toBe(record(99_999, 'd').toString());
    kept.keep('vec', 2, record(99_999, 'e'), 0); // the third record: the first generation is full
    kept.keep('vec', 3, record(99_999, 'f'), 0); // a second generation: 1, 100000, 2 are the older one
    kept.keep('vec', 4, record(99_999, 'g'), 0);
    kept.keep('vec', 5, record(99_999, 'h'), 0);
    kept.keep('vec', 6, record(99_999, 'i'), 0); // a third: the first is gone
    expect(kept.get('vec', 1, 1)).toBeUndefined();
    expect(kept.get('vec', 100_000, 1)).toBeUndefined();
    expect(kept.get('vec', 3, 1)?.toString()).toBe(record(99_999, 'f').toString());
    expect(kept.get('vec', 6, 1)?.toString()).toBe(record(99_999, 'i').toString());
  });
});

describe('LookupRecords.score (a kept record scored from its scope table)', () => {
  // a record as the candidates script returns it: 15 digits of expiry, the id, LF, stored vector, prompt
  const recordOf = (expiresAt: number, id: string, vector: Buffer, prompt: string) =>
    Buffer.concat([
      Buffer.from(String(expiresAt).padStart(15, '0') + id + '\n', 'latin1'),
      vector,
      Buffer.from(prompt),
    ]);
  const dims = 512;
  const random = seededRandom('lookup-records-score');
  /** A float vector with `nnz` random non-zero components (the lexical embedder's are ~15–30 of 512). */
  const vectorOf = (nnz: number): Float32Array => {
    const v = new Float32Array(dims);
    for (let k = 0; k < nnz; k++) v[Math.floor(random() * dims)] = random() * 2 - 1;
    return v;
  };
  /** What the lookup computed for a kept record before scores: from its KeptRecord. */
  const expected = (kept: LookupRecords, vecKey: string, slot: number, now: number, q: Float32Array) => {
    const k = kept.find(vecKey, slot, now);
    if (k === undefined) return NOT_KEPT;
    const from = k.vectorOf(dims);
    return from < 0 ? -1 : Math.min(1, cosineStoredKnown(q, squaredNorm(q), k.rec, from, k.len, k.ns));
  };

  it('gives exactly what find() and cosineStoredKnown give, through replaced records, generations and compaction', () => {
    const kept = new LookupRecords(1000, 600);
    const slots = [...Array.from({ length: 700 }, (_, i) => i), 70_000, 300_000, 16_777_215];
    const queries = Array.from({ length: 20 }, (_, i) => vectorOf(1 + (i % 40)));
    queries.push(new Float32Array(dims)); // the zero vector: 0
    let checked = 0;
    let passed = 0;
    for (let round = 0; round < 6; round++) {
      const at = round * 200; // a read's time: each round within the 1000 ms trust time of the last two
      for (let n = 0; n < 250; n++) {
        const slot = slots[Math.floor(random() * slots.length)]!;
        const kind = random();
        // sparse (most), dense (many non-zero), a zero vector, a record without a readable vector
        const vector =
          kind < 0.8
            ? storedQuantized(vectorOf(1 + Math.floor(random() * 40)))
            : kind < 0.9
              ? storedQuantized(vectorOf(400))
              : kind < 0.95
                ? storedQuantized(new Float32Array(dims))
                : Buffer.from([0x80, 0, 9, 1]);
        const rec = recordOf(99_999_999, `id${slot}`, vector, `prompt ${slot}`);
        kept.keep(round % 2 ? 'vec-b' : 'vec', slot, rec, at, n % 2 === 0);
      }
      for (const now of [at + 1, at + 500, at + 999, at + 1000])
        for (const vecKey of ['vec', 'vec-b', 'vec-none'])
          for (const q of queries) {
            const nq = squaredNorm(q);
            for (const slot of slots.slice(0, 50).concat(slots.slice(-30))) {
              const got = kept.score(vecKey, slot, now, q, nq, dims);
              const want = expected(kept, vecKey, slot, now, q);
              if (!Object.is(got, want))
                expect({ vecKey, slot, now, got }).toEqual({ vecKey, slot, now, got: want });
              checked++;
              if (got > 0.1) passed++;
            }
          }
    }
    expect(checked).toBeGreaterThan(100_000);
    expect(passed).toBeGreaterThan(100); // not all misses: the scores are compared where they matter too
  });

  it('scores a record kept again for its slot from its new vector', () => {
    const kept = new LookupRecords(1000, 100);
    const q = vectorOf(30);
    const a = storedQuantized(q);
    const b = storedQuantized(vectorOf(30));
    kept.keep('vec', 5, recordOf(99_999_999, 'a', a, 'a'), 0);
    expect(kept.score('vec', 5, 1, q, squaredNorm(q), dims)).toBeGreaterThan(0.99);
    kept.keep('vec', 5, recordOf(99_999_999, 'b', b, 'b'), 0);
    expect(kept.score('vec', 5, 1, q, squaredNorm(q), dims)).toBe(expected(kept, 'vec', 5, 1, q));
    expect(kept.score('vec', 5, 1, q, squaredNorm(q), dims)).toBeLessThan(0.5);
    expect(kept.score('vec', 5, 1000, q, squaredNorm(q), dims)).toBe(NOT_KEPT);
    // kept again and again (each scored once): the replaced vectors fill the table's arena, which is
    // compacted; the slots' scores stay their own
    for (let n = 0; n < 3000; n++) {
      const slot = n % 7;
      kept.keep('vec', slot, recordOf(99_999_999, `r${n}`, storedQuantized(vectorOf(25)), 'r'), 0);
      for (let s = 0; s < 7; s++)
        expect(kept.score('vec', s, 1, q, squaredNorm(q), dims)).toBe(expected(kept, 'vec', s, 1, q));
    }
  });
});
