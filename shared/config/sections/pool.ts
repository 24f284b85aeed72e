import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { int } from '../schemas.js';

/*
 * The worker's pooled keep-alive HTTP client to the backends (Config.providers.http).
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const POOL_ENV = {
  CELL0_HTTP_MAX_CONNECTIONS: {
    section: 'pool',
    default: '256',
    schema: int(1, 100_000),
    doc: 'Most backend HTTP requests in flight at once per worker process, over all backends',
  },
  CELL0_HTTP_CONNECTIONS_PER_HOST: {
    section: 'pool',
    default: '16',
    schema: int(1, 10_000),
    doc: 'Keep-alive connections per backend origin; more concurrent calls queue',
  },
  CELL0_HTTP_CONNECT_TIMEOUT_MS: {
    section: 'pool',
    default: '10000',
    schema: int(1, 600_000),
    doc: 'Longest wait for a TCP/TLS connection to a backend',
  },
  CELL0_HTTP_BODY_TIMEOUT_MS: {
    section: 'pool',
    default: '60000',
    schema: int(0, 3_600_000),
    doc: 'Longest silence between two chunks of a backend answer (0 = none)',
  },
  CELL0_HTTP_KEEPALIVE_MS: {
    section: 'pool',
    default: '4000',
    schema: int(1, 3_600_000),
    doc: 'How long an idle backend connection is kept when the server gives no keep-alive hint',
  },
} satisfies Record<string, EnvVar>;

export interface PoolConfig {
  maxConnections: number;
  connectionsPerHost: number;
  connectTimeoutMs: number;
  bodyTimeoutMs: number;
  keepAliveMs: number;
}

export function loadPool(p: ParsedEnv<typeof POOL_ENV>): PoolConfig {
  return {
    maxConnections: p.CELL0_HTTP_MAX_CONNECTIONS,
    connectionsPerHost: p.CELL0_HTTP_CONNECTIONS_PER_HOST,
    connectTimeoutMs: p.CELL0_HTTP_CONNECT_TIMEOUT_MS,
    bodyTimeoutMs: p.CELL0_HTTP_BODY_TIMEOUT_MS,
    keepAliveMs: p.CELL0_HTTP_KEEPALIVE_MS,
  };
}
