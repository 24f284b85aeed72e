/** The work queues. Each is a BullMQ queue under the configured `{hash tag}` prefix. */
export const QueueName = {
  INFERENCE: 'inference',
  SEARCH: 'search',
  /** One job per input text to embed; workers embed the ready ones in one backend call per model. */
  EMBEDDING: 'embedding',
} as const;
export type QueueName = (typeof QueueName)[keyof typeof QueueName];

export const QUEUE_NAMES: readonly QueueName[] = [QueueName.INFERENCE, QueueName.SEARCH, QueueName.EMBEDDING];

export function isQueueName(s: string): s is QueueName {
  return (QUEUE_NAMES as readonly string[]).includes(s);
}

/** BullMQ job names within the queues. */
export const JobName = {
  GENERATE: 'generate',
  CHAT: 'chat',
  SEARCH: 'search',
  EMBED: 'embed',
} as const;
export type JobName = (typeof JobName)[keyof typeof JobName];

/**
 * The fleet's own housekeeping queue: job schedulers put a `monitor` and a `cleanup` job on it every few
 * seconds / minutes, and whichever worker takes one does it for the whole fleet.
 */
export const MAINTENANCE_QUEUE = 'maintenance';

/** Job names on the maintenance queue (also its job scheduler ids). */
export const MaintenanceJob = {
  MONITOR: 'monitor',
  CLEANUP: 'cleanup',
} as const;
export type MaintenanceJob = (typeof MaintenanceJob)[keyof typeof MaintenanceJob];

/**
 * The BullMQ prefix of queue `queue` under the fleet's prefix: the fleet's hash tag widened by the queue's
 * name ("{cell0}" → "{cell0:inference}"). Every key of a queue, and of the scripts cell0 runs on it (reply
 * inboxes, waiter sets, token streams), carries it, so a queue is one cluster slot and different queues
 * are different slots, spread over a cluster's masters. A prefix that is not a hash tag is kept as it is.
 */
export function queuePrefix(prefix: string, queue: string): string {
  return /^\{[^{}]+\}$/.test(prefix) ? `${prefix.slice(0, -1)}:${queue}}` : prefix;
}

/** The start of every key of queue `queue` ("{cell0:inference}:inference"). */
export function queueKey(prefix: string, queue: string): string {
  return `${queuePrefix(prefix, queue)}:${queue}`;
}
