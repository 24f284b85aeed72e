// Writes test/fixtures/lexical-vectors.json: the lexical embedder's vectors of the corpus in
// lexical-corpus.ts, as the code computes them now. Run only to freeze a deliberate change of the vectors
// (which also changes every stored entry's bands): `node --import tsx test/helpers/write-lexical-vectors.ts`.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LexicalEmbedder } from '../../shared/cache/semantic/lexical-embedder';
import { EVAL_SETS, evalPrompts, HAND_PROMPTS } from './lexical-corpus';
import { digest, sparseBits } from './lexical-digest';

const e = new LexicalEmbedder();
const out = {
  embedder: e.name,
  dims: e.dims,
  hand: HAND_PROMPTS.map((p) => sparseBits(e.embedOne(p))),
  sets: Object.fromEntries(EVAL_SETS.map((f) => [f, evalPrompts(f).map((p) => digest(e.embedOne(p)))])),
};
writeFileSync(join(__dirname, '..', 'fixtures', 'lexical-vectors.json'), JSON.stringify(out, null, 1) + '\n');
