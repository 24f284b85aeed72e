import express, { type Request, type Response, type Router } from 'express';
import { ErrorCode, ValidationError } from '../../../shared/errors.js';
import { type QueueName } from '../../../shared/queues/names.js';
import { tenantOf } from '../access-control.js';
import { type BatchClient } from '../../batches/batch-client.js';
import { BatchBodyTooLargeError, parseBatch, splitBatchBody } from '../../batches/batch-input.js';
import { withOwnLimit } from '../body-limit.js';
import { sendError } from '../error-mapper.js';
import { type Batches } from '../../batches/batches.js';
import { keepRouteLabelOnError } from '../../../shared/metrics/http-metrics.js';
import { type BatchView } from '../../batches/batch-model.js';
import { openAIBatchItems, openAIBatchObject, parseOpenAIBatchCreate } from '../openai/openai-batches.js';
import { speakOpenAIErrors } from '../openai/openai-errors.js';
import { clip, drained, isPlainObject, listPage, pageLimit } from '../routes/util.js';

/** What the API is given to serve batches. */
export interface BatchRoutesConfig {
  batches: Batches;
  /** Most requests in one batch (CELL0_BATCH_MAX_ITEMS); more → 413. */
  maxItems: number;
  /** Largest body of POST /v1/batches (CELL0_BATCH_MAX_BODY_BYTES), this route only; larger → 413. */
  maxBodyBytes: number;
}

/** Options of {@link batchRoutes}. */
export interface BatchRoutesOptions extends BatchRoutesConfig {
  client: BatchClient;
  /** True when tenant keys are configured: each batch and each of its requests belongs to the caller's tenant. */
  tenantKeys: boolean;
}

const JSONL_TYPES = [
  'application/jsonl',
  'application/x-ndjson',
  'application/jsonlines',
  'application/x-jsonlines',
];

/**
 * The batch routes, mounted at /v1/batches behind the tenant guard:
 *
 * - `POST /` — a JSON array (application/json) or JSON Lines (application/jsonl, application/x-ndjson) of
 *   `{custom_id, queue, body}`. Every line is validated first: any bad line → 400 listing them, nothing
 *   enqueued. Otherwise 202 with the batch.
 *   An object instead ({input_file_id, endpoint, completion_window}) is OpenAI's create-batch body: the
 *   lines of an input file uploaded with POST /v1/files (openai-files.ts), answered in OpenAI's shape.
 * - `GET /` — the caller's batches, newest first, as OpenAI's list (`limit`, `after`).
 * - `GET /:id` — status, request_counts, timestamps (OpenAI's Batch object for a batch made from a file).
 * - `GET /:id/results` — JSONL, one line per finished request in finish order, streamed until the batch is
 *   finished (`?follow=0`: only the lines there are now).
 * - `POST /:id/cancel` — requests not yet started are not run.
 *
 * With tenant keys, a batch is its tenant's: another key gets the 404 of an unknown id, and each request's
 * `cache.namespace` starts with the tenant id, as for POST /v1/inference.
 */
