/*
 * semantic-identical — proves that a change to the semantic cache's compute (normalisation, canonical form,
 * lexicon, embedding, LSH bands, vector codec, guard) changes no answer: runs this build's compiled output
 * and another build's (--against DIST, its dist/ directory) on the same inputs, in one process, and
 * compares every output bit for bit.
 *
 *   npm run build && node --import tsx bench/semantic-identical.ts --against DIST [--prompts N]
 *
 * Inputs: N distinct prompts of bench:semantic's corpus and a paraphrase of each; N prompts shaped as
 * bench:http sends them (a hex id and a number: unique words with digits); N corpus prompts with one word
 * mistyped (the typo path), and made-up lower-case words; odd text (Unicode, line breaks, control
 * characters, contractions, numbers). Compared per prompt: normalizePrompt, promptId, canonicalize, both
 * built-in embedders' vectors (every bit), their LSH band values and band fields, the stored (quantised)
 * vector; the guard's verdict on each prompt against its paraphrase and its neighbour; and per word, the
 * lexicon's lemmaOf and isKnownWord (every word of the lexicon and inflected forms of a sample) and
 * correctTypo (mistyped words). Exits 1 on any difference.
 */
import { join } from 'node:path';
import { benchArgs } from './args.js';
import { distinctPrompts, paraphrase } from './semantic-corpus.js';
import type * as CanonicalModule from '../shared/cache/semantic/canonical.js';
import type * as GuardModule from '../shared/cache/semantic/guard.js';
import type * as IndexModule from '../shared/cache/semantic/index.js';
import type * as LexiconModule from '../shared/cache/semantic/lexicon.js';
import type * as LshModule from '../shared/cache/semantic/lsh.js';
import type * as ScopeModule from '../shared/cache/semantic/scope.js';
import type * as TextModule from '../shared/cache/semantic/text.js';
import type * as CodecModule from '../shared/cache/semantic/vector-codec.js';
import { seededRandom } from '../shared/cache/semantic/lsh.js';

interface Embedder {
  readonly name: string;
  readonly dims: number;
  embedOne(text: string): Float32Array;
}

/** The functions compared, loaded from one build's compiled output. */
interface Build {
  normalizePrompt(s: string): string;
  promptId(normalized: string): string;
  canonicalize(s: string): unknown;
  lemmaOf(lower: string): string;
  isKnownWord(lower: string): boolean;
  correctTypo(lower: string): string | undefined;
  words(): Iterable<string>;
  embedders: Embedder[];
  hashers: { bandValues(v: Float32Array): number[] | undefined }[];
  bandFields(bands: readonly number[]): string;
  storedQuantized(v: Float32Array): Buffer;
  guardRejects(a: string, b: string): string | undefined;
}

async function load(dist: string): Promise<Build> {
  // the other build's modules, typed as this build's: the functions compared have the same signatures
  const m = <M>(file: string): Promise<M> =>
    import(join(dist, 'shared', 'cache', 'semantic', file)) as Promise<M>;
  const text = await m<typeof TextModule>('text.js');
  const scope = await m<typeof ScopeModule>('scope.js');
  const canonical = await m<typeof CanonicalModule>('canonical.js');
  const lexicon = await m<typeof LexiconModule>('lexicon.js');
  const index = await m<typeof IndexModule>('index.js');
  const lsh = await m<typeof LshModule>('lsh.js');
  const codec = await m<typeof CodecModule>('vector-codec.js');
  const guard = await m<typeof GuardModule>('guard.js');
  const embedders: Embedder[] = [new index.LexicalEmbedder(), new index.HashedNgramEmbedder()];
  return {
    normalizePrompt: text.normalizePrompt,
    promptId: scope.promptId,
    canonicalize: canonical.canonicalize,
    lemmaOf: lexicon.lemmaOf,
    isKnownWord: lexicon.isKnownWord,
    correctTypo: lexicon.correctTypo,
    words: () => lexicon.lexicon().words.keys(),
    embedders,
    hashers: embedders.map((e) => new lsh.LshHasher(e.name, e.dims)),
    bandFields: scope.bandFields,
    storedQuantized: codec.storedQuantized,
    guardRejects: guard.guardRejects,
  };
}

