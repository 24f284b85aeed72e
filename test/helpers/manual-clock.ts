import { type BucketClock } from '../../shared/rate-limit/bucket-clock';

interface Sleeper {
  at: number;
  resolve: () => void;
}

/** Lets every callback already queued (promise continuations, I/O callbacks, immediates) run. */
export function flush(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/**
 * Virtual time for code that takes a {@link BucketClock}: now() moves only when the test says so, and a
 * sleep() resolves when the clock reaches its wake time. What a test then asserts about times and waits is
 * exact, whatever the host's load.
 */
export class ManualClock implements BucketClock {
  private t: number;
  private sleepers: Sleeper[] = [];
  /** Every sleep() asked for, in ms, in order. */
  readonly sleeps: number[] = [];

  constructor(start = 1_800_000_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (ms <= 0) return Promise.resolve();
    this.sleeps.push(ms);
    return new Promise<void>((resolve, reject) => {
      const sleeper: Sleeper = {
        at: this.t + ms,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.sleepers = this.sleepers.filter((s) => s !== sleeper);
        reject(signal?.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.sleepers.push(sleeper);
      this.sleepers.sort((a, b) => a.at - b.at);
    });
  }

  /** Sleeps not yet woken. */
  get pending(): number {
    return this.sleepers.length;
  }

  /** Moves the clock `ms` forward, waking each sleeper due on the way at its own wake time, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await flush();
    for (let s = this.sleepers[0]; s !== undefined && s.at <= end; s = this.sleepers[0]) {
      this.sleepers.shift();
      this.t = Math.max(this.t, s.at);
      s.resolve();
      await flush();
    }
    this.t = end;
  }

  /**
   * Runs virtual time until `p` settles: lets pending callbacks run, then jumps to the next sleeper's wake
   * time, and so on. Throws when `p` is still pending with nobody asleep (it waits on something else).
   */
  async run<T>(p: Promise<T>): Promise<T> {
    let done = false;
    const watched = p.finally(() => {
      done = true;
    });
    watched.catch(() => undefined);
    for (;;) {
      await flush();
      if (done) return watched;
      const next = this.sleepers[0];
      if (!next) throw new Error('ManualClock.run: the promise waits on something other than this clock');
      await this.advance(next.at - this.t);
    }
  }
}
