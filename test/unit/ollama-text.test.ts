import { createHash } from 'node:crypto';
import {
  DEFAULT_CATALOG,
  MAX_NATURAL_TOKENS,
  MIN_NATURAL_TOKENS,
  buildCatalog,
  keepAliveMs,
  normalizeModelName,
  parseGoDuration,
  planText,
  simulatedEmbedding,
  simulatedTokens,
} from '../../workers/providers/simulator/index.js';
import { countWords, estimateTokens, fnv1a, mulberry32 } from '../../workers/providers/simulator/text.js';

const seed = { model: 'qwen2.5:7b', input: 'hello world' };

describe('hash and PRNG', () => {
  test('fnv1a matches the reference values', () => {
    expect(fnv1a('')).toBe(0x811c9dc5);
    expect(fnv1a('a')).toBe(0xe40c292c);
    expect(fnv1a('foobar')).toBe(0xbf9cf968);
  });

  test('mulberry32 is deterministic per seed and stays in [0, 1)', () => {
    const a = mulberry32(123);
    const b = mulberry32(123);
    const c = mulberry32(124);
    const seqA = Array.from({ length: 1000 }, () => a());
    const seqB = Array.from({ length: 1000 }, () => b());
    expect(seqB).toEqual(seqA);
    expect(c()).not.toBe(seqA[0]);
    expect(Math.min(...seqA)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...seqA)).toBeLessThan(1);
  });
});

describe('simulated text', () => {
  test('starts with the marker, is deterministic, and its length stays in bounds', () => {
    const lengths = new Set<number>();
    for (let i = 0; i < 300; i++) {
      const tokens = simulatedTokens({ ...seed, input: `prompt ${i}` });
      expect(tokens[0]).toBe('[simulated qwen2.5:7b]');
      expect(tokens.length).toBeGreaterThanOrEqual(MIN_NATURAL_TOKENS);
      expect(tokens.length).toBeLessThanOrEqual(MAX_NATURAL_TOKENS);
      expect(tokens.join('')).toMatch(/^\[simulated qwen2\.5:7b\] [A-Z][a-z]*/);
      expect(tokens.join('').endsWith('.')).toBe(true);
      lengths.add(tokens.length);
    }
    // The hash spreads lengths over the range rather than collapsing on a few values.
    expect(lengths.size).toBeGreaterThan(50);
    expect(simulatedTokens(seed)).toEqual(simulatedTokens({ ...seed }));
  });

  test('seed and temperature change the text', () => {
    const base = simulatedTokens(seed).join('');
    expect(simulatedTokens({ ...seed, seed: 1 }).join('')).not.toBe(base);
    expect(simulatedTokens({ ...seed, temperature: 0.2 }).join('')).not.toBe(base);
  });

  test('planText cuts at num_predict with "length" and leaves short answers alone with "stop"', () => {
    const natural = simulatedTokens(seed);
    const cut = planText(seed, 3);
    expect(cut).toEqual({ tokens: natural.slice(0, 3), doneReason: 'length' });
    expect(planText(seed, 10_000)).toEqual({ tokens: natural, doneReason: 'stop' });
    expect(planText(seed, -1)).toEqual({ tokens: natural, doneReason: 'stop' });
    expect(planText(seed, natural.length)).toEqual({ tokens: natural, doneReason: 'stop' });
  });

  test('planText stops before the first stop sequence after the marker', () => {
    const natural = simulatedTokens(seed);
    const body = natural.slice(1).join('');
    const stopWord = natural[4]?.trim() ?? '';
    const planned = planText(seed, 10_000, [stopWord]);
    expect(planned.doneReason).toBe('stop');
    expect(planned.tokens[0]).toBe(natural[0]);
    expect(planned.tokens.slice(1).join('')).toBe(body.slice(0, body.indexOf(stopWord)));
    // "]" only occurs in the marker, which is never cut.
    expect(planText(seed, 10_000, [']'])).toEqual({ tokens: natural, doneReason: 'stop' });
  });

  test('token estimate is words × 1.3, rounded', () => {
    expect(countWords('  one two\tthree\nfour ')).toBe(4);
    expect(estimateTokens('one two three four')).toBe(5);
    expect(estimateTokens('')).toBe(0);
  });
});

