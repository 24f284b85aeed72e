/** A signal that aborts when either of two does, and the undoing of that link. */
export interface LinkedSignal {
  /** Aborted, with the first source's reason, as soon as either source is. */
  readonly signal: AbortSignal;
  /** Stops following the sources (their listeners removed): call it when the signal's user is done. */
  unlink(): void;
}

/**
 * `AbortSignal.any([a, b])` for a signal with one user and a known end: one plain AbortController fed by a
 * listener on each source. Node's composite signal costs about 15 µs more to make with a listener (it holds
 * its sources weakly, through a FinalizationRegistry), and every read of its `aborted` (undici and the
 * backend call read it as each chunk arrives) first refreshes it from its sources, several times the cost of
 * a plain signal's.
 */
export function linkedSignal(a: AbortSignal, b: AbortSignal): LinkedSignal {
  const ac = new AbortController();
  if (a.aborted || b.aborted) {
    ac.abort(a.aborted ? a.reason : b.reason);
    return { signal: ac.signal, unlink: () => undefined };
  }
  const onA = (): void => {
    unlink();
    ac.abort(a.reason);
  };
  const onB = (): void => {
    unlink();
    ac.abort(b.reason);
  };
  const unlink = (): void => {
    a.removeEventListener('abort', onA);
    b.removeEventListener('abort', onB);
  };
  a.addEventListener('abort', onA, { once: true });
  b.addEventListener('abort', onB, { once: true });
  return { signal: ac.signal, unlink };
}
