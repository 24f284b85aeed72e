import { createHash } from 'node:crypto';
import { ValidationError, type FieldIssue } from '../../../shared/errors.js';
import { QueueName } from '../../../shared/queues/names.js';
import { type InferenceResult } from '../../../shared/queues/results.js';
import { type BatchItem, parseBatch, splitBatchBody } from '../../batches/batch-input.js';
import {
  FINAL_STATUSES,
  isBatchId,
  type BatchResultLine,
  type BatchView,
  type OpenAIBatchInput,
} from '../../batches/batch-model.js';
import { failedJobError } from './openai-errors.js';
import { isPlainObject } from '../routes/util.js';
import { parseChatCompletion, parseCompletion } from './openai-request.js';
import { answerMeta, completionBody } from './openai-shapes.js';

/*
 * OpenAI's Batch API on top of cell0's batches (docs/batches.md, "From the OpenAI SDK"): an input file of
 * `{custom_id, method, url, body}` lines uploaded with POST /v1/files, a batch created from it with
 * POST /v1/batches {input_file_id, endpoint, completion_window}, and the answers read back as OpenAI's output
 * and error files. Each line runs exactly like a cell0 batch item (caches, coalescing).
 */

export const OPENAI_BATCH_ENDPOINTS = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings'] as const;

/** OpenAI's only completion window. */
const COMPLETION_WINDOW = '24h';
const WINDOW_SECONDS = 24 * 3600;

/** Validates OpenAI's create-batch body. Throws ValidationError naming each bad field. */
export function parseOpenAIBatchCreate(b: Record<string, unknown>): OpenAIBatchInput {
  const issues: FieldIssue[] = [];
  const { input_file_id, endpoint, completion_window, metadata } = b;
  if (typeof input_file_id !== 'string' || input_file_id === '')
    issues.push({
      field: 'input_file_id',
      reason: 'expected the id of a file uploaded with purpose "batch"',
    });
  if (!OPENAI_BATCH_ENDPOINTS.includes(endpoint as OpenAIBatchInput['endpoint']))
    issues.push({ field: 'endpoint', reason: `expected one of ${OPENAI_BATCH_ENDPOINTS.join(', ')}` });
  if (completion_window !== COMPLETION_WINDOW)
    issues.push({ field: 'completion_window', reason: `expected "${COMPLETION_WINDOW}"` });
  if (metadata !== undefined && metadata !== null) {
    const ok =
      isPlainObject(metadata) &&
      Object.keys(metadata).length <= 16 &&
      Object.entries(metadata).every(([k, v]) => k.length <= 64 && typeof v === 'string' && v.length <= 512);
    if (!ok)
      issues.push({
        field: 'metadata',
        reason: 'expected at most 16 string values, keys of at most 64 characters, values of at most 512',
      });
  }
  if (issues.length > 0) throw new ValidationError(issues);
  return {
    input_file_id: input_file_id as string,
    endpoint: endpoint as OpenAIBatchInput['endpoint'],
    completion_window: COMPLETION_WINDOW,
    metadata: (metadata as Record<string, string> | null | undefined) ?? null,
  };
}

/**
 * The requests of an input file (JSON Lines of `{custom_id, method: "POST", url, body}`, `url` the batch's
 * endpoint) as batch items, every line validated before anything runs: any bad line → one ValidationError
 * naming each (`lines[3].url`, `lines[7].body.messages`). `parse` validates a cell0 request of a queue.
 */
export function openAIBatchItems(
  content: string,
  input: OpenAIBatchInput,
  opts: {
    tenant: string | undefined;
    maxItems: number;
    parse: (queue: QueueName, body: unknown) => unknown;
    /** The tenant partition of an embeddings request (as POST /v1/batches applies it to cell0's lines). */
    withTenant: (body: unknown) => unknown;
  },
): BatchItem[] {
  const queue = input.endpoint === '/v1/embeddings' ? QueueName.EMBEDDING : QueueName.INFERENCE;
  // cell0's JSONL reading (line numbers, blank lines, lines that are not JSON), then each line's OpenAI
  // envelope checked and turned into cell0's {custom_id, queue, body}, whose body parseBatch checks below
  const entries = splitBatchBody(content, 'jsonl').map((e) => {
    if (e.error !== undefined) return e;
    const v = e.value;
    if (!isPlainObject(v))
      return { line: e.line, error: 'expected an object {custom_id, method, url, body}' };
    const { custom_id, method, url, body, ...extra } = v;
    const wrong = [
      ...Object.keys(extra).map((k) => `${k}: unknown field`),
      ...(method === 'POST' ? [] : [`method: expected "POST"`]),
      ...(url === input.endpoint ? [] : [`url: expected "${input.endpoint}" (the batch's endpoint)`]),
    ];
    if (wrong.length > 0) return { line: e.line, error: wrong.join('; ') };
    return { line: e.line, value: { custom_id, queue, body } };
  });
  const kind = input.endpoint === '/v1/chat/completions' ? 'chat' : 'completion';
  return parseBatch(entries, {
    maxItems: opts.maxItems,
    queues: [queue],
    parse: (q, body) => {
      if (q === QueueName.EMBEDDING) return opts.parse(q, opts.withTenant(body));
      if (isPlainObject(body) && body.stream === true)
        throw new ValidationError([{ field: 'stream', reason: 'a batch request cannot stream' }]);
      const info = (kind === 'chat' ? parseChatCompletion : parseCompletion)(body, {
        tenant: opts.tenant,
        cacheHeader: undefined,
      });
      return opts.parse(q, info.request);
    },
  });
}

