import { z } from 'zod';
import { type FieldIssue } from '../../errors.js';
import { issue, type EnvVar, type ParsedEnv } from '../env-var.js';
import { int, bool, list } from '../schemas.js';

/*
 * The HTTP API and dashboard: where they listen, keys, waiting.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const API_ENV = {
  CELL0_HOST: {
    section: 'api',
    default: '127.0.0.1',
    schema: z.string().trim().min(1, 'expected an address to listen on'),
    doc: 'Address the API and dashboard listen on (0.0.0.0 in containers)',
  },
  CELL0_PORT: {
    section: 'api',
    default: '3000',
    schema: int(0, 65535),
    doc: 'Port of the HTTP API (and of Bull Board in `cell0 start`)',
  },
  CELL0_DASHBOARD_PORT: {
    section: 'api',
    default: '3001',
    schema: int(0, 65535),
    doc: 'Port of `cell0 dashboard` when run on its own',
  },
  CELL0_API_KEYS: {
    section: 'api',
    schema: list,
    doc: 'Comma-separated tenant API keys; when set, the /v1 work routes require `Authorization: Bearer <key>` and each key sees only its own jobs and cache entries',
    secret: true,
  },
  CELL0_ADMIN_KEYS: {
    section: 'api',
    schema: list,
    doc: 'Comma-separated admin keys, the only keys that open Bull Board, /v1/fleet and /v1/queues (with tenant keys and none of these, those routes are off)',
    secret: true,
  },
  CELL0_TENANT_SECRET: {
    section: 'api',
    schema: z.string().min(16, 'expected at least 16 characters, e.g. the output of `openssl rand -hex 32`'),
    doc: 'Secret the tenant ids are derived with (HMAC-SHA256 of each API key). Unset: one is generated on first start and kept in Redis under the queue prefix',
    secret: true,
  },
  CELL0_DASHBOARD_WRITE: {
    section: 'api',
    default: '0',
    schema: bool,
    doc: 'Let Bull Board retry, promote and remove jobs (read-only when 0)',
  },
  CELL0_RESULT_WAIT_MS: {
    section: 'api',
    default: '30000',
    schema: int(0, 600_000),
    doc: 'How long POST /v1/* waits for the result before answering 202 (request field `wait` overrides)',
  },
  CELL0_MAX_WAIT_MS: {
    section: 'api',
    default: '120000',
    schema: int(0, 600_000),
    doc: 'Largest `wait` a request may ask for',
  },
  CELL0_HTTP_KEEPALIVE_MS: {
    section: 'api',
    default: '65000',
    schema: int(1000, 3_600_000),
    doc: 'How long the API and dashboard keep an idle keep-alive connection; keep it above the idle timeout of any proxy or load balancer in front (commonly 60 s), so that the proxy, not the server, closes idle connections',
  },
  CELL0_API_REQUESTS_PER_TURN: {
    section: 'api',
    default: '4',
    schema: int(0, 100_000),
    doc: 'Requests the API starts per turn of its event loop; more wait, in order, for the next turns, so that a burst of requests does not hold back the Redis and backend replies of the requests started before it (0 = no limit)',
  },
} satisfies Record<string, EnvVar>;

export interface ApiConfig {
  host: string;
  port: number;
  dashboardPort: number;
  apiKeys: string[];
  adminKeys: string[];
  tenantSecret: string | undefined;
  dashboardWrite: boolean;
  resultWaitMs: number;
  maxWaitMs: number;
  keepAliveMs: number;
  requestsPerTurn: number;
}

/** Checks across the section's variables (run once each is valid on its own). */
export function checkApi(p: ParsedEnv<typeof API_ENV>): FieldIssue[] {
  // A key in both lists would let whoever holds a tenant key open the dashboard: refuse the ambiguity.
  const adminKeys = new Set(p.CELL0_ADMIN_KEYS ?? []);
  return (p.CELL0_API_KEYS ?? []).some((k) => adminKeys.has(k))
    ? issue(
        'CELL0_ADMIN_KEYS',
        'a key is also in CELL0_API_KEYS: a key is either a tenant key or an admin key, not both',
      )
    : [];
}

export function loadApi(p: ParsedEnv<typeof API_ENV>): ApiConfig {
  return {
    host: p.CELL0_HOST,
    port: p.CELL0_PORT,
    dashboardPort: p.CELL0_DASHBOARD_PORT,
    apiKeys: p.CELL0_API_KEYS ?? [],
    adminKeys: p.CELL0_ADMIN_KEYS ?? [],
    tenantSecret: p.CELL0_TENANT_SECRET,
    dashboardWrite: p.CELL0_DASHBOARD_WRITE,
    resultWaitMs: p.CELL0_RESULT_WAIT_MS,
    maxWaitMs: p.CELL0_MAX_WAIT_MS,
    keepAliveMs: p.CELL0_HTTP_KEEPALIVE_MS,
    requestsPerTurn: p.CELL0_API_REQUESTS_PER_TURN,
  };
}
