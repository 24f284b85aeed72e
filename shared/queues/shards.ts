import { queuePrefix } from './names.js';

/*
 * Sharded queues. One BullMQ queue is one hash tag, so one cluster slot, so one master: with `shards` > 1
 * each work queue is that many BullMQ queues of the same name, each under a tag of its own
 * ({cell0:inference}, {cell0:inference:1}, {cell0:inference:2}, …), which a cluster spreads over its
 * masters. A job's shard follows from its id (the hash of its canonical request, see job-id.ts), so
 * identical requests always meet on one shard (coalescing stays exact) and a job id alone says where the
 * job is: callers' ids and GET /v1/jobs/:queue/:id are unchanged. Shard 0 keeps the unsharded queue's
 * tag, so one shard is exactly the unsharded layout.
 */

/** Most shards per queue. */
export const MAX_QUEUE_SHARDS = 64;

/** Hex digits of a job id's hash read to pick its shard (32 bits: an even spread over any shard count). */
const SHARD_HEX = 8;

/**
 * The shard (0 ≤ shard < `shards`) of the job with id `jobId`: the first 32 bits of the hash in the id,
 * modulo `shards`. Stable (the same id gives the same shard in every process and release) and even over
 * shards. An id without a hash part (not a cell0 job id) goes to shard 0.
 */
export function shardOf(jobId: string, shards: number): number {
  if (shards <= 1) return 0;
  const dash = jobId.indexOf('-');
  const n = Number.parseInt(jobId.slice(dash + 1, dash + 1 + SHARD_HEX), 16);
  return Number.isFinite(n) ? n % shards : 0;
}

/**
 * The BullMQ prefix of shard `shard` of queue `queue` under the fleet's prefix: shard 0 is the queue's own
 * tag ("{cell0:inference}"), shard k > 0 widens it by k ("{cell0:inference:2}"). A prefix that is not a
 * hash tag gets ":k" for shard k > 0.
 */
export function shardPrefix(prefix: string, queue: string, shard: number): string {
  const base = queuePrefix(prefix, queue);
  if (shard === 0) return base;
  return base.endsWith('}') && base.startsWith('{') ? `${base.slice(0, -1)}:${shard}}` : `${base}:${shard}`;
}

/** The start of every key of shard `shard` of queue `queue` ("{cell0:inference:2}:inference"). */
export function shardKey(prefix: string, queue: string, shard: number): string {
  return `${shardPrefix(prefix, queue, shard)}:${queue}`;
}

/** Checks a shard count; throws a TypeError naming `option` when it is not an integer in 1..64. */
export function checkShardCount(shards: number, option: string): number {
  if (!(Number.isInteger(shards) && shards >= 1 && shards <= MAX_QUEUE_SHARDS))
    throw new TypeError(`${option} must be an integer from 1 to ${MAX_QUEUE_SHARDS}, got ${String(shards)}`);
  return shards;
}

/**
 * The shards a worker serves: `served` (sorted, without repeats) or, when undefined, all of 0..shards-1.
 * Throws a TypeError naming `option` when one is out of range or the list is empty.
 */
export function servedShards(
  shards: number,
  served: readonly number[] | undefined,
  option: string,
): number[] {
  if (served === undefined) return Array.from({ length: shards }, (_, i) => i);
  if (served.length === 0) throw new TypeError(`${option} must name at least one shard`);
  for (const s of served)
    if (!(Number.isInteger(s) && s >= 0 && s < shards))
      throw new TypeError(
        `${option}: shard ${String(s)} is not one of 0..${shards - 1} (the queue shard count)`,
      );
  return [...new Set(served)].sort((a, b) => a - b);
}

/**
 * The part of `total` (a queue's concurrency) given to the i-th of `n` shards a worker serves: an even
 * split, the remainder to the first ones, and at least 1 each (so a worker with concurrency c serving n
 * shards runs up to max(c, n) jobs of the queue at once).
 */
export function shareOf(total: number, i: number, n: number): number {
  return Math.max(1, Math.floor(total / n) + (i < total % n ? 1 : 0));
}
