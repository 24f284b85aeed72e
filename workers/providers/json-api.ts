import { ConfigError, type FieldIssue } from '../../shared/errors.js';
import { HttpEndpoint, parseHttpUrl } from '../../shared/http/endpoint.js';
import { type HttpPoolRegistry } from '../../shared/http/pool.js';
import { withDefaults } from '../../shared/with-defaults.js';

/* What the search providers that speak JSON over HTTP (Brave, SearXNG) share: their common options, their checks, and how a client is set up from them. */

/** The options every JSON-over-HTTP provider takes, once merged with its defaults. */
export interface JsonApiOptions {
  baseUrl: string;
  timeoutMs: number;
  headers: Record<string, string>;
  pools?: HttpPoolRegistry;
}

/** What a provider's constructor gets from {@link setUpJsonApi}. */
export interface JsonApiClient<R> {
  opts: R;
  endpoint: HttpEndpoint;
  /** The configured headers with lower-cased names, and `accept: application/json`. */
  headers: Record<string, string>;
}

/** The checks of baseUrl, timeoutMs and headers. */
export function jsonApiIssues(o: JsonApiOptions): FieldIssue[] {
  const issues: FieldIssue[] = [];
  if (parseHttpUrl(o.baseUrl) === undefined)
    issues.push({
      field: 'baseUrl',
      reason: `expected an http:// or https:// URL, got ${JSON.stringify(o.baseUrl)}`,
    });
  if (typeof o.timeoutMs !== 'number' || !Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0)
    issues.push({ field: 'timeoutMs', reason: `expected a number of ms > 0, got ${String(o.timeoutMs)}` });
  if (typeof o.headers !== 'object' || o.headers === null)
    issues.push({ field: 'headers', reason: 'expected an object of header names to string values' });
  return issues;
}

/**
 * Merges `given` over `defaults`, checks the result with `validate` (a ConfigError whose fields are named
 * `client.field` when anything is wrong) and builds the endpoint and the request headers.
 */
export function setUpJsonApi<R extends JsonApiOptions>(
  client: string,
  defaults: { readonly [K in keyof R]?: R[K] },
  given: { readonly [K in keyof R]?: R[K] | undefined } | undefined,
  validate: (o: R) => FieldIssue[],
): JsonApiClient<R> {
  const opts = withDefaults<R>(defaults, given ?? {});
  const issues = validate(opts);
  if (issues.length > 0) throw new ConfigError(issues.map((i) => ({ ...i, field: `${client}.${i.field}` })));
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.headers)) headers[k.toLowerCase()] = String(v);
  headers.accept = 'application/json';
  return { opts, endpoint: new HttpEndpoint(opts.baseUrl, opts.pools), headers };
}
