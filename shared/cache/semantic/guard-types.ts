import { type AskClass } from './canonical.js';

/** What the guard extracts from one prompt; computed once per prompt and compared with each candidate. */
export interface PromptAnalysis {
  /**
   * The forms of the prompt's tokens (a subset of `forms`, without the canonical words' until `forms` is
   * read, which extends this set in place): a test that spares the canonical form when it already answers.
   */
  readonly tokenForms: ReadonlySet<string>;
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
