import express, { type Request, type Response, type Router } from 'express';
import { ErrorCode, ValidationError } from '../../../shared/errors.js';
import { keepRouteLabelOnError } from '../../../shared/metrics/http-metrics.js';
import { BatchBodyTooLargeError } from '../../batches/batch-input.js';
import { FINAL_STATUSES, type BatchResultLine, type BatchView } from '../../batches/batch-model.js';
import { type Batches } from '../../batches/batches.js';
import { tenantOf } from '../access-control.js';
import { withOwnLimit } from '../body-limit.js';
import { sendError } from '../error-mapper.js';
import { openAIResultLine, parseBatchFileId } from './openai-batches.js';
import { speakOpenAIErrors } from './openai-errors.js';
import { clip, drained, listPage, pageLimit } from '../routes/util.js';

/** Options of {@link openAIFilesRouter}. */
export interface OpenAIFilesOptions {
  batches: Batches;
  /** Largest upload (CELL0_BATCH_MAX_BODY_BYTES, the batch route's own limit). */
  maxBodyBytes: number;
  /** True when tenant keys are configured: each file belongs to the caller's tenant. */
  tenantKeys: boolean;
}

/** The purposes an upload may have: cell0 keeps files for batches only. */
const PURPOSES = ['batch'];

/**
 * OpenAI's Files API, as far as its Batch API needs it, mounted at /v1/files behind the tenant guard:
 *
 * - `POST /` — multipart/form-data with `file` (JSON Lines of requests) and `purpose` ("batch") → the file.
 * - `GET /` — the caller's files, newest first (`limit`, `after`, `purpose`).
 * - `GET /:id`, `GET /:id/content`, `DELETE /:id` — an uploaded file, and a batch's output and error files
 *   (`file-<batch id>-output` / `-errors`, read from its results once it has finished).
 *
 * Every error in OpenAI's shape. Files are kept CELL0_BATCH_TTL seconds, like batches.
 */
