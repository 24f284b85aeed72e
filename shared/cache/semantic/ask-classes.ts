import { type AskClass, type CanonicalWord } from './canonical-types.js';
import { isAdjective, isVerb } from './lexicon.js';

/*
 * What a question asks for (AskClass): its question words and the frame words absorbed into the class
 * ("what is the number of" = how many; "which artist" = who). canonical.ts calls classifyAsks.
 */

// ---- question frames -----------------------------------------------------------------------------------------

export const AUX: ReadonlySet<string> = new Set(
  'is are was were be been am do does did can could should would will shall may might must has have had'.split(
    ' ',
  ),
);
export const SUBJECTS: ReadonlySet<string> = new Set(
  'i you he she it we they one people someone there this that these those'.split(' '),
);
export const DETERMINERS: ReadonlySet<string> = new Set(
  'a an the my your his her its our their this that these those some any each every'.split(' '),
);
/** Nouns of a "which/what N" question that ask for a person: "which artist painted" = "who painted". */
export const PERSON_NOUNS: ReadonlySet<string> = new Set(
  (
    'person people artist author writer scientist inventor composer painter poet musician singer player ' +
    'athlete leader president king queen emperor founder creator designer architect philosopher ' +
    'mathematician physicist chemist biologist explorer director actor actress man woman individual ' +
    'ruler monarch politician general admiral engineer doctor novelist playwright sculptor'
  ).split(' '),
);
export const TIME_NOUNS: ReadonlySet<string> = new Set(
  'time year date day month century decade era hour'.split(' '),
);
export const PLACE_NOUNS: ReadonlySet<string> = new Set('location place whereabouts'.split(' '));
export const DISTANCE_NOUNS: ReadonlySet<string> = new Set(['distance']);
export const DURATION_NOUNS: ReadonlySet<string> = new Set('duration length lifespan'.split(' '));
export const METHOD_NOUNS: ReadonlySet<string> = new Set(
  'way method step process procedure technique means approach command instruction route'.split(' '),
);
export const DIFFERENCE_WORDS: ReadonlySet<string> = new Set(
  'differ difference different distinction'.split(' '),
);
/** Adverbs that may sit between "what" and its verb ("what mainly causes"). */
export const HEDGES: ReadonlySet<string> = new Set(
  'mainly mostly usually typically actually really commonly generally normally exactly primarily'.split(' '),
);
export const CAUSE_NOUNS: ReadonlySet<string> = new Set('cause reason'.split(' '));
export const EFFECT_WORDS: ReadonlySet<string> = new Set(
  'effect impact influence affect consequence'.split(' '),
);
export const COST_WORDS: ReadonlySet<string> = new Set('cost price fee charge amount quantity'.split(' '));
export const MEANING_WORDS: ReadonlySet<string> = new Set('mean meaning meant definition define'.split(' '));
export const ROLE_WORDS: ReadonlySet<string> = new Set(
  'role job function purpose duty responsibility'.split(' '),
);
/** Adjectives that only restate a method ("the best way to" = "the way to"); "cheapest", "fastest" narrow. */
export const PLAIN_METHOD_ADJECTIVES: ReadonlySet<string> = new Set(
  (
    'best good right proper correct recommended ideal optimal usual standard normal general typical main ' +
    'average common basic'
  ).split(' '),
);
export const HOW_DEGREE: ReadonlyMap<string, AskClass> = new Map<string, AskClass>([
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

export const WH: ReadonlySet<string> = new Set([
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

/** Marks a content word as a frame word of the question (absorbed into its ask class). */
function absorb(w: CanonicalWord | undefined): void {
  if (w && w.role === 'content') w.role = 'frame';
}

/** The ask classes of a prompt's question words; marks the frame words it absorbs. */
export function classifyAsks(ws: CanonicalWord[]): AskClass[] {
  const asks: AskClass[] = [];
  // the words that are not politeness, in order: the words themselves when none is (most prompts), else
  // one array of them (no record per word)
  let live: readonly CanonicalWord[] = ws;
  for (let i = 0; i < ws.length; i++)
    if (ws[i]!.role === 'polite') {
      const kept: CanonicalWord[] = [];
      for (const x of ws) if (x.role !== 'polite') kept.push(x);
      live = kept;
      break;
    }
  for (let k = 0; k < live.length; k++) {
    const w = live[k]!;
    if (!WH.has(w.lower)) continue;
    const next = live[k + 1];
    const prev = live[k - 1];
    // "when opening the hive", "where it is printed": a subordinate clause, not a question
    if ((w.lower === 'when' || w.lower === 'where') && next) {
      if (next.lower.endsWith('ing') && !AUX.has(next.lower)) continue;
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
        if (deg === 'amount' && live[k + 2]?.lemma === 'time') {
          asks.push('long');
          absorb(next);
          absorb(live[k + 2]);
          break;
        }
        if (deg) {
          asks.push(deg);
          absorb(next);
          if (deg === 'far' && live[k + 2]?.lower === 'away') absorb(live[k + 2]); // "how far away"
          break;
        }
        if (next && next.role === 'content' && !AUX.has(next.lower) && next.lower !== 'to') {
          asks.push('degree');
          break;
        }
        // "how does X affect Y" asks for an effect
        let verb: CanonicalWord | undefined;
        for (let j = k + 1; j < live.length && !verb; j++)
          if (live[j]!.role === 'content' && EFFECT_WORDS.has(live[j]!.lemma)) verb = live[j];
        if (verb && AUX.has(next?.lower ?? '')) {
          asks.push('effect');
          absorb(verb);
          break;
        }
        asks.push('how');
        break;
      }
      case 'what':
      case 'which': {
        asks.push(classifyWhat(live, k, absorb));
        break;
      }
    }
  }
  return asks;
}

/** The class of a "what/which …" question starting at `k`, absorbing its frame words. */
export function classifyWhat(
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
export const AGENTS: ReadonlyMap<string, string> = new Map([['author', 'write']]);

const AGENT_NOUN = /^(.{3,}?)(?:er|or)$/;
const DOUBLED_FINAL = /([bdgmnpt])\1$/;

/** The verb an agent noun comes from ("inventor" → invent, "founder" → found, "winner" → win). */
export function agentVerb(noun: string): string | undefined {
  const special = AGENTS.get(noun);
  if (special) return special;
  const m = AGENT_NOUN.exec(noun);
  if (!m) return undefined;
  const base = m[1]!;
  for (const v of [base, base + 'e', base.replace(DOUBLED_FINAL, '$1')])
    if (isVerb(v) && !isVerb(noun)) return v;
  return undefined;
}

/** Words a request or question starts with: the only ones a capitalised first word is corrected to. */
