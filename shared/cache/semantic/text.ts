/**
 * Text helpers shared by the exact key (normalizePrompt), the hashed n-gram embedder and the guard: one
 * tokenizer, so that all three agree on what a word is.
 */

/** Version of the normalisation: part of the exact key, so a change never mixes old and new keys. */
export const NORMALIZE_VERSION = 'n2';

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

// Superscripts and subscripts (and the modifier letters that are small raised letters): NFKC would turn
// "10²" into "102" and "x₁" into "x1", another question. They are kept as written.
const SUP_SUB =
  '\u00aa\u00b2\u00b3\u00b9\u00ba\u02b0-\u02b8\u02e0-\u02e4\u1d2c-\u1d6a\u1d78\u1d9b-\u1dbf\u2070-\u209f\u2c7c\u2c7d\u2d6f\ua69c\ua69d\ua770\ua7f8\ua7f9';
const HAS_SUP_SUB = new RegExp(`[${SUP_SUB}]`);
const NOT_SUP_SUB = new RegExp(`[^${SUP_SUB}]+`, 'g');
// eslint-disable-next-line no-control-regex -- every ASCII character, control characters included
const ASCII_ONLY = /^[\x00-\x7f]*$/;

/**
 * Unicode compatibility folding (NFKC: full-width forms, ligatures, compatibility spaces, circled and
 * Roman-numeral forms) except for superscripts and subscripts, which NFKC would turn into plain digits and
 * letters ("10²" → "102").
 */
export function foldCompat(text: string): string {
  // ASCII is its own NFKC form and holds no superscript: most prompts, and the test is a few times cheaper
  // than the superscript scan and the normalisation (this runs several times per lookup and candidate).
  if (ASCII_ONLY.test(text)) return text;
  if (!HAS_SUP_SUB.test(text)) return text.normalize('NFKC');
  return text.replace(NOT_SUP_SUB, (run) => run.normalize('NFKC'));
}

/**
 * The prompt as the exact-match key sees it. Folded, because any model reads both forms alike:
 *
 * - Unicode compatibility forms ({@link foldCompat}: NFKC, but superscripts and subscripts kept);
 * - curly quotes and apostrophes to ASCII; letter case;
 * - line breaks: CR LF, CR, vertical tab, form feed, U+2028 and U+2029 become LF;
 * - white space at the end of each line, blank lines at the start and end, and runs of blank lines
 *   (one blank line stays: a paragraph break);
 * - indentation common to every line (a whole prompt indented, e.g. pasted from a quote);
 * - runs of spaces and tabs inside a line, after its indentation, to one space;
 * - trailing sentence punctuation (. ? ! ; : , …), except a "!" right after a digit ("5!" is a factorial).
 *
 * Kept as written, because it can change what is asked: every word (negations, "no", "not"), every digit,
 * word order, inner punctuation, superscripts and subscripts, each line's indentation relative to the
 * others (code, YAML, lists), line breaks versus spaces, format characters (zero-width joiners, direction
 * marks), and control characters (C0 other than white space, DEL, C1) — never folded, never dropped.
 * Lone surrogates never get here: the request schemas refuse them.
 */
export function normalizePrompt(prompt: string): string {
  let s = foldCompat(prompt).replace(QUOTE_RE, (c) => QUOTE_FOLD[c] ?? c);
  s = s.toLowerCase().replace(LINE_BREAK, '\n');
  if (!s.includes('\n')) {
    // One line (most prompts): the same result as the loop below without splitting it into an array of
    // one: its indentation is the common one, so cut, and its runs of spaces become one, then trimmed.
    if (ODD_SPACE.test(s)) s = s.replace(INNER_SPACE, ' ');
    if (s.length > 0 && s.charCodeAt(0) === 32) s = s.slice(1);
    if (s.length > 0 && s.charCodeAt(s.length - 1) === 32) s = s.slice(0, -1);
    return trimTail(s);
  }
  const lines = s.split('\n');
  // Indentation common to every non-blank line (compared character by character: a tab is not spaces).
  let common: string | undefined;
  for (const line of lines) {
    if (BLANK.test(line)) continue;
    const indent = INDENT.exec(line)![0];
    common = common === undefined ? indent : commonPrefix(common, indent);
    if (common.length === 0) break;
  }
  const cut = common?.length ?? 0;
  const out: string[] = [];
  let blank = false;
  for (const line of lines) {
    if (BLANK.test(line)) {
      blank = out.length > 0;
      continue;
    }
    if (blank) out.push('');
    blank = false;
    const body = line.slice(cut);
    const indent = INDENT.exec(body)![0];
    out.push(indent + body.slice(indent.length).replace(INNER_SPACE, ' ').replace(TRAILING_SPACE, ''));
  }
  return trimTail(out.join('\n'));
}

