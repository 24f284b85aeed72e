import { type IncomingMessage, type ServerResponse } from 'node:http';
import {
  type ErrorRequestHandler,
  type Express,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import { keepRouteLabel } from '../../../shared/metrics/http-metrics.js';
import { jsonBody, leanBodyLength } from '../json-body.js';
import { type OpenAIKind } from './openai-shapes.js';

/** What {@link openAIFastPath} runs, in express's order for POST /v1/chat/completions and /v1/completions. */
export interface OpenAIFastPathOptions {
  /** The app whose request and response prototypes the routes' answers use (res.status, res.json). */
  app: Express;
  /** The app-level middleware every request passes before the routes (request logging, metrics). */
  before: readonly RequestHandler[];
  /** The middleware of the OpenAI paths before their routes (OpenAI's error shape, the tenant guard). */
  pathMiddleware: readonly RequestHandler[];
  /** Largest request body (the routes' JSON reader's limit). */
  maxBodyBytes: number;
  /** The route's handler once the body is read (openai-router.ts openAIHandler), by kind. */
  handlers: Record<OpenAIKind, (req: Request, res: Response) => Promise<void>>;
  /** The app's error handler (error-mapper.ts errorHandler). */
  onError: ErrorRequestHandler;
}

/** The routes this path takes: the path under /v1 (the route's pattern) and its handler's kind. */
const ROUTES: ReadonlyMap<string, { sub: string; kind: OpenAIKind }> = new Map([
  ['/v1/chat/completions', { sub: '/chat/completions', kind: 'chat' as const }],
  ['/v1/completions', { sub: '/completions', kind: 'completion' as const }],
]);
/** Content types for which express's `req.is(['application/json', 'application/*+json'])` is true. */
const JSON_TYPES = new Set(['application/json', 'application/json; charset=utf-8']);

/**
 * POST /v1/chat/completions and POST /v1/completions (streamed or not) without express's app and router: the
 * same middleware, guard, body reader and handler, called in the order express calls them, with the request's
 * `url`, `baseUrl`, `route` and `params` as express's app, /v1 mount and OpenAI router leave them at each step
 * (a request refused by the guard is logged and counted as express does it). What is skipped is the walk
 * itself: express's app router (the probes, the /metrics route, the /v1 mount), the OpenAI router's layers
 * and route dispatch, and the content-type check, none of which decides anything for these requests.
 *
 * Returns false, touching nothing, for every request it does not take; express then answers it as before.
 * It takes only the exact paths (no query, trailing slash or other case) with a body the routes read on their
 * lean path (a declared length within the limit, UTF-8) and a plain JSON content type, so the content-type
 * check (415) never arises here. A request it takes gets express's request and response prototypes at once
 * (the routes answer with express's methods), as express's app does. An error (malformed JSON, validation,
 * Redis away) goes to the app's error handler with the route label kept and `url` and `baseUrl` as they are
 * once the error has left the OpenAI router and the /v1 mount.
 */
export function openAIFastPath(
  opts: OpenAIFastPathOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { app, maxBodyBytes, handlers, onError } = opts;
  const before = opts.before;
  const pathMiddleware = opts.pathMiddleware;
  const json = jsonBody(maxBodyBytes);
  const noNext = (): void => undefined;
  return (message, answer) => {
    if (message.method !== 'POST') return false;
    const path = message.url;
    const route = path === undefined ? undefined : ROUTES.get(path);
    if (route === undefined) return false;
    const type = message.headers['content-type'];
    if (type === undefined || !JSON_TYPES.has(type.toLowerCase())) return false;
    if (leanBodyLength(message, maxBodyBytes) === undefined) return false;

    const req = message as Request;
    const res = answer as Response;
    // What express's app.handle and router set on the way in.
    req.res = res;
    res.req = req;
    Object.setPrototypeOf(req, app.request);
    Object.setPrototypeOf(res, app.response);
    if (!res.locals) res.locals = Object.create(null) as Response['locals'];
    req.originalUrl = path!;
    req.baseUrl = '';
    req.params = {};
    const handler = handlers[route.kind];
    const mountedAt = `/v1${route.sub}`;

    let settled = false;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      // As the OpenAI router's last layer does for an error on its way out; then the router and the /v1 mount
      // give back the url and baseUrl they found.
      keepRouteLabel(req, res);
      req.url = path!;
      req.baseUrl = '';
      req.params = {};
      onError(err, req, res, noNext);
    };
    /** Calls a middleware as a layer does: a thrown error or a rejected promise goes to fail. */
    const call = (step: RequestHandler, after: (err?: unknown) => void): void => {
      try {
        const ret = step(req, res, after) as unknown;
        if (ret instanceof Promise) ret.catch(fail);
      } catch (e) {
        fail(e);
      }
    };
    let i = 0;
    let j = 0;
    const next = (err?: unknown): void => {
      if (settled) return;
      if (err) return fail(err);
      if (i < before.length) return call(before[i++]!, next);
      if (j < pathMiddleware.length) {
        // A `use` layer mounted at the route's path: it sees the path trimmed off (see the router's trimPrefix).
        req.url = '/';
        req.baseUrl = mountedAt;
        return call(pathMiddleware[j++]!, next);
      }
      // The route: under the /v1 mount, its pattern matched.
      req.url = route.sub;
      req.baseUrl = '/v1';
      req.params = {};
      (req as { route?: unknown }).route = { path: route.sub };
      call(json, (bodyErr?: unknown) => {
        if (bodyErr) return fail(bodyErr);
        if (settled) return;
        try {
          handler(req, res).catch(fail);
        } catch (e) {
          fail(e);
        }
      });
    };
    next();
    return true;
  };
}
