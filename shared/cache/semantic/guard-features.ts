import { CONTRAST_GROUPS, NUMBER_SCALES, NUMBER_WORDS } from './guard-lexicon.js';
import { isCommonWord, romanValue } from './canonical.js';
import { STOPWORDS, foldCompat, stem, type Token } from './text.js';

/*
 * What the guard reads from one prompt's tokens (guard.ts has the rules): the forms of its words, its
 * numbers, quoted strings, named entities and sentence frame, the poles of contrast groups it uses, and the
 * words that direction markers give a role. Each is computed on first use (guard-analysis.ts).
 */

// Module constants: a regex literal in a function body is a new RegExp object on every call.
const POSSESSIVE = /'s$/;
const PART_BREAK = /[-/_.]/;
const PART_BREAKS = /[-/_.]+/;
const SPACE = /\s/;
const SENTENCE_END = /[.!?:;\n]/;
const PERCENT = /%$/;
const GROUPED_THOUSANDS = /^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/;
const COMMAS = /,/g;
const LEADING_PLUS = /^\+/;

export function addForms(forms: Set<string>, lower: string): void {
  const l = lower.replace(POSSESSIVE, '');
  forms.add(lower);
  forms.add(l);
  forms.add(stem(l));
  if (PART_BREAK.test(l))
    for (const part of l.split(PART_BREAKS)) {
      if (part) {
        forms.add(part);
        forms.add(stem(part));
      }
    }
}

// ---- numbers -------------------------------------------------------------------------------------------

function numberKey(raw: string): string | undefined {
  let s = raw.replace(PERCENT, '');
  if (GROUPED_THOUSANDS.test(s)) s = s.replace(COMMAS, '');
  else s = s.replace(COMMAS, '.');
  // dotted sequences like 1.2.3 (versions) are compared as written
  if (s.indexOf('.') !== s.lastIndexOf('.')) return s.replace(LEADING_PLUS, '');
  const n = Number(s);
  if (!Number.isFinite(n)) return undefined;
  return String(Number(n.toPrecision(12)));
}

const HAS_DIGIT = /\d/;
const DIGIT_RUN = /\d+(?:[.,]\d+)*/g;

export function extractNumbers(tokens: readonly Token[]): string[] {
  const out: string[] = [];
  let acc: number | undefined; // a run of number words being summed ("twenty five", "three hundred")
  const flush = (): void => {
    if (acc !== undefined) out.push(String(Number(acc.toPrecision(12))));
    acc = undefined;
  };
  for (const t of tokens) {
    if (t.kind === 'num') {
      flush();
      const k = numberKey(t.text);
      if (k !== undefined) out.push(k);
      continue;
    }
    // Split on hyphens only when there is one ("twenty-five"): most tokens are plain words.
    const parts = t.lower.includes('-') ? t.lower.split('-') : undefined;
    let isWordNumber: boolean;
    if (parts === undefined) isWordNumber = NUMBER_WORDS.has(t.lower) || NUMBER_SCALES.has(t.lower);
    else {
      isWordNumber = true;
      for (const p of parts) if (!NUMBER_WORDS.has(p) && !NUMBER_SCALES.has(p)) isWordNumber = false;
    }
    if (isWordNumber) {
      for (const p of parts ?? [t.lower]) {
        const scale = NUMBER_SCALES.get(p);
        if (scale !== undefined) acc = (acc || 1) * scale;
        else acc = (acc ?? 0) + NUMBER_WORDS.get(p)!;
      }
      continue;
    }
    flush();
    // Roman numerals ("World War II" = "the Second World War")
    const roman = romanValue(t.text);
    if (roman !== undefined) {
      out.push(String(roman));
      continue;
    }
    // digits inside a word: "100g", "v2", "covid-19", "ipv6", "2nd"
    if (!HAS_DIGIT.test(t.text)) continue;
    for (const m of t.text.matchAll(DIGIT_RUN)) {
      const k = numberKey(m[0]);
      if (k !== undefined) out.push(k);
    }
  }
  flush();
  return out.sort();
}

