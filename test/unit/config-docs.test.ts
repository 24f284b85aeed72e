import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ENV, type EnvVar } from '../../shared/config/config';
import { CONFIG_DOCS_PATH, renderConfigDocs } from '../../shared/config/config-docs';
import { ENV_SECTIONS } from '../../shared/config/env-sections';

const ROOT = join(__dirname, '..', '..');

/** The first line where two texts differ, for a message a person can act on. */
function firstDifference(a: string, b: string): string {
  const la = a.split('\n');
  const lb = b.split('\n');
  for (let i = 0; i < Math.max(la.length, lb.length); i++)
    if (la[i] !== lb[i])
      return `line ${i + 1}:\n  committed: ${la[i] ?? '(end of file)'}\n  generated: ${lb[i] ?? '(end of file)'}`;
  return '(no difference)';
}

/** The text of a markdown line outside its inline code spans. */
function outsideCode(line: string): string {
  return line.replace(/`[^`]*`/g, '');
}

describe('docs/configuration.md', () => {
  const rendered = renderConfigDocs();

  it('is what `npm run docs:config` generates from the ENV registry', () => {
    const committed = readFileSync(join(ROOT, CONFIG_DOCS_PATH), 'utf8');
    if (committed !== rendered)
      throw new Error(
        `${CONFIG_DOCS_PATH} is stale: the ENV registry (shared/config/config.ts) changed since it was ` +
          `generated. Run \`npm run docs:config\` and commit the result.\nFirst difference at ` +
          firstDifference(committed, rendered),
      );
  });

  it('lists every variable once, in a section, with its default', () => {
    for (const [name, spec] of Object.entries(ENV) as [string, EnvVar][]) {
      const rows = rendered.split('\n').filter((l) => l.startsWith(`| \`${name}\` `));
      expect({ name, rows: rows.length }).toEqual({ name, rows: 1 });
      const defaultCell = rows[0]!.split(' | ')[1]!.trim();
      expect({ name, defaultCell }).toEqual({
        name,
        defaultCell: spec.default === undefined ? '(unset)' : `\`${spec.default}\``,
      });
      expect(rendered).toContain(`## ${ENV_SECTIONS[spec.section].title}\n`);
    }
  });

  it('is stable under prettier (which `npm run lint` checks), so no one reformats it by hand', () => {
    // The prettier CLI in a child process: its API loads ESM that jest's module system cannot.
    const formatted = execFileSync(
      process.execPath,
      [join(ROOT, 'node_modules', 'prettier', 'bin', 'prettier.cjs'), '--stdin-filepath', CONFIG_DOCS_PATH],
      { cwd: ROOT, input: rendered, encoding: 'utf8' },
    );
    if (formatted !== rendered)
      throw new Error(
        `prettier rewrites the generated page (a doc line holds markdown it reads differently, e.g. ` +
          `*...* as emphasis). ${firstDifference(rendered, formatted)}`,
      );
  });

  it('shows values, patterns and placeholders as code, never as markdown or HTML', () => {
    // Outside code spans, "qwen2.5:*=ollama,gpt-*=openai" turned into emphasis and "ollama:<model>" into an
    // (invisible) HTML tag in the hand-written table this page replaces.
    for (const line of rendered.split('\n').filter((l) => l.startsWith('| `'))) {
      const text = outsideCode(line)
        .replace('**Secret.**', '')
        .replace(/\\[\\*_<>|[\]]/g, '');
      expect({ line, unescaped: text.match(/[*_<>]/g) ?? [] }).toEqual({ line, unescaped: [] });
    }
  });
});
