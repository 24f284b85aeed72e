/** How {@link sleep} waits. */
export interface SleepOptions {
  /** Aborting it ends the wait early: the promise rejects with the signal's reason and the timer is cleared. */
  signal?: AbortSignal;
  /**
   * Let the process exit while this sleep is pending (the timer is `unref()`'d). For waits that only bound
   * something else (a close racing a deadline); a sleep the caller must wake up from stays referenced.
   * Default false.
   */
  unref?: boolean;
}

/**
 * Resolves after `ms` (at once for ms <= 0); rejects with the signal's reason if it aborts first. The one
 * sleep of the code base: every wait on a timer goes through it.
 */
export function sleep(ms: number, options: SleepOptions = {}): Promise<void> {
  const { signal, unref = false } = options;
  if (signal?.aborted) return Promise.reject(signal.reason as Error);
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (unref) timer.unref();
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Waits for `p` to settle, at most `ms`; resolves true when it settled in time (fulfilled or rejected),
 * false on the timeout. Never rejects, and clears its timer either way.
 */
export async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const ac = new AbortController();
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => true,
      ),
      sleep(ms, { signal: ac.signal, unref: true }).then(
        () => false,
        () => false,
      ),
    ]);
  } finally {
    ac.abort();
  }
}
