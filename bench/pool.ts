/*
 * bench:pool — requests/s to the simulator through the pooled HTTP client (keep-alive connections from
 * HttpPoolRegistry) against unpooled requests (a new connection per request, closed after it), same run.
 *
 * Each side sends N requests (default 2000) with K in flight (default 16) to the simulator's GET /api/tags
 * (cheap, so connection cost is what differs). Sides alternate A B / B A for P pairs (default 5); the
 * headline is the median of the per-pair ratios pooled / unpooled.
 *
 *   npm run bench:pool -- [--requests N] [--concurrency K] [--pairs P] [--json]
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { Client } from 'undici';
import { benchArgs } from './args.js';
import { HttpPoolRegistry } from '../shared/http/pool.js';
import { OllamaSimulator } from '../workers/providers/simulator/ollama-simulator.js';
import { median } from './e2e-common.js';

function parseArgs(argv: readonly string[]) {
  return benchArgs(
    argv,
    { requests: 2000, concurrency: 16, pairs: 5 },
    'npm run bench:pool -- [--requests N] [--concurrency K] [--pairs P] [--json]',
  );
}

async function drive(n: number, k: number, one: () => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: k }, async () => {
      while (next < n) {
        next++;
        await one();
      }
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const sim = new OllamaSimulator();
  const { url } = await sim.start();

  const pooled = async (): Promise<number> => {
    const pools = new HttpPoolRegistry({ defaults: { maxConnectionsPerHost: o.concurrency } });
    const pool = pools.get(url);
    const rps = await drive(o.requests, o.concurrency, () =>
      pool.call({
        provider: 'bench',
        method: 'GET',
        path: '/api/tags',
        timeoutMs: 10_000,
        read: async (res) => {
          await res.body.dump();
        },
        onHttpError: (s) => new Error(`HTTP ${s}`),
      }),
    );
    await pools.close();
    return rps;
  };
  const unpooled = (): Promise<number> =>
    drive(o.requests, o.concurrency, async () => {
      // What a client without a pool does: connect, ask, close.
      const client = new Client(url, { pipelining: 0 });
      const res = await client.request({
        path: '/api/tags',
        method: 'GET',
        headers: { connection: 'close' },
      });
      await res.body.dump();
      await client.close();
    });

  await pooled();
  await unpooled(); // warm-up, not counted
  const pairs: Array<{ pooled: number; unpooled: number; ratio: number }> = [];
  for (let i = 0; i < o.pairs; i++) {
    let a: number;
    let b: number;
    if (i % 2 === 0) {
      a = await pooled();
      b = await unpooled();
    } else {
      b = await unpooled();
      a = await pooled();
    }
    pairs.push({ pooled: Math.round(a), unpooled: Math.round(b), ratio: Math.round((a / b) * 100) / 100 });
  }
  await sim.close();
  const summary = {
    date: new Date().toISOString(),
    host: `${os.cpus().length} cpus, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`,
    requests: o.requests,
    concurrency: o.concurrency,
    pairs,
    medianRatio: median(pairs.map((p) => p.ratio)),
  };
  console.log(
    `bench:pool  ${summary.host}; ${o.requests} requests, ${o.concurrency} in flight, GET /api/tags`,
  );
  for (const [i, p] of pairs.entries())
    console.log(`  pair ${i + 1}: pooled ${p.pooled} req/s, unpooled ${p.unpooled} req/s, ratio ${p.ratio}`);
  console.log(`  median ratio pooled/unpooled: ${summary.medianRatio}`);
  if (o.json) console.log(JSON.stringify(summary));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