/** The output and error files of an OpenAI-shaped batch: virtual files read from its results. */
export function batchFileId(batchId: string, which: 'output' | 'errors'): string {
  return `file-${batchId}-${which}`;
}

/** The batch and which of its files a virtual file id names, or undefined. */
export function parseBatchFileId(id: string): { batchId: string; which: 'output' | 'errors' } | undefined {
  const m = /^file-(batch_[0-9a-f]+)-(output|errors)$/.exec(id);
  if (!m || !isBatchId(m[1]!)) return undefined;
  return { batchId: m[1]!, which: m[2] as 'output' | 'errors' };
}

/** A batch as OpenAI's Batch object (for a batch created in OpenAI's shape). */
export function openAIBatchObject(view: BatchView): Record<string, unknown> & { id: string } {
  const input = view.openai!;
  const c = view.request_counts;
  const final = FINAL_STATUSES.includes(view.status);
  const unanswered = c.failed + c.cancelled;
  return {
    id: view.id,
    object: 'batch',
    endpoint: input.endpoint,
    errors: view.errors
      ? {
          object: 'list',
          data: view.errors.map((e) => ({ code: e.code, message: e.message, param: null, line: null })),
        }
      : null,
    input_file_id: input.input_file_id,
    completion_window: input.completion_window,
    status: view.status,
    output_file_id: final && c.completed > 0 ? batchFileId(view.id, 'output') : null,
    error_file_id: final && unanswered > 0 ? batchFileId(view.id, 'errors') : null,
    created_at: view.created_at,
    in_progress_at: view.in_progress_at ?? null,
    expires_at: view.created_at + WINDOW_SECONDS,
    finalizing_at: null,
    completed_at: view.completed_at ?? null,
    failed_at: view.failed_at ?? null,
    expired_at: null,
    cancelling_at: view.cancelling_at ?? null,
    cancelled_at: view.cancelled_at ?? null,
    // OpenAI counts a request that did not get an answer as failed: cell0's failed and cancelled together
    request_counts: { total: c.total, completed: c.completed, failed: unanswered },
    metadata: input.metadata,
  };
}

/**
 * One result line of cell0's batch as a line of OpenAI's output file (a completed request) or error file
 * (a failed or cancelled one), or undefined when it belongs to the other file.
 */
export function openAIResultLine(
  batchId: string,
  line: BatchResultLine,
  endpoint: OpenAIBatchInput['endpoint'],
  which: 'output' | 'errors',
): string | undefined {
  if ((line.status === 'completed') !== (which === 'output')) return undefined;
  const id = `batch_req_${createHash('sha256').update(`${batchId}:${line.line}`).digest('hex').slice(0, 24)}`;
  const requestId = line.job_id ?? null;
  if (line.status === 'completed') {
    const body =
      endpoint === '/v1/embeddings'
        ? line.result
        : completionBody(
            answerMeta(endpoint === '/v1/chat/completions' ? 'chat' : 'completion', line.job_id ?? '', ''),
            line.result as InferenceResult,
          );
    return JSON.stringify({
      id,
      custom_id: line.custom_id,
      response: { status_code: 200, request_id: requestId, body },
      error: null,
    });
  }
  if (line.status === 'cancelled')
    return JSON.stringify({
      id,
      custom_id: line.custom_id,
      response: null,
      error: {
        code: 'batch_cancelled',
        message: line.error?.message ?? 'the batch was cancelled before it ran',
      },
    });
  const { status, body } = failedJobError(line.error?.code, line.error?.message ?? 'the request failed');
  return JSON.stringify({
    id,
    custom_id: line.custom_id,
    response: { status_code: status, request_id: requestId, body },
    error: null,
  });
}
