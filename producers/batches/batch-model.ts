import { randomBytes } from 'node:crypto';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import { defineScripts } from '../../shared/redis/lua-scripts.js';
import { type QueueName } from '../../shared/queues/names.js';

/*
 * What a batch is in Redis. Its BullMQ side is a flow on the `batches` queue: a parent job `batch` (id =
 * the batch id) with one child job `items` per chunk of its requests (up to 256 by default; and a delayed
 * `gate` child while a large batch is still being added, so the parent cannot finish early). Its own side,
 * three keys under the same {hash tag}: the batch hash (status, owner, counts, timestamps), the done hash
 * (line → how it ended: the exactly-once guard of the counts) and the results stream (entries of one or
 * more finished lines, in finish order).
 */

/** The BullMQ queue of batches (parents and items), under the fleet's prefix. */
export const BATCH_QUEUE = 'batches';

/** Job names on the batches queue. */
export const BatchJobName = {
  /** The parent: one per batch; it runs once every item has finished. */
  BATCH: 'batch',
  /** A chunk of the batch's requests, run together (one BullMQ job for up to `itemsPerJob` requests). */
  ITEMS: 'items',
  /** One request (what batches made before chunks were: still run). */
  ITEM: 'item',
  /** Holds the parent open while a large batch's items are still being added; promoted after the last. */
  GATE: 'gate',
} as const;

/** Where a batch stands (OpenAI's Batch API statuses, without expiry and finalizing). */
export type BatchStatus = 'validating' | 'in_progress' | 'cancelling' | 'completed' | 'failed' | 'cancelled';

/** Statuses after which nothing changes any more. */
export const FINAL_STATUSES: readonly BatchStatus[] = ['completed', 'failed', 'cancelled'];

/** How one request of a batch ended. */
export type ItemStatus = 'completed' | 'failed' | 'cancelled';

/** A batch as GET /v1/batches/:id shows it. Times are Unix seconds, as in OpenAI's Batch API. */
export interface BatchView {
  id: string;
  object: 'batch';
  status: BatchStatus;
  request_counts: { total: number; completed: number; failed: number; cancelled: number };
  created_at: number;
  in_progress_at?: number;
  cancelling_at?: number;
  completed_at?: number;
  cancelled_at?: number;
  failed_at?: number;
  /** Set when the batch failed as a whole (its requests could not all be enqueued). */
  errors?: { code: string; message: string }[];
  /** Set when the batch was created in OpenAI's shape (from an input file): GET answers OpenAI's object. */
  openai?: OpenAIBatchInput;
}

/** What an OpenAI-shaped batch was created with (POST /v1/batches {input_file_id, endpoint, …}). */
export interface OpenAIBatchInput {
  input_file_id: string;
  endpoint: '/v1/chat/completions' | '/v1/completions' | '/v1/embeddings';
  completion_window: string;
  metadata: Record<string, string> | null;
}

/** One line of a batch's results (JSONL). */
export interface BatchResultLine {
  custom_id: string;
  /** The request's line number in the batch (1-based; for a JSON array, its position). */
  line: number;
  status: ItemStatus;
  queue: QueueName;
  /** The job that answered (shared with identical requests); absent for a cancelled request. */
  job_id?: string;
  /** false when a job ran (or was joined); how a cache matched otherwise. */
  cached?: false | 'exact' | 'semantic';
  result?: unknown;
  error?: { code: string; message: string };
}

/** Data of an item job. */
export interface ItemJobData {
  batchId: string;
  line: number;
  custom_id: string;
  queue: QueueName;
  data: unknown;
}

/** One request of a chunk job (an ItemJobData without the batch id). */
export type ItemSpec = Omit<ItemJobData, 'batchId'>;

/** Data of an items job: a chunk of one batch's requests. */
export interface ItemsJobData {
  batchId: string;
  items: ItemSpec[];
}

const ID_RE = /^batch_[0-9a-f]{24}$/;

/** A new batch id: `batch_` and 24 hex digits (96 random bits). */
export function newBatchId(): string {
  return `batch_${randomBytes(12).toString('hex')}`;
}

/** True when `s` is shaped like a batch id (checked before any key is built from it). */
export function isBatchId(s: string): boolean {
  return ID_RE.test(s);
}

/** The Redis keys of one batch. */
export function batchKeys(prefix: string, id: string): { meta: string; done: string; results: string } {
  const base = `${prefix}:batch:${id}`;
  return { meta: base, done: `${base}:done`, results: `${base}:results` };
}

/** The sorted set listing one owner's batches (a tenant id, or '' for none) by creation time. */
export function batchIndexKey(prefix: string, owner: string): string {
  return `${prefix}:batches:${owner}`;
}

/** The batch scripts as ioredis commands. */
export interface BatchCommands {
  /** Records lines (triples: line, status, result line JSON), each once; resolves with how many were new. */
  cell0BatchRecord(
    meta: string,
    done: string,
    results: string,
    now: number,
    ttlSeconds: number,
    ...triples: (string | number)[]
  ): Promise<number>;
  cell0BatchTransition(meta: string, from: string, to: BatchStatus, now: number): Promise<string | null>;
}

/** Defines the batch scripts on a connection (idempotent) and returns it typed with them. */
export function defineBatchScripts(redis: RedisConnection): RedisConnection & BatchCommands {
  return defineScripts<BatchCommands>(redis, 'batch-record', 'batch-transition');
}

/** The view of a batch hash (HGETALL); undefined when the hash is empty (no such batch). */
export function decodeBatch(id: string, h: Record<string, string>): BatchView | undefined {
  if (!h.status) return undefined;
  const n = (k: string) => Number(h[k] ?? 0) || 0;
  const sec = (k: string) => (h[k] ? Math.floor(Number(h[k]) / 1000) : undefined);
  const view: BatchView = {
    id,
    object: 'batch',
    status: h.status as BatchStatus,
    request_counts: {
      total: n('total'),
      completed: n('completed'),
      failed: n('failed'),
      cancelled: n('cancelled'),
    },
    created_at: sec('created_at') ?? 0,
  };
  for (const k of ['in_progress_at', 'cancelling_at', 'completed_at', 'cancelled_at', 'failed_at'] as const) {
    const v = sec(k);
    if (v !== undefined) view[k] = v;
  }
  if (h.errors) view.errors = JSON.parse(h.errors) as { code: string; message: string }[];
  if (h.openai) view.openai = JSON.parse(h.openai) as OpenAIBatchInput;
  return view;
}
