import { EvictionPolicy } from '../types.js';
import { type EvictionStrategy } from './eviction-strategy.js';

/** TTL: models past their keep-alive go first, longest expired first, then the soonest to expire. */
export const ttl: EvictionStrategy = {
  policy: EvictionPolicy.TTL,
  // One key does both: expiry time, earliest first.
  key: (e) => e.info.lastAccessAt + e.info.keepAliveMs,
};
