import { correctTypo, groupOf, isKnownWord, lemmaOf, lexicon, termGroup } from './lexicon.js';
import { STOPWORDS, tokenize, type Token } from './text.js';
import { agentVerb, classifyAsks, DIFFERENCE_WORDS } from './ask-classes.js';
import {
  BARE_CONTRACTIONS,
  expand,
  matchAt,
  OPENERS,
  POLITE,
  POLITE_PHRASES,
  REQUEST_VERBS,
} from './canonical-phrases.js';
import { type CanonicalPrompt, type CanonicalWord, type WordRole } from './canonical-types.js';
import { MemoSlots } from './prompt-memo-slots.js';

export { REQUEST_VERBS } from './canonical-phrases.js';
export type { AskClass, CanonicalPrompt, CanonicalWord, WordRole } from './canonical-types.js';

/*
 * canonicalize(): a prompt's canonical words (canonical-types.ts says what that means) — contractions and
 * politeness (canonical-phrases.ts), typos, lemmas, synonym groups, numbers, markers, negations — and its
 * ask classes (ask-classes.ts).
 */

// Module constants: a regex literal in a function body is a new RegExp object on every call.
const HAS_DIGIT = /\d/;
const STARTS_WITH_DIGIT = /^\d/;
const CAPITALISED = /^\p{Lu}/u;
const THOUSANDS_COMMA = /,(?=\d{3}\b)/g;

/** Canonical words and ask classes of a prompt. Pure and deterministic; reads the lexicon on first use. */
export function canonicalize(prompt: string): CanonicalPrompt {
  // The embedder and then the guard read a lookup's prompt, one or two Redis round trips apart: the last
  // few results are kept for that (they are never changed once made). Few, so that they are dropped before
  // a scavenge would copy them twice: a stored prompt the guard reads again and again is kept with its
  // analysis (guard-analysis.ts analyzePrompt). In bench:semantic at 100k entries, 512 kept answered 1,222
  // of 2,000 lookups' ~4,800 calls; 32 answer 1,218.
  const slot = recent.slotOf(prompt);
  const hit = recent.get(slot, prompt);
  if (hit) return hit;
  const out = computeCanonical(prompt);
  recent.set(slot, prompt, out);
  return out;
}

/** In slots, not a Map: see prompt-memo-slots.ts. */
const recent = new MemoSlots<CanonicalPrompt>(32);

