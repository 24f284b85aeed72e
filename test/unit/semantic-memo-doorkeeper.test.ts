import { analyzePrompt, canonicalize } from '../../shared/cache/semantic';
import { Doorkeeper } from '../../shared/cache/semantic/prompt-memo-doorkeeper';
import { MemoSlots } from '../../shared/cache/semantic/prompt-memo-slots';

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
  it('keeps an analysis from the third time its prompt is analysed, not the first or second', () => {
    const text = `Which ${Math.random().toString(36).slice(2)} laptops have the longest battery life?`;
    const first = analyzePrompt(text);
    const second = analyzePrompt(text);
    const third = analyzePrompt(text);
    expect(second).not.toBe(first);
    expect(third).not.toBe(second);
    expect(analyzePrompt(text)).toBe(third);
    expect(analyzePrompt(text)).toBe(third);
    expect(third.frame).toBe(first.frame);
  });

  it('keeps a canonical form for the guard to read right after the embedder', () => {
    const text = `How do I parse a CSV file in ${Math.random().toString(36).slice(2)}?`;
    const c = canonicalize(text);
    expect(canonicalize(text)).toBe(c);
  });
});

describe('MemoSlots', () => {
  it('answers a kept text from its slot until another text takes the slot', () => {
    const m = new MemoSlots<{ n: number }>(4);
    const texts = Array.from({ length: 64 }, (_, i) => `prompt ${i}`);
    const a = texts[0]!;
    const sa = m.slotOf(a);
    const va = { n: 0 };
    m.set(sa, a, va);
    expect(m.get(sa, a)).toBe(va);
    expect(m.get(m.slotOf('prompt 0'), 'prompt 0')).toBe(va);
    // a text of another slot leaves it; one of the same slot replaces it
    const other = texts.find((t) => t !== a && m.slotOf(t) !== sa)!;
    m.set(m.slotOf(other), other, { n: 1 });
    expect(m.get(sa, a)).toBe(va);
    const rival = texts.find((t) => t !== a && m.slotOf(t) === sa)!;
    m.set(sa, rival, { n: 2 });
    expect(m.get(sa, a)).toBeUndefined();
    expect(m.get(sa, rival)).toEqual({ n: 2 });
  });

  it('spreads texts over its slots', () => {
    const m = new MemoSlots<number>(64);
    const used = new Set(Array.from({ length: 640 }, (_, i) => m.slotOf(`How do I do thing number ${i}?`)));
    expect(used.size).toBe(64);
  });

  it('rejects a slot count that is not a power of two', () => {
    expect(() => new MemoSlots(24)).toThrow(/"slots" must be a power of two/);
  });
});
