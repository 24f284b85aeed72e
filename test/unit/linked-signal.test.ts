import { linkedSignal } from '../../shared/linked-signal';

describe('linkedSignal', () => {
  it('aborts with the reason of whichever source aborts first, once', () => {
    for (const first of [0, 1]) {
      const sources = [new AbortController(), new AbortController()] as const;
      const { signal } = linkedSignal(sources[0].signal, sources[1].signal);
      const seen: unknown[] = [];
      signal.addEventListener('abort', () => seen.push(signal.reason));
      expect(signal.aborted).toBe(false);
      const reason = new Error(`source ${first}`);
      sources[first]!.abort(reason);
      sources[1 - first]!.abort(new Error('later'));
      expect(signal.aborted).toBe(true);
      expect(seen).toEqual([reason]);
    }
  });

  it('is aborted at once when a source already is', () => {
    const a = new AbortController();
    const reason = new Error('before');
    a.abort(reason);
    const { signal } = linkedSignal(new AbortController().signal, a.signal);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe(reason);
  });

  it('follows neither source once unlinked', () => {
    const a = new AbortController();
    const b = new AbortController();
    const { signal, unlink } = linkedSignal(a.signal, b.signal);
    unlink();
    a.abort();
    b.abort();
    expect(signal.aborted).toBe(false);
  });
});
