// Processor of the queue-throughput scenario (scenarios/queue.yml): enqueues through Cell0Client, with no
// HTTP in between, so the queue layer (validation, caches, coalescing, BullMQ, the workers' pick-up and the
// result path) is measured alone. Uses the fleet's built package (dist/, made by `npm run build`).
//
// Metrics:
//   cell0.queue.enqueue_to_complete  histogram, ms: from infer() to its result
//   cell0.queue.jobs_completed       rate: results per second
//   cell0.queue.ran / .coalesced / .cached.exact / .cached.semantic / .errors   counters
// "coalesced": answered by a job another request of the same artillery worker started (in flight, or
// finished and retained), seen by its job id; joins across artillery workers are not seen here (the
// runner's summary compares results to the simulator's backend calls).
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { Cell0Client, loadConfig, silentLogger } = await import(join(root, 'dist/producers/index.js'));
const { buildCaches } = await import(join(root, 'dist/shared/cache/index.js'));
const { semanticEmbedder } = await import(join(root, 'dist/bin/embedder.js'));

const MODEL = process.env.CELL0_LOAD_MODEL ?? 'qwen2.5:7b';
const MAX_TOKENS = Number(process.env.CELL0_LOAD_MAX_TOKENS ?? 64);
/** Share of requests that repeat a popular prompt (so coalescing and the exact cache have work). */
const REPEAT_SHARE = 0.3;
const POPULAR = [
  'What is the capital of France?',
  'What does HTTP status 429 mean?',
  'What is Redis used for?',
  'Write a haiku about autumn.',
  'How does a circuit breaker protect a service?',
];

let client;
let starting;
/** Job ids this artillery worker has had results for (bounded). */
const seen = new Set();
let counter = 0;

function getClient() {
  starting ??= (async () => {
    const redisUrl = process.env.CELL0_LOAD_REDIS_URL ?? process.env.REDIS_URL;
    if (!redisUrl) throw new Error("queue scenario: set CELL0_LOAD_REDIS_URL to the fleet's Redis");
    const config = loadConfig({ ...process.env, REDIS_URL: redisUrl });
    const c = Cell0Client.fromConfig(config, silentLogger);
    const caches = buildCaches(config, c.submitter.redis, { embedder: semanticEmbedder(config) });
    if (caches) {
      c.caches.inference = caches.inference;
      c.caches.minConfidence = caches.minConfidence;
    }
    await c.start();
    client = c;
    return c;
  })();
  return starting;
}

function prompt() {
  if (Math.random() < REPEAT_SHARE) return POPULAR[Math.floor(POPULAR.length * Math.random() ** 2)];
  return `Summarise topic ${++counter} for a queue benchmark [${process.pid}-${Date.now()}-${Math.random()}]`;
}

/** One user: enqueue an inference through Cell0Client and wait for its result. */
export async function enqueueAndWait(_context, events) {
  const c = await getClient();
  const started = performance.now();
  const request = { model: MODEL, prompt: prompt(), params: { max_tokens: MAX_TOKENS, temperature: 0 } };
  try {
    const answer = await c.infer(request, { waitMs: 60_000 });
    events.emit('histogram', 'cell0.queue.enqueue_to_complete', performance.now() - started);
    events.emit('rate', 'cell0.queue.jobs_completed');
    // Every counter on every answer (0 or 1), so each exists for the ensure checks.
    const kind = answer.cached ? `cached.${answer.cached}` : seen.has(answer.jobId) ? 'coalesced' : 'ran';
    if (kind === 'ran') {
      if (seen.size >= 100_000) seen.clear();
      seen.add(answer.jobId);
    }
    for (const k of ['ran', 'coalesced', 'cached.exact', 'cached.semantic', 'errors'])
      events.emit('counter', `cell0.queue.${k}`, k === kind ? 1 : 0);
  } catch (err) {
    for (const k of ['ran', 'coalesced', 'errors'])
      events.emit('counter', `cell0.queue.${k}`, k === 'errors' ? 1 : 0);
    events.emit('counter', `cell0.queue.error.${err?.code ?? 'unknown'}`, 1);
  }
}

// The client's connections are unref'd by nobody: close it when the artillery worker winds down.
process.once('beforeExit', () => {
  void client?.close();
});
