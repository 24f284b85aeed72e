/**
 * The sections of the configuration reference (docs/configuration.md), in the order they appear there.
 * Every variable of the ENV registry names one; `see` is the page (under docs/) that explains the
 * behaviour the section's variables tune.
 */
export const ENV_SECTIONS = {
  redis: {
    title: 'Redis',
    about: 'Where the queues, caches and fleet state live, and how producers fail fast when Redis is away.',
    see: 'operations.md',
  },
  api: {
    title: 'HTTP API and dashboard',
    about: 'The `cell0 api` process (and the API of `cell0 start`): where it listens, keys, waiting.',
    see: 'http-api.md',
  },
  limits: {
    title: 'Input limits',
    about: 'Checked by the API and the client before anything reaches Redis; a request over one gets a 413.',
    see: 'http-api.md',
  },
  jobs: {
    title: 'Jobs and retention',
    about: 'Retries, and how long finished jobs are kept and reused by identical requests.',
    see: 'http-api.md',
  },
  batches: {
    title: 'Batch jobs',
    about:
      'POST /v1/batches: how large a batch may be, how many of its items run at once, how long it is kept.',
    see: 'batches.md',
  },
  workers: {
    title: 'Workers',
    about: 'One `cell0 worker` process: how much it runs at once, and its deadlines.',
    see: 'operations.md',
  },
  backends: {
    title: 'Backends',
    about: 'Which inference and search backends the workers call, and which model goes where.',
    see: 'backends.md',
  },
  guards: {
    title: 'Rate limits, retries and breakers',
    about:
      'The guard every backend origin has; a job whose backend is away waits without spending an attempt.',
    see: 'backends.md',
  },
  pool: {
    title: 'Backend HTTP connections',
    about: "The worker's pooled keep-alive HTTP client (one pool per backend origin).",
    see: 'backends.md',
  },
  caching: {
    title: 'Caching',
    about: 'The semantic cache of model answers, the search cache and the HTTP cache of the read endpoints.',
    see: 'caching.md',
  },
  resources: {
    title: 'Resource limits and load shedding',
    about: 'When a worker stops taking jobs, and when the API refuses new work.',
    see: 'resources.md',
  },
  models: {
    title: 'Model memory',
    about: "Which models stay resident in a worker's Ollama-compatible backend, and which go first.",
    see: 'resources.md',
  },
  maintenance: {
    title: 'Maintenance jobs',
    about: "The fleet's scheduled monitor and cleanup jobs, and disk cleanup.",
    see: 'resources.md',
  },
  simulator: {
    title: 'Simulator',
    about: 'The bundled Ollama-compatible simulator (`cell0 simulator`, and `cell0 start` without Ollama).',
    see: 'backends.md',
  },
  observability: {
    title: 'Metrics and observability',
    about:
      'Prometheus metrics at `GET /metrics` on the API and on each worker, and what their labels may carry; OpenTelemetry traces.',
    see: 'observability.md',
  },
  logging: {
    title: 'Logging',
    about: 'Structured JSON logs (pino) on stdout.',
    see: 'operations.md',
  },
} as const satisfies Record<string, { title: string; about: string; see: string }>;

/** The id of a section of the configuration reference. */
export type EnvSection = keyof typeof ENV_SECTIONS;
