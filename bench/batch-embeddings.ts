/*
 * bench:batch embeddings — N embedding inputs through the fleet (Cell0Client.embed → embedding queue → a
 * Cell0Worker process → the Ollama simulator's /api/embed), micro-batched (the worker gathers up to 64
 * ready inputs per backend call, its default) against one backend call per input (maxBatchSize 1), with
 * the simulator's cost model on both sides (15 ms per call + 0.5 ms per input, 4 calls per model at once).
 * Every input is a distinct text, sent as single-input requests, W in flight. Pairs alternate their order;
 * the headline is the median of the per-pair throughput ratios (batched / single).
 *
 *   npm run bench:batch -- embeddings [--items N] [--window W] [--concurrency C] [--pairs P] [--redis URL]
 */
import { type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { type Redis } from 'ioredis';
import { Cell0Client } from '../producers/cell0-client.js';
import { OllamaSimulator } from '../workers/providers/simulator/index.js';
import { benchArgs } from './args.js';
import { median } from './e2e-common.js';

export const EMBEDDINGS_USAGE = `npm run bench:batch -- embeddings [--items N] [--window W] [--concurrency C] [--pairs P] [--redis URL] [--json]
  --items N        embedding inputs per side per pair (default 10000)
  --window W       single-input requests in flight (default 512)
  --concurrency C  worker concurrency on the embedding queue (default 256, the worker's default)
  --pairs P        pairs, order alternating (default 3)
  --redis URL      Redis (default: a private redis-server)`;

type Side = 'single' | 'batched';

interface EmbedSideResult {
  side: Side;
  items: number;
  wallMs: number;
  itemsPerSec: number;
  backendCalls: number;
  inputsPerCall: number;
  /** Redis commands per input, every process's (the Redis is the run's own), INFO excluded. */
  redisCallsPerItem: number;
}

/** What bench/batch.ts lends this subcommand: Redis, worker processes and the key clean-up. */
export interface BenchFleet {
  redisUrl: string;
  admin: Redis;
  startWorker(prefix: string, concurrency: number, embed?: object): Promise<ChildProcess>;
  stopWorker(child: ChildProcess): Promise<void>;
  dropPrefix(prefix: string): Promise<void>;
  /** Redis commands so far by command (INFO commandstats), to count a side's commands. */
  commandCounts(): Promise<Map<string, number>>;
}

const MODEL = 'nomic-embed-text';

async function runSide(
  side: Side,
  o: { items: number; window: number; concurrency: number },
  fleet: BenchFleet,
  sim: OllamaSimulator,
): Promise<EmbedSideResult> {
  const prefix = `{be-${randomBytes(5).toString('hex')}}`;
  const worker = await fleet.startWorker(prefix, o.concurrency, {
    ollamaUrl: sim.url,
    maxBatchSize: side === 'batched' ? 64 : 1,
  });
  // A busy host makes Redis answer late: a slow command is not a failed input here.
  const client = new Cell0Client({
    redisUrl: fleet.redisUrl,
    prefix,
    waitMs: 600_000,
    commandTimeoutMs: 30_000,
  });
  await client.start();
  const tag = randomBytes(4).toString('hex');
  // Warm the path (scripts loaded, connections open, the model resident), then measure.
  await client.embed({ model: MODEL, input: `warm ${tag}` });
  sim.reset();
  const calls0 = await fleet.commandCounts();
  const t0 = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < o.items) {
      const i = next++;
      const r = await client.embed({ model: MODEL, input: `bench ${tag} input ${i} about queues` });
      if (r.data.length !== 1) throw new Error('bench:batch embeddings: an answer without its vector');
    }
  };
  await Promise.all(Array.from({ length: o.window }, lane));
  const wallMs = performance.now() - t0;
  const embed = sim.stats().embed;
  let commands = 0;
  for (const [cmd, n] of await fleet.commandCounts())
    if (cmd !== 'info') commands += n - (calls0.get(cmd) ?? 0);
  await client.close();
  await fleet.stopWorker(worker);
  await fleet.dropPrefix(prefix);
  return {
    side,
    items: o.items,
    wallMs: Math.round(wallMs),
    itemsPerSec: Math.round((o.items * 1000) / wallMs),
    backendCalls: embed.calls,
    inputsPerCall: Math.round((o.items / Math.max(1, embed.calls)) * 10) / 10,
    redisCallsPerItem: Math.round((commands / o.items) * 100) / 100,
  };
}

export async function embeddings(argv: string[], fleet: BenchFleet): Promise<void> {
  const a = benchArgs(argv, { items: 10_000, window: 512, concurrency: 256, pairs: 3 }, EMBEDDINGS_USAGE, [
    'redis',
  ]);
  const sim = new OllamaSimulator();
  await sim.start();
  const results: EmbedSideResult[][] = [];
  try {
    for (let p = 0; p < a.pairs; p++) {
      const order: Side[] = p % 2 === 0 ? ['single', 'batched'] : ['batched', 'single'];
      const pair: EmbedSideResult[] = [];
      for (const side of order) {
        const r = await runSide(side, a, fleet, sim);
        console.log(
          `pair ${p + 1} ${side.padEnd(7)} ${r.itemsPerSec} inputs/s  ${r.backendCalls} backend calls ` +
            `(${r.inputsPerCall} inputs/call)  ${r.redisCallsPerItem} Redis commands/input  (${r.wallMs} ms)`,
        );
        pair.push(r);
      }
      results.push(pair);
    }
  } finally {
    await sim.close();
  }
  const get = (pair: EmbedSideResult[], side: Side) => pair.find((r) => r.side === side)!;
  const ratio = median(results.map((p) => get(p, 'batched').itemsPerSec / get(p, 'single').itemsPerSec));
  const summary = {
    items: a.items,
    pairs: a.pairs,
    single: median(results.map((p) => get(p, 'single').itemsPerSec)),
    batched: median(results.map((p) => get(p, 'batched').itemsPerSec)),
    backendCalls: {
      single: median(results.map((p) => get(p, 'single').backendCalls)),
      batched: median(results.map((p) => get(p, 'batched').backendCalls)),
    },
    redisCallsPerItem: {
      single: median(results.map((p) => get(p, 'single').redisCallsPerItem)),
      batched: median(results.map((p) => get(p, 'batched').redisCallsPerItem)),
    },
    ratio: Math.round(ratio * 100) / 100,
  };
  console.log(
    `\nmedian: one call per input ${summary.single} inputs/s, ${summary.backendCalls.single} backend calls, ` +
      `${summary.redisCallsPerItem.single} Redis commands/input; micro-batched ${summary.batched} inputs/s, ` +
      `${summary.backendCalls.batched} backend calls, ${summary.redisCallsPerItem.batched} Redis commands/input; ` +
      `batched/single throughput ratio ${summary.ratio} (median of ${a.pairs} pairs; target >= 5)`,
  );
  if (a.json) console.log(JSON.stringify(summary));
}
