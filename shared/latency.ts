/** Latency summary: mean over everything recorded, percentiles over the last `size` samples. */
export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

/**
 * A fixed-size ring of latency samples (ms). Recording is O(1) and allocation-free; percentiles sort a copy
 * of the ring, so read them for metrics, not per call.
 */
export class LatencyWindow {
  private readonly ring: Float64Array;
  private count = 0;
  private sum = 0;

  constructor(size = 1024) {
    if (!Number.isInteger(size) || size < 1)
      throw new TypeError(`LatencyWindow: size must be an integer >= 1`);
    this.ring = new Float64Array(size);
  }

  record(ms: number): void {
    const v = Number.isFinite(ms) && ms >= 0 ? ms : 0;
    this.sum += v;
    this.ring[this.count % this.ring.length] = v;
    this.count++;
  }

  summary(): LatencySummary {
    const n = Math.min(this.count, this.ring.length);
    const sorted = Array.from(this.ring.subarray(0, n)).sort((a, b) => a - b);
    const pct = (p: number): number => (n === 0 ? 0 : round(sorted[Math.min(n - 1, Math.floor(p * n))] ?? 0));
    return {
      count: this.count,
      meanMs: this.count === 0 ? 0 : round(this.sum / this.count),
      p50Ms: pct(0.5),
      p95Ms: pct(0.95),
      p99Ms: pct(0.99),
    };
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
