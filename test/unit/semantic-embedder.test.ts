import {
  CacheMatchConfidence,
  DEFAULT_THRESHOLDS,
  HASHED_NGRAM_THRESHOLDS,
  LexicalEmbedder,
  FunctionEmbedder,
  HashedNgramEmbedder,
} from '../../shared/cache/semantic';
import { confidenceOf } from '../../shared/cache/semantic/confidence';
import { LEXICON_VERSION } from '../../shared/cache/semantic/lexicon';
import { FeatureVector, fnv1a } from '../../shared/cache/semantic/hashed-features';
import {
  cosine,
  cosineQuantized,
  cosineQuantizedAt,
  quantize,
} from '../../shared/cache/semantic/vector-codec';

const e = new HashedNgramEmbedder();
const sim = (a: string, b: string): number => cosine(e.embedOne(a), e.embedOne(b));

describe('HashedNgramEmbedder', () => {
  it('is deterministic across instances and L2-normalised', async () => {
    const [a] = await new HashedNgramEmbedder().embed(['How do I reset my password?']);
    const [b] = await new HashedNgramEmbedder().embed(['How do I reset my password?']);
    expect(Array.from(a!)).toEqual(Array.from(b!));
    expect(a!.length).toBe(512);
    let n = 0;
    for (const x of a!) n += x * x;
    expect(n).toBeCloseTo(1, 5);
    expect(e.embedOne('').every((x) => x === 0)).toBe(true);
    expect(new HashedNgramEmbedder({ dims: 256 }).embedOne('hello world').length).toBe(256);
    expect(() => new HashedNgramEmbedder({ dims: 300 })).toThrow(/dims/);
  });

  it('rejects with the signal reason when aborted', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(e.embed(['x'], ac.signal)).rejects.toThrow('stop');
  });

  // The measurements behind HASHED_NGRAM_THRESHOLDS (confidence.ts).
  it('scores rephrasings that keep the content words at HIGH', () => {
    for (const [a, b] of [
      ['How do I reset my password?', 'How can I reset my password?'],
      ['What is the capital of France?', 'Tell me the capital of France'],
      [
        'Write a haiku about the autumn ocean at night',
        'Can you write a haiku about the autumn ocean at night',
      ],
      [
        'Write a python function to reverse a linked list',
        'Write a Python function that reverses a linked list',
      ],
      ['What causes inflation in an economy?', 'what causes inflation in the economy'],
    ])
      expect(sim(a!, b!)).toBeGreaterThanOrEqual(HASHED_NGRAM_THRESHOLDS.high);
  });

  it('scores a swapped content word below HIGH, and unrelated prompts near 0', () => {
    expect(
      sim(
        'Write a python function to reverse a linked list',
        'Write a python function to sort a linked list',
      ),
    ).toBeLessThan(HASHED_NGRAM_THRESHOLDS.high);
    expect(sim('What is the capital of France?', 'What is the capital of Spain?')).toBeLessThan(
      HASHED_NGRAM_THRESHOLDS.low,
    );
    expect(Math.abs(sim('How do I reset my password?', 'Explain quantum entanglement simply'))).toBeLessThan(
      0.2,
    );
  });

  it('maps a similarity to its level', () => {
    expect(confidenceOf(0.95, HASHED_NGRAM_THRESHOLDS)).toBe(CacheMatchConfidence.HIGH);
    expect(confidenceOf(0.85, HASHED_NGRAM_THRESHOLDS)).toBe(CacheMatchConfidence.MEDIUM);
    expect(confidenceOf(0.76, HASHED_NGRAM_THRESHOLDS)).toBe(CacheMatchConfidence.LOW);
    expect(confidenceOf(0.5, HASHED_NGRAM_THRESHOLDS)).toBeUndefined();
  });
});

describe('int8 vector codec', () => {
  it('keeps cosine within 0.005 of the float value', () => {
    const pairs = [
      ['How do I reset my password?', 'How can I reset my password?'],
      ['flights from Paris to Rome', 'flights from Rome to Paris'],
      ['What is the capital of France?', 'Write a poem about the sea'],
    ];
    for (const [a, b] of pairs) {
      const va = e.embedOne(a!);
      const vb = e.embedOne(b!);
      expect(Math.abs(cosineQuantized(va, quantize(vb)) - cosine(va, vb))).toBeLessThan(0.005);
      // read in place inside a record (negative components included): the same value
      const record = Buffer.concat([Buffer.from('header\n'), quantize(vb), Buffer.from('prompt')]);
      expect(cosineQuantizedAt(va, record, 7)).toBe(cosineQuantized(va, quantize(vb)));
    }
    expect(quantize(e.embedOne('hello')).length).toBe(512);
  });
});

