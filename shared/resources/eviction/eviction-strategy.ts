import { type EvictionPolicy, type ModelInfo } from '../types.js';

/**
 * What the eviction policies keep per model. The manager updates every policy's state on every access and
 * load (so the policy can be switched at any time); only the current policy picks victims.
 */
export interface PolicyState {
  info: ModelInfo;
  /** LFU score as of lfuAt. */
  lfuScore: number;
  lfuAt: number;
  /** GDSF (COST_BASED): accesses since the last load, and the priority value H. */
  freq: number;
  h: number;
}

/** One eviction policy: how it orders candidates, and what it keeps up to date. */
export interface EvictionStrategy {
  readonly policy: EvictionPolicy;
  /** Sort key of a candidate: smallest is evicted first (after priority; ties by id). */
  key(e: PolicyState, now: number): number;
  /** One access to the model (after `info.lastAccessAt` and `info.accesses` are updated). */
  onAccess?(e: PolicyState, now: number): void;
  /** The model became resident (loaded, or found loaded), after `info` is updated. */
  onLoad?(e: PolicyState): void;
  /** The model was evicted under this policy to make room. */
  onEvictForRoom?(e: PolicyState): void;
}
