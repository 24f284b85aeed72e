import {
  compareStreamIds,
  decodeEntry,
  encodeEntry,
  type TokenStreamEntry,
} from '../../shared/queues/token-stream';

/* The token stream's entries as the worker writes them and the readers decode them, and stream id order. */

describe('token stream entries', () => {
  test('decodeEntry reads back what encodeEntry wrote, and nothing it did not', () => {
    const entries: TokenStreamEntry[] = [
      { kind: 'start', attempt: 2 },
      { kind: 'text', seq: 0, text: '' },
      { kind: 'text', seq: 7, text: 'k t n "\u0000 é' },
      {
        kind: 'end',
        finishReason: 'length',
        model: 'llama3',
        usage: { promptTokens: 3, completionTokens: 4, totalTokens: 7 },
      },
    ];
    for (const e of entries) expect(decodeEntry(encodeEntry(e))).toEqual(e);
    // Fields in another order (XADD keeps the writer's, but a reader does not rely on it).
    expect(decodeEntry(['t', 'hi', 'n', '3', 'k', 't'])).toEqual({ kind: 'text', seq: 3, text: 'hi' });
    expect(decodeEntry(['k', 'e', 'u', 'not json'])).toEqual({
      kind: 'end',
      finishReason: 'stop',
      model: '',
      usage: { promptTokens: 0, completionTokens: 0, totalTokens: 0 },
    });
    expect(decodeEntry(['k', 't', 'n', 'x', 't', 'a'])).toBeUndefined();
    expect(decodeEntry(['k', 't', 'n', '1'])).toBeUndefined();
    expect(decodeEntry(['k', 'z'])).toBeUndefined();
    expect(decodeEntry(['w', '1'])).toBeUndefined();
    expect(decodeEntry([])).toBeUndefined();
  });

  test('compareStreamIds orders ids by time, then sequence, as numbers', () => {
    expect(compareStreamIds('5-1', '5-1')).toBe(0);
    expect(compareStreamIds('0-0', '1-0')).toBeLessThan(0);
    expect(compareStreamIds('10-0', '9-5')).toBeGreaterThan(0);
    expect(compareStreamIds('1700000000000-2', '1700000000000-10')).toBeLessThan(0);
    expect(compareStreamIds('1700000000001-0', '1700000000000-99')).toBeGreaterThan(0);
    expect(compareStreamIds('7', '7-0')).toBe(0);
    expect(compareStreamIds('7-1', '7')).toBeGreaterThan(0);
  });
});
