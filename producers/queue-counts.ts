import { type Queue } from 'bullmq';
import { type RedisClient } from '../shared/redis/redis-client.js';
import { type SubmitLane } from './submit-lane.js';

/*
 * What a JobSubmitter reports over its lanes (every queue and shard): job counts, batched adds.
 */

/** One shard's job counts: its number, its hash tag ("{cell0:inference:2}") and its counts per state. */
export interface ShardCounts {
  shard: number;
  tag: string;
  counts: Record<string, number>;
}

/** The states counted for GET /v1/queues and the fleet page. */
const STATES = ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed'] as const;

/** Job counts of every shard of every queue (`queues`: each queue's BullMQ queues, index = shard). */
export async function readShardCounts(
  redis: RedisClient,
  queues: Iterable<[string, readonly Queue[]]>,
): Promise<Record<string, ShardCounts[]>> {
  const out: Record<string, ShardCounts[]> = {};
  for (const [name, shards] of queues) {
    out[name] = await Promise.all(
      shards.map(async (q, shard) => ({
        shard,
        tag: q.opts.prefix ?? '',
        counts: await redis.run(() => q.getJobCounts(...STATES)),
      })),
    );
  }
  return out;
}

/** Each queue's counts summed over its shards. */
export function sumShardCounts(
  byShard: Record<string, readonly ShardCounts[]>,
): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [name, shards] of Object.entries(byShard)) {
    const sum: Record<string, number> = {};
    for (const { counts } of shards) for (const [k, n] of Object.entries(counts)) sum[k] = (sum[k] ?? 0) + n;
    out[name] = sum;
  }
  return out;
}

/** Batched adds so far over `lanes` (each batch is one pipeline): batches, items, and batches by size. */
export function addBatchStats(lanes: Iterable<SubmitLane>): {
  batches: number;
  items: number;
  sizes: number[];
} {
  let batches = 0;
  let items = 0;
  let sizes: number[] = [];
  for (const lane of lanes) {
    const s = lane.adder.stats();
    batches += s.batches;
    items += s.items;
    const bins = lane.adder.sizeCounts();
    sizes = bins.map((n, i) => n + (sizes[i] ?? 0));
  }
  return { batches, items, sizes };
}
