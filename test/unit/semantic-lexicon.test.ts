import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalize } from '../../shared/cache/semantic';
import type * as LexiconModuleType from '../../shared/cache/semantic/lexicon';
import {
  correctTypo,
  groupOf,
  isKnownWord,
  lemmaOf,
  lexicon,
  LEXICON_VERSION,
  termGroup,
} from '../../shared/cache/semantic/lexicon';

const ROOT = join(__dirname, '..', '..');

describe('the lexicon (data/lexicon)', () => {
  it('loads the WordNet words, irregular forms and synonym groups', () => {
    const lx = lexicon();
    expect(lx.words.size).toBeGreaterThan(60_000);
    expect(lx.irregular.get('teeth')).toBe('tooth');
    expect(groupOf('purchase')).toBe(groupOf('buy'));
    expect(groupOf('cutting_board')).toBe(groupOf('chopping_board'));
    expect(LEXICON_VERSION).toMatch(/^lx\d+$/);
  });

  it('keeps every word of the hand-written list in one group only, and no antonyms together', () => {
    const text = readFileSync(join(ROOT, 'data', 'lexicon', 'synonyms.txt'), 'utf8');
    const seen = new Map<string, string>();
    for (const line of text.split('\n')) {
      if (!line.trim() || line.startsWith('#')) continue;
      for (const w of line.trim().split(/\s+/)) {
        expect({ w, twice: seen.has(w) ? `${seen.get(w)} / ${line}` : undefined }).toEqual({
          w,
          twice: undefined,
        });
        seen.set(w, line);
      }
    }
    for (const [a, b] of [
      ['buy', 'sell'],
      ['increase', 'decrease'],
      ['cheap', 'expensive'],
      ['before', 'after'],
      ['import', 'export'],
      ['walnut', 'maple'],
    ])
      expect(groupOf(lemmaOf(a!)) ?? a).not.toBe(groupOf(lemmaOf(b!)) ?? b);
  });

  it.each([
    ['teeth', 'tooth'],
    ['went', 'go'],
    ['repaired', 'repair'],
    ['ribbed', 'rib'],
    ['bigger', 'big'],
    ['cities', 'city'],
    ['wobbles', 'wobble'],
    ['colour', 'color'],
    ['news', 'news'],
    ['buildings', 'building'],
  ])('lemma of %s is %s', (form, lemma) => {
    expect(lemmaOf(form)).toBe(lemma);
  });

  it.each([
    ['recesion', 'recession'],
    ['tenis', 'tennis'],
    ['seeeds', 'seeds'],
    ['outdor', 'outdoor'],
    ['recieve', 'receive'],
    ['morgage', 'mortgage'],
  ])('corrects the typo %s to %s', (typo, word) => {
    expect(correctTypo(typo)).toBe(word);
  });

  it('reads a two-word term by its first word as the joined string would read it (termGroup)', () => {
    const lx = lexicon();
    let terms = 0;
    for (const [w, group] of lx.group) {
      const us = w.indexOf('_');
      if (us < 0) continue;
      terms++;
      expect({ w, g: termGroup(w.slice(0, us), w.slice(us + 1)) }).toEqual({ w, g: group });
    }
    expect(terms).toBeGreaterThan(1000);
    expect(termGroup('cutting', 'board')).toBe(groupOf('chopping_board'));
    // no term: the same undefined as the joined string's lookup, also for a first part holding "_"
    for (const [a, b] of [
      ['cutting', 'table'],
      ['zzyzx', 'board'],
      ['cutting_board', 'x'],
      ['get', 'rid'],
      ['get', 'rid_of'],
    ] as const)
      expect(termGroup(a, b)).toBe(groupOf(`${a}_${b}`));
  });

  it('lemmatises spellings and inflections as stored vectors were made (pinned, quirks included)', () => {
    // made with the regex-per-suffix lemmatiser, before the suffix tables by last letter and before words
    // with a digit and typo candidates were left out of the lemma memo: any change here changes vectors
    const pinned: [string, string][] = [
      ['colours', 'color'],
      ['organisation', 'organization'],
      ['organisations', 'organisation'],
      ['analysed', 'analyse'],
      ['analyse', 'analyze'],
      ['centres', 'centre'],
      ['theatre', 'theatre'],
      ['catalogue', 'catalogue'],
      ['defence', 'defense'],
      ['travelling', 'travel'],
      ['modelling', 'model'],
      ['labelled', 'label'],
      ['ribbed', 'rib'],
      ['stopping', 'stop'],
      ['bigger', 'big'],
      ['studies', 'study'],
      ['boxes', 'box'],
      ['churches', 'church'],
      ['teeth', 'tooth'],
      ['went', 'go'],
      ['watches', 'watch'],
      ['happiest', 'happy'],
      ['dowelling', 'doweling'],
      ['tilling', 'tile'],
      ['realised', 'realize'],
      ['realising', 'realise'],
      ['a1b2c3', 'a1b2c3'],
      ['b1-123', 'b1-123'],
      ['x-ray', 'x-ray'],
      ['well-known', 'well-known'],
    ];
    // twice: computed, then read from the memo (or computed again, for a word with a digit)
    for (let round = 0; round < 2; round++) expect(pinned.map(([w]) => [w, lemmaOf(w)])).toEqual(pinned);
    const typos: [string, string | undefined][] = [
      ['recieve', 'receive'],
      ['tenis', 'tennis'],
      ['seeeds', 'seeds'],
      ['wendsday', undefined],
      ['acommodate', 'accommodate'],
      ['definately', 'definitely'],
      ['recesion', 'recession'],
      ['zorblatt', undefined],
    ];
    expect(typos.map(([w]) => [w, correctTypo(w)])).toEqual(typos);
    // the hundreds of candidates tried are not kept as lemmas, and read the same when asked for
    expect(lemmaOf('recieves')).toBe('recieves');
    expect(isKnownWord('receives')).toBe(true);
  });

  it('leaves known words, short words and unknown names alone', () => {
    expect(correctTypo('capitol')).toBeUndefined(); // a word in its own right
    expect(correctTypo('teh')).toBe('the'); // a swap is tried even on three letters
    expect(correctTypo('xq')).toBeUndefined();
    expect(correctTypo('kubernetes')).toBeUndefined();
    expect(isKnownWord('repaired')).toBe(true);
    expect(isKnownWord('zzyzx')).toBe(false);
  });
});

