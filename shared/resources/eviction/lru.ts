import { EvictionPolicy } from '../types.js';
import { type EvictionStrategy } from './eviction-strategy.js';

/** LRU: the least recently used model goes first. */
export const lru: EvictionStrategy = {
  policy: EvictionPolicy.LRU,
  key: (e) => e.info.lastAccessAt,
};