const TRAILING_PUNCTUATION = /[\s.?!;:,\u2026\u3002\uff01\uff1f]+$/;
/** A character TRAILING_PUNCTUATION takes: it matches only when the last character is one. */
const TAIL_CHAR = /[\s.?!;:,\u2026\u3002\uff01\uff1f]/;
const DIGIT = /\d/;

/** Trailing punctuation, possibly mixed with spaces ("what is it ? !"), dropped; a "!" glued to a digit stays. */
function trimTail(s: string): string {
  // Most prompts end in a letter or a digit: nothing to drop, and no scan of the whole prompt for a tail.
  if (s.length === 0 || !TAIL_CHAR.test(s.charAt(s.length - 1))) return s;
  return s.replace(TRAILING_PUNCTUATION, (tail, offset: number) =>
    tail.startsWith('!') && offset > 0 && DIGIT.test(s.charAt(offset - 1)) ? '!' : '',
  );
}

const LINE_BREAK = /\r\n|[\r\v\f\u2028\u2029]/g;
/** White space other than a line feed (after LINE_BREAK, the only line break left). */
const BLANK = /^[^\S\n]*$/;
const INDENT = /^[^\S\n]*/;
const INNER_SPACE = /[^\S\n]+/g;
/** A space other than one plain space between two words: what INNER_SPACE would change. */
const ODD_SPACE = /[^\S\n ]| {2}/;
const TRAILING_SPACE = /[^\S\n]+$/;

function commonPrefix(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}

/**
 * A token: `text` as written (case kept, for entity detection), `lower` folded, `start` its offset.
 * Kinds: `num` (digits, with separators and an optional %), `word` (letters/digits, inner apostrophes,
 * hyphens, dots, slashes, underscores), `arrow` (->, =>, →, <-, ←).
 */
export interface Token {
  readonly text: string;
  readonly lower: string;
  readonly kind: 'num' | 'word' | 'arrow';
  readonly start: number;
}

