import { analyzePrompt, canonicalize } from '../../shared/cache/semantic';
import { Doorkeeper } from '../../shared/cache/semantic/prompt-memo-doorkeeper';

describe('Doorkeeper', () => {
  it('tells a text met again from one met for the first time', () => {
    const d = new Doorkeeper();
    expect(d.metAgain('How do I reset my password?')).toBe(false);
    expect(d.metAgain('how do I reset my password?')).toBe(false);
    expect(d.metAgain('How do I reset my password?')).toBe(true);
    expect(d.metAgain('how do I reset my password?')).toBe(true);
    expect(d.metAgain('')).toBe(false);
    expect(d.metAgain('')).toBe(true);
  });

  it('forgets a text once another took its slot', () => {
    const d = new Doorkeeper(1);
    expect(d.metAgain('a')).toBe(false);
    expect(d.metAgain('b')).toBe(false);
    expect(d.metAgain('a')).toBe(false);
    expect(d.metAgain('a')).toBe(true);
  });

  it('recognises most of the last texts when fewer came after them than it has slots', () => {
    const d = new Doorkeeper(1024);
    const texts = Array.from({ length: 256 }, (_, i) => `prompt number ${i} about topic ${i * 7}`);
    for (const t of texts) d.metAgain(t);
    const again = texts.filter((t) => d.metAgain(t)).length;
    // 256 texts in 1,024 slots: about 22% share their slot with another (evenly spread hashes: 1 - (1 - 1/1024)^255),
    // and checking them again takes it back and forth
    expect(again).toBeGreaterThan(180);
  });

  it('rejects a slot count that is not a power of two', () => {
    expect(() => new Doorkeeper(1000)).toThrow(/"slots" must be a power of two/);
    expect(() => new Doorkeeper(0)).toThrow(/"slots"/);
  });
});

describe('the guard and canonical-form memos', () => {
  it('keeps an analysis from the second time its prompt is analysed, not the first', () => {
    const text = `Which ${Math.random().toString(36).slice(2)} laptops have the longest battery life?`;
    const first = analyzePrompt(text);
    const second = analyzePrompt(text);
    expect(second).not.toBe(first);
    expect(analyzePrompt(text)).toBe(second);
    expect(second.frame).toBe(first.frame);
  });

  it('keeps a canonical form for the next few prompts only', () => {
    const text = `How do I parse a CSV file in ${Math.random().toString(36).slice(2)}?`;
    const c = canonicalize(text);
    expect(canonicalize(text)).toBe(c);
    for (let i = 0; i < 32; i++) canonicalize(`How do I parse a JSON file number ${i}?`);
    const again = canonicalize(text);
    expect(again).not.toBe(c);
    expect(again).toEqual(c);
  });
});