describe('canonicalize', () => {
  const keys = (s: string): string[] =>
    canonicalize(s)
      .words.filter((w) => w.role === 'content' || w.role === 'head')
      .map((w) => w.key)
      .sort();

  it('expands contractions, drops possessives and politeness, fixes typos, maps synonyms', () => {
    expect(keys("What's the best way to fix my bike's wobbly wheel? Thanks a lot!")).toEqual(
      keys('What is the best way to repair the wobbly wheel of my bicycle?'),
    );
    expect(keys('Could you please explain how a VPN works?')).toEqual(keys('How does a VPN work?'));
    expect(keys('what causes gum recesion')).toEqual(keys('What causes gum recession?'));
  });

  it('reads a word the same wherever it was met first, and keeps a capital out of the lower-case fixes', () => {
    // lower case: fixed, lemma and group; met again (the word memo): the same
    const first = canonicalize('gum recesion and tooth decay in dogs').words;
    const again = canonicalize('in dogs tooth decay and gum recesion').words;
    const byLower = (ws: typeof first) => new Map(ws.map((w) => [w.text, [w.lower, w.lemma, w.key, w.role]]));
    expect(byLower(again)).toEqual(byLower(first));
    expect(byLower(first).get('recesion')).toEqual(['recession', 'recession', 'recession', 'content']);
    // the same word with a capital at a sentence start is only swap-fixed ("Explian"), never one edit away
    expect(canonicalize('Recesion: what causes it?').words[0]!.lower).toBe('recesion');
    expect(canonicalize('Explian recursion').words[0]!.lower).toBe('explain');
    // an ordinal in lower case is a number with its value, as a Roman numeral (a capital) is
    expect(canonicalize('the second world war').words[1]).toMatchObject({ role: 'number', key: '2' });
    expect(canonicalize('world war II').words[2]).toMatchObject({ role: 'number', key: '2' });
  });

  it.each([
    ['How many moons does Mars have?', ['count']],
    ['What is the number of moons of Mars?', ['count']],
    ['By whom was penicillin discovered?', ['who']],
    ['Which scientist discovered penicillin?', ['who']],
    ['What is the way to reset a router?', ['how']],
    ['What should I do to reset a router?', ['how']],
    ['What causes rust?', ['why']],
    ['What is the price of a Tesla?', ['amount']],
    ['How long is the Nile?', ['long']],
    ['What is the length of the Nile?', ['long']],
    ['How does salt affect ice?', ['effect']],
    ['How do a crocodile and an alligator differ?', ['difference']],
    ['In what year did the war end?', ['when']],
    ['What should I wear when hiking in the rain?', ['what']],
    ['Explain recursion.', []],
  ])('asks %s as %j', (prompt, asks) => {
    expect(canonicalize(prompt).asks).toEqual(asks);
  });
});

describe('the lexicon preload', () => {
  type LexiconModule = typeof LexiconModuleType;
  const fresh = (): LexiconModule => {
    let m: LexiconModule | undefined;
    jest.isolateModules(() => {
      m = jest.requireActual<LexiconModule>('../../shared/cache/semantic/lexicon');
    });
    return m!;
  };
  const sizes = (lx: ReturnType<LexiconModule['lexicon']>) => [
    lx.words.size,
    lx.irregular.size,
    lx.group.size,
    lx.termStarts.size,
    lx.terms.size,
  ];
  const full = sizes(lexicon());

  it('reads the whole lexicon in slices, one per event-loop turn, without a use', async () => {
    const m = fresh();
    m.preloadLexicon();
    expect(m.lexiconLoaded()).toBe(false); // nothing read in the caller's turn
    let turns = 0;
    while (!m.lexiconLoaded()) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      turns++;
    }
    expect(turns).toBeGreaterThan(1);
    expect(sizes(m.lexicon())).toEqual(full);
  });

  it('is finished at once by a use that comes before the preload is done, with the same content', async () => {
    const m = fresh();
    m.preloadLexicon();
    await new Promise<void>((resolve) => setImmediate(resolve)); // one slice read
    expect(sizes(m.lexicon())).toEqual(full);
    expect(m.lexiconLoaded()).toBe(true);
    expect(m.groupOf('repair')).toBe(groupOf('repair'));
  });
});
