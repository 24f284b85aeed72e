import { type IncomingMessage, type ServerResponse } from 'node:http';
import {
  type ErrorRequestHandler,
  type Express,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import { keepRouteLabel } from '../../shared/metrics/http-metrics.js';
import { leanBodyLength, readJson } from './json-body.js';

/** What {@link inferenceFastPath} runs, in express's order for POST /v1/inference. */
export interface InferenceFastPathOptions {
  /** The app whose request and response prototypes an error answer (or the tenant guard) needs. */
  app: Express;
  /** The app-level middleware every request passes before the routes (request logging, metrics). */
  before: readonly RequestHandler[];
  /** The /v1 router's tenant guard. */
  guard: RequestHandler;
  /**
   * Tenant keys are configured: the guard may refuse, and its refusals are answered through express's
   * response methods, so the request and response get express's prototypes before it runs.
   */
  keysConfigured: boolean;
  /** Largest request body (the route's JSON reader's limit). */
  maxBodyBytes: number;
  /** The route's handler once the body is read (routes/work.ts inferenceHandler). */
  handler: (req: Request, res: Response) => Promise<void>;
  /** The app's error handler (error-mapper.ts errorHandler). */
  onError: ErrorRequestHandler;
}

const PATH = '/v1/inference';
/** The route as express's router leaves it on the request (the metrics' route label: baseUrl + path). */
const ROUTE = Object.freeze({ path: '/inference' });
/** Content types for which express's `req.is(['application/json', 'application/*+json'])` is true. */
const JSON_TYPES = new Set(['application/json', 'application/json; charset=utf-8']);

/**
 * POST /v1/inference, the hot route, without express's app and router: the same middleware and handler, called
 * in the order express calls them, on node:http's request and response as they come. Express would first give
 * both its prototypes (`Object.setPrototypeOf`, a new V8 shape per request) and walk its layers (the probes,
 * the /v1 mount, the OpenAI paths, the admin guard, the batch, job id and response-cache layers), none of
 * which serves this route.
 *
 * Returns false, touching nothing, for every request it does not take; express then answers it as before.
 * It takes only the exact path (no query, trailing slash or other case) with a body the route reads on its
 * lean path (a declared length within the limit, UTF-8) and a plain JSON content type, so the content-type
 * check (415) and the body reader's fallback (express.json) never arise here. A request it takes is answered
 * as express would: the handler's answers are written with node:http's own methods (sendJson), and an error
 * (malformed JSON, validation, Redis away) goes to the app's error handler once the request and response have
 * express's prototypes, with the route label kept and `baseUrl` as express's router leaves them after an
 * error comes out of the /v1 mount.
 */
export function inferenceFastPath(
  opts: InferenceFastPathOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { app, guard, keysConfigured, maxBodyBytes, handler, onError } = opts;
  const steps = [...opts.before, guard];
  const toExpress = (req: Request, res: Response): void => {
    if (Object.getPrototypeOf(req) !== app.request) Object.setPrototypeOf(req, app.request);
    if (Object.getPrototypeOf(res) !== app.response) Object.setPrototypeOf(res, app.response);
  };
  const noNext = (): void => undefined;
  return (message, answer) => {
    if (message.method !== 'POST' || message.url !== PATH) return false;
    const type = message.headers['content-type'];
    if (type === undefined || !JSON_TYPES.has(type.toLowerCase())) return false;
    const length = leanBodyLength(message, maxBodyBytes);
    if (length === undefined) return false;

    const req = message as Request;
    const res = answer as Response;
    // What express's app.handle and router set on the way to the route.
    req.res = res;
    res.req = req;
    res.locals = Object.create(null) as Response['locals'];
    req.originalUrl = PATH;
    req.baseUrl = '/v1';
    req.params = {};
    (req as { route?: unknown }).route = ROUTE;
    if (keysConfigured) toExpress(req, res);

    let settled = false;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      toExpress(req, res);
      // As the /v1 router's last layer does for an error on its way out, which then leaves the mount.
      keepRouteLabel(req, res);
      req.baseUrl = '';
      onError(err, req, res, noNext);
    };
    let i = 0;
    const next = (err?: unknown): void => {
      if (settled) return;
      if (err) return fail(err);
      try {
        if (i < steps.length) {
          const step = steps[i++]!;
          // express 5 sends a handler's rejected promise to next(err).
          const ret = step(req, res, next) as unknown;
          if (ret instanceof Promise) ret.catch(fail);
          return;
        }
        readJson(req, length, (bodyErr) => {
          if (bodyErr) return fail(bodyErr);
          handler(req, res).catch(fail);
        });
      } catch (e) {
        fail(e);
      }
    };
    next();
    return true;
  };
}
