// Microbench of the lexical embedder on unique prompts (no memo answers them): bench:http-shaped prompts
// ("Request T-i: tell me about <12 hex> and <i·7919>", as bench/semantic-miss-cpu.mjs) or, with CORPUS=eval,
// the evaluation sets' prompts each made unique by a numbered suffix. Prints ns per embedOne, per round.
// Run two builds A B A B... and compare pairs: timings here are noisy.
// Instructions per embed: run under callgrind with N=0 and N>0 (same WARM), divide the difference by N.
// With AGAINST=DIST2, both builds' embedders run in this one process, round by round (A B A B...), and the
// median of the pair ratios (DIST over DIST2) is printed: both under the same load.
// usage: CORPUS=http|eval [WARM=20000] [AGAINST=DIST2] node --expose-gc bench/embed.mjs DIST [N=100000] [ROUNDS=5]
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { httpPrompt, seededHex } from './http-prompts.mjs';

const dist = resolve(process.argv[2] ?? 'dist');
const n = Number(process.argv[3] ?? 100_000);
const rounds = Number(process.argv[4] ?? 5);
const corpus = process.env.CORPUS ?? 'http';
const load = async (d) =>
  new (await import(`${d}/shared/cache/semantic/lexical-embedder.js`)).LexicalEmbedder();
const against = process.env.AGAINST ? resolve(process.env.AGAINST) : undefined;
const sides = [await load(dist), ...(against ? [await load(against)] : [])];

const hex = seededHex();
const base = [];
if (corpus === 'eval') {
  const dir = join(import.meta.dirname, '..', 'test', 'fixtures');
  for (const f of ['cache-eval.tsv', 'cache-eval-holdout.tsv', 'cache-eval-fresh.tsv'])
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n'))
      if (line.trim() !== '' && !line.startsWith('#')) base.push(...line.split('\t').slice(1));
}
const prompt = (r, i) =>
  corpus === 'eval' ? `${base[i % base.length]} (${r}-${i})` : httpPrompt(hex, `r${r}`, i);

const nz = [];
let sink = 0;
const warm = Number(process.env.WARM ?? 20_000);
for (const e of sides) for (let i = 0; i < warm; i++) sink += e.embedOne(prompt(-1, i), nz).length; // warm-up
const out = sides.map(() => []);
for (let r = 0; r < rounds; r++) {
  const ps = Array.from({ length: n }, (_, i) => prompt(r, i));
  for (let k = 0; k < sides.length; k++) {
    const e = sides[(k + r) % sides.length]; // which side goes first alternates
    globalThis.gc?.();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) sink += e.embedOne(ps[i], nz)[nz[0] ?? 0];
    out[(k + r) % sides.length].push(Math.round(Number(process.hrtime.bigint() - t0) / n));
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const ratios = against ? out[0].map((x, r) => Math.round((1000 * x) / out[1][r]) / 1000) : undefined;
console.log(
  JSON.stringify({
    dist,
    against,
    corpus,
    n,
    nsPerEmbed: out,
    median: out.map(median),
    ratios,
    medianRatio: ratios && median(ratios),
    sink: sink !== 0,
  }),
);