/** One word of `w` changed as people mistype: a letter dropped, doubled, swapped with the next, replaced. */
function mistype(w: string, rand: () => number): string {
  const i = Math.floor(rand() * w.length);
  const c = 'abcdefghijklmnopqrstuvwxyz'[Math.floor(rand() * 26)]!;
  switch (Math.floor(rand() * 4)) {
    case 0:
      return w.slice(0, i) + w.slice(i + 1);
    case 1:
      return w.slice(0, i) + w[i] + w.slice(i);
    case 2:
      return i + 1 < w.length ? w.slice(0, i) + w[i + 1] + w[i] + w.slice(i + 2) : w + c;
    default:
      return w.slice(0, i) + c + w.slice(i + 1);
  }
}

const ODD = [
  '',
  '   ',
  'What’s the “best” way to learn Rust?',
  'ＦＵＬＬ　ＷＩＤＴＨ ｑｕｅｓｔｉｏｎ？',
  'Is 10² bigger than x₁?',
  'def f(x):\n    return x * 2\n\n\n  # indented\r\nend',
  'tab\tseparated\u000bvertical\u000cform\u2028line\u2029para',
  'control \u0007 bell and \u0085 next line',
  "I can't, won't and shouldn't do it; isn't it?",
  'Explian the diffrence between TCP and UDP',
  'Zorblatt went home. Qwerty stayed, and Recesion came; Waht about Athens, Paris and Texas?',
  'Is Kubernetes like Nomad? Recomend one: Explian why, Teh short answer.',
  'Who is the author of War and Peace?',
  'How does a queen bee differ from a drone -> and why => now?',
  'Convert 1,000,000 km to miles, 5! and 3.14%',
  'World War II vs the second world war vs XIV',
  'colour organisation analyse centre catalogue defence travelling',
  'teeth went mice children geese better worst',
  'ribbed stopping bigger happiest studies boxes churches',
  'Le café à Paris est très bon, n’est-ce pas ?',
  '日本の首都はどこですか？',
  'emoji 🚀 and 👩‍💻 here',
  'C++ and C# and node.js and e.g. foo_bar baz-qux',
  'please kindly tell me about the cutting board, speed up and get rid of it',
];

