import { EvictionPolicy } from '../types.js';
import { type EvictionStrategy, type PolicyState } from './eviction-strategy.js';

/**
 * LFU with decay: each access weighs 1, halving every `halfLifeMs`, so a model used heavily long ago does not
 * outrank one in use now. The least frequently used goes first.
 */
export class LfuPolicy implements EvictionStrategy {
  readonly policy = EvictionPolicy.LFU;

  constructor(private readonly halfLifeMs: number) {}

  key(e: PolicyState, now: number): number {
    return this.scoreAt(e, now);
  }

  onAccess(e: PolicyState, now: number): void {
    e.lfuScore = this.scoreAt(e, now) + 1;
    e.lfuAt = now;
  }

  private scoreAt(e: PolicyState, now: number): number {
    return e.lfuScore * 2 ** (-Math.max(0, now - e.lfuAt) / this.halfLifeMs);
  }
}