export function openAIFilesRouter(opts: OpenAIFilesOptions): Router {
  const { batches } = opts;
  const router = express.Router();
  router.use((_req, res, next) => {
    speakOpenAIErrors(res);
    next();
  });
  const owner = (res: Response): string => (opts.tenantKeys ? (tenantOf(res) ?? '') : '');
  const raw = withOwnLimit(
    express.raw({ type: () => true, limit: opts.maxBodyBytes }),
    (length) => new BatchBodyTooLargeError(opts.maxBodyBytes, length),
  );

  router.post('/', (req, res, next) => {
    if (req.is('multipart/form-data')) return next();
    sendError(
      res,
      ErrorCode.UNSUPPORTED_MEDIA_TYPE,
      'upload the file as multipart/form-data (fields file, purpose)',
    );
  });
  router.post('/', raw, async (req, res) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    let form: FormData;
    try {
      form = await new Response(body, {
        headers: { 'content-type': req.headers['content-type'] ?? '' },
      }).formData();
    } catch (err) {
      throw new ValidationError([
        { field: '(body)', reason: `malformed multipart body: ${(err as Error).message}` },
      ]);
    }
    const purpose = form.get('purpose');
    const file = form.get('file');
    const issues = [];
    if (typeof purpose !== 'string' || !PURPOSES.includes(purpose))
      issues.push({ field: 'purpose', reason: `expected "batch" (cell0 keeps files for batches only)` });
    if (file === null || typeof file === 'string')
      issues.push({ field: 'file', reason: 'expected a file part (JSON Lines of batch requests)' });
    if (issues.length > 0) throw new ValidationError(issues);
    const f = file as File;
    const created = await batches.files.create({
      owner: owner(res),
      filename: f.name || 'upload.jsonl',
      purpose: purpose as string,
      content: await f.text(),
    });
    res.json(created);
  });

  router.get('/', async (req, res) => {
    const limit = pageLimit(req.query.limit, 10_000, 10_000);
    const after = typeof req.query.after === 'string' ? req.query.after : undefined;
    const purpose = typeof req.query.purpose === 'string' ? req.query.purpose : undefined;
    const read = await batches.files.list(owner(res), {
      limit: limit + 1,
      ...(after !== undefined ? { after } : {}),
      ...(purpose !== undefined ? { purpose } : {}),
    });
    res.setHeader('Cache-Control', 'no-store');
    res.json(listPage(read, limit));
  });

  /**
   * A batch's output or error file, once the batch has finished: its lines, read chunk by chunk from the
   * batch's results (undefined when there is no such file for this caller).
   */
  const batchFile = async (
    res: Response,
    id: string,
  ): Promise<{ view: BatchView; lines: AsyncIterable<string[]> } | undefined> => {
    const ref = parseBatchFileId(id);
    if (!ref) return undefined;
    const own = opts.tenantKeys ? { owner: owner(res) } : {};
    const view = await batches.get(ref.batchId, own);
    if (!view?.openai || !FINAL_STATUSES.includes(view.status)) return undefined;
    const chunks = await batches.results(ref.batchId, { ...own, follow: false });
    if (!chunks) return undefined;
    const endpoint = view.openai.endpoint;
    async function* lines(): AsyncGenerator<string[]> {
      for await (const chunk of chunks!) {
        const out: string[] = [];
        for (const text of chunk) {
          const l = openAIResultLine(view!.id, JSON.parse(text) as BatchResultLine, endpoint, ref!.which);
          if (l !== undefined) out.push(l);
        }
        if (out.length > 0) yield out;
      }
    }
    return { view, lines: lines() };
  };

  router.get('/:id', async (req, res) => {
    const id = req.params.id as string;
    const ref = parseBatchFileId(id);
    const found = ref ? await batchFile(res, id) : undefined;
    if (ref && found) {
      let bytes = 0;
      for await (const chunk of found.lines) for (const l of chunk) bytes += Buffer.byteLength(l) + 1;
      const v = found.view;
      return res.json({
        id,
        object: 'file',
        bytes,
        created_at: v.completed_at ?? v.cancelled_at ?? v.failed_at ?? v.created_at,
        expires_at: null,
        filename: `${ref.batchId}_${ref.which === 'output' ? 'output' : 'error'}.jsonl`,
        purpose: 'batch_output',
        status: 'processed',
        status_details: null,
      });
    }
    const file = await batches.files.get(id, owner(res));
    if (!file) return notFound(req, res);
    res.json(file);
  });

  router.get('/:id/content', async (req, res) => {
    const id = req.params.id as string;
    if (parseBatchFileId(id)) {
      const found = await batchFile(res, id);
      if (!found) return notFound(req, res);
      res.status(200);
      res.setHeader('Content-Type', 'application/jsonl; charset=utf-8');
      res.setHeader('Cache-Control', 'no-store');
      try {
        for await (const chunk of found.lines) if (!res.write(chunk.join('\n') + '\n')) await drained(res);
      } catch (err) {
        // Headers are sent: all that is left is to cut the body, so the reader sees it incomplete.
        res.destroy(err as Error);
        return;
      }
      return res.end();
    }
    const f = await batches.files.read(id, owner(res));
    if (!f) return notFound(req, res);
    res.setHeader('Content-Type', 'application/jsonl; charset=utf-8');
    res.send(f.content);
  });

  router.delete('/:id', async (req, res) => {
    const id = req.params.id as string;
    if (parseBatchFileId(id))
      throw new ValidationError([
        { field: 'file_id', reason: "a batch's output and error files are kept as long as the batch" },
      ]);
    if (!(await batches.files.delete(id, owner(res)))) return notFound(req, res);
    res.json({ id, object: 'file', deleted: true });
  });

  router.use(keepRouteLabelOnError());
  return router;
}

function notFound(req: Request, res: Response): void {
  const id = String(req.params.id ?? '');
  sendError(
    res,
    ErrorCode.FILE_NOT_FOUND,
    `no file ${clip(id)} (never uploaded, deleted, its retention ended, or a batch's file before the batch finished)`,
  );
}