async function main(): Promise<void> {
  const args = benchArgs(
    process.argv.slice(2),
    { prompts: 2000 },
    'node --import tsx bench/semantic-identical.ts --against DIST [--prompts N]',
    ['against'],
  );
  const against = args.text.against;
  if (!against) {
    console.error('--against DIST is required (the dist/ directory of the build to compare with)');
    process.exit(2);
  }
  const n = args.prompts;
  const b = await load(join(__dirname, '..', 'dist'));
  const a = await load(against);

  const rand = seededRandom('semantic-identical');
  const corpus = distinctPrompts('semantic-identical', n);
  const prompts: string[] = [...ODD];
  for (const p of corpus) prompts.push(p, paraphrase(p, rand));
  for (let i = 0; i < n; i++) {
    const hex = Array.from({ length: 12 }, () => '0123456789abcdef'[Math.floor(rand() * 16)]).join('');
    prompts.push(`Request B${i % 7}-${i}: tell me about ${hex} and ${i * 7919}`);
  }
  const typoWords: string[] = [];
  for (let i = 0; i < n; i++) {
    const words = corpus[i]!.split(' ');
    const k = Math.floor(rand() * words.length);
    const w = words[k]!.toLowerCase().replace(/[^a-z]/g, '');
    if (w.length >= 3) {
      const t = mistype(w, rand);
      typoWords.push(t);
      words[k] = t;
    }
    prompts.push(words.join(' '));
  }
  for (let i = 0; i < Math.min(n, 500); i++) {
    let w = '';
    const len = 4 + Math.floor(rand() * 8);
    for (let k = 0; k < len; k++) w += 'abcdefghijklmnopqrstuvwxyz'[Math.floor(rand() * 26)];
    typoWords.push(w);
    prompts.push(`how do i configure ${w} on my server`);
  }

  const diffs = new Map<string, number>();
  const examples: string[] = [];
  let compared = 0;
  const check = (what: string, input: string, x: unknown, y: unknown): void => {
    compared++;
    const same =
      x instanceof Uint8Array && y instanceof Uint8Array
        ? Buffer.compare(
            Buffer.from(x.buffer, x.byteOffset, x.byteLength),
            Buffer.from(y.buffer, y.byteOffset, y.byteLength),
          ) === 0
        : JSON.stringify(x) === JSON.stringify(y);
    if (same) return;
    diffs.set(what, (diffs.get(what) ?? 0) + 1);
    if (examples.length < 10) examples.push(`${what}: ${JSON.stringify(input).slice(0, 120)}`);
  };

  for (const p of prompts) {
    const na = a.normalizePrompt(p);
    check('normalizePrompt', p, na, b.normalizePrompt(p));
    check('promptId', p, a.promptId(na), b.promptId(na));
    check('canonicalize', p, a.canonicalize(p), b.canonicalize(p));
    for (let e = 0; e < a.embedders.length; e++) {
      const va = a.embedders[e]!.embedOne(p);
      const vb = b.embedders[e]!.embedOne(p);
      check(`embedding ${a.embedders[e]!.name}`, p, new Uint8Array(va.buffer), new Uint8Array(vb.buffer));
      const ba = a.hashers[e]!.bandValues(va);
      check(`bandValues ${a.embedders[e]!.name}`, p, ba, b.hashers[e]!.bandValues(va));
      if (ba) check('bandFields', p, a.bandFields(ba), b.bandFields(ba));
      check('storedQuantized', p, a.storedQuantized(va), b.storedQuantized(va));
    }
  }
  for (let i = 0; i + 1 < prompts.length; i++) {
    const [p, q] = [prompts[i]!, prompts[i + 1]!];
    check('guardRejects', `${p} | ${q}`, a.guardRejects(p, q) ?? null, b.guardRejects(p, q) ?? null);
  }
  const forms: string[] = [];
  let k = 0;
  for (const w of a.words()) {
    forms.push(w);
    if (k++ % 7 === 0)
      for (const suffix of ['s', 'es', 'ed', 'ing', 'er', 'est', 'ies', 'ied', 'ise', 'ised', 'our', 'tre'])
        forms.push(w + suffix, w.slice(0, -1) + suffix, w + w.slice(-1) + suffix);
  }
  for (const w of forms) {
    check('lemmaOf', w, a.lemmaOf(w), b.lemmaOf(w));
    check('isKnownWord', w, a.isKnownWord(w), b.isKnownWord(w));
  }
  for (const w of typoWords) check('correctTypo', w, a.correctTypo(w) ?? null, b.correctTypo(w) ?? null);

  const total = [...diffs.values()].reduce((s, x) => s + x, 0);
  const summary = {
    prompts: prompts.length,
    words: forms.length,
    typoWords: typoWords.length,
    compared,
    differences: Object.fromEntries(diffs),
  };
  if (args.json) console.log(JSON.stringify(summary));
  else {
    console.log(`semantic-identical: this build against ${against}`);
    console.log(
      `  ${summary.prompts} prompts, ${summary.words} words, ${summary.typoWords} mistyped words: ${compared} outputs compared`,
    );
    console.log(
      total === 0 ? '  identical' : `  ${total} differences: ${JSON.stringify(summary.differences)}`,
    );
    for (const e of examples) console.log(`    ${e}`);
  }
  process.exit(total === 0 ? 0 : 1);
}

void main();
