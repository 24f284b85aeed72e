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
  /** Known word → (SemCor count << 4) | parts of speech (bits: 1 noun, 2 verb, 4 adjective, 8 adverb). */
  readonly words: ReadonlyMap<string, number>;
  /** Irregular form → lemma ("teeth" → "tooth", "went" → "go"). */
  readonly irregular: ReadonlyMap<string, string>;
  /** Lemma or two-word term ("cutting_board") → the name of its synonym group. */
  readonly group: ReadonlyMap<string, string>;
  /** First words of the two-word terms in `group` (a quick test before joining two tokens). */
  readonly termStarts: ReadonlySet<string>;
  /**
   * The terms of `group` by their first word (to the first "_") and the rest: `terms.get(a)?.get(b)` is
   * `group.get(a + '_' + b)` for an `a` without "_", without building that string (see termGroup).
   */
  readonly terms: ReadonlyMap<string, ReadonlyMap<string, string>>;
}

const NOUN = 1;
const VERB = 2;
const ADJ = 4;
const POS_BITS: Record<string, number> = { n: NOUN, v: VERB, a: ADJ, r: 8 };

let loaded: Lexicon | undefined;

function lines(file: string): string[] {
  return readFileSync(join(packageRoot(), 'data', 'lexicon', file), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
}

/** The reading in progress: lexicon() finishes it at once, preloadLexicon() a slice per event-loop turn. */
let reading: Generator<undefined, Lexicon> | undefined;

/** Lines read between two yields of a preload: a few milliseconds of work per event-loop turn. */
const SLICE = 1024;

/**
 * Reads the lexicon in the background, a slice per turn of the event loop, instead of in the first
 * prompt's embedding or guard check (a SemanticCache asks for it when created): no turn is blocked for the
 * whole read. The timers are unref'd: a short command that exits first never finishes it. A use before it
 * is done finishes the read at once; a read that fails here is left to that use, which reports it.
 */
export function preloadLexicon(): void {
  if (loaded || reading) return;
  reading = read();
  const step = (): void => {
    if (loaded || !reading) return;
    try {
      for (let i = 0; i < SLICE; i++)
        if (reading.next().done) {
          reading = undefined;
          return;
        }
    } catch {
      reading = undefined; // lexicon() starts over and fails where the failure is reported
      return;
    }
    setImmediate(step).unref();
  };
  setImmediate(step).unref();
}

/** Whether the lexicon has been read (by a preload or a use). */
export function lexiconLoaded(): boolean {
  return loaded !== undefined;
}

/** The lexicon, read on first use (about 70k words; bench:semantic reports its load time and memory). */
export function lexicon(): Lexicon {
  if (loaded) return loaded;
  reading ??= read();
  try {
    let r = reading.next();
    while (!r.done) r = reading.next();
    return r.value;
  } finally {
    reading = undefined;
  }
}

/** Reads the lexicon's files into `loaded`, yielding after each line so a preload can spread the work. */
function* read(): Generator<undefined, Lexicon> {
  const words = new Map<string, number>();
  for (const l of lines('words.txt')) {
    const [w, pos, count] = l.split(' ');
    yield;
    if (!w || words.has(w)) continue;
    let bits = 0;
    for (const c of pos ?? '') bits |= POS_BITS[c] ?? 0;
    words.set(w, (Number(count ?? 0) << 4) | bits);
  }
  const irregular = new Map<string, string>();
  for (const l of lines('irregular.txt')) {
    const [form, lemma] = l.split(/\s+/);
    yield;
    if (form && lemma && !irregular.has(form)) irregular.set(form, lemma);
  }
  const group = new Map<string, string>();
  const termStarts = new Set<string>();
  // Hand-written groups first: they take precedence over WordNet's for a word in both.
  for (const file of ['synonyms.txt', 'wordnet-synonyms.txt']) {
    for (const l of lines(file)) {
      const members = l.split(/\s+/);
      yield;
      const name = members[0]!;
      for (const w of members) {
        if (group.has(w)) continue;
        group.set(w, name);
        const us = w.indexOf('_');
        if (us > 0) termStarts.add(w.slice(0, us));
      }
    }
  }
  const terms = new Map<string, Map<string, string>>();
  for (const [w, name] of group) {
    const us = w.indexOf('_');
    if (us < 0) continue;
    yield;
    const first = w.slice(0, us);
    let rest = terms.get(first);
    if (!rest) terms.set(first, (rest = new Map()));
    rest.set(w.slice(us + 1), name);
  }
  loaded = { words, irregular, group, termStarts, terms };
  return loaded;
}

/** How often a word is sense-tagged (0 when rare or unknown): the frequency typo correction goes by. */
function countOf(w: string): number {
  return (lexicon().words.get(w) ?? 0) >>> 4;
}

function hasPos(w: string, bits: number): boolean {
  return ((lexicon().words.get(w) ?? 0) & bits) !== 0;
}

/** True when the lemma can be an adjective (WordNet). */
export function isAdjective(lemma: string): boolean {
  return hasPos(lemma, ADJ);
}

/** True when the lemma can be a verb (WordNet). */
export function isVerb(lemma: string): boolean {
  return hasPos(lemma, VERB);
}

/** True when `lower` is an English word of the lexicon (any inflection: "repaired" → "repair"). */
export function isKnownWord(lower: string): boolean {
  return isLexiconForm(lower) || lemmaOf(lower) !== lower;
}

/**
 * True when `lower` is listed in the lexicon as it is (a word or an irregular form): isKnownWord is this or
 * a lemma other than the word, so a caller that has the lemma at hand need not look it up again.
 */
export function isLexiconForm(lower: string): boolean {
  const lx = lexicon();
  return lx.words.has(lower) || lx.irregular.has(lower);
}

// WordNet's detachment rules (morphy): suffix, replacement, the part of speech the result must have.
const RULES: readonly (readonly [string, string, number])[] = [
  ['ies', 'y', NOUN | VERB],
  ['ses', 's', NOUN],
  ['xes', 'x', NOUN],
  ['zes', 'z', NOUN],
  ['ches', 'ch', NOUN],
  ['shes', 'sh', NOUN],
  ['men', 'man', NOUN],
  ['es', 'e', VERB],
  ['es', '', VERB],
  ['s', '', NOUN | VERB],
  ['ied', 'y', VERB],
  ['ed', 'e', VERB],
  ['ed', '', VERB],
  ['ing', 'e', VERB],
  ['ing', '', VERB],
  ['ier', 'y', ADJ],
  ['iest', 'y', ADJ],
  ['er', '', ADJ],
  ['est', '', ADJ],
  ['er', 'e', ADJ],
  ['est', 'e', ADJ],
];

/** Words ending like an inflection that are lemmas in their own right and must stay whole. */
const KEEP: ReadonlySet<string> = new Set(
  (
    'news series species means physics mathematics economics politics ethics athletics gymnastics ' +
    'linguistics electronics genetics statistics logistics clothes thanks glasses scissors ' +
    'trousers pants jeans shorts stairs earnings savings surroundings belongings lyrics ' +
    'during morning evening ceiling wedding pudding thing string'
  ).split(/\s+/),
);

// British spellings folded to American ones when the American one is the commoner word: a suffix and its
// replacement, tried in this order (each as the regex /suffix$/ and its replace would, without a regex).
const SPELLING: readonly (readonly [string, string])[] = [
  ['isation', 'ization'],
  ['isations', 'izations'],
  ['ise', 'ize'],
  ['ises', 'izes'],
  ['ised', 'ized'],
  ['ising', 'izing'],
  ['yse', 'yze'],
  ['our', 'or'],
  ['ours', 'ors'],
  ['tre', 'ter'],
  ['tres', 'ters'],
  ['ogue', 'og'],
  ['ence', 'ense'],
  ['lled', 'led'],
  ['lling', 'ling'],
];

/**
 * The SPELLING and RULES entries by the last letter of their suffix (each list in its table's order): a word
 * is tried against those that end as it does only, the others could not match (~36 suffix tests → a few).
 */
const SPELLING_BY_LAST = byLastChar(SPELLING);
const RULES_BY_LAST = byLastChar(RULES);

function byLastChar<E extends readonly [string, ...unknown[]]>(table: readonly E[]): Map<number, E[]> {
  const out = new Map<number, E[]>();
  for (const e of table) {
    const last = e[0].charCodeAt(e[0].length - 1);
    let list = out.get(last);
    if (!list) out.set(last, (list = []));
    list.push(e);
  }
  return out;
}

const NONE: readonly never[] = [];

/** What computeLemma inflects: lower-case letter runs, joined by hyphens. */
const LETTER_WORD = /^[a-z]+(?:-[a-z]+)*$/;
/** A doubled final consonant ("ribb" of "ribbed"). */
const DOUBLED_END = /([bdfgklmnprtvz])\1$/;
/** A digit: a word with one (an id, a hash, a version) is seldom met twice. */
const HAS_DIGIT = /\d/;

const lemmaCache = new Map<string, string>();

/**
 * The lemma of a lower-case word: an irregular form's lemma, else the first WordNet suffix rule whose
 * result is a known word of the right part of speech (undoubling a final consonant: "ribbed" → "rib",
 * "bigger" → "big"), else the word itself. British spellings become American ("colour" → "color") when the
 * American one is the commoner word. Cached (bounded).
 */
export function lemmaOf(lower: string): string {
  const hit = lemmaCache.get(lower);
  if (hit !== undefined) return hit;
  const out = computeLemma(lower);
  // A word with a digit is its own lemma unless it is an irregular form, found in one lookup (LETTER_WORD
  // stops computeLemma there): kept, the ids and hashes of unique prompts would only fill the cache.
  if (HAS_DIGIT.test(lower)) return out;
  if (lemmaCache.size > 50_000) lemmaCache.clear();
  lemmaCache.set(lower, out);
  return out;
}

/**
 * lemmaOf() without keeping the result: for the typo candidates correctTypo tries (hundreds per unknown
 * word, nearly all of them no word), which would otherwise fill the cache and push out the words prompts
 * use.
 */
function lemmaOfCandidate(lower: string): string {
  return lemmaCache.get(lower) ?? computeLemma(lower);
}

/** isKnownWord() for a typo candidate (see lemmaOfCandidate). */
function isKnownCandidate(lower: string): boolean {
  const lx = lexicon();
  return lx.words.has(lower) || lx.irregular.has(lower) || lemmaOfCandidate(lower) !== lower;
}

function computeLemma(w: string): string {
  const lx = lexicon();
  const irr = lx.irregular.get(w);
  if (irr !== undefined) return irr;
  if (w.length <= 3 || KEEP.has(w) || !LETTER_WORD.test(w)) return w;
  const last = w.charCodeAt(w.length - 1);
  const spelling = SPELLING_BY_LAST.get(last) ?? NONE;
  for (let i = 0; i < spelling.length; i++) {
    const [suffix, to] = spelling[i]!;
    if (!w.endsWith(suffix)) continue;
    const us = w.slice(0, w.length - suffix.length) + to;
    if (us !== w && (lx.words.has(us) || lx.irregular.has(us)) && countOf(us) >= countOf(w))
      return computeLemma(us);
  }
  const own = lx.words.has(w) ? countOf(w) : -1;
  const rules = RULES_BY_LAST.get(last) ?? NONE;
  for (let i = 0; i < rules.length; i++) {
    const [suffix, to, pos] = rules[i]!;
    if (!w.endsWith(suffix) || w.length - suffix.length < 2) continue;
    const base = w.slice(0, w.length - suffix.length) + to;
    let found = hasPos(base, pos) ? base : undefined;
    if (!found && to === '' && suffix !== 's' && DOUBLED_END.test(base)) {
      const single = base.slice(0, -1); // ribbed → rib, stopping → stop, bigger → big
      if (hasPos(single, pos)) found = single;
    }
    if (!found) continue;
    // "used", "building", "meaning" are words too: the commoner of the form and its base wins.
    if (own > countOf(found)) return w;
    return found;
  }
  return w;
}

/** The synonym group of a lemma or two-word term, or undefined. */
export function groupOf(lemma: string): string | undefined {
  return lexicon().group.get(lemma);
}

/**
 * The synonym group of the two-word term `first`_`second`, or undefined: groupOf(`${first}_${second}`),
 * read from the terms by first word so that no string is built for the many word pairs that are no term.
 */
export function termGroup(first: string, second: string): string | undefined {
  const lx = lexicon();
  if (first.includes('_')) return lx.group.get(`${first}_${second}`);
  return lx.terms.get(first)?.get(second);
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz';
const typoCache = new Map<string, string | null>();

/**
 * The known word one edit away (a letter deleted, inserted, replaced, or two neighbours swapped) from an
 * unknown lower-case word, or undefined. Edits are tried by how people mistype: a doubled or undoubled
 * letter ("tenis", "seeeds") first, then two swapped neighbours ("recieve"), then any other edit; within the
 * first kind that finds words, one word must be the only one or far commoner than the next (4×). Words of
 * three or four letters get swaps only (shorter words have too many neighbours to choose from).
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
  const pick = (cands: Iterable<string>): string | undefined | null => {
    const found = new Map<string, number>();
    for (const c of cands) {
      if (found.has(c) || c === w) continue;
      if (STOPWORDS.has(c)) found.set(c, Number.MAX_SAFE_INTEGER);
      else if (isKnownCandidate(c)) found.set(c, countOf(lemmaOfCandidate(c)) || countOf(c));
    }
    if (found.size === 0) return null; // nothing of this kind: try the next kind
    const ranked = [...found].sort((a, b) => b[1] - a[1]);
    if (ranked.length > 1 && ranked[0]![1] < 4 * ranked[1]![1] + 1) return undefined;
    return ranked[0]![0];
  };
  const doubled: string[] = [];
  for (let i = 0; i < w.length; i++) {
    doubled.push(w.slice(0, i) + w[i] + w.slice(i)); // tenis → tennis
    if (w[i] === w[i + 1]) doubled.push(w.slice(0, i) + w.slice(i + 1)); // seeeds → seeds
  }
  const swaps: string[] = [];
  for (let i = 0; i + 1 < w.length; i++) swaps.push(w.slice(0, i) + w[i + 1] + w[i] + w.slice(i + 2));
  const kinds: (() => string[])[] = [() => swaps];
  if (w.length >= 5) {
    kinds.unshift(() => doubled);
    kinds.push(() => {
      const other: string[] = [];
      for (let i = 0; i < w.length; i++) other.push(w.slice(0, i) + w.slice(i + 1));
      for (let i = 0; i <= w.length; i++)
        for (const c of ALPHABET) other.push(w.slice(0, i) + c + w.slice(i));
      for (let i = 0; i < w.length; i++)
        for (const c of ALPHABET) if (c !== w[i]) other.push(w.slice(0, i) + c + w.slice(i + 1));
      return other;
    });
  }
  for (const kind of kinds) {
    const r = pick(kind());
    if (r !== null) return r;
  }
  return undefined;
}