export function batchRoutes(opts: BatchRoutesOptions): Router {
  const router = express.Router();
  const owner = (res: Response): { owner?: string } => {
    const t = tenantOf(res);
    return opts.tenantKeys && t !== undefined ? { owner: t } : {};
  };
  const body = withOwnLimit(
    express.text({ type: () => true, limit: opts.maxBodyBytes }),
    (length) => new BatchBodyTooLargeError(opts.maxBodyBytes, length),
  );

  router.post('/', (req, res, next) => {
    if (req.is(['application/json', ...JSONL_TYPES])) return next();
    sendError(
      res,
      ErrorCode.UNSUPPORTED_MEDIA_TYPE,
      'send the batch as application/json (an array) or application/jsonl (one request per line)',
    );
  });

  router.post('/', body, async (req, res) => {
    const text = typeof req.body === 'string' ? req.body : '';
    const format = req.is('application/json') ? 'json' : 'jsonl';
    const tenant = owner(res).owner;
    const openai = format === 'json' ? openAIBody(text) : undefined;
    if (openai) return createOpenAIBatch(req, res, openai, tenant);
    const items = parseBatch(splitBatchBody(text, format), {
      maxItems: opts.maxItems,
      parse: (queue: QueueName, b: unknown) => opts.client.parseFor(queue, withTenant(b, tenant)),
    });
    const view = await opts.batches.create(items, { owner: tenant ?? '' });
    res.setHeader('Location', `${req.baseUrl}/${view.id}`);
    res.status(202).json(view);
  });

  // The caller's batches, newest first, as OpenAI's list: {object, data, first_id, last_id, has_more}.
  router.get('/', async (req, res) => {
    const limit = pageLimit(req.query.limit, 20, 100);
    const after = typeof req.query.after === 'string' ? req.query.after : undefined;
    const read = await opts.batches.list(owner(res).owner ?? '', {
      limit: limit + 1,
      ...(after !== undefined ? { after } : {}),
    });
    res.setHeader('Cache-Control', 'no-store');
    res.json(
      listPage(
        read.map((v) => (v.openai ? openAIBatchObject(v) : v)),
        limit,
      ),
    );
  });

  router.all('/', (req, res) => {
    res.setHeader('Allow', 'GET, POST');
    sendError(
      res,
      ErrorCode.METHOD_NOT_ALLOWED,
      `${req.method} is not allowed on /v1/batches; use GET or POST`,
    );
  });

  /**
   * OpenAI's create-batch body ({input_file_id, endpoint, completion_window, metadata}): the input file's
   * lines are validated and run as the batch's items; the batch is then answered in OpenAI's shape.
   */
  const createOpenAIBatch = async (
    req: Request,
    res: Response,
    b: Record<string, unknown>,
    tenant: string | undefined,
  ): Promise<void> => {
    speakOpenAIErrors(res);
    const input = parseOpenAIBatchCreate(b);
    const file = await opts.batches.files.read(input.input_file_id, tenant ?? '');
    if (!file) {
      sendError(
        res,
        ErrorCode.FILE_NOT_FOUND,
        `no file ${clip(input.input_file_id)} (upload it with POST /v1/files)`,
      );
      return;
    }
    if (file.file.purpose !== 'batch')
      throw new ValidationError([
        { field: 'input_file_id', reason: 'expected a file uploaded with purpose "batch"' },
      ]);
    const items = openAIBatchItems(file.content, input, {
      tenant,
      maxItems: opts.maxItems,
      parse: (queue, x) => opts.client.parseFor(queue, x),
      withTenant: (x) => withTenant(x, tenant),
    });
    const view = await opts.batches.create(items, { owner: tenant ?? '', openai: input });
    res.setHeader('Location', `${req.baseUrl}/${view.id}`);
    res.status(200).json(openAIBatchObject(view));
  };

  /** The batch in the shape it was created in: OpenAI's object for a batch made from an input file. */
  const shaped = (res: Response, view: BatchView) => {
    if (!view.openai) return view;
    speakOpenAIErrors(res);
    return openAIBatchObject(view);
  };

  router.get('/:id', async (req, res) => {
    const view = await opts.batches.get(req.params.id as string, owner(res));
    if (!view) return notFound(req, res);
    res.setHeader('Cache-Control', 'no-store');
    res.json(shaped(res, view));
  });

  router.post('/:id/cancel', async (req, res) => {
    const view = await opts.batches.cancel(req.params.id as string, owner(res));
    if (!view) return notFound(req, res);
    res.json(shaped(res, view));
  });

  router.get('/:id/results', async (req, res) => {
    const ac = new AbortController();
    res.on('close', () => ac.abort());
    const follow = !(req.query.follow === '0' || req.query.follow === 'false');
    const lines = await opts.batches.results(req.params.id as string, {
      ...owner(res),
      follow,
      signal: ac.signal,
    });
    if (!lines) return notFound(req, res);
    res.status(200);
    res.setHeader('Content-Type', 'application/jsonl; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.flushHeaders();
    try {
      for await (const chunk of lines) {
        if (!res.write(chunk.join('\n') + '\n')) await drained(res);
      }
    } catch (err) {
      // Headers are sent: all that is left is to cut the stream, so the reader sees it incomplete.
      res.destroy(err as Error);
      return;
    }
    res.end();
  });

  router.use(keepRouteLabelOnError());
  return router;
}

/** The body as OpenAI's create-batch object, or undefined (cell0's array, or not JSON: left to splitBatchBody). */
function openAIBody(text: string): Record<string, unknown> | undefined {
  if (!text.trimStart().startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    // an object naming any of OpenAI's create-batch fields; any other object is left to cell0's shape's error
    return isPlainObject(v) && ['input_file_id', 'endpoint', 'completion_window'].some((k) => k in v)
      ? v
      : undefined;
  } catch {
    return undefined;
  }
}

function notFound(req: Request, res: Response): void {
  const id = String(req.params.id ?? '');
  sendError(res, ErrorCode.BATCH_NOT_FOUND, `no batch ${clip(id)} (never created, or its retention ended)`);
}

/**
 * The tenant partition of one request of a batch, as POST /v1/inference applies it: the namespace starts
 * with the tenant id. A malformed `cache` is left for the schema to refuse.
 */
function withTenant(body: unknown, tenant: string | undefined): unknown {
  if (tenant === undefined || typeof body !== 'object' || body === null || Array.isArray(body)) return body;
  const b = body as Record<string, unknown>;
  const cache = b.cache ?? {};
  if (typeof cache !== 'object' || cache === null || Array.isArray(cache)) return body;
  const requested = (cache as Record<string, unknown>).namespace;
  if (requested !== undefined && typeof requested !== 'string') return body;
  return {
    ...b,
    cache: { ...cache, namespace: requested === undefined ? tenant : `${tenant}:${requested}` },
  };
}