// ---- quoted strings -------------------------------------------------------------------------------------

const CURLY_DOUBLE = /[\u201c\u201d\u201e\u00ab\u00bb]/g;
const CURLY_SINGLE = /[\u2018\u2019]/g;
/** Any character that can open or close a quote once folded: without one, there is nothing quoted. */
const ANY_QUOTE = /["'`\u201c\u201d\u201e\u00ab\u00bb\u2018\u2019]/;
const QUOTED = /"([^"]+)"|`([^`]+)`|(?:^|[\s([])'([^']+)'(?=$|[\s.,;:!?)\]])/g;
/** The quoted terms of a prompt without quotes (most): one shared empty set, never changed. */
const NO_QUOTED: ReadonlySet<string> = new Set<string>();

export function extractQuoted(text: string): ReadonlySet<string> {
  const folded = foldCompat(text);
  if (!ANY_QUOTE.test(folded)) return NO_QUOTED;
  const s = folded.replace(CURLY_DOUBLE, '"').replace(CURLY_SINGLE, "'");
  const out = new Set<string>();
  for (const m of s.matchAll(QUOTED)) {
    const q = (m[1] ?? m[2] ?? m[3] ?? '').trim().toLowerCase().replace(/\s+/g, ' ');
    if (q) out.add(q);
  }
  return out;
}

// ---- entities -------------------------------------------------------------------------------------------

/** The prompt's words with every run of entity words as one "§", and the entities in order. */
export function frameOf(
  tokens: readonly Token[],
  entities: ReadonlyMap<string, string>,
): { frame: string; entityOrder: string[] } {
  const frame: string[] = [];
  const entityOrder: string[] = [];
  for (const t of tokens) {
    const key = t.lower.replace(POSSESSIVE, '');
    if (t.kind === 'word' && entities.has(key)) {
      entityOrder.push(key);
      if (frame[frame.length - 1] !== '§') frame.push('§');
    } else frame.push(t.lower);
  }
  return { frame: frame.join(' '), entityOrder };
}

/** Words that often start a prompt capitalised without being names. */
export const COMMON_INITIAL: ReadonlySet<string> = new Set([
  ...STOPWORDS,
  ...(
    'write create generate make build draft compose rewrite rephrase paraphrase summarize summarise translate ' +
    'explain describe define compare contrast list name give tell show find search look calculate compute ' +
    'convert solve fix debug check review analyze analyse evaluate suggest recommend provide help assist ' +
    'outline plan design implement use using imagine pretend act consider assume suppose let lets ' +
    'hi hello hey thanks thank ok okay yes no not so now then also and but or if why because since while ' +
    'after before during from to into with without in on at for about between best top good great ' +
    'new old first last next other another many much more most few several some any every each all ' +
    'should shall would will can could may might must do does did is are was were be has have had ' +
    'i im ive id ill we you he she they it its this that these those there here what which who whom whose ' +
    'how when where whether please kindly quick quickly simple simply briefly brief short detailed step ' +
    'steps sort reverse remove delete add update insert select get set run start stop open close read ' +
    'is isn aren doesn don can cannot would wouldn'
  ).split(/\s+/),
]);

function isSentenceInitial(text: string, start: number): boolean {
  for (let i = start - 1; i >= 0; i--) {
    const c = text.charAt(i);
    if (SPACE.test(c) || c === '"' || c === "'" || c === '(' || c === '[' || c === '*' || c === '-') continue;
    return SENTENCE_END.test(c);
  }
  return true;
}