// The three kinds of token, each a sticky regex tried at a position in this order: at every position the
// first that matches is taken, as an alternation of the three would. test() with lastIndex gives the end of a
// match without the result array (and a string per capture group) that exec() makes per token: the guard
// tokenises every candidate it reads, and a lookup's garbage is what its tail pays for in scavenges.
const NUMBER_Y = /[-+]?(?:\d+(?:[.,]\d+)*|[.,]\d+)%?(?![\p{L}\d_])/uy;
const ARROW_Y = /->|=>|→|⇒|<-|←|⟶/uy;
const WORD_Y = /[\p{L}\p{N}_]+(?:['][\p{L}]+)*(?:[-./_][\p{L}\p{N}_]+(?:['][\p{L}]+)*)*(?:\+\+|#)?/uy;

/**
 * Which ASCII characters can start a token (bit 1 a number, 2 an arrow, 4 a word); any other ASCII
 * character (space, most punctuation) starts none and is skipped without trying the regexes. Characters
 * beyond ASCII try all three.
 */
const ASCII_STARTS: Uint8Array = (() => {
  const t = new Uint8Array(128);
  for (const c of '+-.,0123456789') t[c.charCodeAt(0)]! |= 1;
  for (const c of '-=<') t[c.charCodeAt(0)]! |= 2;
  for (let c = 0; c < 128; c++) if (/[\p{L}\p{N}_]/u.test(String.fromCharCode(c))) t[c]! |= 4;
  return t;
})();

/**
 * The last texts tokenised and their tokens: a lookup tokenises its prompt and each candidate it analyses
 * twice (for the canonical form and for the guard's analysis), one right after the other. Token arrays are
 * shared, so they are read-only.
 */
const RECENT_TOKENS = 8;
const recentTexts: (string | undefined)[] = new Array<string | undefined>(RECENT_TOKENS).fill(undefined);
const recentTokens: (readonly Token[])[] = new Array<readonly Token[]>(RECENT_TOKENS).fill([]);
let recentNext = 0;

/** Splits `text` (after {@link foldCompat} and quote folding) into tokens; punctuation and symbols are dropped. */
export function tokenize(text: string): readonly Token[] {
  for (let i = 0; i < RECENT_TOKENS; i++) if (recentTexts[i] === text) return recentTokens[i]!;
  const out = computeTokens(text);
  recentTexts[recentNext] = text;
  recentTokens[recentNext] = out;
  recentNext = (recentNext + 1) % RECENT_TOKENS;
  return out;
}

function computeTokens(text: string): Token[] {
  const s = foldCompat(text).replace(QUOTE_RE, (c) => QUOTE_FOLD[c] ?? c);
  const out: Token[] = [];
  const n = s.length;
  let i = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    const may = c < 128 ? ASCII_STARTS[c]! : 7;
    let kind: Token['kind'] | undefined;
    let end = i;
    if (may & 1) {
      NUMBER_Y.lastIndex = i;
      if (NUMBER_Y.test(s)) {
        kind = 'num';
        end = NUMBER_Y.lastIndex;
      }
    }
    if (kind === undefined && may & 2) {
      ARROW_Y.lastIndex = i;
      if (ARROW_Y.test(s)) {
        kind = 'arrow';
        end = ARROW_Y.lastIndex;
      }
    }
    if (kind === undefined && may & 4) {
      WORD_Y.lastIndex = i;
      if (WORD_Y.test(s)) {
        kind = 'word';
        end = WORD_Y.lastIndex;
      }
    }
    if (kind === undefined) {
      // no token starts here: the next code point (a surrogate pair is one)
      i += c >= 0xd800 && c <= 0xdbff && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
      continue;
    }
    const t = s.slice(i, end);
    out.push({ text: t, lower: t.toLowerCase(), kind, start: i });
    i = end;
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

const ANY_DIGIT = /\d/;
const SIBILANT_ES = /(?:ch|sh|x|ss|zz)es$/;
const KEEP_S = /(?:ss|us|is|ous)$/;
const UNDOUBLED = /[bdfgmnprt]/;

/**
 * A light suffix stripper (a small part of Porter's): plural -s/-es/-ies, -ed, -ing (undoubling a final
 * consonant), then a final -e, so "reverse", "reverses", "reversed" and "reversing" share one stem. Words of
 * four letters or fewer and words with digits are left alone. Good enough for matching, not for display.
 */
export function stem(word: string): string {
  if (word.length <= 4 || ANY_DIGIT.test(word)) return word;
  let w = word;
  if (w.endsWith('ies') && w.length > 5) w = w.slice(0, -3) + 'y';
  else if (w.endsWith('sses')) w = w.slice(0, -2);
  else if (w.endsWith('ing') && w.length >= 6) w = undouble(w.slice(0, -3));
  else if (w.endsWith('ied') && w.length > 5) w = w.slice(0, -3) + 'y';
  else if (w.endsWith('ed') && w.length >= 5) w = undouble(w.slice(0, -2));
  else if (w.endsWith('es') && SIBILANT_ES.test(w)) w = w.slice(0, -2);
  else if (w.endsWith('s') && !KEEP_S.test(w)) w = w.slice(0, -1);
  if (w.length > 4 && w.endsWith('e')) w = w.slice(0, -1);
  return w;
}

function undouble(w: string): string {
  const n = w.length;
  if (n >= 4 && w[n - 1] === w[n - 2] && UNDOUBLED.test(w[n - 1]!)) return w.slice(0, -1);
  return w;
}
