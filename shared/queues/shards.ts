import { CLUSTER_SLOTS, crc16, crc16Step, keySlot } from '../redis/key-slot.js';
import { queuePrefix } from './names.js';

/*
 * Sharded queues. One BullMQ queue is one hash tag, so one cluster slot, so one master: with `shards` > 1
 * each work queue is that many BullMQ queues of the same name, each under a tag of its own
 * ({cell0:inference}, {cell0:inference:1}, {cell0:inference:2}, …), which a cluster spreads over its
 * masters. A job's shard follows from its id (the hash of its canonical request, see job-id.ts), so
 * identical requests always meet on one shard (coalescing stays exact) and a job id alone says where the
 * job is: callers' ids and GET /v1/jobs/:queue/:id are unchanged. One shard is exactly the unsharded
 * layout ({cell0:inference}).
 *
 * Placement. With N > 1 shards, shard k's tag is chosen so that its slot is the middle slot of the k-th
 * of N equal slot ranges (see shardSlot), so the shards sit evenly over the slot space whatever the
 * prefix: on a cluster whose slots are split evenly over M masters (as `redis-cli --cluster create` does)
 * each master holds N/M shards rounded down or up (checked for every M ≤ 12 and N ≤ 64 in the unit
 * test), and with N ≤ M every shard has a master of its own. The tag is "{cell0:inference:k.j}" with j
 * the smallest number that gives that slot.
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

/** The slot shard `shard` of `shards` (> 1) is placed on: the middle slot of the shard-th of `shards` equal ranges. */
export function shardSlot(shard: number, shards: number): number {
  return Math.floor(((2 * shard + 1) * CLUSTER_SLOTS) / (2 * shards));
}

/** Tags found so far, by "tag|shard|shards" (a search costs ~16k CRC steps). */
const placed = new Map<string, string>();

/**
 * The BullMQ prefix of shard `shard` of `shards` of queue `queue` under the fleet's prefix. One shard: the
 * queue's own tag ("{cell0:inference}"). Several: the queue's tag widened by the shard and the smallest
 * number j that puts it on the shard's slot (shardSlot), "{cell0:inference:2.j}". A prefix that is not a
 * hash tag gets ":k" for shard k > 0 (no placement: such a prefix does not keep a queue on one slot).
 */
export function shardPrefix(prefix: string, queue: string, shard: number, shards: number): string {
  const base = queuePrefix(prefix, queue);
  if (shards <= 1) return base;
  if (!(base.startsWith('{') && base.endsWith('}'))) return shard === 0 ? base : `${base}:${shard}`;
  const memo = `${base}|${shard}|${shards}`;
  let tag = placed.get(memo);
  if (tag === undefined) {
    const stem = `${base.slice(1, -1)}:${shard}.`;
    const target = shardSlot(shard, shards);
    // Each slot is 4 of the 65536 CRC values: about 1 in 16384 numbers fits; the first one is taken.
    const start = crc16(Buffer.from(stem));
    tag = `{${stem}${smallestSuffix(start, target)}}`;
    if (keySlot(tag) !== target) throw new Error(`shard tag ${tag} is not on slot ${target}`);
    placed.set(memo, tag);
  }
  return tag;
}

/**
 * The smallest number whose decimal digits, CRC16'd on from `crc`, give slot `target`: numbers of 1, 2, …
 * digits in increasing order, depth first, so each number costs about one CRC step (a slot is 4 of the
 * 65536 CRC values: about 16k numbers are tried).
 */
function smallestSuffix(crc: number, target: number): string {
  const walk = (c: number, left: number, lead: boolean): string | undefined => {
    for (let d = lead ? 1 : 0; d <= 9; d++) {
      const next = crc16Step(c, 48 + d);
      if (left === 1) {
        if (next % CLUSTER_SLOTS === target) return String(d);
      } else {
        const rest = walk(next, left - 1, false);
        if (rest !== undefined) return `${d}${rest}`;
      }
    }
    return undefined;
  };
  if (crc16Step(crc, 48) % CLUSTER_SLOTS === target) return '0';
  for (let len = 1; ; len++) {
    const found = walk(crc, len, true);
    if (found !== undefined) return found;
  }
}

/** The start of every key of shard `shard` of `shards` of queue `queue` ("{cell0:inference:2.j}:inference"). */
export function shardKey(prefix: string, queue: string, shard: number, shards: number): string {
  return `${shardPrefix(prefix, queue, shard, shards)}:${queue}`;
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
