import { performance } from 'node:perf_hooks';
import { sleep } from '../sleep.js';

/**
 * The time a token bucket runs on. The in-process bucket refills and stamps its grants on `now()`; both
 * buckets measure their callers' waits and sleep until a grant is due on it (a fleet bucket's grant times
 * come from Redis). Tests inject a manual clock so that what is asserted does not depend on how busy the
 * host is.
 */
export interface BucketClock {
  /** Milliseconds since the epoch, never going backwards (fractions allowed). */
  now(): number;
  /** Resolves once `ms` have passed on this clock; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * The process's monotonic clock, in epoch ms. Timers take whole milliseconds and may fire a little early,
 * and a permit must never be used before its grant time: sleep() sleeps again for whatever is left.
 */
export const systemClock: BucketClock = {
  now: () => performance.timeOrigin + performance.now(),
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    const until = performance.now() + ms;
    for (let left = ms; left > 0; left = until - performance.now()) await sleep(Math.ceil(left), { signal });
  },
};
