import { layoutOnlyDifference } from '../../shared/cache/semantic/semantic-hit';

/** The definition the in-place comparison must keep: equal once every `\s` character is removed. */
function byRegex(a: string, b: string): boolean {
  return a !== b && a.replace(/\s+/g, '') === b.replace(/\s+/g, '');
}

describe('layoutOnlyDifference', () => {
  it('skips exactly the characters \\s matches, for every UTF-16 code unit', () => {
    for (let c = 0; c <= 0xffff; c++) {
      const ch = String.fromCharCode(c);
      expect([c, layoutOnlyDifference(`a${ch}b`, 'ab')]).toEqual([c, /\s/.test(ch)]);
    }
  });

  it('answers as the regex definition on edge cases', () => {
    const cases: [string, string][] = [
      ['', ''],
      ['', ' '],
      [' ', '\n'],
      ['a b', 'ab'],
      ['ab', 'a b'],
      ['a\n  b', 'a b'],
      ['a b', 'a c'],
      ['ab ', 'ab'],
      ['ab', 'abc'],
      ['abc', 'ab '],
      ['x\u00a0y', 'xy'],
      ['x\u200by', 'xy'], // zero-width space is not white space
      ['\ud83d\ude00 a', '\ud83d\ude00a'],
    ];
    for (const [a, b] of cases) {
      expect([a, b, layoutOnlyDifference(a, b)]).toEqual([a, b, byRegex(a, b)]);
      expect([b, a, layoutOnlyDifference(b, a)]).toEqual([b, a, byRegex(b, a)]);
    }
  });

  it('answers as the regex definition on random strings', () => {
    const alphabet = ['a', 'b', ' ', '\n', '\t', '\u00a0', '\u3000', '\u200b', '\ufeff', '\ud83d', '\ude00'];
    let seed = 12345;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / (1 << 24);
    const make = () => {
      let s = '';
      const n = Math.floor(rnd() * 8);
      for (let i = 0; i < n; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
      return s;
    };
    let layoutOnly = 0;
    for (let k = 0; k < 20000; k++) {
      const a = make();
      // half the pairs share their non-space characters, so both answers occur
      const b =
        rnd() < 0.5 ? a.replace(/\s/g, () => (rnd() < 0.5 ? '' : ' ')) + (rnd() < 0.3 ? '\n' : '') : make();
      const want = byRegex(a, b);
      if (want) layoutOnly++;
      expect([a, b, layoutOnlyDifference(a, b)]).toEqual([a, b, want]);
    }
    expect(layoutOnly).toBeGreaterThan(1000);
  });
});
