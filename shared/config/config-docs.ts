import { ENV, type EnvVar } from './config.js';
import { ENV_SECTIONS } from './env-sections.js';

/*
 * docs/configuration.md is rendered from the ENV registry, so the reference cannot drift from the code:
 * `npm run docs:config` writes it, and a test fails when the committed file differs from a fresh render.
 * The output is already in prettier's markdown form (tables padded to their widest cell), so
 * `prettier --check` accepts it as written.
 */

/** The page's path in the repository. */
export const CONFIG_DOCS_PATH = 'docs/configuration.md';

const HEADER = `<!-- Generated from the ENV registry in shared/config/config.ts by \`npm run docs:config\`. Do not edit by hand: change the registry and run it again. -->`;

const INTRO = [
  '# Configuration',
  '',
  'cell0 reads only environment variables. A `.env` file in the working directory is read too; a variable',
  'already set in the environment wins over it. An empty value counts as unset. Invalid values stop the',
  'process with exit code 2 and a message naming each variable and what it expected.',
  '[`.env.example`](../.env.example) lists every variable with its default, ready to copy to `.env`.',
  '',
  'Variables marked **secret** never have their value echoed in those messages.',
];

/**
 * The configuration reference as markdown: one section per ENV_SECTIONS entry (in that order), one row
 * per variable (in registry order). Pure: same registry, same text.
 */
export function renderConfigDocs(
  env: Readonly<Record<string, EnvVar>> = ENV,
  sections: Readonly<Record<string, { title: string; about: string; see: string }>> = ENV_SECTIONS,
): string {
  const bySection = new Map<string, [string, EnvVar][]>(Object.keys(sections).map((s) => [s, []]));
  for (const [name, spec] of Object.entries(env)) {
    const rows = bySection.get(spec.section);
    if (!rows) throw new Error(`${name}: section "${spec.section}" is not in ENV_SECTIONS`);
    rows.push([name, spec]);
  }
  const out: string[] = [HEADER, '', ...INTRO, ''];
  const used = [...bySection].filter(([, rows]) => rows.length > 0);
  for (const [id] of used) {
    const s = sections[id]!;
    out.push(`- [${s.title}](#${slug(s.title)}): ${s.about}`);
  }
  for (const [id, rows] of used) {
    const s = sections[id]!;
    out.push('', `## ${s.title}`, '', `${s.about} More in [${s.see}](${s.see}).`, '');
    out.push(
      ...table(
        ['Variable', 'Default', 'What it does'],
        rows.map(([name, spec]) => [
          `\`${name}\``,
          spec.default === undefined ? '(unset)' : code(spec.default),
          (spec.secret ? '**Secret.** ' : '') + cell(spec.doc),
        ]),
      ),
    );
  }
  return out.join('\n') + '\n';
}

/** A markdown table as prettier prints it: every column padded to its widest cell, left-aligned. */
function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(3, width(h), ...rows.map((r) => width(r[i]!))));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => c + ' '.repeat(widths[i]! - width(c))).join(' | ')} |`;
  return [line(head), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)];
}

function width(s: string): number {
  return [...s].length;
}

/** GitHub's anchor of a heading. */
function slug(title: string): string {
  return title
    .toLowerCase()
    .replace(/[^a-z0-9 -]/g, '')
    .replace(/ /g, '-');
}

/** Inline code that survives a table cell (a pipe would end the cell). */
function code(text: string): string {
  return '`' + text.replace(/\|/g, '\\|') + '`';
}

/**
 * A one-line doc as a table cell. Values, patterns, paths, URLs and variable names become inline code, so
 * markdown does not read `*` as emphasis or `<model>` as an HTML tag (both once garbled the hand-written
 * table); the rest is escaped.
 */
function cell(doc: string): string {
  return doc
    .split(/(`[^`]*`)/)
    .map((part, i) =>
      i % 2 === 1
        ? code(part.slice(1, -1))
        : part.replace(/\S+/g, (token) => {
            const [, lead, core, trail] = /^(\(*)(.*?)([),.;]*)$/.exec(token)!;
            return looksLikeCode(core!) ? `${lead}${code(core!)}${trail}` : escapeText(token);
          }),
    )
    .join('');
}

function looksLikeCode(t: string): boolean {
  return (
    /^(CELL0_|REDIS_URL)/.test(t) ||
    /^[a-z][a-z0-9+]*:\/\//.test(t) ||
    (t.length > 1 && /^\//.test(t)) ||
    t === '*' ||
    (t.length > 1 && /[=*<>|@]/.test(t)) ||
    /^[a-z]+:[/<]/.test(t)
  );
}

function escapeText(t: string): string {
  return t.replace(/([\\*_<>|[\]])/g, '\\$1');
}
