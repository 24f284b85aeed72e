import { correctTypo, groupOf, isAdjective, isKnownWord, isVerb, lemmaOf, lexicon } from './lexicon.js';
import { STOPWORDS, tokenize, type Token } from './text.js';

/**
 * A prompt's words in canonical form, for the lexical embedder and the guard. What two phrasings of one
 * question share after this step is what both compare:
 * - contractions are expanded ("what's" → what is, "doesn't" → does not, "let's" → let us) and a
 *   possessive 's is dropped ("soccer's" → soccer); also the forms typed without an apostrophe ("whats");
 * - politeness and request padding is marked, not compared ("could you please", "thanks a lot", "if you
 *   have a moment", "would you mind", "sorry to bother you", "help me understand");
 * - an unknown word one edit from a known word is corrected ("recesion" → recession), unless written with a
 *   capital inside a sentence (a name);
 * - every word gets its lemma ("teeth" → tooth, "fired" → fire) and its synonym group ("photograph" →
 *   photo), and two-word terms are joined ("cutting board" → chopping_board);
 * - the question is classified: what it asks for (see {@link AskClass}), with the words of the question frame
 *   absorbed into the class ("what is the number of" = how many; "by whom" = who; "which artist" = who; "what
 *   is the best way to" = how do I; "what causes" = why; "what is the effect of X on Y" = how does X affect Y).
 */
export interface CanonicalWord {
  /** As typed, case kept. */
  text: string;
  /** Lower case, after contraction expansion and typo correction. */
  lower: string;
  lemma: string;
  /** The synonym group, else the lemma: what the embedder hashes and the guard matches. */
  key: string;
  role: WordRole;
  /** Offset in the prompt (for sentence starts). */
  start: number;
}

/**
 * - content: a word that carries what is asked;
 * - head: the noun of "which N" / "what N" that names the kind of answer ("which city is the capital");
 *   it restates the question when the other prompt asks without one;
 * - function: grammar (articles, pronouns, auxiliaries, prepositions);
 * - polite: padding of the request; compared by no one;
 * - frame: a word of the question frame absorbed into the ask class ("way" in "what is the way to");
 * - marker: a preposition that gives the words around it a role (to, from, than, before…);
 * - negation, number, arrow: kept apart (the guard counts them).
 */
export type WordRole =
  'content' | 'head' | 'function' | 'marker' | 'polite' | 'frame' | 'negation' | 'number' | 'arrow';

/**
 * What a question asks for. Two prompts whose classes differ ask different questions ("when was X built" /
 * "where was X built"); the members of one class are equivalent ("how many" = "what is the number of").
 * - what: a thing or a definition (what / which / what does X mean / what is the role of X);
 * - how: a way or method (how do I / what is the way to / what steps / what should I do to);
 * - count: how many; amount: how much, what is the price of; long: how long, how much time;
 * - often: how often, how frequently; far: how far; age: how old; degree: how + another adjective;
 * - who, when, where, why (also "what causes", "what is the reason"), effect ("how does X affect Y" /
 *   "what is the effect of X on Y"), difference ("what is the difference between X and Y" / "how does X
 *   differ from Y" / "how are X and Y different").
 */
export type AskClass =
  | 'what'
  | 'how'
  | 'count'
  | 'amount'
  | 'long'
  | 'often'
  | 'far'
  | 'age'
  | 'degree'
  | 'who'
  | 'when'
  | 'where'
  | 'why'
  | 'effect'
  | 'difference';

export interface CanonicalPrompt {
  words: CanonicalWord[];
  /** The ask classes, sorted, without repeats. */
  asks: AskClass[];
}

// ---- contractions -----------------------------------------------------------------------------------------

