import { LexicalEmbedder } from '../../shared/cache/semantic';
import { parseRecord, recordText } from '../../shared/cache/semantic/rank-slots';
import {
  cosineQuantized,
  cosineStoredAt,
  cosineStoredKnown,
  denseAt,
  quantize,
  squaredNorm,
  storedForm,
  storedLength,
  storedQuantized,
} from '../../shared/cache/semantic/vector-codec';
import { seededRandom } from '../../shared/cache/semantic/lsh';
import { KeptRecord } from '../../shared/cache/semantic/lookup-records';

const lx = new LexicalEmbedder();
const prompts = [
  'How do I reset my password?',
  'Request ab12-7: tell me about 1a2b3c4d5e6f and 55433',
  'def f(x):\n  return x * 2  # double every number of a list',
  'What is the capital of France, and why is Paris its capital? Explain the history briefly.',
];

describe('stored vector form (vector-codec storedForm)', () => {
  it('makes the same bytes straight from the float vector as storedForm(quantize(v)) (storedQuantized)', () => {
    const rand = seededRandom('stored-quantized');
    const vectors: Float32Array[] = prompts.map((p) => lx.embedOne(p));
    for (let i = 0; i < 400; i++)
      vectors.push(lx.embedOne(`Request t-${i}: tell me about ${rand()} and ${i * 7919}`));
    // sparse random vectors with components that round to zero (and to -0) next to the largest one
    for (let i = 0; i < 400; i++) {
      const v = new Float32Array(512);
      for (let k = 0; k < 5 + (i % 60); k++)
        v[Math.floor(rand() * 512)] = (rand() - 0.5) * (i % 3 === 0 ? 1e-3 : 1);
      v[i % 512] = i % 2 ? 1 : -1;
      vectors.push(v);
    }
    // dense ones, the zero vector, NaN and Infinity, a short and an odd-sized vector
    for (let i = 0; i < 20; i++) vectors.push(Float32Array.from({ length: 512 }, () => rand() - 0.5));
    vectors.push(
      new Float32Array(512),
      Float32Array.of(0, NaN, 1),
      Float32Array.of(Infinity, 1, 0, 0, 0, 0, 0, 0),
    );
    vectors.push(Float32Array.of(-0, 0.001, 1, 0, 0, 0, 0, 0, 0, 0, 0), new Float32Array(3));
    let sparse = 0;
    for (const v of vectors) {
      const want = storedForm(quantize(v));
      const got = storedQuantized(v);
      expect(Buffer.compare(got, want)).toBe(0);
      if (got[0] === 0x80) sparse++;
    }
    expect(sparse).toBeGreaterThan(800); // the fast path itself was taken
  });

  it('stores a lexical vector sparse, shorter, and decodes it to the same int8 bytes', () => {
    for (const p of prompts) {
      const q = quantize(lx.embedOne(p));
      const s = storedForm(q);
      expect(s[0]).toBe(0x80);
      expect(s.length).toBeLessThan(q.length / 4);
      expect(storedLength(s, 0, 512)).toBe(s.length);
      expect(Buffer.compare(denseAt(s, 0, 512)!, q)).toBe(0);
    }
  });

  it('gives the same cosine as the dense form, bit for bit, read in place in a record', () => {
    for (const a of prompts)
      for (const b of prompts) {
        const va = lx.embedOne(a);
        const qb = quantize(lx.embedOne(b));
        const record = Buffer.concat([Buffer.from('header\n'), storedForm(qb), Buffer.from('prompt')]);
        expect(cosineStoredAt(va, squaredNorm(va), record, 7)).toBe(cosineQuantized(va, qb));
        const dense = Buffer.concat([Buffer.from('header\n'), qb, Buffer.from('prompt')]);
        expect(cosineStoredAt(va, squaredNorm(va), dense, 7)).toBe(cosineQuantized(va, qb));
      }
  });

  it('scores a kept record as cosineStoredAt does, bit for bit, with its vector found once (KeptRecord)', () => {
    // records as the lookup reads them: expiry (15 digits), id, LF, stored vector (sparse, or dense), prompt
    const record = (id: string, stored: Buffer) =>
      Buffer.concat([Buffer.from(`${'9'.repeat(15)}${id}\n`, 'latin1'), stored, Buffer.from('the prompt')]);
    const rand = seededRandom('kept-record');
    const dense = Float32Array.from({ length: 512 }, () => rand() - 0.5);
    const stored = [...prompts.map((p) => storedQuantized(lx.embedOne(p))), storedQuantized(dense)];
    expect(stored[stored.length - 1]![0]).not.toBe(0x80); // one dense form among them
    for (const a of [...prompts.map((p) => lx.embedOne(p)), dense, new Float32Array(512)])
      for (const [i, s] of stored.entries()) {
        const rec = record(String(1000 + i), s);
        const kept = new KeptRecord(rec, 0);
        const at = kept.vectorOf(512);
        expect(at).toBe(rec.indexOf(10, 15) + 1);
        expect(kept.len).toBe(s.length);
        expect(kept.vectorOf(512)).toBe(at); // worked out once
        const nq = squaredNorm(a);
        expect(cosineStoredKnown(a, nq, rec, at, kept.len, kept.ns)).toBe(cosineStoredAt(a, nq, rec, at));
      }
    // no vector of those dims there: -1 (below every threshold), as cosineStoredAt's -1
    expect(new KeptRecord(Buffer.from('999999999999999no line feed'), 0).vectorOf(512)).toBe(-1);
    expect(new KeptRecord(record('7', stored[0]!.subarray(0, 5)), 0).vectorOf(512)).toBe(-1);
    expect(new KeptRecord(record('7', stored[0]!), 0).vectorOf(8)).toBe(-1); // indexes beyond 8 dims
  });

  it('keeps a dense vector dense (a sparse one would not be shorter)', () => {
    const v = new Float32Array(8).map((_, i) => i - 3.5);
    const q = quantize(v);
    expect(storedForm(q)).toBe(q);
    expect(storedLength(q, 0, 8)).toBe(8);
    expect(cosineStoredAt(v, squaredNorm(v), q, 0)).toBe(cosineQuantized(v, q));
  });

  it('reads no vector from truncated or malformed bytes (cosine -1, length -1)', () => {
    const q = quantize(lx.embedOne(prompts[0]!));
    const s = storedForm(q);
    const v = lx.embedOne(prompts[0]!);
    expect(storedLength(s.subarray(0, s.length - 1), 0, 512)).toBe(-1);
    expect(cosineStoredAt(v, squaredNorm(v), s.subarray(0, 2), 0)).toBe(-1);
    const outOfRange = Buffer.from(s);
    outOfRange.writeUInt16BE(600, 3); // index 600 of 512 dimensions
    expect(storedLength(outOfRange, 0, 512)).toBe(-1);
    const unordered = Buffer.from(s);
    unordered.writeUInt16BE(unordered.readUInt16BE(6), 3); // two equal indexes
    expect(storedLength(unordered, 0, 512)).toBe(-1);
    expect(storedLength(q.subarray(0, 100), 0, 512)).toBe(-1); // a dense vector cut short
  });

  it('parses candidate records of both forms to the same id, dense vector and prompt', () => {
    const q = quantize(lx.embedOne(prompts[2]!));
    for (const form of [q, storedForm(q)]) {
      const rec = Buffer.concat([Buffer.from(`${'1'.repeat(15)}4242\n`), form, Buffer.from(prompts[2]!)]);
      const r = parseRecord(rec, 512)!;
      expect(r.id).toBe('4242');
      expect(Buffer.compare(r.vector, q)).toBe(0);
      expect(r.prompt).toBe(prompts[2]);
      const at = rec.indexOf(10, 15) + 1;
      expect(recordText(rec, at, 512)).toEqual({ id: '4242', prompt: prompts[2] });
      // no readable vector there: cut short, or not at the vector's start
      expect(recordText(rec.subarray(0, at + 2), at, 512)).toBeUndefined();
      expect(recordText(rec, at + 1, 512)).toBeUndefined();
    }
  });
});