function computeCanonical(prompt: string): CanonicalPrompt {
  // The NFKC form is read only where a capitalised word may start a clause: made then, once.
  let norm: string | undefined;
  // The words are built once, as the objects returned, and filled in place: no intermediate work record,
  // array or text slice per token (the guard canonicalises every candidate it reads, and a lookup's garbage
  // is what its tail pays for in scavenges).
  const out: CanonicalWord[] = [];
  const kinds: Token['kind'][] = [];
  // Indexed loops over arrays here and below: a for-of makes an iterator and a result per step wherever the
  // function runs unoptimised (after a deopt on a rare branch, until it is optimised again).
  const tokens = tokenize(prompt);
  for (let ti = 0; ti < tokens.length; ti++) {
    const t = tokens[ti]!;
    if (t.kind !== 'word' || (!t.lower.includes("'") && !BARE_CONTRACTIONS.has(t.lower))) {
      out.push(word(t.text, t.lower, t.start));
      kinds.push(t.kind);
      continue;
    }
    const parts = expand(t.lower);
    for (let i = 0; i < parts.length; i++) {
      out.push(word(i === 0 ? t.text : parts[i]!, parts[i]!, t.start));
      kinds.push('word');
    }
  }

  // politeness: phrases match the lower case as written (each word's `lower` until typos are fixed below)
  for (let i = 0; i < out.length; i++) {
    let len = 0;
    const first = out[i]!.lower;
    const polite = POLITE.get(first);
    if (polite)
      for (let pi = 0; pi < polite.length; pi++)
        if (matchAt(out, i, polite[pi]!)) {
          const p = polite[pi]!;
          len = p.length;
          break;
        }
    const openers = len === 0 ? OPENERS.get(first) : undefined;
    if (openers)
      for (let pi = 0; pi < openers.length; pi++)
        if (matchAt(out, i, openers[pi]!)) {
          const p = openers[pi]!;
          const next = out[i + p.length]?.lower;
          const after = next === 'please' || next === 'kindly' ? out[i + p.length + 1]?.lower : next;
          if (after !== undefined && (REQUEST_VERBS.has(after) || after === 'let')) len = p.length;
          if (len > 0) break;
        }
    for (let k = 0; k < len; k++) out[i + k]!.role = 'polite';
    if (len > 0) i += len - 1;
  }

  // lemmas, typos, groups
  const lx = lexicon();
  for (let i = 0; i < out.length; i++) {
    const w = out[i]!;
    const kind = kinds[i]!;
    // A lower-case word outside politeness (most words): what it becomes depends on its lower-case form
    // alone, read from the word memo (one lookup instead of a dozen, most into the lexicon's large maps).
    if (kind === 'word' && w.role !== 'polite' && !CAPITALISED.test(w.text)) {
      const known = plainWord(w.lower);
      w.lower = known.lower;
      w.lemma = known.lemma;
      w.key = known.key;
      w.role = known.role;
      continue;
    }
    // A capitalised word outside politeness met before where its reading did not depend on its place (see
    // capitalWord): kept by its text as written.
    const capital = kind === 'word' && w.role !== 'polite';
    if (capital) {
      const kept = capitalWords.get(w.text);
      if (kept !== undefined && kept.from === w.lower) {
        const known = kept.word;
        w.lower = known.lower;
        w.lemma = known.lemma;
        w.key = known.key;
        w.role = known.role;
        continue;
      }
    }
    const from = w.lower;
    let positional = false;
    let lower = w.lower;
    if (
      kind === 'word' &&
      w.role !== 'polite' &&
      !HAS_DIGIT.test(lower) &&
      !STOPWORDS.has(lower) &&
      !MARKERS.has(lower) &&
      !NEGATION_WORDS.has(lower)
    ) {
      // A capital inside a sentence marks a name: left as written. A capital at a sentence start may be
      // either, so only two swapped letters are fixed there ("Explian"), not edits that turn names into words.
      if (!CAPITALISED.test(w.text)) lower = fixTypo(lower);
      // (a known word first: most capitalised words are, and then the prompt needs no NFKC form)
      else if (!isKnownWord(lower)) {
        positional = true;
        if (clauseStart((norm ??= prompt.normalize('NFKC')), out, i)) lower = swapTypo(lower) ?? lower;
      }
    }
    const lemma = kind === 'word' ? lemmaOf(lower) : lower;
    let role: WordRole = w.role;
    if (role !== 'polite') {
      if (kind === 'num' || STARTS_WITH_DIGIT.test(lower) || ORDINALS.has(lower) || isRoman(w.text))
        role = 'number';
      else if (kind === 'arrow') role = 'arrow';
      else if (NEGATION_WORDS.has(lower)) role = 'negation';
      else if (MARKERS.has(lower)) role = 'marker';
      else if (STOPWORDS.has(lower) || STOPWORDS.has(lemma)) role = 'function';
      else role = 'content';
    }
    w.lower = lower;
    w.lemma = lemma;
    w.key = role === 'number' ? numberValue(w.text, lower) : (groupOf(lemma) ?? lemma);
    w.role = role;
    if (capital && !positional && !HAS_DIGIT.test(from)) keepCapital(w.text, from, w);
  }
  // two-word terms ("cutting board", "speed up", "get rid of" is three: only pairs here)
  for (let i = 0; i + 1 < out.length; i++) {
    const a = out[i]!;
    const b = out[i + 1]!;
    if (a.role === 'polite' || b.role === 'polite' || a.role === 'number' || b.role === 'number') continue;
    if (!lx.termStarts.has(a.lower) && !lx.termStarts.has(a.lemma)) continue;
    const g = termGroup(a.lower, b.lemma) ?? termGroup(a.lemma, b.lemma);
    if (g === undefined) continue;
    a.key = g;
    a.role = 'content';
    b.role = 'frame';
    b.key = g;
    i++;
  }

  const asks = classifyAsks(out); // a new array, ours to change
  // "how does X differ from Y", "how are X and Y different": a difference, however it is asked
  let differ: CanonicalWord | undefined;
  for (let i = 0; i < out.length; i++)
    if (out[i]!.role === 'content' && DIFFERENCE_WORDS.has(out[i]!.lemma)) {
      differ = out[i];
      break;
    }
  if (differ && asks.some((a) => a === 'how' || a === 'what')) {
    for (let k = 0; k < asks.length; k++) if (asks[k] === 'how' || asks[k] === 'what') asks[k] = 'difference';
    differ.role = 'frame';
  }
  // "who is the author of X" = "who wrote X": an agent noun reads as its verb
  if (asks.includes('who'))
    for (const w of out) {
      if (w.role !== 'content') continue;
      const verb = agentVerb(w.lemma);
      if (verb !== undefined) w.key = groupOf(verb) ?? verb;
    }
  // one ask or none (most prompts) is already its sorted distinct list: no Set and copies for it
  return { words: out, asks: asks.length < 2 ? asks : [...new Set(asks)].sort() };
}