/** Contractions typed without the apostrophe, and irregular ones. */
const BARE_CONTRACTIONS: ReadonlyMap<string, readonly string[]> = new Map<string, string[]>([
  ['whats', ['what', 'is']],
  ['wheres', ['where', 'is']],
  ['whos', ['who', 'is']],
  ['hows', ['how', 'is']],
  ['whens', ['when', 'is']],
  ['whys', ['why', 'is']],
  ['thats', ['that', 'is']],
  ['theres', ['there', 'is']],
  ['im', ['i', 'am']],
  ['ive', ['i', 'have']],
  ['youre', ['you', 'are']],
  ['theyre', ['they', 'are']],
  ['dont', ['do', 'not']],
  ['doesnt', ['does', 'not']],
  ['didnt', ['did', 'not']],
  ['isnt', ['is', 'not']],
  ['arent', ['are', 'not']],
  ['wasnt', ['was', 'not']],
  ['werent', ['were', 'not']],
  ['cant', ['can', 'not']],
  ['cannot', ['can', 'not']],
  ['couldnt', ['could', 'not']],
  ['shouldnt', ['should', 'not']],
  ['wouldnt', ['would', 'not']],
  ['wont', ['will', 'not']],
  ['hasnt', ['has', 'not']],
  ['havent', ['have', 'not']],
  ['hadnt', ['had', 'not']],
  ['mustnt', ['must', 'not']],
  ["can't", ['can', 'not']],
  ["won't", ['will', 'not']],
  ["shan't", ['shall', 'not']],
  ["ain't", ['is', 'not']],
  ["let's", ['let', 'us']],
]);

/** Words after which 's is "is" (or "has"), not a possessive. */
const IS_HOSTS: ReadonlySet<string> = new Set(
  'what where who how when why which that there here it he she this everything something nothing'.split(' '),
);

