import {
  AFFIX_EXCEPTIONS,
  NEGATING_PREFIXES,
  NEGATIONS,
  NUMBER_SCALES,
  NUMBER_WORDS,
} from './guard-lexicon.js';
import type { PromptAnalysis } from './guard-types.js';
import { BINARY_MARKERS, UNARY_MARKERS } from './guard-features.js';
import { stem } from './text.js';

/*
 * The guard's word rules (guard.ts, rules 6 and 8): which content words can narrow a question, when the
 * other prompt has a word (forms, compounds, word families, swapped letters), and affix antonyms.
 */

/** A content word that can qualify a request (not a number, negation, direction word or filler). */
export function isQualifierWord(w: string): boolean {
  return (
    /\p{L}/u.test(w) &&
    !FILLER.has(w) &&
    !NEGATIONS.has(w) &&
    !w.endsWith("n't") &&
    !w.split('-').every((p) => NUMBER_WORDS.has(p) || NUMBER_SCALES.has(p)) &&
    !UNARY_MARKERS.has(w) &&
    !BINARY_MARKERS.has(w) &&
    !DIRECTION_WORDS.has(w)
  );
}

/** Prepositions that only steer the roles of the words around them (rule 7 looks at them). */
const DIRECTION_WORDS: ReadonlySet<string> = new Set([
  'out',
  'instead',
  'between',
  'against',
  'within',
  'across',
]);

/**
 * True when the other prompt has the word: a form of it, its synonym group, a compound that contains it or
 * that it contains ("honeybee" / "bee", "springtime" / "spring"; both parts at least 3 letters), a word of
 * the same family (a common start of 5 letters and 70% of the shorter: "summarize" / "summary"), or the
 * word with two letters swapped ("dokcer").
 */
export function matches(q: { forms: readonly string[] }, other: PromptAnalysis): boolean {
  if (q.forms.some((f) => other.forms.has(f))) return true;
  const w = q.forms[1] ?? q.forms[0]!;
  for (const o of other.qualifiers) {
    const x = o.forms[1] ?? o.forms[0]!;
    const [long, short] = w.length > x.length ? [w, x] : [x, w];
    if (
      short.length >= 3 &&
      long.length - short.length >= 3 &&
      (long.startsWith(short) || long.endsWith(short))
    )
      return true;
    // one word in two parts of speech: "summarize" / "summary", "invention" / "inventor"
    let p = 0;
    while (p < short.length && short[p] === long[p]) p++;
    if (p >= 5 && p >= 0.7 * short.length) return true;
    if (misspelt(w, new Map([[x, x]]))) return true;
  }
  return false;
}

/** True when a name of `names` is `key` with two neighbouring letters swapped ("Dokcer" / "Docker"). */
export function misspelt(key: string, names: ReadonlyMap<string, string>): boolean {
  if (key.length < 5) return false;
  for (const other of names.keys()) {
    if (other.length !== key.length || other === key) continue;
    const at: number[] = [];
    for (let i = 0; i < key.length && at.length <= 2; i++) if (key[i] !== other[i]) at.push(i);
    if (
      at.length === 2 &&
      at[1] === at[0]! + 1 &&
      key[at[0]!] === other[at[1]!] &&
      key[at[1]!] === other[at[0]!]
    )
      return true;
  }
  return false;
}

/**
 * Words that restate what is asked without narrowing it: "exactly", "together" ("join two balls of yarn
 * together"), "over time" ("so they do not fade over time"), "contain" ("how many calories does a banana
 * contain" = "… are in a banana"). Request verbs (canonical.ts) and frame words are left out elsewhere.
 */
export const RESTATING: ReadonlySet<string> = new Set(
  (
    'exactly actually basically essentially really truly together time overall generally typically usually ' +
    'normally commonly specifically particularly currently ever also just contain kind type thing stuff ' +
    'detail detailed understand know learn appear seem use amount term word concept notion phrase happen occur'
  ).split(/\s+/),
);

/** Words that make a request polite or explicit without changing what is asked. */
export const FILLER: ReadonlySet<string> = new Set(
  (
    'please help need needs want wants wanted wonder wondering curious question quick quickly briefly ' +
    'simply exactly actually basically thanks thank hi hello hey ok okay write create make generate ' +
    'provide find hey assist'
  ).split(/\s+/),
);

export function affixAntonym(a: PromptAnalysis, b: PromptAnalysis): [string, string] | undefined {
  const onlyA = a.content.filter((w) => !b.forms.has(w));
  const onlyB = b.content.filter((w) => !a.forms.has(w));
  for (const [xs, ys, flip] of [
    [onlyA, onlyB, false],
    [onlyB, onlyA, true],
  ] as const) {
    for (const x of xs) {
      for (const y of ys) {
        if (isNegatedForm(x, y) || isNegatedForm(stem(x), stem(y))) return flip ? [y, x] : [x, y];
      }
    }
  }
  return undefined;
}

/** True when `neg` is `base` with a negating prefix (unsafe/safe) or -less for -ful / nothing (careless). */
function isNegatedForm(base: string, neg: string): boolean {
  if (base.length >= 4 && neg.length > base.length && neg.endsWith(base)) {
    const prefix = neg.slice(0, neg.length - base.length);
    if (NEGATING_PREFIXES.includes(prefix)) {
      for (const e of AFFIX_EXCEPTIONS) if (neg.startsWith(e)) return false;
      return true;
    }
  }
  if (base.length >= 7 && neg === 'a' + base) return true; // typical/atypical, symmetric/asymmetric
  if (base.endsWith('ful') && neg === base.slice(0, -3) + 'less') return true;
  if (base.length >= 4 && neg === base + 'less') return true;
  return false;
}