// The entity rule's patterns, made once (a regex literal in the loop is a new RegExp object per token).
const HAS_LETTER = /\p{L}/u;
const HAS_UPPER = /\p{Lu}/u;
const HAS_LOWER = /\p{Ll}/u;
const POSSESSIVE_S = /'s$/;
const JOINED_CODE = /[\p{L}\d]{2,}[_.][\p{L}\d]{2,}/u;
const NOT_LETTERS = /[^\p{L}]/gu;
const INNER_CAPITAL = /\p{L}\p{Lu}/u;
const INITIAL_CAPITAL = /^\p{Lu}/u;
const I_CONTRACTION = /^i'/i;
const APOSTROPHES = /'/g;
const LOWER_WORD = /^[a-z'-]+$/;
const NOT_ACRONYMS: ReadonlySet<string> = new Set(['ok', 'okay']);

export function extractEntities(text: string, tokens: readonly Token[]): Map<string, string> {
  const out = new Map<string, string>();
  // A prompt written in capitals shouts; its capitals say nothing about names. (Counted, not filtered
  // into arrays: this runs for most candidates a lookup reads.)
  let words = 0;
  let caps = 0;
  for (const t of tokens)
    if (t.kind === 'word' && HAS_LETTER.test(t.text)) {
      words++;
      if (HAS_UPPER.test(t.text) && !HAS_LOWER.test(t.text)) caps++;
    }
  const shouting = words >= 3 && caps * 2 > words;
  // The same folding as tokenize(), so token offsets index this string.
  const norm = foldCompat(text);
  for (const t of tokens) {
    if (t.kind !== 'word') continue;
    const w = t.text;
    // Lower-case ASCII letters (with apostrophes and hyphens): no capital, digit or joined code, so no name
    // (most words; the tests below would all say no)
    if (LOWER_WORD.test(w)) continue;
    const key = t.lower.replace(POSSESSIVE_S, '');
    const hasLetter = HAS_LETTER.test(w);
    const hasDigit = HAS_DIGIT.test(w);
    const hasUpper = HAS_UPPER.test(w);
    let entity = false;
    // numbers are the number rule's: "World War II" = "the Second World War"
    if (romanValue(w) !== undefined || NUMBER_WORDS.has(key)) continue;
    if (hasLetter && hasDigit)
      entity = true; // codes: A1, ISO-8601, mp3, h2o
    else if ((w.includes('_') || w.includes('.')) && JOINED_CODE.test(w))
      entity = true; // snake_case, file.txt, node.js
    else if (hasUpper && !shouting) {
      const letters = w.replace(NOT_LETTERS, '');
      const allCaps = letters.length >= 2 && !HAS_LOWER.test(letters);
      const innerCap = INNER_CAPITAL.test(w) && HAS_LOWER.test(w); // iPhone, JavaScript, macOS
      if (allCaps) entity = !NOT_ACRONYMS.has(key);
      else if (innerCap) entity = true;
      else if (INITIAL_CAPITAL.test(w) && w !== 'I' && !I_CONTRACTION.test(w))
        entity =
          !isSentenceInitial(norm, t.start) ||
          !(COMMON_INITIAL.has(key.replace(APOSTROPHES, '')) || isCommonWord(t.lower));
    }
    if (entity && !out.has(key)) out.set(key, w);
  }
  return out;
}

// ---- contrast groups -------------------------------------------------------------------------------------

/** word or stem or bigram → [group, pole] */
const POLE_INDEX: ReadonlyMap<string, readonly (readonly [number, number])[]> = (() => {
  const index = new Map<string, [number, number][]>();
  CONTRAST_GROUPS.forEach((group, g) => {
    group.split('|').forEach((pole, p) => {
      for (const word of pole.split(',')) {
        for (const k of new Set([word, word.includes(' ') ? word : stem(word)])) {
          const list = index.get(k) ?? [];
          if (!list.some(([gg, pp]) => gg === g && pp === p)) list.push([g, p]);
          index.set(k, list);
        }
      }
    });
  });
  return index;
})();

/** First words of the two-word poles ("most expensive"): the only token pairs worth joining to look up. */
const POLE_BIGRAM_STARTS: ReadonlySet<string> = new Set(
  [...POLE_INDEX.keys()].filter((k) => k.includes(' ')).map((k) => k.slice(0, k.indexOf(' '))),
);

/**
 * The contrast groups a prompt's words use: group → its poles present → a word that showed it. Words, then
 * their stems, then two-word poles on adjacent tokens (a token pair is joined into a string only when its
 * first word starts such a pole: tokens hold no spaces, so no other pair can match one).
 */
export function extractPoles(lowers: readonly string[]): Map<number, Map<number, string>> {
  const out = new Map<number, Map<number, string>>();
  for (const l of lowers) {
    notePole(out, l, l);
    const s = stem(l);
    if (s !== l) notePole(out, s, l);
  }
  for (let i = 1; i < lowers.length; i++)
    if (POLE_BIGRAM_STARTS.has(lowers[i - 1]!)) {
      const b = lowers[i - 1] + ' ' + lowers[i]!;
      notePole(out, b, b);
    }
  return out;
}

function notePole(out: Map<number, Map<number, string>>, key: string, shown: string): void {
  const list = POLE_INDEX.get(key);
  if (list === undefined) return;
  for (const [g, p] of list) {
    const m = out.get(g) ?? new Map<number, string>();
    if (!m.has(p)) m.set(p, shown);
    out.set(g, m);
  }
}

// ---- roles around direction words ----------------------------------------------------------------------

export const UNARY_MARKERS: ReadonlySet<string> = new Set([
  'from',
  'to',
  'into',
  'onto',
  'toward',
  'towards',
  'before',
  'after',
  'than',
  'vs',
  'versus',
  'v',
  'over',
  'out_of',
  'instead_of',
]);
/** Words after which "to" starts an infinitive ("how to", "want to", "the way to", "in order to"). */
const INFINITIVE_HOSTS: ReadonlySet<string> = new Set(
  (
    'how what where when which whether who way ways want wants wanted need needs needed like able trying try ' +
    'tries going have has had used ought order best easiest simplest quickest fastest safest cheapest ' +
    'steps method methods process procedure possible necessary supposed allowed'
  ).split(' '),
);

/** Markers whose left side also has a role (A than B, A vs B, A over B, A -> B). */
export const BINARY_MARKERS: ReadonlySet<string> = new Set(['than', 'vs', 'versus', 'v', 'over', '->']);

export function extractRelations(tokens: readonly Token[]): Map<string, Set<string>> {
  // Fold two-word markers into one token.
  const seq: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const next = tokens[i + 1]?.lower;
    if (t.kind === 'arrow') {
      seq.push(t.text === '<-' || t.text === '←' ? '<-' : '->');
    } else if ((t.lower === 'out' || t.lower === 'instead') && next === 'of') {
      seq.push(t.lower + '_of');
      i++;
    } else seq.push(t.lower);
  }
  const isMarker = (w: string): boolean => UNARY_MARKERS.has(w) || BINARY_MARKERS.has(w) || w === '<-';
  const isContentWord = (w: string): boolean => !STOPWORDS.has(w) && !isMarker(w);
  const out = new Map<string, Set<string>>();
  const add = (rel: string, w: string): void => {
    const s = out.get(rel) ?? new Set<string>();
    s.add(stem(w.replace(POSSESSIVE, '')));
    out.set(rel, s);
  };
  const after = (i: number): string | undefined => {
    for (let j = i + 1; j < seq.length; j++) {
      const w = seq[j]!;
      if (isMarker(w)) return undefined;
      if (isContentWord(w)) return w;
    }
    return undefined;
  };
  const before = (i: number): string | undefined => {
    for (let j = i - 1; j >= 0; j--) {
      const w = seq[j]!;
      if (isMarker(w)) return undefined;
      if (isContentWord(w)) return w;
    }
    return undefined;
  };
  for (let i = 0; i < seq.length; i++) {
    let m = seq[i]!;
    if (!isMarker(m)) continue;
    // "how to convert", "the best way to reset": an infinitive, not a direction
    if (m === 'to' && i > 0 && INFINITIVE_HOSTS.has(seq[i - 1]!)) continue;
    let obj = after(i);
    let subj = before(i);
    if (m === '<-') [m, obj, subj] = ['->', subj, obj]; // "A <- B" is "B -> A"
    if (obj !== undefined) add(m + '>', obj);
    if (BINARY_MARKERS.has(m) && subj !== undefined) add(m + '<', subj);
  }
  return out;
}
