import {
  AFFIX_EXCEPTIONS,
  CONTRAST_GROUPS,
  EXCLUSIONS,
  NEGATING_PREFIXES,
  NEGATIONS,
  NUMBER_SCALES,
  NUMBER_WORDS,
} from './guard-lexicon.js';
import {
  canonicalize,
  isCommonWord,
  REQUEST_VERBS,
  romanValue,
  type AskClass,
  type CanonicalWord,
} from './canonical.js';
import { STOPWORDS, foldCompat, stem, tokenize, type Token } from './text.js';

/**
 * The reversal/negation guard. An embedding scores "flights from Paris to Rome" and "flights from Rome to
 * Paris", or "is X safe" and "is X not safe", almost the same; a cache must not answer one with the other.
 * On top of the similarity score, two prompts are refused as "the same question" when (in this order):
 *
 * 1. negation: they hold a different number of negations (not, no, never, n't, without, cannot, neither,
 *    nor, non-…) or of exclusions (except, unless, other than, instead of, rather than…);
 * 2. number: the multisets of numbers differ (digits, also inside tokens like "100g" or "v2"; number words
 *    "twenty-five", "three hundred"; ordinals "first", "2nd"; "twice", "half");
 * 3. quoted: a quoted string of one prompt ("…", '…', `…`) does not occur in the other (quotes that only
 *    mark a term the other prompt names unquoted are no difference);
 * 4. entity: a named entity of one prompt does not occur in the other: capitalised words (a sentence's first
 *    word only when it is not an English word: "Sorry", "Isn't", "Whats", "Explian" are not names), ALL-CAPS
 *    acronyms, camelCase/iPhone-style names, codes that mix letters and digits or join parts with "_" or "."
 *    (A1, ISO-8601, snake_case, node.js);
 * 4b. question: both ask a question and their ask classes differ (canonical.ts: "when" vs "where", "why" vs
 *    "how", "how much" vs "how long"); the members of a class are one question ("how many" = "what is the
 *    number of", "who" = "whom" = "which artist", "what" = "which", "how do I" = "what is the way to");
 * 4c. order: two words or two phrases trade places around a word that stays ("does gum disease cause tooth
 *    decay" / "does tooth decay cause gum disease"); items joined by "and" / "or" may trade places ("Mars and
 *    Jupiter" / "Jupiter and Mars"), and moving a whole clause is no swap;
 * 5. contrast: both prompts use words of one contrast group (antonyms: buy/sell, increase/decrease, max/min,
 *    before/after, pros/cons…; or members of a closed category: units, currencies, weekdays, months, colours,
 *    programming and natural languages, operating systems) but not the same poles;
 * 6. affix antonym: a word of one is a negated form of a word of the other (safe/unsafe, legal/illegal,
 *    able/disable, toxic/non-toxic, careful/careless);
 * 7. order: the same content words hold different roles around direction words: the word after from / to /
 *    into / out of / toward / before / after / than / vs / over / instead of / an arrow, or before than / vs /
 *    over / an arrow ("from Paris to Rome" vs "from Rome to Paris"; "python faster than java" vs "java faster
 *    than python"). Moving a whole phrase keeps the roles ("to Rome from Paris" is fine);
 * 8. qualifier: one prompt has content words the other lacks while the other has none of its own (it adds
 *    a qualifier that narrows: "a blog post about friendship" vs "… for my grandmother"; "best laptops" vs
 *    "best laptops for students"). Words compare by lemma and synonym group (lexicon.ts), after contractions
 *    and possessives are normalised. What only restates the request does not count: politeness ("would you
 *    mind", "thanks a lot"), request verbs ("explain", "compute", "suggest"), the frame words of the ask
 *    class ("the best way to", "the number of", "the role of", "mean"), and restating adverbs ("exactly",
 *    "together", "over time").
 *
 * Cheap (two tokenisations, set comparisons; no model). It errs on the side of refusing: a refusal costs a
 * cache miss, a wrong acceptance serves a wrong answer.
 *
 * @returns why `a` and `b` must not share an answer, or undefined when nothing speaks against it.
 */