/** What a lower-case word outside politeness becomes: its typo fix, lemma, key and role. */
interface PlainWord {
  readonly lower: string;
  readonly lemma: string;
  readonly key: string;
  readonly role: WordRole;
}

/** Words read lately, by lower-case form as tokenised (see {@link plainWord}). */
const plainWords = new Map<string, PlainWord>();
/** Bounded as the lexicon's lemma and typo caches are: emptied when full (prompts' vocabulary is small). */
const MAX_PLAIN_WORDS = 20_000;

/**
 * The canonical form of a word token outside politeness written without a leading capital, by its lower
 * case (`lower`): the same steps as the general path of computeCanonical (typo fix, lemma, role, key),
 * none of which depends on anything but `lower` for such a word (a Roman numeral starts with a capital).
 * Kept, so each word of a prompt costs one lookup when met again.
 */
function plainWord(lower: string): PlainWord {
  const hit = plainWords.get(lower);
  if (hit !== undefined) return hit;
  let fixed = lower;
  const digit = HAS_DIGIT.test(lower);
  if (!digit && !STOPWORDS.has(lower) && !MARKERS.has(lower) && !NEGATION_WORDS.has(lower))
    fixed = fixTypo(lower);
  const lemma = lemmaOf(fixed);
  let role: WordRole;
  if (STARTS_WITH_DIGIT.test(fixed) || ORDINALS.has(fixed)) role = 'number';
  else if (NEGATION_WORDS.has(fixed)) role = 'negation';
  else if (MARKERS.has(fixed)) role = 'marker';
  else if (STOPWORDS.has(fixed) || STOPWORDS.has(lemma)) role = 'function';
  else role = 'content';
  // numberValue reads the text for a Roman numeral only, which needs a capital: the lower form does here
  const key = role === 'number' ? numberValue(fixed, fixed) : (groupOf(lemma) ?? lemma);
  const out: PlainWord = { lower: fixed, lemma, key, role };
  // A word with a digit (an id, a hash, a number) is seldom met twice and is quick to read (no typo fix):
  // kept, those of unique prompts would only fill the memo and push out the words that come back.
  if (digit) return out;
  if (plainWords.size >= MAX_PLAIN_WORDS) plainWords.clear();
  plainWords.set(lower, out);
  return out;
}

/** A capitalised word's reading (see {@link capitalWords}), for the lower case it was read from. */
interface CapitalWord {
  readonly from: string;
  readonly word: PlainWord;
}

/**
 * Capitalised word tokens outside politeness ("Request", "How", "Paris"), by their text as written, with
 * what the general path of computeCanonical made of them: their lower case (`from`: the token's, or a
 * contraction's first part), typo fix, lemma, role and key depend on the text and that lower case alone
 * unless the word is unknown (then a clause start may fix two swapped letters): those are not kept, nor
 * words with a digit (see plainWord). Most prompts start with one, and the general path reads the lexicon's
 * large maps a dozen times for it.
 */
const capitalWords = new Map<string, CapitalWord>();

function keepCapital(text: string, from: string, w: CanonicalWord): void {
  if (capitalWords.size >= MAX_PLAIN_WORDS) capitalWords.clear();
  capitalWords.set(text, { from, word: { lower: w.lower, lemma: w.lemma, key: w.key, role: w.role } });
}

/** A word as tokenised (lemma, key and role are set when the prompt's words are read). */
function word(text: string, lower: string, start: number): CanonicalWord {
  return { text, lower, lemma: lower, key: lower, role: 'function', start };
}

/**
 * True when word `i` starts a clause: the first word, or a word with sentence punctuation or a comma
 * between the previous word's start and its own (the previous word's own text included, as a number's
 * "1,000" or an abbreviation's "e.g." counts). Reads that stretch of `norm` in place, without
 * cutting it out.
 */
function clauseStart(norm: string, words: readonly CanonicalWord[], i: number): boolean {
  if (i === 0) return true;
  const to = words[i]!.start;
  for (let k = words[i - 1]!.start; k < to && k < norm.length; k++) {
    const c = norm.charCodeAt(k);
    // . ! ? ; : , or a line feed
    if (c === 46 || c === 33 || c === 63 || c === 59 || c === 58 || c === 44 || c === 10) return true;
  }
  return false;
}

/**
 * The known word an unknown lower-case word is a typo of, or the word itself. A fix that lands on a function
 * word is taken only for two swapped neighbours ("teh", "waht", "thier"): any other edit can erase a name
 * written in lower case ("athens" → "thens", read as "then"), and the guard would no longer see it.
 */
function fixTypo(lower: string): string {
  const fixed = correctTypo(lower);
  if (fixed === undefined) return lower;
  if ((STOPWORDS.has(fixed) || STOPWORDS.has(lemmaOf(fixed))) && !swappedNeighbours(lower, fixed))
    return lower;
  return fixed;
}

