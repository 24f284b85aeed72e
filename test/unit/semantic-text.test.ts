import { normalizePrompt } from '../../shared/cache/semantic';
import { foldCompat, stem, tokenize } from '../../shared/cache/semantic/text';

describe('normalizePrompt (the exact key)', () => {
  it('folds case, whitespace and trailing punctuation', () => {
    const n = normalizePrompt('How do I reset my password?');
    expect(normalizePrompt('  how DO i   reset\tmy password ?! ')).toBe(n);
    expect(normalizePrompt('How do I reset my password.')).toBe(n);
    expect(normalizePrompt('How do I reset my password…')).toBe(n);
    expect(n).toBe('how do i reset my password');
  });

  it('folds curly quotes and full-width forms (NFKC)', () => {
    expect(normalizePrompt('Translate \u201cgood morning\u201d')).toBe(
      normalizePrompt('translate "good morning"'),
    );
    expect(normalizePrompt('ＡＢＣ　１２３')).toBe('abc 123');
  });

  it('keeps negations, digits, word order and inner punctuation', () => {
    expect(normalizePrompt('Is coffee not good?')).not.toBe(normalizePrompt('Is coffee good?'));
    expect(normalizePrompt("Why isn't it working")).not.toBe(normalizePrompt('Why is it working'));
    expect(normalizePrompt('Convert 5 km to miles')).not.toBe(normalizePrompt('Convert 50 km to miles'));
    expect(normalizePrompt('flights from Paris to Rome')).not.toBe(
      normalizePrompt('flights from Rome to Paris'),
    );
    expect(normalizePrompt('What is 2+2?')).toBe('what is 2+2');
    expect(normalizePrompt('Hello, world')).not.toBe(normalizePrompt('Hello world'));
  });

  it('keeps a "!" glued to a digit (a factorial)', () => {
    expect(normalizePrompt('What is 5!')).toBe('what is 5!');
    expect(normalizePrompt('What is 5!?')).toBe('what is 5!');
    expect(normalizePrompt('What is 5 !')).toBe('what is 5');
  });
});

describe('normalizePrompt: only meaning-preserving differences fold', () => {
  it('folds line-break styles, trailing white space, blank-line runs and common indentation', () => {
    const n = normalizePrompt('Explain:\n\n  a: 1\n  b: 2');
    expect(normalizePrompt('Explain:\r\n\r\n  a: 1\r\n  b: 2\r\n')).toBe(n);
    expect(normalizePrompt('  Explain:   \n\n\n\n    a: 1\n    b:   2  ')).toBe(n);
    expect(normalizePrompt('\n\nexplain:\f\n  a: 1\u2028  b: 2.')).toBe(n);
    expect(n).toBe('explain:\n\n  a: 1\n  b: 2');
  });

  it('keeps relative indentation, line breaks versus spaces, superscripts, control and format characters', () => {
    expect(normalizePrompt('if a:\n    b()\nc()')).not.toBe(normalizePrompt('if a:\n    b()\n    c()'));
    expect(normalizePrompt('a\tb\nc')).not.toBe(normalizePrompt('a\tb c'));
    expect(normalizePrompt('What is 10²')).not.toBe(normalizePrompt('What is 102'));
    expect(normalizePrompt('H₂O')).toBe('h₂o');
    expect(normalizePrompt('ｆｕｌｌ ﬁne')).toBe('full fine'); // NFKC still folds the rest
    for (const c of ['\u0000', '\u0007', '\u001b', '\u007f', '\u0085', '\u200d'])
      expect({ c, same: normalizePrompt(`say hi${c} now`) === normalizePrompt('say hi now') }).toEqual({
        c,
        same: false,
      });
  });
});

