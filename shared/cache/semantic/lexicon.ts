import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../paths.js';
import { STOPWORDS } from './text.js';

/**
 * The English lexicon of the semantic cache: which words exist (for typos and for telling a capitalised
 * common word from a name), their lemmas, and which words name the same thing (synonym groups). Read from
 * data/lexicon/ (shipped with the package; data/lexicon/README.md says where each file comes from), once per
 * process and only when first needed: a process that never embeds or guards a prompt never loads it.
 *
 * Changing any file changes vectors: bump {@link LEXICON_VERSION} so stored vectors are never compared
 * with vectors made from another version (it is part of the embedder's name, hence of every scope hash).
 */
export const LEXICON_VERSION = 'lx1';

export interface Lexicon {
  /** Words in frequency order (rank 0 = most frequent sense-tagged word); membership = a known word. */
  readonly rank: ReadonlyMap<string, number>;
  /** Irregular form → lemma ("teeth" → "tooth", "went" → "go"). */
  readonly irregular: ReadonlyMap<string, string>;
  /** Lemma or two-word term ("cutting_board") → the name of its synonym group. */
  readonly group: ReadonlyMap<string, string>;
  /** First words of the two-word terms in `group` (a quick test before joining two tokens). */
  readonly termStarts: ReadonlySet<string>;
}

let loaded: Lexicon | undefined;

