import { canonicalize } from './canonical.js';
import { DEFAULT_THRESHOLDS } from './confidence.js';
import type { Embedder } from './embedder.js';
import { type FeatureVector, HashedFeatureEmbedder } from './hashed-features.js';
import { isLexiconForm, LEXICON_VERSION } from './lexicon.js';

/** Options of {@link LexicalEmbedder}. */
export interface LexicalEmbedderOptions {
  /** Vector size, a power of two. Default 512. */
  dims?: number;
}

// Feature weights. A content word's synonym group carries the topic; the question's ask class says what
// kind of answer is wanted; adjacent content pairs keep a little of the phrasing; character n-grams only
// for words the lexicon does not know (names, jargon, typos it could not fix), so they still match loosely.
const W_KEY = 1.0;
const W_ASK = 0.7;
const W_PAIR = 0.35;
const W_NUMBER = 1.0;
const W_NEGATION = 0.5;
const W_ARROW = 0.3;
const W_MARKER = 0.3;
const W_CHARS = 0.6;

/**
 * The default embedder: hashed features of a prompt's canonical words (canonical.ts): contractions
 * expanded, politeness dropped, typos fixed, lemmas, synonym groups from data/lexicon (WordNet's most
 * frequent senses and a hand-written list), and the question's ask class with its frame words absorbed. So
 * "What is the way to repair a wobbly table leg?" and "How do I fix a wobbly table leg?" map to the same
 * features. No model, no download; the lexicon (about 70k words) is read in the background when a
 * SemanticCache is created (lexicon.ts preloadLexicon), else on the first embedding.
 *
 * Each feature is hashed (FNV-1a) to a dimension with a hash-derived sign; the vector is L2-normalised.
 * Lexical closeness after canonicalisation is what it measures: it does not know that "queen bee larger
 * than drone" and "drone larger than queen bee" differ, which is the guard's job (guard.ts).
 */
export class LexicalEmbedder extends HashedFeatureEmbedder implements Embedder {
  readonly name: string;
  readonly thresholds = DEFAULT_THRESHOLDS;

  constructor(opts: LexicalEmbedderOptions = {}) {
    super('LexicalEmbedder', opts.dims);
    this.name = `lexical-v1-${LEXICON_VERSION}`;
  }

  protected addFeatures(text: string, v: FeatureVector): void {
    const { words, asks } = canonicalize(text);
    for (let i = 0; i < asks.length; i++) v.addTagged('q\u0001', asks[i]!, W_ASK);
    let prev: string | undefined;
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      switch (w.role) {
        case 'head':
        case 'content': {
          v.addTagged('k\u0001', w.key, W_KEY);
          if (prev !== undefined && prev !== w.key)
            if (prev < w.key) v.addPair('p\u0001', prev, w.key, W_PAIR);
            else v.addPair('p\u0001', w.key, prev, W_PAIR);
          prev = w.key;
          // isKnownWord(w.lower), from the lemma already read: a content word's lemma is lemmaOf(lower)
          if (w.lemma === w.lower && !isLexiconForm(w.lower)) v.addCharGrams(w.lower, W_CHARS);
          break;
        }
        case 'number':
          v.addTagged('n\u0001', w.lower, W_NUMBER);
          break;
        case 'negation':
          v.add('x\u0001not', W_NEGATION);
          break;
        case 'marker':
          v.addTagged('m\u0001', w.lower, W_MARKER);
          break;
        case 'arrow':
          v.add('a\u0001->', W_ARROW);
          break;
        default:
          break;
      }
    }
  }
}
