import { type CanonicalWord } from './canonical.js';
import { NEGATIONS } from './guard-lexicon.js';
import type { PromptAnalysis } from './guard-types.js';
import { STOPWORDS } from './text.js';

/*
 * The guard's order rules (guard.ts, rules 4b-4c): two words or two phrases that trade places, and the
 * keys in active order they compare.
 */

/** The roles whose words activeKeys keeps. */
const ROLE_WORDS: ReadonlySet<string> = new Set(['content', 'number', 'marker', 'negation', 'arrow']);

/**
 * The keys of the words that carry roles, in order, with a passive clause put in active order: "X was
 * VERBed by Y" reads as "Y VERB X", so "the Americas were reached by Columbus" = "Columbus reached the
 * Americas", and "Nadal was beaten by Federer" ≠ "Nadal beat Federer".
 */
export function activeKeys(words: readonly CanonicalWord[]): string[] {
  const keys: string[] = [];
  let by = -1;
  for (const w of words) {
    if (ROLE_WORDS.has(w.role)) keys.push(w.role === 'arrow' ? '->' : w.key);
    else if (w.lower === 'by' && by < 0 && keys.length > 0) {
      const prev = words[words.indexOf(w) - 1];
      if (
        prev &&
        prev.role === 'content' &&
        prev.lemma !== prev.lower &&
        !(prev.lower.endsWith('s') || prev.lower.endsWith('ing'))
      )
        by = keys.length;
    }
  }
  if (by < 1) return keys;
  const verb = keys[by - 1]!;
  return [...keys.slice(by), verb, ...keys.slice(0, by - 1)];
}

/** Words that join items which may trade places ("Mars and Jupiter" = "Jupiter and Mars"). */
export const JOINERS: ReadonlySet<string> = new Set(['and', 'or', '&', 'nor']);

// ---- order ----------------------------------------------------------------------------------------------

/**
 * The two words of `a` that sit in each other's place in `b` when the sequences are otherwise the same
 * (equal length, exactly two differing positions holding the same two words). "from Paris to Rome" / "to
 * Rome from Paris" moves four words and is left to the direction rule, which accepts it.
 */
export function swappedWords(pa: PromptAnalysis, pb: PromptAnalysis): [string, string] | undefined {
  const a = pa.sequence;
  const b = pb.sequence;
  if (a.length !== b.length) return undefined;
  // the two differing positions, i < j (no array of them: this runs for each candidate)
  let i = -1;
  let j = -1;
  for (let k = 0; k < a.length; k++) {
    if (a[k] === b[k]) continue;
    if (i < 0) i = k;
    else if (j < 0) j = k;
    else return undefined;
  }
  if (j < 0) return undefined;
  const a0 = a[i]!;
  const a1 = a[j]!;
  // the same two words, sorted and joined with a space, on both sides; and two different words
  if (a0 === a1 || !sameSortedPair(a0, a1, b[i]!, b[j]!)) return undefined;
  // "isn't it" / "is it not": where a negation stands is the negation rule's business
  if (NEGATIONS.has(a0) || NEGATIONS.has(a1)) return undefined;
  // "cucumbers and tomatoes" / "tomatoes and cucumbers": items of one list, not roles
  if (joined(pa, i, j)) return undefined;
  return [a0, b[i]!];
}

/**
 * True when [a0, a1].sort().join(' ') === [b0, b1].sort().join(' '), without the arrays and strings: the
 * sorted pairs are equal, or (only possible when a word holds a space) their joined forms are.
 */
function sameSortedPair(a0: string, a1: string, b0: string, b1: string): boolean {
  const la = a0 < a1 ? a0 : a1;
  const ha = a0 < a1 ? a1 : a0;
  const lb = b0 < b1 ? b0 : b1;
  const hb = b0 < b1 ? b1 : b0;
  if (la === lb && ha === hb) return true;
  if (!a0.includes(' ') && !a1.includes(' ') && !b0.includes(' ') && !b1.includes(' ')) return false;
  return `${la} ${ha}` === `${lb} ${hb}`;
}

/** True when the words between positions i and j are function words, with "and" / "or" among them. */
export function joined(p: PromptAnalysis, i: number, j: number): boolean {
  let joiner = false;
  for (let k = i + 1; k < j; k++) {
    const w = p.sequence[k]!;
    if (p.joiners[k]) joiner = true;
    else if (!STOPWORDS.has(w) || w === 'then') return false;
  }
  return joiner;
}

/**
 * Two phrases of `a` that trade places in `b` around a middle that stays ("gum disease | cause | tooth
 * decay" / "tooth decay | cause | gum disease"): after the common prefix and suffix, a = X M Y and b = Y M X
 * with M not empty. A clause moved to the front is X Y / Y X (no middle): not a swap. Keys are canonical
 * (canonical.ts), so the same words must trade places, not synonyms.
 */
export function swappedPhrases(
  a: readonly string[],
  b: readonly string[],
): [string, string, string] | undefined {
  if (a.length !== b.length || a.length < 3) return undefined;
  let p = 0;
  while (p < a.length && a[p] === b[p]) p++;
  let s = 0;
  while (s < a.length - p && a[a.length - 1 - s] === b[b.length - 1 - s]) s++;
  const x = a.slice(p, a.length - s);
  const y = b.slice(p, b.length - s);
  const n = x.length;
  if (n < 3) return undefined;
  // a clause moved to the other end: y is a rotation of x
  for (let r = 1; r < n; r++)
    if ([...x.slice(r), ...x.slice(0, r)].join(' ') === y.join(' ')) return undefined;
  for (let lx = 1; lx < n - 1; lx++) {
    for (let ly = 1; lx + ly < n; ly++) {
      const X = x.slice(0, lx).join(' ');
      const M = x.slice(lx, n - ly).join(' ');
      const Y = x.slice(n - ly).join(' ');
      if (X === Y) continue;
      if (
        y.slice(0, ly).join(' ') === Y &&
        y.slice(ly, n - lx).join(' ') === M &&
        y.slice(n - lx).join(' ') === X
      )
        return [X, Y, M];
    }
  }
  return undefined;
}