function lines(file: string): string[] {
  return readFileSync(join(packageRoot(), 'data', 'lexicon', file), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
}

/** The lexicon, read on first use (about 70k words; see bench:semantic for its load time and memory). */
export function lexicon(): Lexicon {
  if (loaded) return loaded;
  const rank = new Map<string, number>();
  for (const w of lines('words.txt')) if (!rank.has(w)) rank.set(w, rank.size);
  const irregular = new Map<string, string>();
  for (const l of lines('irregular.txt')) {
    const [form, lemma] = l.split(/\s+/);
    if (form && lemma && !irregular.has(form)) irregular.set(form, lemma);
  }
  const group = new Map<string, string>();
  const termStarts = new Set<string>();
  // Hand-written groups first: they take precedence over WordNet's for a word in both.
  for (const file of ['synonyms.txt', 'wordnet-synonyms.txt']) {
    for (const l of lines(file)) {
      const words = l.split(/\s+/);
      const name = words[0]!;
      for (const w of words) {
        if (group.has(w)) continue;
        group.set(w, name);
        const us = w.indexOf('_');
        if (us > 0) termStarts.add(w.slice(0, us));
      }
    }
  }
  loaded = { rank, irregular, group, termStarts };
  return loaded;
}

/** True when `lower` is an English word of the lexicon (any inflection: "repaired" → "repair"). */
export function isKnownWord(lower: string): boolean {
  const lx = lexicon();
  return lx.rank.has(lower) || lx.irregular.has(lower) || lemmaOf(lower) !== lower;
}

// WordNet's detachment rules (morphy): suffix → replacement, tried in order; the result must be a word.
const RULES: readonly (readonly [string, string])[] = [
  ['ies', 'y'],
  ['ses', 's'],
  ['xes', 'x'],
  ['zes', 'z'],
  ['ches', 'ch'],
  ['shes', 'sh'],
  ['men', 'man'],
  ['es', 'e'],
  ['es', ''],
  ['s', ''],
  ['ied', 'y'],
  ['ed', 'e'],
  ['ed', ''],
  ['ing', 'e'],
  ['ing', ''],
  ['ier', 'y'],
  ['iest', 'y'],
  ['er', ''],
  ['est', ''],
  ['er', 'e'],
  ['est', 'e'],
  ['ly', ''],
  ['ily', 'y'],
];

/** Words ending like an inflection that are lemmas in their own right and must stay whole. */
const KEEP: ReadonlySet<string> = new Set(
  (
    'news series species means physics mathematics economics politics ethics athletics gymnastics ' +
    'linguistics electronics genetics statistics logistics clothes thanks glasses scissors ' +
    'trousers pants jeans shorts stairs earnings savings surroundings belongings lyrics ' +
    'early only family holy ugly daily weekly monthly yearly friendly lovely lonely silly jelly belly ' +
    'reply supply apply fly ally rally bully tally july italy sicily ' +
    'during morning evening ceiling wedding pudding king ring thing string spring sibling ' +
    'need feed seed speed bed red shed weed reed breed bleed sled greed creed ' +
    'water paper number letter computer printer winter summer weather matter power tower never ever ' +
    'best rest test west nest interest guest chest forest'
  ).split(/\s+/),
);

// British spellings folded to American ones when only the latter is in the lexicon.
const SPELLING: readonly (readonly [RegExp, string])[] = [
  [/isation$/, 'ization'],
  [/ise$/, 'ize'],
  [/ised$/, 'ized'],
  [/ising$/, 'izing'],
  [/yse$/, 'yze'],
  [/our$/, 'or'],
  [/ours$/, 'ors'],
  [/tre$/, 'ter'],
  [/tres$/, 'ters'],
  [/ogue$/, 'og'],
  [/ence$/, 'ense'],
  [/lled$/, 'led'],
  [/lling$/, 'ling'],
];

const lemmaCache = new Map<string, string>();

/**
 * The lemma of a lower-case word: an irregular form's lemma, else the first WordNet suffix rule whose
 * result is a known word (undoubling a final consonant: "ribbed" → "rib"), else the word itself. British
 * spellings become American ("colour" → "color") when only those are known. Cached (bounded).
 */
export function lemmaOf(lower: string): string {
  const hit = lemmaCache.get(lower);
  if (hit !== undefined) return hit;
  const out = computeLemma(lower);
  if (lemmaCache.size > 50_000) lemmaCache.clear();
  lemmaCache.set(lower, out);
  return out;
}

function computeLemma(w: string): string {
  const lx = lexicon();
  const irr = lx.irregular.get(w);
  if (irr !== undefined) return irr;
  if (w.length <= 3 || KEEP.has(w) || !/^[a-z]+(?:-[a-z]+)*$/.test(w)) return w;
  for (const [re, to] of SPELLING) {
    if (!re.test(w)) continue;
    const us = w.replace(re, to);
    if (!lx.rank.has(w) && (lx.rank.has(us) || lx.irregular.has(us))) return computeLemma(us);
  }
  const own = lx.rank.get(w);
  for (const [suffix, to] of RULES) {
    if (!w.endsWith(suffix) || w.length - suffix.length < 2) continue;
    const base = w.slice(0, w.length - suffix.length) + to;
    const baseRank = lx.rank.get(base);
    let found = baseRank !== undefined ? base : undefined;
    if (!found && to === '' && /([bdfgklmnprstvz])\1$/.test(base) && lx.rank.has(base.slice(0, -1)))
      found = base.slice(0, -1); // ribbed → rib, stopping → stop
    if (!found) continue;
    // "used" and "glasses" are words too: prefer the base unless the form itself is the commoner word.
    if (own !== undefined && own < (lx.rank.get(found) ?? Infinity) && suffix !== 's' && suffix !== 'es')
      return w;
    return found;
  }
  return w;
}

/** The synonym group of a lemma or two-word term, or undefined. */
export function groupOf(lemma: string): string | undefined {
  return lexicon().group.get(lemma);
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz';
const typoCache = new Map<string, string | null>();

/**
 * The known word one edit away (a letter deleted, inserted, replaced, or two neighbours swapped) from an
 * unknown lower-case word, or undefined. Only words of five letters or more (shorter ones have too many
 * neighbours to choose from; three or four letters: swaps only), and when several candidates exist the
 * most frequent wins only if it is much commoner than the next (rank less than a quarter of it).
 */
export function correctTypo(lower: string): string | undefined {
  const hit = typoCache.get(lower);
  if (hit !== undefined) return hit ?? undefined;
  const out = computeTypo(lower);
  if (typoCache.size > 20_000) typoCache.clear();
  typoCache.set(lower, out ?? null);
  return out;
}

function computeTypo(w: string): string | undefined {
  if (w.length < 3 || !/^[a-z]+$/.test(w) || STOPWORDS.has(w) || isKnownWord(w)) return undefined;
  const lx = lexicon();
  const seen = new Map<string, number>();
  const consider = (c: string): void => {
    if (seen.has(c)) return;
    if (STOPWORDS.has(c)) return void seen.set(c, -1);
    const r = lx.rank.get(c) ?? (isKnownWord(c) ? lx.rank.get(lemmaOf(c)) : undefined);
    if (r !== undefined) seen.set(c, r);
  };
  for (let i = 0; i + 1 < w.length; i++) consider(w.slice(0, i) + w[i + 1] + w[i] + w.slice(i + 2));
  if (w.length >= 5) {
    for (let i = 0; i < w.length; i++) consider(w.slice(0, i) + w.slice(i + 1));
    for (let i = 0; i <= w.length; i++) for (const c of ALPHABET) consider(w.slice(0, i) + c + w.slice(i));
    for (let i = 0; i < w.length; i++)
      for (const c of ALPHABET) if (c !== w[i]) consider(w.slice(0, i) + c + w.slice(i + 1));
  }
  if (seen.size === 0) return undefined;
  const ranked = [...seen].sort((a, b) => a[1] - b[1]);
  if (ranked.length > 1 && ranked[0]![1] * 4 > ranked[1]![1]) return undefined;
  return ranked[0]![0];
}
