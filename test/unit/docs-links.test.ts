import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

/*
 * Every relative link of README.md and docs/*.md points at a file that exists and, with a #fragment, at a
 * heading of that file (GitHub's anchor of it), so moving or renaming a section cannot leave dead links.
 */

const ROOT = join(__dirname, '..', '..');
const PAGES = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/`/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(join(ROOT, file), 'utf8').replace(/^```[\s\S]*?^```/gm, '');
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!)));
}

/** The links of a page outside code blocks and code spans: [text](target). */
function linksOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8')
    .replace(/^```[\s\S]*?^```/gm, '')
    .replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

describe('links between README.md and docs/', () => {
  it.each(PAGES)('%s links only to files and headings that exist', (page) => {
    const dead: string[] = [];
    for (const link of linksOf(page)) {
      if (/^[a-z]+:/.test(link)) continue;
      const [path, fragment] = link.split('#') as [string, string | undefined];
      const target = path === '' ? page : relative(ROOT, normalize(join(ROOT, dirname(page), path)));
      if (!existsSync(join(ROOT, target))) dead.push(`${link}: no file ${target}`);
      else if (fragment !== undefined && target.endsWith('.md') && !anchorsOf(target).has(fragment))
        dead.push(`${link}: no heading #${fragment} in ${target}`);
    }
    expect({ page, dead }).toEqual({ page, dead: [] });
  });
});