export function guardRejects(a: string, b: string): string | undefined {
  return compareAnalyses(analyzePrompt(a), analyzePrompt(b));
}

/** What the guard extracts from one prompt; computed once per prompt and compared with each candidate. */
export interface PromptAnalysis {
  /** Every surface form, stem and hyphen part: membership tests ("does the other prompt mention X"). */
  readonly forms: ReadonlySet<string>;
  readonly negations: number;
  readonly exclusions: number;
  readonly numbers: readonly string[];
  readonly quoted: ReadonlySet<string>;
  /** entity key (lower case) → as written */
  readonly entities: ReadonlyMap<string, string>;
  /** contrast group → its poles present → a word that showed it */
  readonly poles: ReadonlyMap<number, ReadonlyMap<number, string>>;
  /** content words (lower case) */
  readonly content: readonly string[];
  /** "marker>" → stems of the words the marker governs; "marker<" → stems of the words before it */
  readonly relations: ReadonlyMap<string, ReadonlySet<string>>;
  /** The words with each run of entity words replaced by one placeholder: the sentence's frame. */
  readonly frame: string;
  /** The entities in the order they appear (lower case). */
  readonly entityOrder: readonly string[];
  /** Every word and number token in order (lower case, contractions expanded, possessive 's dropped). */
  readonly sequence: readonly string[];
  /** Where each word of `sequence` stands: true for "and", "or", "&" (items they join may trade places). */
  readonly joiners: readonly boolean[];
  /** The canonical keys of the words that carry roles (content, numbers, markers, negations), in order. */
  readonly keys: readonly string[];
  /** What the question asks for (canonical.ts), sorted; empty for a request or a yes/no question. */
  readonly asks: readonly AskClass[];
  /** Content words that could narrow the question (lower case), each with the forms it matches. */
  readonly qualifiers: readonly { shown: string; forms: readonly string[] }[];
  /** The prompt in lower case, quotes removed, spaces collapsed (where a quoted term is looked for). */
  readonly plain: string;
}

