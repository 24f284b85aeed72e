import { setMaxListeners } from 'node:events';
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import { ErrorCode, InputTooLargeError, ValidationError } from '../../../shared/errors.js';
import { type Cell0Client } from '../../cell0-client.js';
import { tenantOf } from '../access-control.js';
import { failedStatus, sendError } from '../error-mapper.js';
import { withOwnLimit } from '../body-limit.js';
import { httpStatusOf } from '../../../shared/errors/error-codes.js';
import { isPlainObject } from './util.js';

/** What the embeddings route needs from the API. */
export interface EmbeddingsRouteOptions {
  client: Cell0Client;
  /** Tenant keys are configured: the caller's tenant id goes in front of every request's namespace. */
  tenantKeys: boolean;
  /** Default wait for the vectors, ms. */
  resultWaitMs: number;
  /** Largest `wait` a request may ask for, ms. */
  maxWaitMs: number;
  /** Largest body (a list of texts is larger than the other routes' requests). */
  maxBodyBytes: number;
}

/**
 * `POST /embeddings` (mounted under /v1), OpenAI-compatible: `{model, input: string | string[]}` →
 * `{object: "list", data: [{object: "embedding", index, embedding}], model, usage}`, with
 * `encoding_format: "base64"` as OpenAI's SDKs ask for it. Each distinct input text is one job on the
 * `embedding` queue (see producers/embeddings.ts). cell0 extras: `cache` (as on the other routes) and
 * `wait` (ms); when not every vector is ready within the wait the answer is 504 with Retry-After and the
 * pending job ids: the jobs go on, and the same request sent again joins them.
 */
export function addEmbeddingsRoute(router: Router, opts: EmbeddingsRouteOptions): void {
  const readJson = withOwnLimit(
    express.json({ limit: opts.maxBodyBytes, strict: true, type: () => true }),
    (length) => new InputTooLargeError('(body)', opts.maxBodyBytes, length ?? opts.maxBodyBytes + 1),
  );
  const requireJson: RequestHandler = (req, res, next) => {
    if (req.is(['application/json', 'application/*+json'])) return next();
    sendError(res, ErrorCode.UNSUPPORTED_MEDIA_TYPE, 'send the request body as application/json');
  };

  router.post('/embeddings', requireJson, readJson, async (req: Request, res: Response) => {
    const { body, waitMs } = envelope(req.body as unknown, res, opts);
    const data = opts.client.parseEmbeddings(body);
    const ac = new AbortController();
    // Every input's wait listens to this one signal.
    setMaxListeners(data.input.length + 10, ac.signal);
    res.on('close', () => {
      if (!res.writableEnded) ac.abort();
    });
    const r = await opts.client.submitEmbeddings(data, { waitMs, signal: ac.signal });
    if (r.state === 'completed') {
      res.setHeader('X-Cell0-Reused', String(r.reused));
      res.status(200).json(r.response);
    } else if (r.state === 'failed') {
      res.status(failedStatus(r.code)).json({
        error: {
          code: r.code ?? ErrorCode.JOB_FAILED,
          message: `input ${r.index}: ${r.message}`,
          param: `input.${r.index}`,
          jobId: r.jobId,
        },
      });
    } else {
      res.setHeader('Retry-After', '1');
      res.status(httpStatusOf(ErrorCode.WAIT_TIMEOUT)).json({
        error: {
          code: ErrorCode.WAIT_TIMEOUT,
          message: `${r.pending.length} of ${data.input.length} inputs were not embedded within ${waitMs} ms; they go on, and the same request again joins them`,
          pending: r.pending,
        },
      });
    }
  });

  router.all('/embeddings', (req, res) => {
    res.setHeader('Allow', 'POST');
    sendError(res, ErrorCode.METHOD_NOT_ALLOWED, `${req.method} is not allowed on /v1/embeddings; use POST`);
  });
}

/** Splits cell0's `wait` from the request and puts the caller's tenant in front of its namespace. */
function envelope(
  raw: unknown,
  res: Response,
  opts: EmbeddingsRouteOptions,
): { body: Record<string, unknown>; waitMs: number } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new ValidationError([{ field: '(body)', reason: 'expected a JSON object' }]);
  const { wait, ...body } = raw as Record<string, unknown>;
  const tenant = tenantOf(res);
  const cache = body.cache ?? {};
  if (opts.tenantKeys && tenant !== undefined && isPlainObject(cache)) {
    const ns = cache.namespace;
    if (ns === undefined || typeof ns === 'string')
      body.cache = { ...cache, namespace: ns === undefined ? tenant : `${tenant}:${ns}` };
  }
  let waitMs = opts.resultWaitMs;
  if (wait !== undefined) {
    if (typeof wait !== 'number' || !Number.isInteger(wait) || wait < 0 || wait > opts.maxWaitMs)
      throw new ValidationError([
        { field: 'wait', reason: `expected an integer number of ms from 0 to ${opts.maxWaitMs}` },
      ]);
    waitMs = wait;
  }
  return { body, waitMs };
}
