import { type Logger } from '../../shared/logger.js';
import { type BatchClient } from './batch-client.js';

/** Options of {@link Batches}. */
export interface BatchesOptions {
  /** The producer whose coalescing, caches and load shedding every item goes through. */
  client: BatchClient;
  /** Run batch items in this process (a BullMQ worker on the batches queue). Default true. */
  runner?: boolean;
  /** Items run at once by this process (each one waits for its job). Default 256. */
  concurrency?: number;
  /** Seconds a finished batch (status and results) is kept. Default 86400. */
  ttlSeconds?: number;
  /** Items added to Redis per round trip when a batch is created. Default 1000. */
  chunkSize?: number;
  /**
   * Requests per BullMQ job of a batch (an `items` job runs them together, and their lines are recorded
   * together): a job's life cycle is shared by that many requests. Default 256.
   */
  itemsPerJob?: number;
  /** One wait for an item's job lasts this long before it is renewed, ms. Default 30000. */
  itemWaitMs?: number;
  /** How long a runner trusts the batch status it read (a cancel shows within this), ms. Default 250. */
  statusCacheMs?: number;
  /** How often a results stream that has caught up looks for new lines, ms. Default 200. */
  pollMs?: number;
  /** The runner's BullMQ lock duration, ms (an item whose runner died is retried after it). Default 30000. */
  lockDurationMs?: number;
  /** The runner's stalled-job check interval, ms. Default 30000. */
  stalledIntervalMs?: number;
  logger?: Logger;
}

export const DEFAULTS = {
  runner: true,
  concurrency: 256,
  ttlSeconds: 86_400,
  chunkSize: 1000,
  itemsPerJob: 256,
  itemWaitMs: 30_000,
  statusCacheMs: 250,
  pollMs: 200,
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
};
