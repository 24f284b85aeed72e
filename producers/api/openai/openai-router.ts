import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import { ErrorCode } from '../../../shared/errors.js';
import { type Logger, silentLogger } from '../../../shared/logger.js';
import { type InferenceResult } from '../../../shared/queues/results.js';
import { type Cell0Client } from '../../cell0-client.js';
import { type SubmitResult } from '../../job-submitter.js';
import { type AccessControl, tenantOf } from '../access-control.js';
import { jsonBody } from '../json-body.js';
import { failedJobError, openAIError, speakOpenAIErrors } from './openai-errors.js';
import { fleetModels } from './openai-models.js';
import { parseChatCompletion, parseCompletion, type OpenAIRequestInfo } from './openai-request.js';
import { answerMeta, completionBody, type OpenAIKind } from './openai-shapes.js';
import { streamAnswer } from './openai-stream.js';
import { CELL0_JOB_HEADER, provenanceHeaders } from './openai-headers.js';
import { keepRouteLabelOnError } from '../../../shared/metrics/http-metrics.js';

/** Options of {@link openAIRouter}. */
export interface OpenAIRouterOptions {
  client: Cell0Client;
  access: AccessControl;
  /** How long a request waits for its answer before 504 (the job goes on), ms. */
  maxWaitMs: number;
  /** Largest request body. */
  maxBodyBytes: number;
  logger?: Logger;
}

/**
 * Every path this router serves, under /v1; the API hands it only requests on or under these (a route added
 * here must be listed here).
 */
export const OPENAI_PATHS: readonly string[] = ['/chat/completions', '/completions', '/models'];

/**
 * The OpenAI-compatible routes, mounted under /v1 beside the native ones: POST /chat/completions,
 * POST /completions (with `stream: true` as Server-Sent Events), GET /models and /models/:id. Same Bearer keys as the rest
 * of the API; every error in OpenAI's shape.
 */
export function openAIRouter(opts: OpenAIRouterOptions): Router {
  const { client, maxWaitMs } = opts;
  const log = opts.logger ?? silentLogger();
  const router = express.Router();
  const paths = [...OPENAI_PATHS];
  router.use(paths, (_req, res, next) => {
    speakOpenAIErrors(res);
    next();
  });
  router.use(paths, opts.access.tenantRoute());
  // express.json's answers, with a lean path for the usual body (see jsonBody).
  const json = jsonBody(opts.maxBodyBytes);
  const requireJson: RequestHandler = (req, res, next) => {
    if (!req.is(['application/json', 'application/*+json'])) {
      res.status(415).json(
        openAIError(415, 'send the request body as application/json', {
          code: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        }),
      );
      return;
    }
    next();
  };

  const handle = (kind: OpenAIKind) => async (req: Request, res: Response) => {
    const parse = kind === 'chat' ? parseChatCompletion : parseCompletion;
    const cacheHeader = req.headers['x-cell0-cache'];
    const info = parse(req.body, {
      tenant: tenantOf(res),
      cacheHeader: Array.isArray(cacheHeader) ? cacheHeader.join(',') : cacheHeader,
    });
    const data = client.parseInference(info.request);
    if (info.stream) return streamAnswer({ req, res, client, kind, info, data, maxWaitMs, log });
    await answerWhole(res, kind, info, client.submitInference.bind(client), data, maxWaitMs);
  };

  router.post('/chat/completions', requireJson, json, handle('chat'));
  router.post('/completions', requireJson, json, handle('completion'));
  router.get('/models', async (_req, res) => {
    const models = await fleetModels(client);
    const created = Math.floor(Date.now() / 1000);
    res.json({
      object: 'list',
      data: models.map((id) => ({ id, object: 'model', created, owned_by: 'cell0' })),
    });
  });
  // One model (the SDK's models.retrieve): a name the fleet lists, an untagged name matching its `:latest`.
  router.get('/models/*model', async (req, res) => {
    const id = ([] as string[]).concat(req.params.model as string | string[]).join('/');
    const models = await fleetModels(client);
    const known = models.includes(id) || (!id.includes(':') && models.includes(`${id}:latest`));
    if (!known) {
      res.status(404).json(
        openAIError(404, `The model '${id}' is not one the fleet can route (GET /v1/models lists them)`, {
          code: ErrorCode.MODEL_NOT_FOUND,
          param: 'model',
        }),
      );
      return;
    }
    res.json({ id, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'cell0' });
  });
  for (const [path, allow] of [
    ['/chat/completions', 'POST'],
    ['/completions', 'POST'],
    ['/models', 'GET'],
  ] as const) {
    router.all(path, (req, res) => {
      res.setHeader('Allow', allow);
      res.status(405).json(
        openAIError(405, `${req.method} is not allowed on /v1${path}; use ${allow}`, {
          code: ErrorCode.METHOD_NOT_ALLOWED,
        }),
      );
    });
  }
  router.use(keepRouteLabelOnError());
  return router;
}

/** A non-streamed answer: waits for the job (up to maxWaitMs, then 504 with the job id). */
async function answerWhole(
  res: Response,
  kind: OpenAIKind,
  info: OpenAIRequestInfo,
  submit: Cell0Client['submitInference'],
  data: Parameters<Cell0Client['submitInference']>[0],
  maxWaitMs: number,
): Promise<void> {
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableEnded) ac.abort();
  });
  const r: SubmitResult<InferenceResult> = await submit(data, { waitMs: maxWaitMs, signal: ac.signal });
  if (r.state === 'completed') {
    provenanceHeaders(res, r.jobId, r.cached, r.joined);
    res.json(completionBody(answerMeta(kind, r.jobId, info.model), r.result));
    return;
  }
  if (r.state === 'failed') {
    const e = failedJobError(r.code, r.message);
    res.setHeader(CELL0_JOB_HEADER, r.jobId);
    res.status(e.status).json(e.body);
    return;
  }
  res.setHeader(CELL0_JOB_HEADER, r.jobId);
  const away = r.backendUnavailable;
  if (away) {
    res.setHeader('Retry-After', String(Math.max(1, Math.ceil(away.retryAfterMs / 1000))));
    res
      .status(503)
      .json(
        openAIError(
          503,
          `the backend (${away.backends.join(', ')}) is down on every worker; job ${r.jobId} is queued and runs once it is back`,
          { code: ErrorCode.BACKEND_UNAVAILABLE },
        ),
      );
    return;
  }
  res.setHeader('Retry-After', '1');
  res
    .status(504)
    .json(
      openAIError(
        504,
        `no answer within ${maxWaitMs} ms; job ${r.jobId} goes on: send the same request again to join it`,
        { code: ErrorCode.WAIT_TIMEOUT },
      ),
    );
}
