/*
 * bench:batch — batching, measured side by side. Subcommands:
 *
 *   jobs   one batch job of N items (POST /v1/batches' path: client.batch) against N single requests
 *          (client.infer, W in flight), unique prompts so nothing coalesces, a no-op backend in a worker
 *          process of its own. Prints items/s and Redis commands per item of each side, and the median of
 *          the per-pair ratios (batch / singles). Pairs alternate their order.
 *
 *   embeddings  N embedding inputs micro-batched by the worker against one backend call each, on the
 *          simulator's cost model (see bench/batch-embeddings.ts).
 *
 *   npm run bench:batch -- jobs [--items N] [--window W] [--batch-concurrency B] [--concurrency C]
 *                               [--pairs P] [--redis URL] [--json]
 *
 * Without --redis a private redis-server is started (Redis commands are counted server-wide, so a shared
 * Redis would count other people's commands too).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Cell0Client } from '../producers/cell0-client.js';
import { Batches } from '../producers/batches/batches.js';
import { startEmbeddedRedis } from '../shared/redis/embedded-redis.js';
import { benchArgs } from './args.js';
import { embeddings, EMBEDDINGS_USAGE } from './batch-embeddings.js';
import { median } from './e2e-common.js';

const USAGE = `npm run bench:batch -- jobs [--items N] [--window W] [--batch-concurrency B] [--items-per-job K] [--concurrency C] [--pairs P] [--redis URL] [--json]
  --items N              items per side per pair (default 10000)
  --window W             single requests in flight (default 256)
  --batch-concurrency B  batch items run at once (default 256, CELL0_BATCH_CONCURRENCY's default)
  --items-per-job K      requests per BullMQ job of the batch (default: Batches' default)
  --concurrency C        worker concurrency (default 16)
  --pairs P              pairs, order alternating (default 3)
  --redis URL            Redis (default: a private redis-server)`;

interface SideResult {
  side: 'singles' | 'batch';
  items: number;
  wallMs: number;
  itemsPerSec: number;
  redisCallsPerItem: number;
  byCommand: Record<string, number>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function redisCalls(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

function startWorker(
  redisUrl: string,
  prefix: string,
  concurrency: number,
  embed?: object,
): Promise<ChildProcess> {
  const args = [redisUrl, prefix, String(concurrency), ...(embed ? [JSON.stringify(embed)] : [])];
  const child = fork(join(__dirname, 'batch-worker.ts'), args, {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`worker exited (${code})`)));
  });
}

async function stopWorker(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

async function runSide(
  side: 'singles' | 'batch',
  o: { items: number; window: number; batchConcurrency: number; itemsPerJob?: number; concurrency: number },
  redisUrl: string,
  admin: Redis,
): Promise<SideResult> {
  const prefix = `{bb-${randomBytes(5).toString('hex')}}`;
  const worker = await startWorker(redisUrl, prefix, o.concurrency);
  const client = new Cell0Client({ redisUrl, prefix, waitMs: 600_000 });
  await client.start();
  const batches = new Batches({
    client,
    concurrency: o.batchConcurrency,
    ...(o.itemsPerJob ? { itemsPerJob: o.itemsPerJob } : {}),
  });
  client.batches = batches;
  await batches.start();
  const tag = randomBytes(4).toString('hex');
  const body = (i: number) => ({ model: 'noop:1b', prompt: `bench ${tag} ${i}`, params: { max_tokens: 8 } });
  // Warm the paths (scripts loaded, connections open), then measure.
  await client.batch([{ custom_id: 'w', queue: 'inference', body: body(-1) }]);
  await client.infer(body(-2));
  const calls0 = await redisCalls(admin);
  const t0 = performance.now();
  if (side === 'batch') {
    const out = await client.batch(
      Array.from({ length: o.items }, (_, i) => ({
        custom_id: `${i}`,
        queue: 'inference' as const,
        body: body(i),
      })),
    );
    if (out.filter((l) => l?.status === 'completed').length !== o.items)
      throw new Error('bench:batch: not every batch item completed');
  } else {
    let next = 0;
    const lane = async () => {
      while (next < o.items) await client.infer(body(next++));
    };
    await Promise.all(Array.from({ length: o.window }, lane));
  }
  const wallMs = performance.now() - t0;
  const calls1 = await redisCalls(admin);
  const byCommand: Record<string, number> = {};
  let total = 0;
  for (const [cmd, n] of calls1) {
    if (cmd === 'info') continue;
    const d = n - (calls0.get(cmd) ?? 0);
    total += d;
    if (d / o.items >= 0.01) byCommand[cmd] = Math.round((d / o.items) * 100) / 100;
  }
  await client.close();
  await stopWorker(worker);
  await dropPrefix(admin, prefix);
  return {
    side,
    items: o.items,
    wallMs: Math.round(wallMs),
    itemsPerSec: Math.round((o.items * 1000) / wallMs),
    redisCallsPerItem: Math.round((total / o.items) * 100) / 100,
    byCommand,
  };
}

/** Leaves nothing behind under a run's prefix. */
async function dropPrefix(admin: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [c, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = c;
    if (keys.length > 0) await admin.unlink(...keys);
  } while (cursor !== '0');
}

