import { type Request, type RequestHandler, type Response, type Router } from 'express';
import { ErrorCode, ValidationError } from '../../../shared/errors.js';
import { type Cell0Client } from '../../cell0-client.js';
import { type SubmitResult } from '../../job-submitter.js';
import { tenantOf } from '../access-control.js';
import { failedStatus, sendError } from '../error-mapper.js';
import { jsonBody } from '../json-body.js';
import { isPlainObject, sendJson } from './util.js';

/** What the work routes need. */
export interface WorkRoutesOptions {
  client: Cell0Client;
  /** Tenant keys are configured: a caller's cache namespace starts with its tenant id. */
  keysConfigured: boolean;
  /** Default wait for a result before answering 202, ms. */
  resultWaitMs: number;
  /** Largest `wait` a request may ask for, ms. */
  maxWaitMs: number;
  /** Largest request body; larger → 413. */
  maxBodyBytes: number;
}

/**
 * The work routes of /v1: POST /inference and /search (validate, submit, wait up to `wait` ms, answer the
 * result, the failure or 202 with where to poll), POST /cache/false-hits, and 405 for other methods.
 */
export function addWorkRoutes(v1: Router, opts: WorkRoutesOptions): void {
  const { client } = opts;
  const json = jsonBody(opts.maxBodyBytes);
  const readBody = envelopeReader(opts);

  const requireJson: RequestHandler = (req, res, next) => {
    if (!req.is(['application/json', 'application/*+json'])) {
      sendError(res, ErrorCode.UNSUPPORTED_MEDIA_TYPE, 'send the request body as application/json');
      return;
    }
    next();
  };

  v1.post('/inference', requireJson, json, inferenceHandler(opts));

  v1.post('/search', requireJson, json, async (req, res) => {
    const { body, waitMs } = readBody(req, res);
    const data = client.parseSearch(body);
    respond(req, res, await client.submitSearch(data, { waitMs, signal: disconnectSignal(res) }));
  });

  // A caller that found a cached answer wrong says so: the entry goes, and the report is counted.
  v1.post('/cache/false-hits', requireJson, json, async (req, res) => {
    const body = req.body as unknown;
    const entry = isPlainObject(body) ? body.cacheEntry : undefined;
    if (typeof entry !== 'string' || entry.length === 0 || entry.length > 512)
      throw new ValidationError([
        { field: 'cacheEntry', reason: 'expected the cacheEntry of a cached answer' },
      ]);
    await client.reportFalseHit(entry);
    res.status(204).end();
  });
}

/**
 * POST /v1/inference's handler once its JSON body is read (`req.body`): validate, submit, wait up to `wait`
 * ms, answer. Rejects with the error to answer (validation, Redis away, …). Used by the route and by the
 * API's fast path for that route (inference-fast-path.ts), which gives it plain node:http objects with
 * `body`, `baseUrl` and `res.locals` set as the router would.
 */
export function inferenceHandler(opts: WorkRoutesOptions): (req: Request, res: Response) => Promise<void> {
  const { client } = opts;
  const readBody = envelopeReader(opts);
  return async (req, res) => {
    const { body, waitMs } = readBody(req, res);
    const data = client.parseInference(body);
    respond(req, res, await client.submitInference(data, { waitMs, signal: disconnectSignal(res) }));
  };
}

/** Reads a work request's parsed body: splits the envelope (`wait`) from the request proper. */
function envelopeReader(
  opts: WorkRoutesOptions,
): (req: Request, res: Response) => { body: Record<string, unknown>; waitMs: number } {
  const { keysConfigured, resultWaitMs, maxWaitMs } = opts;
  return (req, res) => {
    const body = req.body as unknown;
    if (!isPlainObject(body)) {
      throw new ValidationError([{ field: '(body)', reason: 'expected a JSON object' }]);
    }
    const { wait, ...rest } = body;
    // The tenant partition: with API keys, the namespace always starts with the caller's tenant id (which
    // makes it part of the job id and of every cache scope). A malformed `cache` is left for the schema.
    const cache = rest.cache ?? {};
    const tenant = tenantOf(res);
    if (keysConfigured && tenant !== undefined && isPlainObject(cache)) {
      const requested = cache.namespace;
      if (requested === undefined || typeof requested === 'string')
        rest.cache = { ...cache, namespace: requested === undefined ? tenant : `${tenant}:${requested}` };
    }
    let waitMs = resultWaitMs;
    if (wait !== undefined) {
      if (typeof wait !== 'number' || !Number.isInteger(wait) || wait < 0 || wait > maxWaitMs) {
        throw new ValidationError([
          { field: 'wait', reason: `expected an integer number of ms from 0 to ${maxWaitMs}` },
        ]);
      }
      waitMs = wait;
    }
    return { body: rest, waitMs };
  };
}

/** 405 for every method but POST on the work routes; registered after every other /v1 route. */
export function addMethodNotAllowed(v1: Router): void {
  for (const path of ['/inference', '/search']) {
    v1.all(path, (req, res) => {
      res.setHeader('Allow', 'POST');
      sendError(res, ErrorCode.METHOD_NOT_ALLOWED, `${req.method} is not allowed on /v1${path}; use POST`);
    });
  }
}

/** A submission's outcome as HTTP: 200 with the result, the failure's status, or 202 with where to poll. */
function respond(req: Request, res: Response, r: SubmitResult): void {
  if (r.state === 'completed') {
    sendJson(req, res, 200, {
      jobId: r.jobId,
      queue: r.queue,
      status: 'completed',
      cached: r.cached ?? false,
      ...(r.similarity !== undefined ? { similarity: r.similarity } : {}),
      ...(r.cacheEntry !== undefined ? { cacheEntry: r.cacheEntry } : {}),
      ...(r.cachedPrompt !== undefined ? { cachedPrompt: r.cachedPrompt } : {}),
      result: r.result,
    });
  } else if (r.state === 'failed') {
    sendJson(req, res, failedStatus(r.code), {
      jobId: r.jobId,
      queue: r.queue,
      status: 'failed',
      error: { code: r.code ?? ErrorCode.JOB_FAILED, message: r.message },
    });
  } else {
    const poll = `${req.baseUrl}/jobs/${r.queue}/${r.jobId}`;
    const away = r.backendUnavailable;
    res.setHeader('Location', poll);
    res.setHeader('Retry-After', away ? String(Math.ceil(away.retryAfterMs / 1000)) : '1');
    sendJson(req, res, 202, {
      jobId: r.jobId,
      queue: r.queue,
      status: 'pending',
      state: r.jobState,
      poll,
      // Answered without waiting: the backend is down on every worker; the job runs once it is back.
      ...(away
        ? {
            reason: 'backend_unavailable',
            backends: away.backends,
            retryAfterSec: Math.ceil(away.retryAfterMs / 1000),
          }
        : {}),
    });
  }
}

/** Aborts the wait (not the job) when the caller goes away. */
function disconnectSignal(res: Response): AbortSignal {
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableEnded) ac.abort();
  });
  return ac.signal;
}
