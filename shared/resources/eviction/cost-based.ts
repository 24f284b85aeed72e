import { EvictionPolicy } from '../types.js';
import { type EvictionStrategy, type PolicyState } from './eviction-strategy.js';

const GB = 1e9;

/**
 * COST_BASED (GDSF, greedy-dual-size-frequency): H = L + frequency × load time / size in GB. The model
 * cheapest to lose per byte it frees goes first; L, the inflation, is the H of the last victim, so newly
 * loaded models compete on equal terms with ones that earned their H.
 */
export class CostBasedPolicy implements EvictionStrategy {
  readonly policy = EvictionPolicy.COST_BASED;
  /** GDSF inflation L: the H of the last victim (never lowered). */
  private inflation = 0;

  key(e: PolicyState): number {
    return e.h;
  }

  onAccess(e: PolicyState): void {
    e.freq++;
    e.h = this.priority(e);
  }

  onLoad(e: PolicyState): void {
    e.freq = 0;
    e.h = this.priority(e);
  }

  onEvictForRoom(e: PolicyState): void {
    // Kept monotone: with priorities or pins the victim is not always the minimum H, and a falling L would
    // favour newly loaded models over ones that earned their H.
    this.inflation = Math.max(this.inflation, e.h);
  }

  private priority(e: PolicyState): number {
    return this.inflation + (Math.max(1, e.freq) * e.info.loadMs) / (e.info.memoryBytes / GB);
  }
}
