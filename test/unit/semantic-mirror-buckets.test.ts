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

  it("applies a process's own store entries from their replies in stream order, each once, whatever comes first: the same buckets as every entry read from the stream", async () => {
    const ROWS = 8;
    const keys = new ScopeKeys('t:sem', 'e'.repeat(32));
    const mirror = new BandMirror(fakeRedis, BANDS, ROWS);
    await mirror.build(keys); // at '1-0'
    const rand = seededRandom('mirror-own');
    const gens = ['h10.1', 'h11.1'];
    /** The stream: each entry's id, its events as the stream holds them, and for this process's own ones
     * its store reply's events ("*entry id slot generation" for its joins) and band values by entry id. */
    const stream: { id: string; text: string; own?: { events: string; values: Map<string, number[]> } }[] = [
      { id: '1-0', text: '' },
    ];
    const live = new Map<number, { gen: string; values: number[] }>(); // slot -> where it joined
    const fieldsOf = (vs: number[]) => vs.map((v, i) => `${i}:${v.toString(36)}`).join(',');
    /** The model: the stream's entries up to `at` applied, each bucket's slots in join order. */
    const model = new Map<string, number[]>(); // "generation bucket" -> slots
    let at = 0;
    const expected = (upTo: number): string[] => {
      for (; at < upTo;) {
        for (const line of stream[++at]!.text.split('\n')) {
          const [head, gen, fields] = line.split(' ');
          const slot = Number(head!.slice(1));
          fields!.split(',').forEach((f) => {
            const [i, v] = f.split(':');
            const key = `${gen} ${parseInt(v!, 36) * BANDS + Number(i)}`;
            const b = model.get(key) ?? [];
            if (head![0] === '+') b.push(slot);
            else b.splice(b.indexOf(slot), 1);
            model.set(key, b);
          });
        }
      }
      const out: string[] = [];
      for (const [key, slots] of model) for (const s of slots) out.push(`${key} ${s}`);
      return out.sort();
    };
    /** Store replies not yet delivered: [due step, stream index]. */
    let replies: [number, number][] = [];
    /** Lookup replies not yet delivered: [due step, the mirror's position and the stream's last entry then]. */
    let lookups: [number, number, number][] = [];
    /** A lookup reply's catch-up: the stream's entries after `from` up to `to`, as the script gives them. */
    const catchUp = (from: number, to: number): void =>
      mirror.apply(
        keys,
        stream
          .slice(from + 1, to + 1)
          .map((x) => `#${x.id}\n${x.text}`)
          .join('\n'),
      );
    let ms = 2;
    for (let step = 0; step < 6000; step++) {
      // a new stream entry: one to three events (joins of free slots, leaves of live ones; a slot freed
      // and joined again in one entry too), this process's own in about half
      const own = rand() < 0.5;
      const lines: string[] = [];
      const ownLines: string[] = [];
      const values = new Map<string, number[]>();
      for (let e = 1 + Math.floor(rand() * 3); e > 0; e--) {
        const slot = Math.floor(rand() * 60);
        const was = live.get(slot);
        if (was) {
          const line = `-${slot} ${was.gen} ${fieldsOf(was.values)}`;
          lines.push(line);
          ownLines.push(line);
          live.delete(slot);
        } else {
          const vs = Array.from({ length: BANDS }, () => Math.floor(rand() * 2 ** ROWS));
          const gen = gens[Math.floor(rand() * 2)]!;
          lines.push(`+${slot} ${gen} ${fieldsOf(vs)}`);
          const entryId = `p${step}.${e}`;
          ownLines.push(`*${entryId} ${slot} ${gen}`);
          values.set(entryId, vs);
          live.set(slot, { gen, values: vs });
        }
      }
      // ids as Redis makes them: a new millisecond, or the next sequence number of the same one
      const id = rand() < 0.3 ? `${ms}-${stream.length}` : `${++ms}-0`;
      stream.push({
        id,
        text: lines.join('\n'),
        ...(own ? { own: { events: ownLines.join('\n'), values } } : {}),
      });
      if (own) replies.push([step + Math.floor(rand() * 6), stream.length - 1]);
      // due store replies, in any order (the caches of a process may use two connections)
      const due = replies.filter(([when]) => when <= step).sort(() => rand() - 0.5);
      replies = replies.filter(([when]) => when > step);
      for (const [, k] of due) {
        const { id: ownId, own: o } = stream[k]!;
        mirror.applyStored(keys, stream[k - 1]!.id, ownId, o!.events, (entryId) => o!.values.get(entryId));
      }
      // sometimes a lookup: Redis runs it now (every entry after the mirror's position now, as the stream
      // holds it), its reply comes a few steps later, after later store replies perhaps
      if (rand() < 0.15)
        lookups.push([
          step + Math.floor(rand() * 4),
          stream.findIndex((x) => x.id === mirror.position(keys)),
          stream.length - 1,
        ]);
      for (const [, from, to] of lookups.filter(([when]) => when <= step)) catchUp(from, to);
      lookups = lookups.filter(([when]) => when > step);
      const pos = stream.findIndex((x) => x.id === mirror.position(keys));
      expect(pos).toBeGreaterThanOrEqual(at);
      if (step % 97 === 0 || step === 5999) expect(mirror.contents(keys)).toEqual(expected(pos));
      else expected(pos);
    }
    // the replies still due, then a last catch-up: the whole stream
    for (const [, k] of replies) {
      const { id: ownId, own: o } = stream[k]!;
      mirror.applyStored(keys, stream[k - 1]!.id, ownId, o!.events, (entryId) => o!.values.get(entryId));
    }
    for (const [, from, to] of lookups) catchUp(from, to);
    catchUp(
      stream.findIndex((x) => x.id === mirror.position(keys)),
      stream.length - 1,
    );
    expect(mirror.position(keys)).toBe(stream[stream.length - 1]!.id);
    expect(mirror.contents(keys)).toEqual(expected(stream.length - 1));
    // the own entries went both ways: from their replies (at once, and held until the mirror got to the
    // entry before), and read back by a catch-up that came first
    expect(mirror.stats.ownApplied).toBeGreaterThan(200);
    expect(mirror.stats.ownLater).toBeGreaterThan(100);
    expect(mirror.stats.linesApplied).toBeGreaterThan(5000);
    expect(mirror.stats.linesRead).toBeGreaterThan(mirror.stats.linesApplied);
  });

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
