import { analyzePrompt, type PromptAnalysis } from './guard-analysis.js';
import { swappedPhrases, swappedWords } from './guard-order.js';
import { affixAntonym, matches, misspelt } from './guard-qualifiers.js';
import { stem } from './text.js';

export { analyzePrompt, type PromptAnalysis } from './guard-analysis.js';

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

/** The reason two analysed prompts must not share an answer, or undefined. See {@link guardRejects}. */
export function compareAnalyses(a: PromptAnalysis, b: PromptAnalysis): string | undefined {
  if (a.negations !== b.negations) return `negation: ${a.negations} vs ${b.negations} negation words`;
  if (a.exclusions !== b.exclusions) return `negation: ${a.exclusions} vs ${b.exclusions} exclusion words`;

  // Numbers and ask classes hold no spaces: compared item by item, as their joined text would be (without
  // building it for every candidate).
  if (!sameItems(a.numbers, b.numbers))
    return `number: [${a.numbers.join(', ')}] vs [${b.numbers.join(', ')}]`;

  const quoted = quotedOnlyIn(a, b) ?? quotedOnlyIn(b, a);
  if (quoted !== undefined) return `quoted: "${quoted}" only in one prompt`;

  const entity = entityOnlyIn(a, b) ?? entityOnlyIn(b, a);
  if (entity !== undefined) return `entity: "${entity}" only in one prompt`;

  // Another kind of question asks something else ("when was …" / "where was …"); classes, not words, are
  // compared, so "how many" and "what is the number of" agree.
  if (a.asks.length > 0 && b.asks.length > 0 && !sameItems(a.asks, b.asks))
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

function sameItems(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A quoted term of `x` that `y` does not contain, if one. */
function quotedOnlyIn(x: PromptAnalysis, y: PromptAnalysis): string | undefined {
  for (const q of x.quoted) if (!y.plain.includes(q)) return q;
  return undefined;
}

/** How an entity of `x` that `y` does not name (in any form, or misspelt) is shown, if one. */
function entityOnlyIn(x: PromptAnalysis, y: PromptAnalysis): string | undefined {
  for (const [key, shown] of x.entities)
    if (!y.tokenForms.has(key) && !y.forms.has(key) && !misspelt(key, y.entities)) return shown;
  return undefined;
}
