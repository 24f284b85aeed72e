import { EvictionPolicy } from '../types.js';
import { CostBasedPolicy } from './cost-based.js';
import { type EvictionStrategy } from './eviction-strategy.js';
import { fifo } from './fifo.js';
import { LfuPolicy } from './lfu.js';
import { lru } from './lru.js';
import { ttl } from './ttl.js';

export { type EvictionStrategy, type PolicyState } from './eviction-strategy.js';
export { CostBasedPolicy } from './cost-based.js';
export { LfuPolicy } from './lfu.js';
export { fifo } from './fifo.js';
export { lru } from './lru.js';
export { ttl } from './ttl.js';

/** One manager's set of policies (LFU and COST_BASED hold state of their own). */
export function createEvictionStrategies(opts: {
  lfuHalfLifeMs: number;
}): Readonly<Record<EvictionPolicy, EvictionStrategy>> {
  return {
    [EvictionPolicy.LRU]: lru,
    [EvictionPolicy.LFU]: new LfuPolicy(opts.lfuHalfLifeMs),
    [EvictionPolicy.FIFO]: fifo,
    [EvictionPolicy.TTL]: ttl,
    [EvictionPolicy.COST_BASED]: new CostBasedPolicy(),
  };
}
