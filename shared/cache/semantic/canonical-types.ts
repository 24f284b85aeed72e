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