describe('tokenize / stem', () => {
  it('keeps numbers, codes, contractions and arrows as single tokens', () => {
    const t = tokenize("Don't convert 1,000.5 km of ISO-8601 in C++ or C# → v2.1 (10%)");
    expect(t.map((x) => x.text)).toEqual([
      "Don't",
      'convert',
      '1,000.5',
      'km',
      'of',
      'ISO-8601',
      'in',
      'C++',
      'or',
      'C#',
      '→',
      'v2.1',
      '10%',
    ]);
    expect(t.find((x) => x.text === '→')?.kind).toBe('arrow');
    expect(t.find((x) => x.text === '1,000.5')?.kind).toBe('num');
  });

  it('gives inflections one stem', () => {
    for (const w of ['reverses', 'reversed', 'reversing']) expect(stem(w)).toBe(stem('reverse'));
    expect(stem('studies')).toBe(stem('study'));
    expect(stem('stopped')).toBe(stem('stop'));
    expect(stem('class')).toBe('class');
  });
});

describe('tokenize: the scan of three sticky patterns', () => {
  // The tokens as one global regex of the three alternatives (number, arrow, word) finds them with exec():
  // what tokenize() did before it scanned with the three patterns one position at a time.
  const REFERENCE =
    /([-+]?(?:\d+(?:[.,]\d+)*|[.,]\d+)%?(?![\p{L}\d_]))|(->|=>|→|⇒|<-|←|⟶)|([\p{L}\p{N}_]+(?:['][\p{L}]+)*(?:[-./_][\p{L}\p{N}_]+(?:['][\p{L}]+)*)*(?:\+\+|#)?)/gu;
  const reference = (text: string) => {
    const s = foldCompat(text)
      .replace(/[\u2018\u2019\u201a\u201b\u2032]/g, "'")
      .replace(/[\u201c\u201d\u201e\u00ab\u00bb]/g, '"');
    const out: { text: string; lower: string; kind: string; start: number }[] = [];
    REFERENCE.lastIndex = 0;
    for (let m = REFERENCE.exec(s); m !== null; m = REFERENCE.exec(s))
      out.push({
        text: m[0],
        lower: m[0].toLowerCase(),
        kind: m[1] !== undefined ? 'num' : m[2] !== undefined ? 'arrow' : 'word',
        start: m.index,
      });
    return out;
  };

  it('finds the tokens the single regex finds, on edge cases', () => {
    for (const text of [
      '3.5x and 3.5 x, .5kg, -2 <- +4% => 1,000,000.25 ->x',
      "rock'n'roll isn't O'Brien's a-b.c/d_e C++ F# x#y 2nd 10th",
      'Ⅻ ²₁ 日本語 😀word 𝐀𝐁 \ud800 alone \udc00 ⟶⇒← ﬁle Ａｂｃ',
      '',
      '   ',
      '-',
      '...,,,',
    ])
      expect(tokenize(text)).toEqual(reference(text));
  });

  it('finds the tokens the single regex finds, on random strings of a tricky alphabet', () => {
    const alphabet = [
      ...'aZéß10.,-+%\'_/# \t\nxCint<=>?!"()$&…',
      '’',
      '→',
      '⇒',
      '←',
      '⟶',
      '٣',
      '²',
      '₁',
      'Ⅻ',
      'ﬁ',
      'Ａ',
      '日',
      '😀',
      '𝐀',
      '\ud800',
      '\udc00',
    ];
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let i = 0; i < 20000; i++) {
      let text = '';
      const len = 1 + Math.floor(rand() * 14);
      for (let k = 0; k < len; k++) text += alphabet[Math.floor(rand() * alphabet.length)];
      expect(tokenize(text)).toEqual(reference(text));
    }
  });
});

describe('tokenize: recent results shared', () => {
  it('gives the same tokens for a text tokenised again, and tokens of the text itself after many others', () => {
    const text = 'How many "moons" does Jupiter have -> 95?';
    const first = tokenize(text);
    expect(tokenize(text)).toBe(first); // the canonical form and the guard read one array
    for (let i = 0; i < 20; i++) tokenize(`other prompt number ${i}`);
    const again = tokenize(text);
    expect(again).not.toBe(first);
    expect(again).toEqual(first);
    expect(again.map((t) => t.lower)).toEqual([
      'how',
      'many',
      'moons',
      'does',
      'jupiter',
      'have',
      '->',
      '95',
    ]);
  });
});
