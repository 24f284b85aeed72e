import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join, relative } from 'node:path';

/** One document of the local corpus. */
export interface CorpusDocument {
  id: string;
  title: string;
  text: string;
  tags: string[];
  url: string;
  /** SearchType value the document answers to; "web" when not given. */
  type: string;
  /** Corpus file it came from. */
  source: string;
  publishedAt?: string;
}

/** A line or file that could not be read as a document. */
export interface CorpusProblem {
  file: string;
  line?: number;
  reason: string;
}

/**
 * Reads every .jsonl, .md and .txt file under `dir` (recursively). A .jsonl line is one document
 * ({id, title, text, tags?, url?, type?, publishedAt?}); a .md or .txt file is one document whose title is
 * its first "# " heading or its file name. Bad lines are reported, not fatal: one typo must not take the
 * whole search provider down.
 */
export function readCorpus(dir: string): { documents: CorpusDocument[]; problems: CorpusProblem[] } {
  const documents: CorpusDocument[] = [];
  const problems: CorpusProblem[] = [];
  const seen = new Set<string>();
  const add = (doc: CorpusDocument, file: string, line?: number) => {
    if (seen.has(doc.id)) {
      problems.push({ file, ...(line !== undefined ? { line } : {}), reason: `duplicate id ${doc.id}` });
      return;
    }
    seen.add(doc.id);
    documents.push(doc);
  };
  for (const file of listFiles(dir)) {
    const rel = relative(dir, file);
    const ext = extname(file).toLowerCase();
    const content = readFileSync(file, 'utf8');
    if (ext === '.jsonl') {
      content.split('\n').forEach((raw, i) => {
        if (raw.trim() === '') return;
        try {
          const o = JSON.parse(raw) as Record<string, unknown>;
          if (typeof o.id !== 'string' || typeof o.title !== 'string' || typeof o.text !== 'string') {
            problems.push({ file: rel, line: i + 1, reason: 'id, title and text must be strings' });
            return;
          }
          add(
            {
              id: o.id,
              title: o.title,
              text: o.text,
              tags: Array.isArray(o.tags) ? o.tags.filter((t): t is string => typeof t === 'string') : [],
              url: typeof o.url === 'string' ? o.url : `cell0://corpus/${o.id}`,
              type: typeof o.type === 'string' ? o.type : 'web',
              source: rel,
              ...(typeof o.publishedAt === 'string' ? { publishedAt: o.publishedAt } : {}),
            },
            rel,
            i + 1,
          );
        } catch (err) {
          problems.push({ file: rel, line: i + 1, reason: `not JSON: ${(err as Error).message}` });
        }
      });
    } else {
      const heading = /^#\s+(.+)$/m.exec(content);
      const id = rel.replace(/\\/g, '/').replace(/\.(md|txt)$/i, '');
      add(
        {
          id,
          title: heading?.[1]?.trim() ?? basename(file, ext),
          text: content.replace(/^#\s+.+$/m, '').trim(),
          tags: [],
          url: `cell0://corpus/${id}`,
          type: 'web',
          source: rel,
        },
        rel,
      );
    }
  }
  return { documents, problems };
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue;
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) out.push(...listFiles(p));
    else if (/\.(jsonl|md|txt)$/i.test(name) && !/^readme\.md$/i.test(name)) out.push(p);
  }
  return out;
}
