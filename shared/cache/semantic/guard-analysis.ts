import { canonicalize, REQUEST_VERBS, type AskClass, type CanonicalPrompt } from './canonical.js';
import type { PromptAnalysis } from './guard-types.js';

export type { PromptAnalysis } from './guard-types.js';
import {
  addForms,
  extractEntities,
  extractNumbers,
  extractPoles,
  extractQuoted,
  extractRelations,
  frameOf,
} from './guard-features.js';
import { EXCLUSIONS, NEGATIONS } from './guard-lexicon.js';
import { activeKeys, JOINERS } from './guard-order.js';
import { FILLER, isQualifierWord, RESTATING } from './guard-qualifiers.js';
import { STOPWORDS, stem, tokenize, type Token } from './text.js';
import { Doorkeeper } from './prompt-memo-doorkeeper.js';
import { MemoSlots } from './prompt-memo-slots.js';

const SINGLE_EXCLUSIONS: ReadonlySet<string> = new Set(EXCLUSIONS.filter((e) => !e.includes(' ')));
/** Tokens hold no spaces, so an exclusion of three words or more never matched a token bigram. */
const PAIR_EXCLUSIONS: readonly (readonly [string, string])[] = EXCLUSIONS.map((e) => e.split(' ')).flatMap(
  (w) => (w.length === 2 ? [[w[0]!, w[1]!] as const] : []),
);

/**
 * One prompt's analysis, each part computed the first time a rule reads it. Most candidates a lookup
 * refuses differ in a number, a name or a quoted term, read from the tokens alone; the canonical form
 * (lemmas, synonym groups, ask classes: the costly part) is computed only for a pair that gets that far,
 * and for counting negations only when the prompt has a negation word at all. The verdict and the reason
 * are those of computing everything up front.
 */
class LazyAnalysis implements PromptAnalysis {
  private _tokens?: readonly Token[];
  private _lowers?: string[];
  private _canon?: CanonicalPrompt;
  private _tokenForms?: Set<string>;
  private _forms?: Set<string>;
  private _negationWords?: number;
  private _negations?: number;
  private _exclusions?: number;
  private _numbers?: string[];
  private _quoted?: ReadonlySet<string>;
  private _entities?: Map<string, string>;
  private _frame?: { frame: string; entityOrder: string[] };
  private _poles?: Map<number, Map<number, string>>;
  private _content?: string[];
  private _relations?: Map<string, Set<string>>;
  private _sequence?: string[];
  private _joiners?: boolean[];
  private _keys?: string[];
  private _qualifiers?: { shown: string; forms: readonly string[] }[];
  private _plain?: string;

  constructor(private readonly text: string) {}

  private get tokens(): readonly Token[] {
    return (this._tokens ??= tokenize(this.text));
  }

  private get lowers(): string[] {
    return (this._lowers ??= this.tokens.map((t) => t.lower));
  }

  private get canon(): CanonicalPrompt {
    return (this._canon ??= canonicalize(this.text));
  }

  get tokenForms(): ReadonlySet<string> {
    if (!this._tokenForms) {
      this._tokenForms = new Set<string>();
      const lowers = this.lowers;
      for (let i = 0; i < lowers.length; i++) addForms(this._tokenForms, lowers[i]!);
    }
    return this._tokenForms;
  }

  get forms(): ReadonlySet<string> {
    if (!this._forms) {
      // The token forms' set, extended in place rather than copied: tokenForms is only a quick test made
      // before this one (guard.ts entityOnlyIn), and a superset of it answers that test the same way.
      const forms = this.tokenForms as Set<string>;
      const words = this.canon.words;
      for (let i = 0; i < words.length; i++) {
        const w = words[i]!;
        forms.add(w.lower);
        forms.add(w.lemma);
        forms.add(w.key);
        forms.add(stem(w.lemma));
      }
      this._forms = forms;
    }
    return this._forms;
  }

  private isNegation(l: string): boolean {
    return NEGATIONS.has(l) || l.endsWith("n't") || l.startsWith('non-');
  }

  get negations(): number {
    if (this._negations === undefined) {
      if (this._negationWords === undefined) {
        let words = 0;
        const lowers = this.lowers;
        for (let i = 0; i < lowers.length; i++) if (this.isNegation(lowers[i]!)) words++;
        this._negationWords = words;
      }
      if (this._negationWords === 0) this._negations = 0;
      else {
        // A negation inside politeness ("if it's not too much trouble") negates nothing that is asked.
        const polite = new Set<number>();
        const words = this.canon.words;
        for (let i = 0; i < words.length; i++) if (words[i]!.role === 'polite') polite.add(words[i]!.start);
        const tokens = this.tokens;
        const lowers = this.lowers;
        let n = 0;
        for (let i = 0; i < tokens.length; i++)
          if (!polite.has(tokens[i]!.start) && this.isNegation(lowers[i]!)) n++;
        this._negations = n;
      }
    }
    return this._negations;
  }

