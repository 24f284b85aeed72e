import { join } from 'node:path';
import MiniSearch from 'minisearch';
import { packageRoot } from '../../../shared/paths.js';
import { type SearchJobData } from '../../../shared/queues/schemas.js';
import { type SearchHit, type SearchResult } from '../../../shared/queues/results.js';
import { type SearchBackend } from '../provider.js';
import { readCorpus, type CorpusDocument, type CorpusProblem } from './corpus.js';

/** Options of {@link LocalSearch}. */
export interface LocalSearchOptions {
  /** Folder of documents; default the bundled data/corpus. */
  dir?: string;
  /** Longest snippet, characters. Default 240. */
  snippetChars?: number;
}

// Words that carry no meaning for ranking; without this, "what is the capital of France" ranks every
// document containing "the" and "of".
const STOPWORDS = new Set(
  'a an and are as at be but by for from has have how i in is it its of on or that the this to was what when where which who why will with'.split(
    ' ',
  ),
);

function tokenize(text: string): string[] {
  return text
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .split(/[^\p{L}\p{N}]+/u)
    .filter((t) => t.length > 0);
}

/** The bundled corpus folder. */
export function bundledCorpusDir(): string {
  return join(packageRoot(), 'data', 'corpus');
}

/**
 * The local search provider: a MiniSearch (BM25) full-text index over a folder of documents. The documents
 * are read when it is made (their count and problems are known at start); the index is built on the first
 * search, so a worker that never gets a local search job does not hold it (about 16 MB of RSS). Title matches weigh 3x, tag matches 2x; the last query word also matches as a
 * prefix and longer words tolerate a small typo.
 */
export class LocalSearch implements SearchBackend {
  readonly name = 'local';
  readonly dir: string;
  readonly problems: CorpusProblem[];
  private built: MiniSearch<CorpusDocument> | undefined;
  private readonly docs = new Map<string, CorpusDocument>();
  private readonly snippetChars: number;

  constructor(opts: LocalSearchOptions = {}) {
    this.dir = opts.dir ?? bundledCorpusDir();
    this.snippetChars = opts.snippetChars ?? 240;
    if (!(this.snippetChars >= 40))
      throw new TypeError(`LocalSearch: option "snippetChars" must be >= 40, got ${this.snippetChars}`);
    const { documents, problems } = readCorpus(this.dir);
    this.problems = problems;
    for (const d of documents) this.docs.set(d.id, d);
  }

  /** True once the index is built (by the first search). */
  get indexed(): boolean {
    return this.built !== undefined;
  }

  private get index(): MiniSearch<CorpusDocument> {
    if (this.built) return this.built;
    const index = new MiniSearch<CorpusDocument>({
      fields: ['title', 'text', 'tags'],
      extractField: (doc, field) => {
        const v = (doc as unknown as Record<string, unknown>)[field];
        return Array.isArray(v) ? v.join(' ') : String(v ?? '');
      },
      tokenize,
      processTerm: (term) => (STOPWORDS.has(term) ? null : term),
    });
    index.addAll([...this.docs.values()]);
    this.built = index;
    return index;
  }

  /** Number of indexed documents. */
  get size(): number {
    return this.docs.size;
  }

  async search(job: SearchJobData): Promise<Omit<SearchResult, 'servedBy' | 'tookMs'>> {
    return this.searchSync(job);
  }

  searchSync(job: SearchJobData): Omit<SearchResult, 'servedBy' | 'tookMs'> {
    const matches = this.index.search(job.query, {
      boost: { title: 3, tags: 2 },
      prefix: (_term, i, terms) => i === terms.length - 1,
      fuzzy: (term) => (term.length >= 6 ? 0.15 : false),
      filter: (r) => this.docs.get(String(r.id))?.type === job.type,
    });
    const hits: SearchHit[] = [];
    const page = matches.slice(job.offset, job.offset + job.limit);
    page.forEach((m, i) => {
      const doc = this.docs.get(String(m.id));
      if (!doc) return;
      hits.push({
        title: doc.title,
        url: doc.url,
        snippet: this.snippet(doc, m.terms),
        source: doc.source,
        rank: job.offset + i + 1,
        score: Math.round(m.score * 1000) / 1000,
        ...(doc.publishedAt ? { publishedAt: doc.publishedAt } : {}),
      });
    });
    return { query: job.query, provider: this.name, type: job.type, total: matches.length, hits };
  }

  /**
   * The sentence that best explains the hit: most matched query terms, where a term that is not already
   * in the title counts double (the title is shown anyway); ties go to the earlier sentence.
   */
  private snippet(doc: CorpusDocument, terms: string[]): string {
    const sentences = doc.text.split(/(?<=[.!?])\s+/);
    const inTitle = new Set(tokenize(doc.title));
    const wanted = new Set(terms.map((t) => t.toLowerCase()));
    let best = sentences[0] ?? '';
    let bestScore = 0;
    for (const sentence of sentences) {
      let score = 0;
      for (const w of new Set(tokenize(sentence))) if (wanted.has(w)) score += inTitle.has(w) ? 1 : 2;
      if (score > bestScore) {
        best = sentence;
        bestScore = score;
      }
    }
    return best.length <= this.snippetChars ? best : best.slice(0, this.snippetChars - 1).trimEnd() + '…';
  }

  async close(): Promise<void> {}
}