describe('simulated embeddings', () => {
  test('unit length, requested dims, deterministic', () => {
    const v = simulatedEmbedding('semantic caches need stable vectors', 768);
    expect(v).toHaveLength(768);
    expect(Math.hypot(...v)).toBeCloseTo(1, 9);
    expect(simulatedEmbedding('semantic caches need stable vectors', 768)).toEqual(v);
    const empty = simulatedEmbedding('', 384);
    expect(empty).toHaveLength(384);
    expect(Math.hypot(...empty)).toBeCloseTo(1, 9);
  });

  test('texts sharing words are closer than unrelated texts', () => {
    const dot = (a: number[], b: number[]): number => a.reduce((s, x, i) => s + x * (b[i] ?? 0), 0);
    const a = simulatedEmbedding('How do I reset my password?', 384);
    const b = simulatedEmbedding('how do i reset my password', 384);
    const c = simulatedEmbedding('Best pizza places in Naples', 384);
    expect(dot(a, b)).toBeGreaterThan(0.99);
    expect(dot(a, c)).toBeLessThan(0.3);
  });
});

describe('keep_alive durations', () => {
  test('Go duration strings', () => {
    expect(parseGoDuration('30s')).toBe(30_000);
    expect(parseGoDuration('5m')).toBe(300_000);
    expect(parseGoDuration('1h30m')).toBe(5_400_000);
    expect(parseGoDuration('1.5h')).toBe(5_400_000);
    expect(parseGoDuration('250ms')).toBe(250);
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('-1m')).toBe(-60_000);
    expect(() => parseGoDuration('300')).toThrow('missing unit');
    expect(() => parseGoDuration('5 minutes')).toThrow('invalid duration');
    expect(() => parseGoDuration('')).toThrow('invalid duration');
  });

  test('numbers are seconds; negative means forever', () => {
    expect(keepAliveMs(0)).toBe(0);
    expect(keepAliveMs(90)).toBe(90_000);
    expect(keepAliveMs(-1)).toBe(Number.POSITIVE_INFINITY);
    expect(keepAliveMs('-1s')).toBe(Number.POSITIVE_INFINITY);
    expect(keepAliveMs('10m')).toBe(600_000);
    expect(() => keepAliveMs(true)).toThrow('Unsupported type');
  });
});

describe('catalog', () => {
  test('names get ":latest" when untagged; digests are sha256 of the name', () => {
    expect(normalizeModelName('nomic-embed-text')).toBe('nomic-embed-text:latest');
    expect(normalizeModelName('qwen2.5:7b')).toBe('qwen2.5:7b');
    expect(normalizeModelName('registry.local:5000/team/model')).toBe(
      'registry.local:5000/team/model:latest',
    );
    for (const m of DEFAULT_CATALOG) {
      expect(m.digest).toBe(createHash('sha256').update(m.name).digest('hex'));
    }
    const nomic = DEFAULT_CATALOG.find((m) => m.name === 'nomic-embed-text:latest');
    expect(nomic).toMatchObject({ kind: 'embedding', embeddingDims: 768 });
  });

  test('extra models replace or extend the defaults', () => {
    const catalog = buildCatalog([
      {
        name: 'qwen2.5:7b',
        sizeBytes: 1,
        family: 'qwen2',
        parameterSize: '7.6B',
        quantization: 'Q8_0',
        embeddingDims: 3584,
        contextLength: 32_768,
      },
      {
        name: 'tiny',
        sizeBytes: 2,
        family: 'test',
        parameterSize: '1M',
        quantization: 'F16',
        embeddingDims: 8,
        contextLength: 128,
      },
    ]);
    expect(catalog.get('qwen2.5:7b')?.quantization).toBe('Q8_0');
    expect(catalog.get('tiny:latest')).toMatchObject({ kind: 'completion', sizeBytes: 2 });
    expect(catalog.size).toBe(DEFAULT_CATALOG.length + 1);
  });
});