  get exclusions(): number {
    if (this._exclusions === undefined) {
      // Occurrences of each exclusion: one-word ones among the tokens, two-word ones on adjacent tokens
      // (compared in place: no bigram strings are built for prompts refused before the contrast rule).
      const lowers = this.lowers;
      let n = 0;
      for (let i = 0; i < lowers.length; i++) {
        const l = lowers[i]!;
        if (SINGLE_EXCLUSIONS.has(l)) n++;
        if (i + 1 < lowers.length)
          for (const [first, second] of PAIR_EXCLUSIONS) if (l === first && lowers[i + 1] === second) n++;
      }
      this._exclusions = n;
    }
    return this._exclusions;
  }

  get numbers(): readonly string[] {
    return (this._numbers ??= extractNumbers(this.tokens));
  }

  get quoted(): ReadonlySet<string> {
    return (this._quoted ??= extractQuoted(this.text));
  }

  get entities(): ReadonlyMap<string, string> {
    return (this._entities ??= extractEntities(this.text, this.tokens));
  }

  get frame(): string {
    return (this._frame ??= frameOf(this.tokens, this.entities)).frame;
  }

  get entityOrder(): readonly string[] {
    return (this._frame ??= frameOf(this.tokens, this.entities)).entityOrder;
  }

  get poles(): ReadonlyMap<number, ReadonlyMap<number, string>> {
    return (this._poles ??= extractPoles(this.lowers));
  }

  get content(): readonly string[] {
    if (!this._content) {
      const out: string[] = [];
      const lowers = this.lowers;
      for (let i = 0; i < lowers.length; i++) if (!STOPWORDS.has(lowers[i]!)) out.push(lowers[i]!);
      this._content = out;
    }
    return this._content;
  }

  get relations(): ReadonlyMap<string, ReadonlySet<string>> {
    return (this._relations ??= extractRelations(this.tokens));
  }

  get sequence(): readonly string[] {
    if (!this._sequence) {
      const out: string[] = [];
      const words = this.canon.words;
      for (let i = 0; i < words.length; i++) {
        const w = words[i]!;
        if (w.role !== 'polite' && w.role !== 'arrow') out.push(w.lower);
      }
      this._sequence = out;
    }
    return this._sequence;
  }

  get joiners(): readonly boolean[] {
    return (this._joiners ??= this.sequence.map((w) => JOINERS.has(w)));
  }

  get keys(): readonly string[] {
    return (this._keys ??= activeKeys(this.canon.words));
  }

  get asks(): readonly AskClass[] {
    return this.canon.asks;
  }

  get qualifiers(): readonly { shown: string; forms: readonly string[] }[] {
    return (this._qualifiers ??= this.canon.words
      .filter(
        (w) =>
          w.role === 'content' &&
          isQualifierWord(w.lower) &&
          !RESTATING.has(w.lemma) &&
          !REQUEST_VERBS.has(w.lemma) &&
          !FILLER.has(w.lemma),
      )
      .map((w) => ({ shown: w.lower, forms: [w.lower, w.lemma, w.key, stem(w.lemma)] })));
  }

  get plain(): string {
    return (this._plain ??= this.text
      .normalize('NFKC')
      .toLowerCase()
      .replace(/["'`‘’“”„«»]/g, '')
      .replace(/\s+/g, ' '));
  }
}

/**
 * Analyses of recent prompts, kept from the third time a prompt is analysed: a stored prompt that is a
 * candidate for many lookups (a popular entry, a near neighbour of many) is analysed three times, then read
 * from here. Prompts met once or twice (a lookup's own prompt, most candidates) are not kept: a kept analysis
 * (~4 KB with its parts) outlives the next scavenges and is copied and promoted, and at 100k entries these
 * were nearly all of the analyses and most of what a scavenge copied (prompt-memo-doorkeeper.ts). Kept from
 * the second meeting, in bench:semantic's 2,000 lookups at 100k entries 180 analyses were kept and 15 read
 * back (of 3,956 calls); from the third, 16 kept and 2 read back. Analyses never change once made (each
 * part is a pure function of the text). In slots, not a Map: see prompt-memo-slots.ts.
 */
const recent = new MemoSlots<PromptAnalysis>(1024);
const doorkeeper = new Doorkeeper();
/** The texts met a second time (recorded by the doorkeeper's yes): a yes here is a third meeting. */
const metTwice = new Doorkeeper(4096);

/** Analyses one prompt for compareAnalyses (guard.ts); parts are computed when a rule first reads them. */
export function analyzePrompt(text: string): PromptAnalysis {
  const slot = recent.slotOf(text);
  const hit = recent.get(slot, text);
  if (hit) return hit;
  const out = new LazyAnalysis(text);
  if (doorkeeper.metAgain(text) && metTwice.metAgain(text)) recent.set(slot, text, out);
  return out;
}
