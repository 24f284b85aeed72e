/**
 * The most arrivals seen within any sliding window of `windowMs` (the window (t - windowMs, t] ending at
 * each arrival t, which is where the maximum is always reached). Keeps the arrival times of the current
 * window in a deque: O(1) amortised per arrival.
 */
export class ArrivalWindow {
  private times: number[] = [];
  private head = 0;
  private maxCount = 0;

  constructor(private readonly windowMs = 1000) {}

  /** Records an arrival at `nowMs` (a monotonic clock; times must not go backwards). */
  record(nowMs: number): void {
    while (this.head < this.times.length && (this.times[this.head] ?? 0) <= nowMs - this.windowMs) {
      this.head++;
    }
    // Drop the consumed front now and then, so the array does not grow without bound.
    if (this.head >= 1024 && this.head * 2 >= this.times.length) {
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    this.times.push(nowMs);
    this.maxCount = Math.max(this.maxCount, this.times.length - this.head);
  }

  /** The largest number of arrivals within one window since creation or the last reset. */
  get max(): number {
    return this.maxCount;
  }

  /** Forgets every arrival. */
  reset(): void {
    this.times = [];
    this.head = 0;
    this.maxCount = 0;
  }
}