/** Runs `fn` with the Redis of `--redis URL`, or a private redis-server started for the run. */
async function withRedis(url: string | undefined, fn: (redisUrl: string, admin: Redis) => Promise<void>) {
  let dataDir: string | undefined;
  let redisUrl = url;
  let stopRedis: (() => Promise<void>) | undefined;
  if (!redisUrl) {
    dataDir = mkdtempSync(join(tmpdir(), 'bench-batch-'));
    const r = await startEmbeddedRedis({ port: await freePort(), dataDir });
    redisUrl = r.url;
    stopRedis = () => r.close();
  }
  const admin = new Redis(redisUrl);
  try {
    await fn(redisUrl, admin);
  } finally {
    admin.disconnect();
    await stopRedis?.();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
}

async function jobs(argv: string[]): Promise<void> {
  const a = benchArgs(
    argv,
    { items: 10_000, window: 256, 'batch-concurrency': 256, 'items-per-job': 0, concurrency: 16, pairs: 3 },
    USAGE,
    ['redis'],
  );
  const o = {
    items: a.items,
    window: a.window,
    batchConcurrency: a['batch-concurrency'],
    ...(a['items-per-job'] > 0 ? { itemsPerJob: a['items-per-job'] } : {}),
    concurrency: a.concurrency,
  };
  const results: SideResult[][] = [];
  await withRedis(a.text.redis, async (redisUrl, admin) => {
    for (let p = 0; p < a.pairs; p++) {
      const order: ('singles' | 'batch')[] = p % 2 === 0 ? ['singles', 'batch'] : ['batch', 'singles'];
      const pair: SideResult[] = [];
      for (const side of order) {
        const r = await runSide(side, o, redisUrl, admin);
        console.log(
          `pair ${p + 1} ${side.padEnd(7)} ${r.itemsPerSec} items/s  ${r.redisCallsPerItem} Redis commands/item  (${r.wallMs} ms)`,
        );
        pair.push(r);
      }
      results.push(pair);
    }
  });
  const get = (pair: SideResult[], side: string) => pair.find((r) => r.side === side)!;
  const ratio = median(results.map((p) => get(p, 'batch').itemsPerSec / get(p, 'singles').itemsPerSec));
  const summary = {
    items: a.items,
    pairs: a.pairs,
    singles: {
      itemsPerSec: median(results.map((p) => get(p, 'singles').itemsPerSec)),
      redisCallsPerItem: median(results.map((p) => get(p, 'singles').redisCallsPerItem)),
      byCommand: get(results[0]!, 'singles').byCommand,
    },
    batch: {
      itemsPerSec: median(results.map((p) => get(p, 'batch').itemsPerSec)),
      redisCallsPerItem: median(results.map((p) => get(p, 'batch').redisCallsPerItem)),
      byCommand: get(results[0]!, 'batch').byCommand,
    },
    ratio: Math.round(ratio * 100) / 100,
  };
  console.log(
    `\nmedian: singles ${summary.singles.itemsPerSec} items/s, ${summary.singles.redisCallsPerItem} cmds/item; ` +
      `batch ${summary.batch.itemsPerSec} items/s, ${summary.batch.redisCallsPerItem} cmds/item; ` +
      `batch/singles throughput ratio ${summary.ratio} (median of ${a.pairs} pairs)`,
  );
  console.log(
    'commands/item, first pair:',
    JSON.stringify({ singles: summary.singles.byCommand, batch: summary.batch.byCommand }),
  );
  if (a.json) console.log(JSON.stringify(summary));
}

async function embeddingsCommand(argv: string[]): Promise<void> {
  const i = argv.indexOf('--redis');
  await withRedis(i >= 0 ? argv[i + 1] : undefined, (redisUrl, admin) =>
    embeddings(argv, {
      redisUrl,
      admin,
      startWorker: (prefix, concurrency, embed) => startWorker(redisUrl, prefix, concurrency, embed),
      stopWorker,
      dropPrefix: (prefix) => dropPrefix(admin, prefix),
      commandCounts: () => redisCalls(admin),
    }),
  );
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<void>> = {
  jobs,
  embeddings: embeddingsCommand,
};

async function main(): Promise<void> {
  const [sub, ...rest] = process.argv.slice(2);
  const run = sub ? SUBCOMMANDS[sub] : undefined;
  if (!run) {
    console.error(
      `usage: npm run bench:batch -- <${Object.keys(SUBCOMMANDS).join('|')}> [options]\n${USAGE}\n${EMBEDDINGS_USAGE}`,
    );
    process.exit(2);
  }
  await run(rest);
  process.exit(0);
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
