import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LexicalEmbedder } from '../../shared/cache/semantic/lexical-embedder';
import { EVAL_SETS, evalPrompts, HAND_PROMPTS } from '../helpers/lexical-corpus';
import { digest, sparseBits } from '../helpers/lexical-digest';

// The lexical embedder's vectors, bit for bit, as frozen in test/fixtures/lexical-vectors.json (written by
// test/helpers/write-lexical-vectors.ts before the embedder's code was made faster): a vector that changes
// by one float bit changes the bands and cosines of every entry stored before, so speed work must not.
interface Frozen {
  embedder: string;
  dims: number;
  hand: string[];
  sets: Record<string, string[]>;
}
const frozen = JSON.parse(
  readFileSync(join(__dirname, '..', 'fixtures', 'lexical-vectors.json'), 'utf8'),
) as Frozen;

/** The ascending non-zero dimensions of `v`, as embedOne's `nonZero` list must give them. */
function nonZeroOf(v: Float32Array): number[] {
  const out: number[] = [];
  for (let d = 0; d < v.length; d++) if (v[d] !== 0) out.push(d);
  return out;
}

describe('LexicalEmbedder frozen vectors', () => {
  const e = new LexicalEmbedder();

  it('is the embedder and size the fixture was made with', () => {
    expect(e.name).toBe(frozen.embedder);
    expect(e.dims).toBe(frozen.dims);
    expect(frozen.hand).toHaveLength(HAND_PROMPTS.length);
  });

  it('gives the frozen vectors of the hand-picked corpus, with their non-zero lists, in both orders', () => {
    const forward = HAND_PROMPTS.map((p) => {
      const nz: number[] = [];
      const v = e.embedOne(p, nz);
      expect(nz).toEqual(nonZeroOf(v));
      return sparseBits(v);
    });
    expect(forward).toEqual(frozen.hand);
    // again, last first: every memo (tokens, canonical forms, words) warm and met in another order
    const backward = HAND_PROMPTS.map((_, i) => HAND_PROMPTS.length - 1 - i).map((i) => ({
      i,
      bits: sparseBits(e.embedOne(HAND_PROMPTS[i]!)),
    }));
    for (const { i, bits } of backward) expect({ i, bits }).toEqual({ i, bits: frozen.hand[i] });
    // a fresh embedder, and embed() (the batch entry point), give the same
    return new LexicalEmbedder().embed(HAND_PROMPTS).then((vs) => {
      expect(vs.map(sparseBits)).toEqual(frozen.hand);
    });
  });

  it.each(EVAL_SETS)('gives the frozen vectors of every prompt of %s', (file) => {
    const prompts = evalPrompts(file);
    const want = frozen.sets[file]!;
    expect(prompts).toHaveLength(want.length);
    const got = prompts.map((p) => digest(e.embedOne(p)));
    const wrong = got.flatMap((d, i) => (d === want[i] ? [] : [prompts[i]]));
    expect(wrong).toEqual([]);
  });
});
