import { normalizePrompt } from '../../shared/cache/semantic';
import { stem, tokenize } from '../../shared/cache/semantic/text';

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
