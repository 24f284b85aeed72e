import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A varied corpus for the lexical embedder's frozen vectors (test/fixtures/lexical-vectors.json): every
 * prompt of the evaluation sets, and hand-picked texts for the tokenizer's and canonical form's corners
 * (unicode, code, long prompts, nearly empty ones, numbers, contractions, typos, names, arrows).
 */
export const EVAL_SETS = [
  'cache-eval.tsv',
  'cache-eval-holdout.tsv',
  'cache-eval-fresh.tsv',
  'cache-eval-frozen.tsv',
  'cache-eval-unseen.tsv',
];

/** The prompts of an evaluation set, a then b of each pair, in file order. */
export function evalPrompts(file: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync(join(__dirname, '..', 'fixtures', file), 'utf8').split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const [, a, b] = line.split('\t');
    if (a !== undefined) out.push(a);
    if (b !== undefined) out.push(b);
  }
  return out;
}

const paragraph =
  'The committee reviewed the quarterly results, compared them with last year’s figures (revenue up 12.5%, ' +
  'costs down 3%), and asked why the Berlin office’s numbers differ from the forecast -> see appendix II. ';

export const HAND_PROMPTS: string[] = [
  '',
  ' ',
  '?',
  '...',
  '\n\n\t',
  'the',
  'please',
  'a a a',
  'thanks a lot',
  'Could you please tell me how to fix a wobbly table leg?',
  'How do I fix a wobbly table leg?',
  "What's the way to repair a wobbly table leg? It doesn't stay put; whats wrong, let's see",
  'Waht is teh capital of Frnace?',
  'Explian recesion to me',
  'Recomend a good book about the second world war',
  'Who is the author of War and Peace?',
  'How does a crocodile differ from an alligator?',
  'How are X and Y different?',
  'Is Paris larger than Athens, or is athens larger than paris?',
  'Texas vs texts',
  'What is 1,000,000 + 2.5% of 3.14159? And 5! and -7 and .5',
  'World War II, Louis XIV, Super Bowl LVII, CD and MIX and XXL',
  'first second third tenth 21st 3rd',
  'not no never none nobody without neither nor',
  'a -> b => c <- d ← e → f ⇒ g ⟶ h',
  'from London to Paris before noon, after lunch, between 2 and 3, up and down',
  'Request measure-17: tell me about 3fa9c2e41b07 and 134623',
  'Request fill-0: tell me about 000000000000 and 0',
  'Request warm-2999: tell me about ffffabcd1234 and 23749081',
  '```python\ndef f(x):\n    return x ** 2  # square\n```\nWhy does f("a") raise a TypeError?',
  'In C++ and C#, what does i++ do? node.js vs deno; foo_bar.baz/qux-quux; it’s “quoted” «guillemets»',
  "SELECT * FROM users WHERE id = 42 AND name LIKE '%o'neil%';",
  '{"key": [1, 2, 3], "nested": {"a": null}} -- parse this JSON',
  'Wie spät ist es in Zürich? Grüße aus München',
  '東京の天気は？ 明日は雨ですか。',
  'Привет, как дела? Сколько стоит билет до Москвы?',
  'ما هو عاصمة مصر؟',
  'Ｆｕｌｌ－ｗｉｄｔｈ ｔｅｘｔ ＡＢＣ １２３ and ﬁ ligature',
  'x₁ + x² = 10² and H₂O, ᵃ ᵇ, ⅫⅣ, ① ② ③',
  'naïve café résumé façade coöperate e\u0301 vs \u00e9',
  '🎉 party ideas 🎂 for a 5-year-old 👩‍👩‍👧',
  'zero\u200dwidth\u200bjoiner and \u202edirection\u202c marks',
  'Hello\r\nWorld\u2028next\u2029para\vtab\fform',
  'NASA, the FBI and Dr. Smith went to St. Louis, e.g. on Jan. 5th.',
  'supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis',
  'qwzx jjkkll zzzz thingamajig blorptastic',
  'How many teeth does an adult have, and how much do they cost, how long do they last, how often to brush?',
  'how old, how far, how big, when, where, why, who, what causes rain?',
  'What is the effect of caffeine on sleep?',
  // capitalised words met again, at a clause start and inside a sentence (a typo is fixed only at a start)
  'Explian this. Then I said Explian again, and Paris, Paris; Request Request',
  'Waht Waht? Waht is Recomend, then Recomend',
  "Don't Don't. What's What's whats What",
  'II and Ii and II. XIV, Xiv; Tenth Tenth',
  'Athens is older than Athens? Texas Texts texts',
  paragraph.repeat(12),
  'word '.repeat(600),
  'a'.repeat(2000),
  Array.from({ length: 200 }, (_, i) => `item${i} costs ${i * 17}.${i % 10}`).join(', '),
];