describe('FunctionEmbedder', () => {
  it('wraps a provider call, normalises, and passes the signal', async () => {
    let seen: AbortSignal | undefined;
    const f = new FunctionEmbedder({
      name: 'fake/embed',
      dims: 3,
      fn: (texts, signal) => {
        seen = signal;
        return Promise.resolve(texts.map((_, i) => [3, 4, i]));
      },
    });
    const ac = new AbortController();
    const [v] = await f.embed(['a'], ac.signal);
    expect(Array.from(v!)).toEqual([0.6, 0.8, 0].map((x) => Math.fround(x)));
    expect(seen).toBe(ac.signal);
    expect(f.name).toBe('fake/embed');
  });

  it('refuses wrong shapes and bad options', async () => {
    const wrong = new FunctionEmbedder({ name: 'x', dims: 3, fn: () => Promise.resolve([[1, 2]]) });
    await expect(wrong.embed(['a'])).rejects.toThrow(/3 numbers/);
    const count = new FunctionEmbedder({ name: 'x', dims: 2, fn: () => Promise.resolve([]) });
    await expect(count.embed(['a'])).rejects.toThrow(/expected 1 vectors/);
    const nan = new FunctionEmbedder({ name: 'x', dims: 1, fn: () => Promise.resolve([[NaN]]) });
    await expect(nan.embed(['a'])).rejects.toThrow(/non-finite/);
    expect(() => new FunctionEmbedder({ name: '', dims: 3, fn: () => Promise.resolve([]) })).toThrow(/name/);
    expect(() => new FunctionEmbedder({ name: 'x', dims: 0, fn: () => Promise.resolve([]) })).toThrow(/dims/);
  });
});

describe('LexicalEmbedder', () => {
  const lx = new LexicalEmbedder();
  const lsim = (a: string, b: string): number => cosine(lx.embedOne(a), lx.embedOne(b));

  it('is deterministic across instances, L2-normalised, and named after its lexicon version', async () => {
    const [a] = await new LexicalEmbedder().embed(['How do I fix a wobbly table leg?']);
    const [b] = await new LexicalEmbedder().embed(['How do I fix a wobbly table leg?']);
    expect(Array.from(a!)).toEqual(Array.from(b!));
    expect(a!.length).toBe(512);
    let n = 0;
    for (const x of a!) n += x * x;
    expect(n).toBeCloseTo(1, 5);
    expect(lx.name).toBe(`lexical-v1-${LEXICON_VERSION}`);
    expect(lx.thresholds).toBe(DEFAULT_THRESHOLDS);
    expect(lx.embedOne('').every((x) => x === 0)).toBe(true);
    expect(new LexicalEmbedder({ dims: 256 }).embedOne('hello world').length).toBe(256);
    expect(() => new LexicalEmbedder({ dims: 100 })).toThrow(/dims/);
  });

  it('scores synonyms, question frames, contractions, politeness and typos at HIGH', () => {
    for (const [a, b] of [
      ['How do I fix a wobbly table leg?', 'What is the way to repair a wobbly table leg?'],
      ['Where can I buy cheap flights to Lisbon?', 'Where can I purchase inexpensive flights to Lisbon?'],
      ['How many calories are in a banana?', 'What is the number of calories in a banana?'],
      ["Why doesn't the cork come out in one piece?", 'Why does the cork not come out in one piece?'],
      ['Could you please explain how a bee smoker works? Thanks!', 'Explain how a bee smoker works.'],
      ['what causes gum recesion', 'What causes gum recession?'],
      ['Who invented the telephone?', 'By whom was the telephone invented?'],
    ])
      expect({ a, high: lsim(a!, b!) >= DEFAULT_THRESHOLDS.high }).toEqual({ a, high: true });
  });

  it('keeps another content word, another kind of question and unrelated prompts apart', () => {
    // below HIGH; the guard refuses it at any level (substitution, semantic-guard.test.ts)
    expect(
      lsim('How do I finish walnut with Danish oil?', 'How do I finish maple with Danish oil?'),
    ).toBeLessThan(DEFAULT_THRESHOLDS.high);

    expect(lsim('How do I bake banana bread?', 'Who won the World Cup in 2014?')).toBeLessThan(0.2);
  });
});