/** Analyses one prompt for {@link compareAnalyses}. */
export function analyzePrompt(text: string): PromptAnalysis {
  const tokens = tokenize(text);
  const lowers = tokens.map((t) => t.lower);
  const forms = new Set<string>();
  for (const l of lowers) addForms(forms, l);

  const canon = canonicalize(text);
  // A negation inside politeness ("if it's not too much trouble") negates nothing that is asked.
  const polite = new Set(canon.words.filter((w) => w.role === 'polite').map((w) => w.start));
  let negations = 0;
  tokens.forEach((t, i) => {
    const l = lowers[i]!;
    if (polite.has(t.start)) return;
    if (NEGATIONS.has(l) || l.endsWith("n't") || l.startsWith('non-')) negations++;
  });
  let exclusions = 0;
  const bigrams = lowers.slice(1).map((l, i) => lowers[i] + ' ' + l);
  for (const e of EXCLUSIONS) for (const x of e.includes(' ') ? bigrams : lowers) if (x === e) exclusions++;

  const entities = extractEntities(text, tokens);
  const { frame, entityOrder } = frameOf(tokens, entities);
  for (const w of canon.words) {
    forms.add(w.lower);
    forms.add(w.lemma);
    forms.add(w.key);
    forms.add(stem(w.lemma));
  }
  const live = canon.words.filter((w) => w.role !== 'polite' && w.role !== 'arrow');
  const sequence = live.map((w) => w.lower);
  const qualifiers = canon.words
    .filter(
      (w) =>
        w.role === 'content' &&
        isQualifierWord(w.lower) &&
        !RESTATING.has(w.lemma) &&
        !REQUEST_VERBS.has(w.lemma) &&
        !FILLER.has(w.lemma),
    )
    .map((w) => ({ shown: w.lower, forms: [w.lower, w.lemma, w.key, stem(w.lemma)] }));
  return {
    frame,
    entityOrder,
    sequence,
    joiners: sequence.map((w) => JOINERS.has(w)),
    keys: activeKeys(canon.words),
    asks: canon.asks,
    qualifiers,
    plain: text
      .normalize('NFKC')
      .toLowerCase()
      .replace(/["'`‘’“”„«»]/g, '')
      .replace(/\s+/g, ' '),
    forms,
    negations,
    exclusions,
    numbers: extractNumbers(tokens),
    quoted: extractQuoted(text),
    entities,
    poles: extractPoles(lowers, bigrams),
    content: lowers.filter((l) => !STOPWORDS.has(l)),
    relations: extractRelations(tokens),
  };
}

/** The reason two analysed prompts must not share an answer, or undefined. See {@link guardRejects}. */
export function compareAnalyses(a: PromptAnalysis, b: PromptAnalysis): string | undefined {
  if (a.negations !== b.negations) return `negation: ${a.negations} vs ${b.negations} negation words`;
  if (a.exclusions !== b.exclusions) return `negation: ${a.exclusions} vs ${b.exclusions} exclusion words`;

  if (a.numbers.join(' ') !== b.numbers.join(' '))
    return `number: [${a.numbers.join(', ')}] vs [${b.numbers.join(', ')}]`;

  for (const [x, y] of [
    [a, b],
    [b, a],
  ] as const)
    for (const q of x.quoted) if (!y.plain.includes(q)) return `quoted: "${q}" only in one prompt`;

  for (const [x, y] of [
    [a, b],
    [b, a],
  ] as const) {
    for (const [key, shown] of x.entities)
      if (!y.forms.has(key) && !misspelt(key, y.entities)) return `entity: "${shown}" only in one prompt`;
  }

  // Another kind of question asks something else ("when was …" / "where was …"); classes, not words, are
  // compared, so "how many" and "what is the number of" agree.
  if (a.asks.length > 0 && b.asks.length > 0 && a.asks.join(' ') !== b.asks.join(' '))
    return `question: "${a.asks.join(' ')}" vs "${b.asks.join(' ')}"`;

  // Two words traded places and nothing else moved: a role swap ("does a bishop move diagonally and a rook
  // straight" / "… a rook … a bishop …", "port 8080 … to port 80" / "port 80 … to port 8080"). Moving a
  // clause shifts many positions, so a reordered paraphrase is not taken for a swap.
  const swap = swappedWords(a, b);
  if (swap) return `order: "${swap[0]}" and "${swap[1]}" trade places`;

  // Roles swapped: the same sentence frame with the same entities in another order ("did the Beatles
  // influence the Rolling Stones" / "did the Rolling Stones influence the Beatles", "copy column A into
  // column B" / "… B into … A"). A reworded prompt has another frame, so it is not caught by this.
  if (
    a.entityOrder.length >= 2 &&
    a.frame === b.frame &&
    a.entityOrder.join(' ') !== b.entityOrder.join(' ') &&
    [...a.entityOrder].sort().join(' ') === [...b.entityOrder].sort().join(' ') &&
    !/§ (?:and|or|&) §/.test(a.frame)
  )
    return `order: entities "${a.entityOrder.join(', ')}" vs "${b.entityOrder.join(', ')}" in the same frame`;

  // Two phrases traded places around a word that stays ("does gum disease cause tooth decay" / "does tooth
  // decay cause gum disease"), passive clauses read in active order.
  const phrases = swappedPhrases(a.keys, b.keys);
  if (phrases) return `order: "${phrases[0]}" and "${phrases[1]}" trade places around "${phrases[2]}"`;

  for (const [g, polesA] of a.poles) {
    const polesB = b.poles.get(g);
    if (!polesB) continue;
    if (polesA.size !== polesB.size || [...polesA.keys()].some((p) => !polesB.has(p))) {
      const wa = [...polesA].find(([p]) => !polesB.has(p))?.[1] ?? [...polesA.values()][0];
      const wb = [...polesB].find(([p]) => !polesA.has(p))?.[1] ?? [...polesB.values()][0];
      return `contrast: "${wa}" vs "${wb}"`;
    }
  }

  const affix = affixAntonym(a, b);
  if (affix) return `contrast: "${affix[0]}" vs "${affix[1]}"`;

  const shared = new Set<string>();
  for (const w of a.content) if (b.forms.has(w)) shared.add(stem(w));
  for (const [rel, objsA] of a.relations) {
    const objsB = b.relations.get(rel);
    if (!objsB) continue;
    const sa = [...objsA].filter((o) => shared.has(o));
    const sb = [...objsB].filter((o) => shared.has(o));
    if (sa.length > 0 && sb.length > 0 && (sa.length !== sb.length || sa.some((o) => !objsB.has(o)))) {
      const marker = rel.slice(0, -1);
      const side = rel.endsWith('>') ? 'after' : 'before';
      return `order: "${sa.join(' ')}" vs "${sb.join(' ')}" ${side} "${marker}"`;
    }
  }

  const extraA = a.qualifiers.filter((q) => !matches(q, b)).map((q) => q.shown);
  const extraB = b.qualifiers.filter((q) => !matches(q, a)).map((q) => q.shown);
  if (extraA.length > 0 !== extraB.length > 0)
    return `qualifier: "${[...extraA, ...extraB].join(' ')}" only in one prompt`;
  // One word swapped for another that is not its synonym, all else equal: another thing is asked about
  // ("finish walnut with Danish oil" / "finish maple with …", "fire earthenware" / "fire stoneware").
  if (
    extraA.length === 1 &&
    extraB.length === 1 &&
    a.qualifiers.length === b.qualifiers.length &&
    a.qualifiers.length >= 2
  )
    return `substitution: "${extraA[0]}" vs "${extraB[0]}"`;
  return undefined;
}

/** A content word that can qualify a request (not a number, negation, direction word or filler). */
function isQualifierWord(w: string): boolean {
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
 * The keys of the words that carry roles, in order, with a passive clause put in active order: "X was
 * VERBed by Y" reads as "Y VERB X", so "the Americas were reached by Columbus" = "Columbus reached the
 * Americas", and "Nadal was beaten by Federer" ≠ "Nadal beat Federer".
 */
function activeKeys(words: readonly CanonicalWord[]): string[] {
  const keys: string[] = [];
  let by = -1;
  for (const w of words) {
    if (['content', 'number', 'marker', 'negation', 'arrow'].includes(w.role))
      keys.push(w.role === 'arrow' ? '->' : w.key);
    else if (w.lower === 'by' && by < 0 && keys.length > 0) {
      const prev = words[words.indexOf(w) - 1];
      if (prev && prev.role === 'content' && prev.lemma !== prev.lower && !/(?:s|ing)$/.test(prev.lower))
        by = keys.length;
    }
  }
  if (by < 1) return keys;
  const verb = keys[by - 1]!;
  return [...keys.slice(by), verb, ...keys.slice(0, by - 1)];
}

/**
 * True when the other prompt has the word: a form of it, its synonym group, a compound that contains it or
 * that it contains ("honeybee" / "bee", "springtime" / "spring"; both parts at least 3 letters), a word of
 * the same family (a common start of 5 letters and 70% of the shorter: "summarize" / "summary"), or the
 * word with two letters swapped ("dokcer").
 */
function matches(q: { forms: readonly string[] }, other: PromptAnalysis): boolean {
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
function misspelt(key: string, names: ReadonlyMap<string, string>): boolean {
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

/** Words that join items which may trade places ("Mars and Jupiter" = "Jupiter and Mars"). */
const JOINERS: ReadonlySet<string> = new Set(['and', 'or', '&', 'nor']);

/**
 * Words that restate what is asked without narrowing it: "exactly", "together" ("join two balls of yarn
 * together"), "over time" ("so they do not fade over time"), "contain" ("how many calories does a banana
 * contain" = "… are in a banana"). Request verbs (canonical.ts) and frame words are left out elsewhere.
 */
const RESTATING: ReadonlySet<string> = new Set(
  (
    'exactly actually basically essentially really truly together time overall generally typically usually ' +
    'normally commonly specifically particularly currently ever also just contain kind type thing stuff ' +
    'detail detailed understand know learn appear seem use amount term word concept notion phrase happen occur'
  ).split(/\s+/),
);

/** Words that make a request polite or explicit without changing what is asked. */
const FILLER: ReadonlySet<string> = new Set(
  (
    'please help need needs want wants wanted wonder wondering curious question quick quickly briefly ' +
    'simply exactly actually basically thanks thank hi hello hey ok okay write create make generate ' +
    'provide find hey assist'
  ).split(/\s+/),
);

function addForms(forms: Set<string>, lower: string): void {
  const l = lower.replace(/'s$/, '');
  forms.add(lower);
  forms.add(l);
  forms.add(stem(l));
  if (/[-/_.]/.test(l))
    for (const part of l.split(/[-/_.]+/)) {
      if (part) {
        forms.add(part);
        forms.add(stem(part));
      }
    }
}

// ---- numbers -------------------------------------------------------------------------------------------

function numberKey(raw: string): string | undefined {
  let s = raw.replace(/%$/, '');
  if (/^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/.test(s)) s = s.replace(/,/g, '');
  else s = s.replace(/,/g, '.');
  // dotted sequences like 1.2.3 (versions) are compared as written
  if ((s.match(/\./g) ?? []).length > 1) return s.replace(/^\+/, '');
  const n = Number(s);
  if (!Number.isFinite(n)) return undefined;
  return String(Number(n.toPrecision(12)));
}

function extractNumbers(tokens: readonly Token[]): string[] {
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
    const parts = t.lower.split('-');
    let isWordNumber = parts.length > 0;
    for (const p of parts) if (!NUMBER_WORDS.has(p) && !NUMBER_SCALES.has(p)) isWordNumber = false;
    if (isWordNumber) {
      for (const p of parts) {
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
    for (const m of t.text.matchAll(/\d+(?:[.,]\d+)*/g)) {
      const k = numberKey(m[0]);
      if (k !== undefined) out.push(k);
    }
  }
  flush();
  return out.sort();
}

// ---- quoted strings -------------------------------------------------------------------------------------

function extractQuoted(text: string): Set<string> {
  const s = foldCompat(text)
    .replace(/[\u201c\u201d\u201e\u00ab\u00bb]/g, '"')
    .replace(/[\u2018\u2019]/g, "'");
  const out = new Set<string>();
  const re = /"([^"]+)"|`([^`]+)`|(?:^|[\s([])'([^']+)'(?=$|[\s.,;:!?)\]])/g;
  for (const m of s.matchAll(re)) {
    const q = (m[1] ?? m[2] ?? m[3] ?? '').trim().toLowerCase().replace(/\s+/g, ' ');
    if (q) out.add(q);
  }
  return out;
}

// ---- order ----------------------------------------------------------------------------------------------

/**
 * The two words of `a` that sit in each other's place in `b` when the sequences are otherwise the same
 * (equal length, exactly two differing positions holding the same two words). "from Paris to Rome" / "to
 * Rome from Paris" moves four words and is left to the direction rule, which accepts it.
 */
function swappedWords(pa: PromptAnalysis, pb: PromptAnalysis): [string, string] | undefined {
  const a = pa.sequence;
  const b = pb.sequence;
  if (a.length !== b.length) return undefined;
  const at: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) at.push(i);
  if (at.length !== 2) return undefined;
  const wa = at.map((i) => a[i]!).sort();
  const wb = at.map((i) => b[i]!).sort();
  if (wa.join(' ') !== wb.join(' ') || new Set(wa).size < 2) return undefined;
  // "isn't it" / "is it not": where a negation stands is the negation rule's business
  if (wa.some((w) => NEGATIONS.has(w))) return undefined;
  // "cucumbers and tomatoes" / "tomatoes and cucumbers": items of one list, not roles
  if (joined(pa, at[0]!, at[1]!)) return undefined;
  return [a[at[0]!]!, b[at[0]!]!];
}

/** True when the words between positions i and j are function words, with "and" / "or" among them. */
function joined(p: PromptAnalysis, i: number, j: number): boolean {
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
function swappedPhrases(a: readonly string[], b: readonly string[]): [string, string, string] | undefined {
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

// ---- entities -------------------------------------------------------------------------------------------

/** The prompt's words with every run of entity words as one "§", and the entities in order. */
function frameOf(
  tokens: readonly Token[],
  entities: ReadonlyMap<string, string>,
): { frame: string; entityOrder: string[] } {
  const frame: string[] = [];
  const entityOrder: string[] = [];
  for (const t of tokens) {
    const key = t.lower.replace(/'s$/, '');
    if (t.kind === 'word' && entities.has(key)) {
      entityOrder.push(key);
      if (frame[frame.length - 1] !== '§') frame.push('§');
    } else frame.push(t.lower);
  }
  return { frame: frame.join(' '), entityOrder };
}

/** Words that often start a prompt capitalised without being names. */
const COMMON_INITIAL: ReadonlySet<string> = new Set([
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
    if (/\s/.test(c) || c === '"' || c === "'" || c === '(' || c === '[' || c === '*' || c === '-') continue;
    return /[.!?:;\n]/.test(c);
  }
  return true;
}

function extractEntities(text: string, tokens: readonly Token[]): Map<string, string> {
  const out = new Map<string, string>();
  const words = tokens.filter((t) => t.kind === 'word' && /\p{L}/u.test(t.text));
  // A prompt written in capitals shouts; its capitals say nothing about names.
  const caps = words.filter((t) => /\p{Lu}/u.test(t.text) && !/\p{Ll}/u.test(t.text)).length;
  const shouting = words.length >= 3 && caps * 2 > words.length;
  // The same folding as tokenize(), so token offsets index this string.
  const norm = foldCompat(text);
  for (const t of tokens) {
    if (t.kind !== 'word') continue;
    const w = t.text;
    const key = t.lower.replace(/'s$/, '');
    const hasLetter = /\p{L}/u.test(w);
    const hasDigit = /\d/.test(w);
    const hasUpper = /\p{Lu}/u.test(w);
    let entity = false;
    // numbers are the number rule's: "World War II" = "the Second World War"
    if (romanValue(w) !== undefined || NUMBER_WORDS.has(key)) continue;
    if (hasLetter && hasDigit)
      entity = true; // codes: A1, ISO-8601, mp3, h2o
    else if (/[\p{L}\d]{2,}[_.][\p{L}\d]{2,}/u.test(w))
      entity = true; // snake_case, file.txt, node.js
    else if (hasUpper && !shouting) {
      const letters = w.replace(/[^\p{L}]/gu, '');
      const allCaps = letters.length >= 2 && !/\p{Ll}/u.test(letters);
      const innerCap = /\p{L}\p{Lu}/u.test(w) && /\p{Ll}/u.test(w); // iPhone, JavaScript, macOS
      if (allCaps) entity = !['ok', 'okay'].includes(key);
      else if (innerCap) entity = true;
      else if (/^\p{Lu}/u.test(w) && w !== 'I' && !/^i'/i.test(w))
        entity =
          !isSentenceInitial(norm, t.start) ||
          !(COMMON_INITIAL.has(key.replace(/'/g, '')) || isCommonWord(t.lower));
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

function extractPoles(
  lowers: readonly string[],
  bigrams: readonly string[],
): Map<number, Map<number, string>> {
  const out = new Map<number, Map<number, string>>();
  const note = (key: string, shown: string): void => {
    for (const [g, p] of POLE_INDEX.get(key) ?? []) {
      const m = out.get(g) ?? new Map<number, string>();
      if (!m.has(p)) m.set(p, shown);
      out.set(g, m);
    }
  };
  for (const l of lowers) {
    note(l, l);
    const s = stem(l);
    if (s !== l) note(s, l);
  }
  for (const b of bigrams) note(b, b);
  return out;
}

function affixAntonym(a: PromptAnalysis, b: PromptAnalysis): [string, string] | undefined {
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

// ---- roles around direction words ----------------------------------------------------------------------

const UNARY_MARKERS: ReadonlySet<string> = new Set([
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
const BINARY_MARKERS: ReadonlySet<string> = new Set(['than', 'vs', 'versus', 'v', 'over', '->']);

function extractRelations(tokens: readonly Token[]): Map<string, Set<string>> {
  // Fold two-word markers into one token.
  const seq: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const next = tokens[i + 1]?.lower;
    if (t.kind === 'arrow') {
      seq.push(/^(?:<-|←)$/.test(t.text) ? '<-' : '->');
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
    s.add(stem(w.replace(/'s$/, '')));
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
