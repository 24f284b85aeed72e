import { existsSync } from 'node:fs';
import { ConfigError, type FieldIssue } from '../errors.js';
import { type EnvVar, type ParsedEnv } from './env-var.js';
import { API_ENV, checkApi, loadApi, type ApiConfig } from './sections/api.js';
import { BACKENDS_ENV, checkBackends, loadBackends, type BackendsConfig } from './sections/backends.js';
import { BATCHES_ENV, loadBatches, type BatchesConfig } from './sections/batches.js';
import { CACHING_ENV, checkCaching, loadCaching, type CacheConfig } from './sections/caching.js';
import { GUARDS_ENV, loadGuards, type GuardsConfig } from './sections/guards.js';
import { JOBS_ENV, loadJobs, type JobsConfig } from './sections/jobs.js';
import { LIMITS_ENV, checkLimits, loadInputLimits, type InputLimits } from './sections/limits.js';
import { LOGGING_ENV, loadLogging, type LoggingConfig } from './sections/logging.js';
import { MAINTENANCE_ENV, loadMaintenance, type MaintenanceConfig } from './sections/maintenance.js';
import { MODELS_ENV, loadModels, type ModelsConfig } from './sections/models.js';
import { OBSERVABILITY_ENV, loadMetrics, type MetricsConfig } from './sections/observability.js';
import { POOL_ENV, loadPool, type PoolConfig } from './sections/pool.js';
import { TRACING_ENV, loadTracing, type TracingConfig } from './sections/tracing.js';
import { REDIS_ENV, loadRedis, type RedisConfig } from './sections/redis.js';
import {
  RESOURCES_ENV,
  checkResources,
  loadPressure,
  loadResourceLimits,
  type PressureConfig,
} from './sections/resources.js';
import { type ResourceLimits } from '../resources/types.js';
import { SIMULATOR_ENV, checkSimulator, loadSimulator, type SimulatorConfig } from './sections/simulator.js';
import { WORKERS_ENV, checkWorkers, loadWorkers, type WorkersConfig } from './sections/workers.js';

/*
 * The one module that reads the environment. Every variable is declared once, with its default and what
 * it expects, in the file of its section (sections/, one per section of docs/configuration.md, each with
 * the code that turns its variables into its part of the Config); `loadConfig()` validates them all at
 * start and reports every bad one in one error. Keep .env.example in step with ENV, and regenerate
 * docs/configuration.md from it with `npm run docs:config` (tests check both).
 */

export type { EnvVar } from './env-var.js';

/** Every environment variable cell0 reads, section by section (in the order of ENV_SECTIONS). */
export const ENV = {
  ...REDIS_ENV,
  ...API_ENV,
  ...LIMITS_ENV,
  ...JOBS_ENV,
  ...BATCHES_ENV,
  ...WORKERS_ENV,
  ...BACKENDS_ENV,
  ...GUARDS_ENV,
  ...POOL_ENV,
  ...CACHING_ENV,
  ...RESOURCES_ENV,
  ...MODELS_ENV,
  ...MAINTENANCE_ENV,
  ...SIMULATOR_ENV,
  ...OBSERVABILITY_ENV,
  ...TRACING_ENV,
  ...LOGGING_ENV,
} satisfies Record<string, EnvVar>;

type EnvName = keyof typeof ENV;
type Parsed = ParsedEnv<typeof ENV>;

/** Validated configuration of one cell0 process. */
export interface Config extends LoggingConfig {
  redis: RedisConfig;
  limits: ResourceLimits & InputLimits;
  cache: CacheConfig;
  api: ApiConfig;
  batches: BatchesConfig;
  jobs: JobsConfig;
  workers: WorkersConfig;
  providers: BackendsConfig & GuardsConfig & { http: PoolConfig };
  simulator: SimulatorConfig;
  resources: PressureConfig & ModelsConfig & MaintenanceConfig;
  metrics: MetricsConfig;
  /** OpenTelemetry traces (OTEL_EXPORTER_OTLP_ENDPOINT); off when no endpoint. */
  tracing: TracingConfig;
  embeddedRedis: 'auto' | 'never';
  dataDir: string;
}

function describe(value: string): string {
  return value.length > 60 ? JSON.stringify(value.slice(0, 60) + '…') : JSON.stringify(value);
}

/**
 * Reads and validates the environment. Throws a ConfigError naming every bad variable and what it
 * expected (the CLI turns it into exit code 2). Empty strings count as unset.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const issues: FieldIssue[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(ENV) as [EnvName, EnvVar][]) {
    const raw = env[name];
    const value = raw === undefined || raw.trim() === '' ? spec.default : raw;
    if (value === undefined) {
      out[name] = undefined;
      continue;
    }
    const r = spec.schema.safeParse(value);
    if (r.success) out[name] = r.data;
    else {
      const reason = r.error.issues[0]?.message ?? 'invalid value';
      issues.push({ field: name, reason: spec.secret ? reason : `${reason}, got ${describe(value)}` });
    }
  }
  const p = out as Parsed;
  // Checks across variables, once each is valid on its own; a body limit below the prompt limit is
  // reported alone.
  if (issues.length === 0) issues.push(...checkLimits(p));
  if (issues.length === 0)
    issues.push(
      ...checkBackends(p),
      ...checkCaching(p),
      ...checkResources(p),
      ...checkApi(p),
      ...checkSimulator(p),
      ...checkWorkers(p),
    );
  if (issues.length > 0) throw new ConfigError(issues);

  return {
    ...loadRedis(p),
    limits: { ...loadResourceLimits(p), ...loadInputLimits(p) },
    cache: loadCaching(p),
    api: loadApi(p),
    batches: loadBatches(p),
    jobs: loadJobs(p),
    workers: loadWorkers(p),
    providers: { ...loadBackends(p), ...loadGuards(p), http: loadPool(p) },
    simulator: loadSimulator(p),
    resources: { ...loadPressure(p), ...loadModels(p), ...loadMaintenance(p) },
    metrics: loadMetrics(p),
    tracing: loadTracing(p),
    ...loadLogging(p),
  };
}

/**
 * Loads `path` (default ./.env) into the environment when it exists. Variables already set in the
 * environment win over the file. Returns true when a file was read.
 */
export function loadEnvFile(path = '.env'): boolean {
  if (!existsSync(path)) return false;
  process.loadEnvFile(path);
  return true;
}

/** The URL with its password replaced, for logs and messages. */
export function redactUrl(url: string): string {
  // redis-cluster://user:password@h:p,h:p is no WHATWG URL (a list of hosts): hide the password by hand.
  const cluster = /^(rediss?-cluster:\/\/)(?:([^:@/]*):[^@/]*@)?(.*)$/.exec(url);
  if (cluster) return `${cluster[1]}${cluster[2] !== undefined ? `${cluster[2]}:***@` : ''}${cluster[3]}`;
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}
