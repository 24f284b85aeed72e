import { z } from 'zod';
import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { httpUrl } from '../schemas.js';

/*
 * Traces: OpenTelemetry, off unless the standard OTLP endpoint variable is set (docs/observability.md).
 * Listed under "Metrics and observability" in docs/configuration.md.
 */

export const TRACING_ENV = {
  OTEL_EXPORTER_OTLP_ENDPOINT: {
    section: 'observability',
    schema: httpUrl,
    doc: 'OpenTelemetry traces: the OTLP/HTTP collector (e.g. `http://localhost:4318`); spans are posted as JSON to `<endpoint>/v1/traces`. Unset: tracing is off and OpenTelemetry is not even loaded',
  },
  OTEL_SERVICE_NAME: {
    section: 'observability',
    schema: z.string().trim().min(1).max(200),
    doc: '`service.name` of the spans. Default `cell0-<command>` (`cell0-api`, `cell0-worker`, `cell0-start`, …)',
  },
} satisfies Record<string, EnvVar>;

export interface TracingConfig {
  /** OTLP/HTTP base URL; undefined = tracing off. */
  endpoint: string | undefined;
  serviceName: string | undefined;
}

export function loadTracing(p: ParsedEnv<typeof TRACING_ENV>): TracingConfig {
  return { endpoint: p.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: p.OTEL_SERVICE_NAME };
}
