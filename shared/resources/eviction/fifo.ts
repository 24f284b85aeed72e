import { EvictionPolicy } from '../types.js';
import { type EvictionStrategy } from './eviction-strategy.js';

/** FIFO: the model loaded first goes first, however much it is used. */
export const fifo: EvictionStrategy = {
  policy: EvictionPolicy.FIFO,
  key: (e) => e.info.loadedAt,
};