/** Lower-case words of one token, contractions expanded and a possessive dropped. */
function expand(lower: string): readonly string[] {
  const bare = BARE_CONTRACTIONS.get(lower);
  if (bare) return bare;
  if (!lower.includes("'")) return [lower];
  if (lower.endsWith("n't")) return [lower.slice(0, -3), 'not'];
  const m = /^(.+)'(s|re|ve|ll|d|m)$/.exec(lower);
  if (!m) return [lower.replace(/'/g, '')];
  const [, host, tail] = m as unknown as [string, string, string];
  switch (tail) {
    case 's':
      return IS_HOSTS.has(host) ? [host, 'is'] : [host];
    case 're':
      return [host, 'are'];
    case 've':
      return [host, 'have'];
    case 'll':
      return [host, 'will'];
    case 'd':
      return [host, 'would'];
    default:
      return [host, 'am'];
  }
}

// ---- politeness ---------------------------------------------------------------------------------------------

/**
 * Padding around a request. Matched as whole phrases on the expanded lower-case words, longest first. Short
 * openers ("can you", "could you") count only before a request verb, so "can you eat raw eggs" keeps them.
 */
const POLITE_PHRASES: readonly string[] = [
  'i would really appreciate it if you could',
  'i would appreciate it if you could',
  'i would really appreciate it if you',
  'i would appreciate it if you',
  'i would be very grateful if you could',
  'i would be really grateful if you could',
  'i would be grateful if you could',
  'i would be grateful if you',
  'it would be great if you could',
  'it would help if you could',
  'would you be so kind as to',
  'could you be so kind as to',
  'be so kind as to',
  'if it is not too much trouble',
  'if it is not too much to ask',
  'if it is not too much',
  'if you could',
  'any help would be appreciated',
  'any help is appreciated',
  'i could use some help',
  'i need some help',
  'i need help',
  'dear assistant',
  'thank you so much',
  'thank you very much',
  'thank you in advance',
  'thanks in advance',
  'thanks so much',
  'thanks very much',
  'thanks a lot',
  'thanks a bunch',
  'many thanks',
  'thank you',
  'thanks',
  'cheers',
  'much appreciated',
  'i would appreciate it',
  'i appreciate it',
  'sorry to bother you',
  'sorry to ask',
  'sorry',
  'excuse me',
  'if you have a moment',
  'if you have a minute',
  'if you have time',
  'if you do not mind',
  'if you can',
  'if possible',
  'when you get a chance',
  'would you mind',
  'do you mind',
  'i was wondering',
  'i am wondering',
  'i wonder',
  'i would like to know',
  'i would like to understand',
  'i want to know',
  'i need to know',
  'i am curious',
  'i am curious about',
  'i would love to know',
  'do you know',
  'does anyone know',
  'can i ask',
  'may i ask',
  'quick question',
  'help me understand',
  'help me figure out',
  'help me with',
  'let me know',
  'tell me',
  'please',
  'kindly',
  'hi',
  'hello',
  'hey',
  'greetings',
  'by any chance',
  'in simple terms',
  'in a nutshell',
  'briefly',
];
const POLITE_OPENERS: readonly string[] = [
  'could you please',
  'can you please',
  'would you please',
  'will you please',
  'could you',
  'can you',
  'would you',
  'will you',
  'are you able to',
];
/** Verbs that make a request ("explain", "tell me"): the request's form, not its topic. */
export const REQUEST_VERBS: ReadonlySet<string> = new Set(
  (
    'explain tell describe define list name give show compute calculate find suggest recommend provide ' +
    'clarify outline identify share help teach walk guide figure work write'
  ).split(' '),
);

function phraseList(list: readonly string[]): (readonly string[])[] {
  return list.map((p) => p.split(' ')).sort((a, b) => b.length - a.length);
}
/** Phrases by their first word, longest first: a token is checked against its own few only. */
function byFirstWord(list: readonly string[]): ReadonlyMap<string, (readonly string[])[]> {
  const out = new Map<string, (readonly string[])[]>();
  for (const p of phraseList(list)) out.set(p[0]!, [...(out.get(p[0]!) ?? []), p]);
  return out;
}
const POLITE = byFirstWord(POLITE_PHRASES);
const OPENERS = byFirstWord(POLITE_OPENERS);

function matchAt(words: readonly string[], i: number, phrase: readonly string[]): boolean {
  for (let k = 0; k < phrase.length; k++) if (words[i + k] !== phrase[k]) return false;
  return true;
}

// ---- question frames -----------------------------------------------------------------------------------------

const AUX: ReadonlySet<string> = new Set(
  'is are was were be been am do does did can could should would will shall may might must has have had'.split(
    ' ',
  ),
);
const SUBJECTS: ReadonlySet<string> = new Set(
  'i you he she it we they one people someone there this that these those'.split(' '),
);
const DETERMINERS: ReadonlySet<string> = new Set(
  'a an the my your his her its our their this that these those some any each every'.split(' '),
);
/** Nouns of a "which/what N" question that ask for a person: "which artist painted" = "who painted". */
const PERSON_NOUNS: ReadonlySet<string> = new Set(
  (
    'person people artist author writer scientist inventor composer painter poet musician singer player ' +
    'athlete leader president king queen emperor founder creator designer architect philosopher ' +
    'mathematician physicist chemist biologist explorer director actor actress man woman individual ' +
    'ruler monarch politician general admiral engineer doctor novelist playwright sculptor'
  ).split(' '),
);
const TIME_NOUNS: ReadonlySet<string> = new Set(
  'time year date day month century decade era hour'.split(' '),
);
const PLACE_NOUNS: ReadonlySet<string> = new Set('location place whereabouts'.split(' '));
const DISTANCE_NOUNS: ReadonlySet<string> = new Set(['distance']);
const DURATION_NOUNS: ReadonlySet<string> = new Set('duration length lifespan'.split(' '));
const METHOD_NOUNS: ReadonlySet<string> = new Set(
  'way method step process procedure technique means approach command instruction route'.split(' '),
);
const DIFFERENCE_WORDS: ReadonlySet<string> = new Set('differ difference different distinction'.split(' '));
/** Adverbs that may sit between "what" and its verb ("what mainly causes"). */
const HEDGES: ReadonlySet<string> = new Set(
  'mainly mostly usually typically actually really commonly generally normally exactly primarily'.split(' '),
);
const CAUSE_NOUNS: ReadonlySet<string> = new Set('cause reason'.split(' '));
const EFFECT_WORDS: ReadonlySet<string> = new Set('effect impact influence affect consequence'.split(' '));
const COST_WORDS: ReadonlySet<string> = new Set('cost price fee charge amount quantity'.split(' '));
const MEANING_WORDS: ReadonlySet<string> = new Set('mean meaning meant definition define'.split(' '));
const ROLE_WORDS: ReadonlySet<string> = new Set('role job function purpose duty responsibility'.split(' '));
/** Adjectives that only restate a method ("the best way to" = "the way to"); "cheapest", "fastest" narrow. */
const PLAIN_METHOD_ADJECTIVES: ReadonlySet<string> = new Set(
  (
    'best good right proper correct recommended ideal optimal usual standard normal general typical main ' +
    'average common basic'
  ).split(' '),
);
const HOW_DEGREE: ReadonlyMap<string, AskClass> = new Map<string, AskClass>([
  ['many', 'count'],
  ['much', 'amount'],
  ['long', 'long'],
  ['often', 'often'],
  ['frequently', 'often'],
  ['regularly', 'often'],
  ['far', 'far'],
  ['old', 'age'],
  ['come', 'why'],
]);

const CLAUSE_BREAK = /[.!?;:,\n]/;

interface Work {
  text: string;
  lower: string;
  start: number;
  kind: Token['kind'];
  role: WordRole;
}

/** Canonical words and ask classes of a prompt. Pure and deterministic; reads the lexicon on first use. */
export function canonicalize(prompt: string): CanonicalPrompt {
  // The embedder and the guard both read a lookup's prompt, and the guard reads stored prompts again and
  // again: recent results are kept (they are never changed once made).
  const hit = recent.get(prompt);
  if (hit) return hit;
  const out = computeCanonical(prompt);
  if (recent.size >= RECENT) recent.delete(recent.keys().next().value!);
  recent.set(prompt, out);
  return out;
}

const RECENT = 512;
const recent = new Map<string, CanonicalPrompt>();

function computeCanonical(prompt: string): CanonicalPrompt {
  const norm = prompt.normalize('NFKC');
  const ws: Work[] = [];
  for (const t of tokenize(prompt)) {
    if (t.kind !== 'word') {
      ws.push({ text: t.text, lower: t.lower, start: t.start, kind: t.kind, role: 'function' });
      continue;
    }
    const parts = expand(t.lower);
    parts.forEach((p, i) =>
      ws.push({ text: i === 0 ? t.text : p, lower: p, start: t.start, kind: 'word', role: 'function' }),
    );
  }
  const lowers = ws.map((w) => w.lower);
  // clause starts: the first word, and any word after sentence punctuation or a comma
  const clauseStart = ws.map((w, i) => i === 0 || CLAUSE_BREAK.test(norm.slice(ws[i - 1]!.start, w.start)));

  // politeness
  for (let i = 0; i < ws.length; i++) {
    let len = 0;
    for (const p of POLITE.get(lowers[i]!) ?? [])
      if (matchAt(lowers, i, p)) {
        len = p.length;
        break;
      }
    if (len === 0)
      for (const p of OPENERS.get(lowers[i]!) ?? [])
        if (matchAt(lowers, i, p)) {
          const next = lowers[i + p.length];
          const after = next === 'please' || next === 'kindly' ? lowers[i + p.length + 1] : next;
          if (after !== undefined && (REQUEST_VERBS.has(after) || after === 'let')) len = p.length;
          if (len > 0) break;
        }
    for (let k = 0; k < len; k++) ws[i + k]!.role = 'polite';
    if (len > 0) i += len - 1;
  }

  // lemmas, typos, groups
  const lx = lexicon();
  const out: CanonicalWord[] = ws.map((w, i) => {
    let lower = w.lower;
    if (
      w.kind === 'word' &&
      w.role !== 'polite' &&
      !/\d/.test(lower) &&
      !STOPWORDS.has(lower) &&
      !MARKERS.has(lower) &&
      !NEGATION_WORDS.has(lower)
    ) {
      // A capital inside a sentence marks a name: left as written. A capital at a sentence start may be
      // either, so only two swapped letters are fixed there ("Explian"), not edits that turn names into words.
      if (!/^\p{Lu}/u.test(w.text)) lower = correctTypo(lower) ?? lower;
      else if (clauseStart[i] && !isKnownWord(lower)) lower = swapTypo(lower) ?? lower;
    }
    const lemma = w.kind === 'word' ? lemmaOf(lower) : lower;
    let role: WordRole = w.role;
    if (role !== 'polite') {
      if (w.kind === 'num' || /^\d/.test(lower) || ORDINALS.has(lower) || isRoman(w.text)) role = 'number';
      else if (w.kind === 'arrow') role = 'arrow';
      else if (NEGATION_WORDS.has(lower)) role = 'negation';
      else if (MARKERS.has(lower)) role = 'marker';
      else if (STOPWORDS.has(lower) || STOPWORDS.has(lemma)) role = 'function';
      else role = 'content';
    }
    const key = role === 'number' ? numberValue(w.text, lower) : (groupOf(lemma) ?? lemma);
    return { text: w.text, lower, lemma, key, role, start: w.start };
  });
  // two-word terms ("cutting board", "speed up", "get rid of" is three: only pairs here)
  for (let i = 0; i + 1 < out.length; i++) {
    const a = out[i]!;
    const b = out[i + 1]!;
    if (a.role === 'polite' || b.role === 'polite' || a.role === 'number' || b.role === 'number') continue;
    if (!lx.termStarts.has(a.lower) && !lx.termStarts.has(a.lemma)) continue;
    const g = groupOf(`${a.lower}_${b.lemma}`) ?? groupOf(`${a.lemma}_${b.lemma}`);
    if (g === undefined) continue;
    a.key = g;
    a.role = 'content';
    b.role = 'frame';
    b.key = g;
    i++;
  }

  let asks = classifyAsks(out);
  // "how does X differ from Y", "how are X and Y different": a difference, however it is asked
  const differ = out.find((w) => w.role === 'content' && DIFFERENCE_WORDS.has(w.lemma));
  if (differ && asks.some((a) => a === 'how' || a === 'what')) {
    asks = asks.map((a) => (a === 'how' || a === 'what' ? 'difference' : a));
    differ.role = 'frame';
  }
  // "who is the author of X" = "who wrote X": an agent noun reads as its verb
  if (asks.includes('who'))
    for (const w of out) {
      if (w.role !== 'content') continue;
      const verb = agentVerb(w.lemma);
      if (verb !== undefined) w.key = groupOf(verb) ?? verb;
    }
  return { words: out, asks: [...new Set(asks)].sort() };
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
  return lower.replace(/,(?=\d{3}\b)/g, '');
}

const NEGATION_WORDS: ReadonlySet<string> = new Set(
  'not no never none nobody nothing nowhere neither nor without'.split(' '),
);

const WH: ReadonlySet<string> = new Set([
  'what',
  'which',
  'who',
  'whom',
  'whose',
  'how',
  'when',
  'where',
  'why',
]);

/** The ask classes of a prompt's question words; marks the frame words it absorbs. */
function classifyAsks(ws: CanonicalWord[]): AskClass[] {
  const asks: AskClass[] = [];
  const live = ws.map((w, i) => ({ w, i })).filter(({ w }) => w.role !== 'polite');
  const at = (k: number): CanonicalWord | undefined => live[k]?.w;
  const absorb = (w: CanonicalWord | undefined): void => {
    if (w && w.role === 'content') w.role = 'frame';
  };
  for (let k = 0; k < live.length; k++) {
    const w = at(k)!;
    if (!WH.has(w.lower)) continue;
    const next = at(k + 1);
    const prev = at(k - 1);
    // "when opening the hive", "where it is printed": a subordinate clause, not a question
    if ((w.lower === 'when' || w.lower === 'where') && next) {
      if (/ing$/.test(next.lower) && !AUX.has(next.lower)) continue;
      if (SUBJECTS.has(next.lower) || DETERMINERS.has(next.lower)) continue;
    }
    // "the person who …", "a knot which …": a relative clause after a noun
    if ((w.lower === 'who' || w.lower === 'which' || w.lower === 'whom') && prev && prev.role === 'content')
      continue;
    switch (w.lower) {
      case 'who':
      case 'whom':
      case 'whose':
        if (prev?.lower === 'by') prev.role = 'frame';
        asks.push('who');
        break;
      case 'when':
        asks.push('when');
        break;
      case 'where':
        asks.push('where');
        break;
      case 'why':
        asks.push('why');
        break;
      case 'how': {
        const deg = next ? HOW_DEGREE.get(next.lower) : undefined;
        if (deg === 'amount' && at(k + 2)?.lemma === 'time') {
          asks.push('long');
          absorb(next);
          absorb(at(k + 2));
          break;
        }
        if (deg) {
          asks.push(deg);
          absorb(next);
          if (deg === 'far' && at(k + 2)?.lower === 'away') absorb(at(k + 2)); // "how far away"
          break;
        }
        if (next && next.role === 'content' && !AUX.has(next.lower) && next.lower !== 'to') {
          asks.push('degree');
          break;
        }
        // "how does X affect Y" asks for an effect
        const verb = live.slice(k + 1).find(({ w: x }) => x.role === 'content' && EFFECT_WORDS.has(x.lemma));
        if (verb && AUX.has(next?.lower ?? '')) {
          asks.push('effect');
          absorb(verb.w);
          break;
        }
        asks.push('how');
        break;
      }
      case 'what':
      case 'which': {
        asks.push(
          classifyWhat(
            live.map((x) => x.w),
            k,
            absorb,
          ),
        );
        break;
      }
    }
  }
  return asks;
}

/** The class of a "what/which …" question starting at `k`, absorbing its frame words. */
function classifyWhat(
  ws: readonly CanonicalWord[],
  k: number,
  absorb: (w: CanonicalWord | undefined) => void,
): AskClass {
  let j = k + 1;
  // "what is the best way to", "which are the main causes of": skip the copula, determiners and adjectives
  const copula = ws[j] && ['is', 'are', 'was', 'were', 'be'].includes(ws[j]!.lower);
  if (copula) j++;
  while (ws[j] && DETERMINERS.has(ws[j]!.lower)) j++;
  const plain: CanonicalWord[] = [];
  for (let n = 0; n < 2 && ws[j] && ws[j + 1]; n++) {
    const w = ws[j]!;
    if (PLAIN_METHOD_ADJECTIVES.has(w.lemma)) plain.push(w);
    else if (!(w.role === 'content' && isAdjective(w.lemma) && ws[j + 1]!.role === 'content')) break;
    j++;
  }
  const head = ws[j];
  const h = head?.lemma ?? '';
  const after = ws[j + 1]?.lower;
  const frameHead = (cls: AskClass): AskClass => {
    absorb(head);
    for (const a of plain) absorb(a);
    return cls;
  };
  if (head && (head.role === 'content' || head.role === 'function')) {
    if (METHOD_NOUNS.has(h)) {
      // "what steps should I take to", "which method should I use to": the verb restates the method
      for (const w of ws.slice(j + 1, j + 6))
        if (w.role === 'content' && ['take', 'follow', 'use', 'do'].includes(w.lemma)) {
          absorb(w);
          break;
        }
      return frameHead('how');
    }
    if (h === 'number' && (after === 'of' || !copula)) return frameHead('count');
    if (COST_WORDS.has(h)) return frameHead('amount');
    if (CAUSE_NOUNS.has(h)) return frameHead('why');
    if (EFFECT_WORDS.has(h) && (copula || after === 'of')) return frameHead('effect');
    if (DIFFERENCE_WORDS.has(h)) return frameHead('difference');
    if (TIME_NOUNS.has(h)) {
      // "the best time of year to prune" = "when to prune"
      if (after === 'of' && TIME_NOUNS.has(ws[j + 2]?.lemma ?? '')) absorb(ws[j + 2]);
      return frameHead('when');
    }
    if (PLACE_NOUNS.has(h) && copula) return frameHead('where');
    if (DISTANCE_NOUNS.has(h) && copula) return frameHead('far');
    if (DURATION_NOUNS.has(h) && copula) return frameHead('long');
    if (PERSON_NOUNS.has(h) && !copula) return frameHead('who');
    if (MEANING_WORDS.has(h) || ROLE_WORDS.has(h)) return frameHead('what');
    // "which city is the capital": the noun names the kind of answer
    if (!copula && j === k + 1 && after !== undefined && AUX.has(after) && head.role === 'content')
      head.role = 'head';
  }
  let next = ws[k + 1];
  if (next && HEDGES.has(next.lower) && ws[k + 2]) next = ws[k + 2];
  // "what causes X", "what makes X Y": why
  if (
    next &&
    (next.lemma === 'cause' || next.lemma === 'make') &&
    next.lower !== 'make' &&
    next.role === 'content'
  ) {
    absorb(next);
    return 'why';
  }
  // "what can I do to X", "what should I do if X": how
  if (
    next &&
    AUX.has(next.lower) &&
    ws[k + 2] &&
    SUBJECTS.has(ws[k + 2]!.lower) &&
    ws[k + 3]?.lemma === 'do'
  ) {
    const then = ws[k + 4]?.lower;
    if (
      then === undefined ||
      ['to', 'if', 'when', 'about', 'after', 'before', 'with', 'for', 'so'].includes(then)
    ) {
      ws[k + 3]!.role = 'frame';
      return 'how';
    }
  }
  // "what does X mean", "what does X do", "what does X cost"
  for (let i = k + 1; i < ws.length; i++) {
    const w = ws[i]!;
    if (w.role !== 'content' && !(w.lemma === 'do' && i === ws.length - 1)) continue;
    if (MEANING_WORDS.has(w.lemma)) absorb(w);
    if (COST_WORDS.has(w.lemma) && w.lemma === 'cost' && next && AUX.has(next.lower)) {
      absorb(w);
      return 'amount';
    }
  }
  const last = ws[ws.length - 1];
  if (last && last.lemma === 'do' && next && AUX.has(next.lower)) last.role = 'frame';
  // "what is X used for" = "what is the purpose of X"
  const beforeLast = ws[ws.length - 2];
  if (last?.lower === 'for' && beforeLast?.lemma === 'use') absorb(beforeLast);
  return 'what';
}

/** Agent nouns whose verb is not their stem. */
const AGENTS: ReadonlyMap<string, string> = new Map([['author', 'write']]);

/** The verb an agent noun comes from ("inventor" → invent, "founder" → found, "winner" → win). */
function agentVerb(noun: string): string | undefined {
  const special = AGENTS.get(noun);
  if (special) return special;
  const m = /^(.{3,}?)(?:er|or)$/.exec(noun);
  if (!m) return undefined;
  const base = m[1]!;
  for (const v of [base, base + 'e', base.replace(/([bdgmnpt])\1$/, '$1')])
    if (isVerb(v) && !isVerb(noun)) return v;
  return undefined;
}

/** Words a request or question starts with: the only ones a capitalised first word is corrected to. */
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
export function romanValue(text: string): number | undefined {
  if (text.length < 2 || !/^[IVXLCDM]+$/.test(text) || NOT_ROMAN.has(text)) return undefined;
  if (!/^M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})$/.test(text)) return undefined;
  const v: Record<string, number> = { I: 1, V: 5, X: 10, L: 50, C: 100, D: 500, M: 1000 };
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