/** True when `b` is `a` with two neighbouring letters swapped. */
function swappedNeighbours(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return i + 1 < a.length && a[i] === b[i + 1] && a[i + 1] === b[i] && a.slice(i + 2) === b.slice(i + 2);
}

/** Prepositions that give the words around them a role: light in the vector, watched by the guard. */
const MARKERS: ReadonlySet<string> = new Set(
  'to from into onto toward towards than vs versus over out before after between against within across under above below up down off'.split(
    ' ',
  ),
);

/** Ordinals read as numbers ("the second world war" = "world war II"), as the guard reads them. */
const ORDINALS: ReadonlyMap<string, string> = new Map([
  ['first', '1'],
  ['second', '2'],
  ['third', '3'],
  ['fourth', '4'],
  ['fifth', '5'],
  ['sixth', '6'],
  ['seventh', '7'],
  ['eighth', '8'],
  ['ninth', '9'],
  ['tenth', '10'],
]);

/** A number's key: digits as written (separators dropped), an ordinal or a Roman numeral as its value. */
function numberValue(text: string, lower: string): string {
  const ordinal = ORDINALS.get(lower);
  if (ordinal) return ordinal;
  const roman = romanValue(text);
  if (roman !== undefined) return String(roman);
  return lower.replace(THOUSANDS_COMMA, '');
}

const NEGATION_WORDS: ReadonlySet<string> = new Set(
  'not no never none nobody nothing nowhere neither nor without'.split(' '),
);

const SENTENCE_STARTERS: ReadonlySet<string> = new Set([
  ...STOPWORDS,
  ...REQUEST_VERBS,
  ...'compare convert summarize summarise translate write create make build recommend suggest'.split(' '),
]);

/**
 * The function word or request verb that a capitalised first word is with two neighbouring letters swapped
 * back or one letter doubled or undoubled ("Explian", "Waht", "Recomend"), if one. Nothing else: names one
 * slip from a word ("Paris" / "pairs") stay names.
 */
function swapTypo(lower: string): string | undefined {
  const tries: string[] = [];
  for (let i = 0; i + 1 < lower.length; i++)
    tries.push(lower.slice(0, i) + lower[i + 1] + lower[i] + lower.slice(i + 2));
  if (lower.length >= 5)
    for (let i = 0; i < lower.length; i++) {
      tries.push(lower.slice(0, i) + lower[i] + lower.slice(i)); // "recomend" → recommend
      if (lower[i] === lower[i + 1]) tries.push(lower.slice(0, i) + lower.slice(i + 1));
    }
  return tries.find((t) => t !== lower && SENTENCE_STARTERS.has(t));
}

/**
 * True when `lower` (a sentence's first word, lower-cased) is an English word rather than a name: a word of
 * the lexicon, a function word, a contraction ("isn't", "whats"), or two swapped letters of one ("explian").
 * Other one-letter typos are not tried: too many names are one letter from a word ("Texas" / "texts").
 */
export function isCommonWord(lower: string): boolean {
  const head = expand(lower)[0]!;
  return STOPWORDS.has(head) || isKnownWord(head) || POLITE_WORDS.has(head) || swapTypo(head) !== undefined;
}

const POLITE_WORDS: ReadonlySet<string> = new Set(POLITE_PHRASES.flatMap((p) => p.split(' ')));

/** Upper-case letter runs that are abbreviations far more often than numbers. */
const NOT_ROMAN: ReadonlySet<string> = new Set(
  'CD DC MD CV CC CL CLI DL MC MM MIX DIV LI MI DI CI CM MV XL XXL DIX LCD'.split(' '),
);

/** The value of an upper-case Roman numeral of two letters or more ("II", "XIV"), or undefined. */
// Module constants: a regex literal in the function body is a new RegExp object on every call.
const ROMAN_LETTERS = /^[IVXLCDM]+$/;
const ROMAN_NUMBER = /^M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})$/;
const ROMAN_DIGITS: Readonly<Record<string, number>> = { I: 1, V: 5, X: 10, L: 50, C: 100, D: 500, M: 1000 };

export function romanValue(text: string): number | undefined {
  if (text.length < 2 || !ROMAN_LETTERS.test(text) || NOT_ROMAN.has(text)) return undefined;
  if (!ROMAN_NUMBER.test(text)) return undefined;
  const v = ROMAN_DIGITS;
  let total = 0;
  for (let i = 0; i < text.length; i++) {
    const cur = v[text[i]!]!;
    const nxt = v[text[i + 1] ?? ''] ?? 0;
    total += cur < nxt ? -cur : cur;
  }
  return total;
}

function isRoman(text: string): boolean {
  return romanValue(text) !== undefined;
}