describe('FeatureVector: features hashed in place', () => {
  it('adds a tagged feature, a pair and character grams exactly as the concatenated strings would', () => {
    for (const [a, b] of [
      ['jupiter', 'moon'],
      ['naïve', 'café'],
      ['x', ''],
      ['', 'y'],
    ] as const) {
      const inPlace = new FeatureVector(64);
      const concat = new FeatureVector(64);
      inPlace.addTagged('k\u0001', a, 1);
      concat.add('k\u0001' + a, 1);
      inPlace.addPair('p\u0001', a, b, 0.35);
      concat.add('p\u0001' + a + ' ' + b, 0.35);
      inPlace.addCharGrams(a, 0.6);
      const s = '^' + a + '$';
      const grams: string[] = [];
      for (const n of [3, 4]) for (let i = 0; i + n <= s.length; i++) grams.push(s.slice(i, i + n));
      for (const g of grams) concat.add('g\u0001' + g, 0.6 / Math.sqrt(grams.length));
      expect(Array.from(inPlace.normalized())).toEqual(Array.from(concat.normalized()));
    }
    expect(fnv1a('k\u0001moon')).not.toBe(fnv1a('k\u0001moan'));
  });
});

describe('FeatureVector.normalized: only the non-zero dimensions visited', () => {
  /** The vector before normalisation (the class's private array, read for the reference). */
  const raw = (v: FeatureVector): Float32Array => Float32Array.from((v as unknown as { v: Float32Array }).v);
  /** Every dimension summed and scaled in order: what normalized() computed before it kept the list. */
  const dense = (v: Float32Array): Float32Array => {
    const out = Float32Array.from(v);
    let norm = 0;
    for (let i = 0; i < out.length; i++) norm += out[i]! * out[i]!;
    if (norm > 0) {
      const inv = 1 / Math.sqrt(norm);
      for (let i = 0; i < out.length; i++) out[i]! *= inv;
    }
    return out;
  };

  class Probe extends LexicalEmbedder {
    features(text: string): FeatureVector {
      const v = new FeatureVector(this.dims);
      this.addFeatures(text, v);
      return v;
    }
  }
  const probe = new Probe();

  it('gives the same floats as the dense pass, bit for bit, and the non-zero indices in ascending order', () => {
    const texts = [
      'How do I reset my password?',
      'Request ab12-7: tell me about 1a2b3c4d5e6f and 55433',
      'What is the capital of France, and why is Paris its capital? Explain the history briefly.',
      '',
      '!!!',
    ];
    for (let i = 0; i < 300; i++)
      texts.push(`Request t${i % 7}-${i}: tell me about ${(i * 99991).toString(16)} and ${i * 7919}`);
    for (const text of texts) {
      const v = probe.features(text);
      const want = dense(raw(v));
      const nonZero: number[] = [-1];
      const got = v.normalized(nonZero);
      expect(got.every((x, i) => Object.is(x, want[i]))).toBe(true);
      expect(nonZero).toEqual([...got.keys()].filter((i) => got[i] !== 0));
      const again: number[] = [];
      expect(Array.from(probe.embedOne(text, again))).toEqual(Array.from(want));
      expect(again).toEqual(nonZero);
    }
  });

  it('leaves out a dimension that came back to 0, and lists one touched twice once', () => {
    const v = new FeatureVector(64);
    v.add('a', 1);
    v.add('a', -1); // back to 0
    v.add('b', 0.5);
    v.add('a', 0.25); // touched again
    v.add('b', 0.5);
    const want = dense(raw(v));
    const nonZero: number[] = [];
    expect(Array.from(v.normalized(nonZero))).toEqual(Array.from(want));
    expect(nonZero).toEqual([fnv1a('a') & 63, fnv1a('b') & 63].sort((x, y) => x - y));
    const zero = new FeatureVector(16);
    zero.add('c', 1);
    zero.add('c', -1);
    const none: number[] = [-1];
    expect(Array.from(zero.normalized(none))).toEqual(Array.from(new Float32Array(16)));
    expect(none).toEqual([]);
  });
});
