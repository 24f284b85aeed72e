import { type RedisConnection } from '../../redis/cluster.js';
import { defineScripts } from '../../redis/lua-scripts.js';

/** Candidates re-ranked by exact cosine per lookup (the top by shared bands). */
export const CANDIDATES = 24;
/** Slots sent to the candidate script: spares for candidates that turn out expired. */
export const RANKED = 40;
/**
 * Most guard refusals per lookup before giving up (each costs an analysis of the candidate, up to ~0.2 ms
 * when it reaches the canonical form). Candidates are tried best cosine first; at 100k entries
 * (bench:semantic) 3 serves exactly what 8 did (the same paraphrase hits, no false hit) with 40% fewer
 * analyses, and it cuts the lookups with many refusals, the CPU tail.
 */
export const GUARD_TRIES = 3;
/** Expired entries a lookup removes at most when it meets them among its candidates. */
export const STALE_CLEANUP = 16;
/**
 * How long a lookup reuses a candidate record it read before (lookup-records.ts), ms: a record of a live
 * entry changes only when its slot is given to another entry, and a slot freed while its entry may still be
 * live (evicted, invalidated, reported, stored again) is held for SLOT_HOLD_MS before reuse.
 */
export const RECORD_TRUST_MS = 20_000;
/**
 * How long the scripts hold such a slot, ms: the trust time and 10 s for clock skew between a process and
 * Redis (a process reads a record no later than its clock says, and trusts it from that reading).
 */
export const SLOT_HOLD_MS = RECORD_TRUST_MS + 10_000;
/** Expired entries a set() cleans up at most. */
export const EXPIRED_CLEANUP = 64;
/** Generations of band buckets a lookup reads at most (those expiring last; see semantic-set.lua). */
export const MAX_GENERATIONS = 8;
/** Share of stores that renew the scope's index records even when they opened no new generation. */
export const INDEX_SAMPLE = 1 / 32;
/** Entries invalidate() removes per script call (keeps each call short: RedisConnection runs scripts alone). */
export const CLEAR_CHUNK = 500;

const SCRIPTS = [
  'semantic-set',
  'semantic-candidates',
  'semantic-fetch',
  'semantic-lookup',
  'semantic-drop',
  'semantic-index',
  'semantic-touch',
  'semantic-mirror',
] as const;
export type Arg = string | number | Buffer;

/** The commands of shared/lua/semantic-*.lua; the variadic ones take their number of keys first. */
export interface SemCommands {
  /**
   * { evicted, expired removed, 1 when the stores opened a new generation, ms their generation lives, the
   * call's time (ms), then each entry's slot (-1: none) }.
   */
  cell0SemanticSet(numKeys: number, ...args: Arg[]): Promise<number[]>;
  /** { likeliest id, its value JSON, prompt, stored at (all empty when none), record1, record2, ... }. */
  cell0SemanticCandidatesBuffer(numKeys: number, ...args: Arg[]): Promise<Buffer[]>;
  cell0SemanticFetch(entryKey: string, lruKey: string, id: string): Promise<[string, string, string] | null>;
  /** Four fields per lookup: 1, value JSON, prompt, stored at, or 0, generations, buckets (or nil), nil. */
  cell0SemanticLookupBuffer(numKeys: number, ...args: Arg[]): Promise<(number | Buffer | null)[]>;
  cell0SemanticDrop(...args: Arg[]): Promise<[number, number]>;
  cell0SemanticIndex(indexKey: string, scopeHash: string, ttlMs: number): Promise<number>;
  cell0SemanticTouch(lruKey: string, id: string): Promise<number>;
  /** { last band stream entry id, number of generations, the generations, then every meta record }. */
  cell0SemanticMirror(
    gensKey: string,
    streamKey: string,
    metaKey: string,
    maxGenerations: number,
  ): Promise<(string | number)[]>;
}

export function commands(redis: RedisConnection): RedisConnection & SemCommands {
  return defineScripts<SemCommands>(redis, ...SCRIPTS);
}
