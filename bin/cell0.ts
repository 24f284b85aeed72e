#!/usr/bin/env node
/*
 * The `cell0` command. The only place that handles signals: the first SIGTERM/SIGINT closes every service
 * gracefully (workers finish their active jobs up to CELL0_SHUTDOWN_TIMEOUT_MS); a second one forces them
 * down (active jobs are put back to wait) and exits.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig, loadEnvFile, redactUrl, type Config } from '../shared/config/config.js';
import { ConfigError, RedisEvictionPolicyError } from '../shared/errors.js';
import { createLogger, routeConsoleToLogger, setHotPathLogSample, type Logger } from '../shared/logger.js';
import { configureConnectionLog } from '../shared/redis/connection-log.js';
import { checkEvictionPolicyAt } from '../shared/redis/redis-memory.js';
import { packageRoot } from '../shared/paths.js';
import { RedisNotInstalledError } from '../shared/redis/embedded-redis.js';
import { isQueueName, QUEUE_NAMES, type QueueName } from '../shared/queues/names.js';
import { type Service } from './runtime.js';
import { sleep } from '../shared/sleep.js';
import { startTracing } from '../shared/tracing/tracing.js';
import { IdleScavenger } from '../shared/resources/idle-scavenge.js';
import { type EvalCacheCommandOptions } from './eval-cache.js';
import { type CalibrateCacheCommandOptions } from './calibrate-cache.js';

// Each command loads only what it runs (dynamic imports below): a worker never loads express, Bull Board,
// the API or the simulator, an API never loads the worker's providers, and --help loads neither. That is
// memory a process keeps for its whole life (idle worker RSS), and start-up time.
const worker = () => import('./runtime.js');
const http = () => import('./runtime-api.js');
const simulator = () => import('./runtime-simulator.js');

const EXIT_CONFIG = 2;

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return '0.0.0';
  }
}

function parsePort(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new InvalidArgumentError('expected a port number from 0 to 65535');
  return n;
}

function parseConcurrency(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 1000)
    throw new InvalidArgumentError('expected an integer from 1 to 1000');
  return n;
}

function parseEmbedder(v: string): string {
  if (!/^(lexical|hashed|(ollama|openai):[A-Za-z0-9._:/@+-]+)$/.test(v))
    throw new InvalidArgumentError('expected lexical, hashed, ollama:<model> or openai:<model>');
  return v;
}

function parseDims(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 65_536)
    throw new InvalidArgumentError('expected an integer from 1 to 65536');
  return n;
}

function parsePrecision(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0.5 || n > 1)
    throw new InvalidArgumentError('expected a number in (0.5, 1]');
  return n;
}

function parseQueues(v: string): QueueName[] {
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = list.filter((q) => !isQueueName(q));
  if (list.length === 0 || bad.length > 0)
    throw new InvalidArgumentError(
      `expected a comma-separated list of ${QUEUE_NAMES.join(', ')}${bad.length ? `; unknown: ${bad.join(', ')}` : ''}`,
    );
  return [...new Set(list)] as QueueName[];
}

/** Loads the configuration or exits with code 2 naming every bad variable. */
function config(): Config {
  try {
    loadEnvFile();
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`cell0: ${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
}

/**
 * Runs services until a signal; prints their banners. Everything else the process prints goes through the
 * logger: library console output included, and Redis connection trouble once per outage (plus a summary
 * every CELL0_LOG_OUTAGE_SUMMARY_MS). A Redis whose maxmemory-policy is not noeviction stops the process
 * with exit code 2 (`redisPolicy`: checked before anything starts, and by each component as it connects).
 */
async function run(
  role: string,
  start: (cfg: Config, log: Logger, services: Service[], onFatal: (err: Error) => void) => Promise<void>,
  opts: { redisPolicy?: boolean; idleScavenge?: boolean } = {},
): Promise<void> {
  const cfg = config();
  const log = createLogger({ level: cfg.logLevel, name: role, destination: 'batched' });
  setHotPathLogSample(cfg.logSample);
  routeConsoleToLogger(log);
  configureConnectionLog(log, { summaryEveryMs: cfg.logOutageSummaryMs });
  const services: Service[] = [];
  let fatal = false;
  const onFatal = (err: Error) => {
    if (fatal) return;
    fatal = true;
    process.stderr.write(`cell0 ${role}: ${err.message}\n`);
    log.fatal({ err }, 'refusing to run');
    void Promise.allSettled([...services].reverse().map((s) => s.close())).then(() =>
      process.exit(EXIT_CONFIG),
    );
  };
  let stopping: Promise<void> | undefined;
  let forced = false;

  const stop = (signal: string) => {
    if (stopping) {
      forced = true;
      process.stderr.write(`cell0: ${signal} again, forcing shutdown\n`);
      log.warn({ signal }, 'second signal: forcing shutdown');
      const all = Promise.allSettled(services.map((s) => (s.forceClose ?? s.close)()));
      // Referenced: the process must reach exit(1) even if nothing else keeps it alive.
      void Promise.race([all, sleep(4000)]).then(() => process.exit(1));
      return;
    }
    process.stderr.write(`cell0: ${signal} received, shutting down (send it again to force)\n`);
    log.info({ signal }, 'shutting down');
    // Backstop: whatever happens below, the process ends a while after the workers' own deadline.
    setTimeout(() => {
      log.error('shutdown did not finish in time; exiting');
      process.exit(1);
    }, cfg.workers.shutdownTimeoutMs + 15_000).unref();
    stopping = (async () => {
      for (const s of [...services].reverse()) {
        const t0 = performance.now();
        try {
          await s.close();
          log.debug({ service: s.name, ms: Math.round(performance.now() - t0) }, 'service closed');
        } catch (err) {
          log.error({ err, service: s.name }, 'error while closing');
        }
      }
    })();
    void stopping.then(() => process.exit(forced ? 1 : 0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

  try {
    if (opts.redisPolicy) await checkEvictionPolicyAt(cfg.redis.url);
    // Traces only with OTEL_EXPORTER_OTLP_ENDPOINT; started before any queue or worker exists, closed last
    // (services close in reverse) so the last spans are sent.
    if (cfg.tracing.endpoint) {
      const tracing = await startTracing({
        endpoint: cfg.tracing.endpoint,
        serviceName: cfg.tracing.serviceName ?? `cell0-${role}`,
      });
      services.push({
        name: 'tracing',
        banner: [`traces     OpenTelemetry → ${redactUrl(cfg.tracing.endpoint)}/v1/traces (OTLP/HTTP)`],
        close: () => tracing.shutdown(),
      });
    }
    await start(cfg, log, services, onFatal);
    // Once started (not while it starts): between bursts of work, the young generation is scavenged while
    // almost nothing in it is alive, so the next burst does not meet a scavenge that copies its requests in
    // flight (see IdleScavenger).
    if (opts.idleScavenge && cfg.resources.idleScavengeMs > 0) {
      const scavenger = new IdleScavenger({
        idleMs: cfg.resources.idleScavengeMs,
        onShrink: (from, to) =>
          log.info(
            { fromBytes: from, toBytes: to },
            'idle scavenges stopped: V8 shrank the young generation (run node with --min-semi-space-size equal to --max-semi-space-size)',
          ),
      });
      scavenger.start();
      services.push({ name: 'idle scavenge', banner: [], close: () => scavenger.close() });
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`cell0 ${role}: could not start: ${message}\n`);
    log.error({ err }, 'start failed');
    await Promise.allSettled([...services].reverse().map((s) => s.close()));
    process.exit(
      err instanceof RedisEvictionPolicyError ? EXIT_CONFIG : err instanceof RedisNotInstalledError ? 1 : 1,
    );
  }
  const lines = services.flatMap((s) => s.banner);
  process.stderr.write(`cell0 ${role} ${version()} ready\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
}

const program = new Command();
program
  .name('cell0')
  .description(
    'A BullMQ job-queue worker fleet for LLM inference and web search. Configuration comes from the environment (see .env.example).',
  )
  .version(version());

program
  .command('start')
  .description(
    'All in one, for a first run: Redis (private, if none answers), the Ollama-compatible simulator (unless CELL0_OLLAMA_URL is set or no model is routed to Ollama), workers, the API and Bull Board',
  )
  .option('-p, --port <port>', 'API port (default CELL0_PORT)', parsePort)
  .action((o: { port?: number }) =>
    run(
      'start',
      async (cfg, log, services, onFatal) => {
        const [{ ensureRedis, startWorker }, { startApi }, { startSimulator }, { effectiveRoutes }] =
          await Promise.all([worker(), http(), simulator(), import('../workers/providers/from-config.js')]);
        const r = await ensureRedis(cfg, log);
        if (r.service) services.push(r.service);
        let ollamaUrl = r.config.providers.ollamaUrl;
        // The simulator stands in for Ollama only when some model is routed to Ollama with no URL of its own.
        const needsLocalOllama = effectiveRoutes(r.config).some(
          (route) => route.kind === 'ollama' && !route.url,
        );
        if (!ollamaUrl && needsLocalOllama) {
          const sim = await startSimulator(r.config, log);
          services.push(sim);
          ollamaUrl = sim.url;
        }
        const workerService = await startWorker(r.config, log, ollamaUrl ? { ollamaUrl } : {});
        services.push(workerService);
        const api = await startApi(r.config, log, {
          dashboard: true,
          onFatal,
          ...(o.port !== undefined ? { port: o.port } : {}),
        });
        services.push(api);
        // API and worker in one process: the results of the jobs the API adds go to it from the worker
        // directly, not through its reply inbox in Redis (other producers still get theirs through Redis).
        workerService.worker.handRepliesTo(api.client.submitter.localReplies);
        // And the jobs the API adds are taken by the worker right behind their adds while it has free
        // slots, without the round trips of its fetch loop (they stay active and locked in Redis as usual),
        // unless CELL0_LOCAL_TAKE=0 leaves them all to the fetch loop.
        if (r.config.workers.localTake) api.client.submitter.takeLocallyWith(workerService.worker.localTaker);
        // And the entries of the token streams the worker writes reach the API's readers in this process
        // directly as they are written (still written to Redis for every other reader).
        workerService.worker.relayTokensTo(api.client.tokenStreams().local);
        log.info({ redis: redactUrl(r.config.redis.url) }, 'cell0 started');
      },
      { redisPolicy: true, idleScavenge: true },
    ),
  );

program
  .command('api')
  .description(
    'The HTTP API (producers): POST /v1/inference, POST /v1/search, POST /v1/embeddings, GET /v1/jobs/:queue/:id, /healthz, /readyz',
  )
  .option('-p, --port <port>', 'port (default CELL0_PORT)', parsePort)
  .option('--dashboard', 'also serve Bull Board at /admin/queues')
  .option('--reuse-port', 'share the port with other `cell0 api` processes (SO_REUSEPORT; Linux)')
  .action((o: { port?: number; dashboard?: boolean; reusePort?: boolean }) =>
    run(
      'api',
      async (cfg, log, services, onFatal) => {
        const { startApi } = await http();
        services.push(
          await startApi(cfg, log, {
            dashboard: o.dashboard === true,
            reusePort: o.reusePort === true,
            onFatal,
            ...(o.port !== undefined ? { port: o.port } : {}),
          }),
        );
      },
      { redisPolicy: true, idleScavenge: true },
    ),
  );

program
  .command('worker')
  .description('A worker process; run as many as you like, on any hosts that reach Redis')
  .option(
    '-q, --queues <list>',
    `queues to serve, comma-separated (default ${QUEUE_NAMES.join(',')})`,
    parseQueues,
  )
  .option(
    '-c, --concurrency <n>',
    'jobs at once per queue (default CELL0_INFERENCE_CONCURRENCY / CELL0_SEARCH_CONCURRENCY)',
    parseConcurrency,
  )
  .action((o: { queues?: QueueName[]; concurrency?: number }) =>
    run(
      'worker',
      async (cfg, log, services) => {
        const { startWorker } = await worker();
        services.push(
          await startWorker(cfg, log, {
            serveMetrics: true,
            ...(o.queues ? { queues: o.queues } : {}),
            ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
          }),
        );
      },
      { redisPolicy: true, idleScavenge: true },
    ),
  );

program
  .command('dashboard')
  .description('Bull Board on its own port (read-only unless CELL0_DASHBOARD_WRITE=1)')
  .option('-p, --port <port>', 'port (default CELL0_DASHBOARD_PORT)', parsePort)
  .action((o: { port?: number }) =>
    run(
      'dashboard',
      async (cfg, log, services, onFatal) => {
        const { startDashboard } = await http();
        services.push(
          await startDashboard(cfg, log, { onFatal, ...(o.port !== undefined ? { port: o.port } : {}) }),
        );
      },
      { redisPolicy: true },
    ),
  );

program
  .command('simulator')
  .description(
    'The Ollama-compatible simulator (/api/generate, /api/chat, /api/embed, /api/ps, /api/tags, /_sim/stats)',
  )
  .option('-p, --port <port>', 'port (default CELL0_SIM_PORT)', parsePort)
  .option('--host <host>', 'address to listen on (default CELL0_SIM_HOST)')
  .action((o: { port?: number; host?: string }) =>
    run('simulator', async (cfg, log, services) => {
      const sim = {
        ...cfg.simulator,
        ...(o.port !== undefined ? { port: o.port } : {}),
        ...(o.host ? { host: o.host } : {}),
      };
      const { startSimulator } = await simulator();
      services.push(await startSimulator({ ...cfg, simulator: sim }, log));
    }),
  );

program
  .command('eval-cache')
  .description(
    'Measures the semantic cache on labelled prompt pairs (label<TAB>prompt_a<TAB>prompt_b per line): stores a, looks up b, prints precision and recall per confidence level as JSON',
  )
  .argument('<file>', 'TSV file of pairs (see test/fixtures/README.md)')
  .option('--no-guard', 'turn the reversal/negation guard off (to measure what it costs in recall)')
  .option('--json', 'print the report as JSON (the default)')
  .option('--errors', 'also list the pairs misclassified at the default level (high)')
  .option('-c, --concurrency <n>', 'pairs evaluated at once (default 4)', parseConcurrency)
  .option(
    '--embedder <name>',
    'lexical, hashed, ollama:<model> or openai:<model> (default CELL0_SEMANTIC_EMBEDDER, with CELL0_SEMANTIC_THRESHOLDS)',
    parseEmbedder,
  )
  .action(async (file: string, o: EvalCacheCommandOptions) => {
    const cfg = config();
    const log = createLogger({ level: cfg.logLevel, name: 'eval-cache', destination: process.stderr });
    const { evalCacheCommand } = await import('./eval-cache.js');
    const code = await evalCacheCommand(file, o, cfg, log);
    // stdout carries the report: let it drain before exiting.
    process.stdout.write('', () => process.exit(code));
  });

program
  .command('calibrate-cache')
  .description(
    'Finds the semantic cache thresholds (high, medium, low) that hold a precision on labelled prompt pairs, for the configured or a given embedder, and prints them as CELL0_SEMANTIC_THRESHOLDS (needs no Redis)',
  )
  .argument('<file>', 'TSV file of pairs (see test/fixtures/README.md)')
  .option(
    '--embedder <name>',
    'lexical, hashed, ollama:<model> or openai:<model> (default CELL0_SEMANTIC_EMBEDDER)',
    parseEmbedder,
  )
  .option(
    '--dims <n>',
    'vector length of an ollama:/openai: embedder (default: asked from the model)',
    parseDims,
  )
  .option('--precision <p>', 'precision the high level must hold (default 0.98)', parsePrecision)
  .option('--no-guard', 'calibrate without the reversal/negation guard')
  .option('--json', 'print the report as JSON')
  .action(async (file: string, o: CalibrateCacheCommandOptions) => {
    const cfg = config();
    const log = createLogger({ level: cfg.logLevel, name: 'calibrate-cache', destination: process.stderr });
    const { calibrateCacheCommand } = await import('./calibrate-cache.js');
    const code = await calibrateCacheCommand(file, o, cfg, log);
    process.stdout.write('', () => process.exit(code));
  });

program
  .command('batch')
  .description(
    "Runs a JSONL file of requests ({custom_id, queue, body} per line) as one batch job on a running API, with a progress bar, and writes one result line per request in the file's order (docs/batches.md)",
  )
  .argument('<file>', 'JSON Lines file of requests')
  .option('-o, --output <file>', 'where the results go (default: stdout)')
  .option('--url <url>', 'the API (default http://127.0.0.1:CELL0_PORT)')
  .option('--api-key <key>', 'tenant API key, when the API has CELL0_API_KEYS')
  .action(async (file: string, o: { output?: string; url?: string; apiKey?: string }) => {
    const url = o.url ?? `http://127.0.0.1:${config().api.port}`;
    const { batchCommand } = await import('./batch-command.js');
    const code = await batchCommand(file, {
      url,
      ...(o.apiKey !== undefined ? { apiKey: o.apiKey } : {}),
      ...(o.output !== undefined ? { output: o.output } : {}),
    });
    process.stdout.write('', () => process.exit(code));
  });

/** The CLI's commands and options, for code that reads them (the compose file's check) without running it. */
export { program };

if (require.main === module) {
  program.parseAsync(process.argv).catch((err: unknown) => {
    process.stderr.write(`cell0: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
