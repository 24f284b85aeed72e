/**
 * Text helpers shared by the exact key (normalizePrompt), the hashed n-gram embedder and the guard: one
 * tokenizer, so that all three agree on what a word is.
 */

/** Version of the normalisation: part of the exact key, so a change never mixes old and new keys. */
export const NORMALIZE_VERSION = 'n1';

// Quotes and apostrophes folded to their ASCII forms; NFKC already folds full-width forms and ligatures.
const QUOTE_FOLD: Record<string, string> = {
  '\u2018': "'",
  '\u2019': "'",
  '\u201a': "'",
  '\u201b': "'",
  '\u2032': "'",
  '\u201c': '"',
  '\u201d': '"',
  '\u201e': '"',
  '\u00ab': '"',
  '\u00bb': '"',
};
const QUOTE_RE = /[\u2018\u2019\u201a\u201b\u2032\u201c\u201d\u201e\u00ab\u00bb]/g;

/**
 * The prompt as the exact-match key sees it: Unicode NFKC, curly quotes folded, lower case, runs of
 * whitespace collapsed to one space, trimmed, and trailing sentence punctuation (. ? ! ; : , …) removed.
 *
 * Deliberately kept: every word (negations, "no", "not"), every digit, word order, inner punctuation, and
 * a "!" right after a digit ("5!" is a factorial, not an exclamation). Two prompts with the same normal
 * form are the same question for any reasonable model.
 */
export function normalizePrompt(prompt: string): string {
  let s = prompt.normalize('NFKC').replace(QUOTE_RE, (c) => QUOTE_FOLD[c] ?? c);
  s = s.toLowerCase().replace(/\s+/g, ' ').trim();
  // Trailing punctuation, possibly mixed with spaces ("what is it ? !"); a "!" glued to a digit stays.
  return s.replace(/[\s.?!;:,\u2026\u3002\uff01\uff1f]+$/, (tail, offset: number) =>
    tail.startsWith('!') && offset > 0 && /\d/.test(s.charAt(offset - 1)) ? '!' : '',
  );
}

/**
 * A token: `text` as written (case kept, for entity detection), `lower` folded, `start` its offset.
 * Kinds: `num` (digits, with separators and an optional %), `word` (letters/digits, inner apostrophes,
 * hyphens, dots, slashes, underscores), `arrow` (->, =>, →, <-, ←).
 */
export interface Token {
  text: string;
  lower: string;
  kind: 'num' | 'word' | 'arrow';
  start: number;
}

const TOKEN_RE =
  /(?<num>[-+]?(?:\d+(?:[.,]\d+)*|[.,]\d+)%?(?![\p{L}\d_]))|(?<arrow>->|=>|→|⇒|<-|←|⟶)|(?<word>[\p{L}\p{N}_]+(?:['][\p{L}]+)*(?:[-./_][\p{L}\p{N}_]+(?:['][\p{L}]+)*)*(?:\+\+|#)?)/gu;

/** Splits `text` (after NFKC and quote folding) into tokens; punctuation and symbols are dropped. */
export function tokenize(text: string): Token[] {
  const s = text.normalize('NFKC').replace(QUOTE_RE, (c) => QUOTE_FOLD[c] ?? c);
  const out: Token[] = [];
  for (const m of s.matchAll(TOKEN_RE)) {
    const g = m.groups ?? {};
    const t = m[0];
    const kind = g.num !== undefined ? 'num' : g.arrow !== undefined ? 'arrow' : 'word';
    out.push({ text: t, lower: t.toLowerCase(), kind, start: m.index });
  }
  return out;
}

/**
 * Function words: they carry grammar, not topic. The embedder gives them a small weight (so "how do I" and
 * "how can I" stay close) and the guard skips them when it looks for the words a preposition governs.
 * Negations, quantities and direction words are deliberately NOT here: they change what is asked.
 */
export const STOPWORDS: ReadonlySet<string> = new Set(
  (
    'a an the this that these those some any each every all both either ' +
    'i me my mine myself you your yours yourself we us our ours he him his she her hers it its they them their theirs ' +
    'is am are was were be been being do does did done doing have has had having ' +
    'can could may might must shall should will would ought ' +
    'what which who whom whose how why when where whether ' +
    'of in on at by for with about as into onto upon via per ' +
    'and or but so if then also just very really quite too ' +
    'please kindly tell explain describe show give list me let know ' +
    "there here i'm i've i'd i'll you're you've it's that's what's how's there's " +
    'get got way ways thing things something anything'
  ).split(/\s+/),
);

/** True for a token the guard and embedder treat as a content word. */
export function isContent(lower: string): boolean {
  return !STOPWORDS.has(lower);
}

/**
 * A light suffix stripper (a small part of Porter's): plural -s/-es/-ies, -ed, -ing (undoubling a final
 * consonant), then a final -e, so "reverse", "reverses", "reversed" and "reversing" share one stem. Words of
 * four letters or fewer and words with digits are left alone. Good enough for matching, not for display.
 */
export function stem(word: string): string {
  if (word.length <= 4 || /\d/.test(word)) return word;
  let w = word;
  if (w.endsWith('ies') && w.length > 5) w = w.slice(0, -3) + 'y';
  else if (w.endsWith('sses')) w = w.slice(0, -2);
  else if (w.endsWith('ing') && w.length >= 6) w = undouble(w.slice(0, -3));
  else if (w.endsWith('ied') && w.length > 5) w = w.slice(0, -3) + 'y';
  else if (w.endsWith('ed') && w.length >= 5) w = undouble(w.slice(0, -2));
  else if (w.endsWith('es') && /(?:ch|sh|x|ss|zz)es$/.test(w)) w = w.slice(0, -2);
  else if (w.endsWith('s') && !/(?:ss|us|is|ous)$/.test(w)) w = w.slice(0, -1);
  if (w.length > 4 && w.endsWith('e')) w = w.slice(0, -1);
  return w;
}

function undouble(w: string): string {
  const n = w.length;
  if (n >= 4 && w[n - 1] === w[n - 2] && /[bdfgmnprt]/.test(w[n - 1]!)) return w.slice(0, -1);
  return w;
}
