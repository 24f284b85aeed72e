/** The work queues. Each is a BullMQ queue under the configured `{hash tag}` prefix. */
export const QueueName = {
  INFERENCE: 'inference',
  SEARCH: 'search',
} as const;
export type QueueName = (typeof QueueName)[keyof typeof QueueName];

export const QUEUE_NAMES: readonly QueueName[] = [QueueName.INFERENCE, QueueName.SEARCH];

export function isQueueName(s: string): s is QueueName {
  return (QUEUE_NAMES as readonly string[]).includes(s);
}

/** BullMQ job names within the queues. */
export const JobName = {
  GENERATE: 'generate',
  CHAT: 'chat',
  SEARCH: 'search',
} as const;
export type JobName = (typeof JobName)[keyof typeof JobName];
