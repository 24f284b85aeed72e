import { z } from 'zod';
import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { int, bool } from '../schemas.js';

/*
 * Metrics: Prometheus metrics on the API and on each worker, and what their labels may carry.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const OBSERVABILITY_ENV = {
  CELL0_METRICS: {
    section: 'observability',
    default: '1',
    schema: bool,
    doc: 'Count and serve Prometheus metrics: `GET /metrics` on the API port, and on CELL0_METRICS_PORT for `cell0 worker` (0 turns both off)',
  },
  CELL0_METRICS_PORT: {
    section: 'observability',
    default: '9464',
    schema: int(0, 65535),
    doc: "Port of a `cell0 worker`'s metrics listener (`GET /metrics`), bound to CELL0_HOST like the API; `cell0 start` serves everything on its API port. 0 = any free port. When the port is taken (another worker on the host), the worker serves on a free port and logs a warning with its URL, rather than failing to start",
  },
  CELL0_METRICS_TOKEN: {
    section: 'observability',
    schema: z.string().min(16, 'expected at least 16 characters'),
    doc: 'When set, `GET /metrics` (API and workers) needs `Authorization: Bearer <token>`',
    secret: true,
  },
  CELL0_METRICS_TENANT_LABEL: {
    section: 'observability',
    default: '0',
    schema: bool,
    doc: 'Add a `tenant` label (the tenant id, a hash of the API key, never the key) to `cell0_http_requests_total`',
  },
} satisfies Record<string, EnvVar>;

export interface MetricsConfig {
  enabled: boolean;
  port: number;
  token: string | undefined;
  tenantLabel: boolean;
}

export function loadMetrics(p: ParsedEnv<typeof OBSERVABILITY_ENV>): MetricsConfig {
  return {
    enabled: p.CELL0_METRICS,
    port: p.CELL0_METRICS_PORT,
    token: p.CELL0_METRICS_TOKEN,
    tenantLabel: p.CELL0_METRICS_TENANT_LABEL,
  };
}
