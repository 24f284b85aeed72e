import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalSearch } from '../../workers/providers/local-search/local-search';
import { parseSearchRequest } from '../../shared/queues/schemas';

const limits = { maxPromptBytes: 1000, maxQueryBytes: 1000 };
const q = (body: Record<string, unknown>) => parseSearchRequest(body, limits);

describe('LocalSearch over the bundled corpus', () => {
  const search = new LocalSearch();

  it('indexes the bundled documents without problems', () => {
    expect(search.size).toBeGreaterThanOrEqual(400);
    expect(search.problems).toEqual([]);
  });

  it('reads the documents at once and builds the index on the first search only', async () => {
    const fresh = new LocalSearch();
    expect(fresh.size).toBe(search.size);
    expect(fresh.indexed).toBe(false);
    const r = await fresh.search(q({ query: 'capital of Australia', limit: 1 }));
    expect(fresh.indexed).toBe(true);
    expect(r.hits[0]?.title).toBe('Australia');
  });

  it('ranks meaningful answers first', () => {
    const top = (query: string) => search.searchSync(q({ query, limit: 1 })).hits[0]?.title;
    expect(top('capital of Australia')).toBe('Australia');
    expect(top('What is the capital of France?')).toBe('France');
    expect(top('XADD')).toBe('XADD');
    expect(top('429 Too Many Requests')).toMatch(/^429/);
    expect(top('noble gas used in signs neon')).toBe('Neon');
  });

  it('pages results with stable ranks and totals', () => {
    const all = search.searchSync(q({ query: 'capital', limit: 20 }));
    const page2 = search.searchSync(q({ query: 'capital', limit: 5, offset: 5 }));
    expect(page2.total).toBe(all.total);
    expect(page2.hits.map((h) => h.title)).toEqual(all.hits.slice(5, 10).map((h) => h.title));
    expect(page2.hits.map((h) => h.rank)).toEqual([6, 7, 8, 9, 10]);
  });

  it('returns no hits for a type the corpus does not hold, and for nonsense', () => {
    expect(search.searchSync(q({ query: 'capital of France', type: 'news' })).hits).toEqual([]);
    expect(search.searchSync(q({ query: 'qwxzzkjq' })).total).toBe(0);
  });
});

describe('LocalSearch over a custom folder', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cell0-corpus-'));
    writeFileSync(
      join(dir, 'a.jsonl'),
      '{"id":"a/1","title":"Otters","text":"Otters hold hands while sleeping."}\nnot json\n{"id":"a/1","title":"dup","text":"dup"}\n',
    );
    writeFileSync(join(dir, 'notes.md'), '# Beavers\n\nBeavers build dams from branches.\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads jsonl and markdown, and reports bad lines instead of failing', () => {
    const s = new LocalSearch({ dir });
    expect(s.size).toBe(2);
    expect(s.problems.map((p) => p.reason)).toEqual([expect.stringMatching(/^not JSON/), 'duplicate id a/1']);
    expect(s.searchSync(q({ query: 'dams' })).hits[0]).toMatchObject({
      title: 'Beavers',
      snippet: 'Beavers build dams from branches.',
    });
  });
});
