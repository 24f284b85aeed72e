/*
 * bench:cache-tiers — does the in-process tier pay in front of the Redis search cache?
 *
 * Loads E entries (default 1000) into a SearchCache on a private redis-server, then reads hot keys (a Zipf-
 * like mix over the entries) N times (default 20000) with K concurrent readers (default 16) through:
 *   A  SearchCache without the in-process tier (every read is a Redis GET + JSON parse);
 *   B  SearchCache with l1 { maxsize: E, ttlSeconds: 10 }.
 * Sides alternate in P pairs (default 5); prints reads/s, p50/p99 latency and the median ratio B/A.
 *
 *   npm run bench:cache-tiers -- [--entries E] [--reads N] [--concurrency K] [--pairs P]
 */
import { benchArgs } from './args.js';
import { spawn } from 'node:child_process';
import { freePort } from './fleet.js';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { SearchCache } from '../shared/cache/search-cache.js';
import { SearchProvider, SearchType } from '../shared/queues/enums.js';
import { type SearchResult } from '../shared/queues/results.js';
import { RedisClient } from '../shared/redis/redis-client.js';
import { waitUntilReady } from '../shared/redis/connection.js';
import { sleep } from '../shared/sleep.js';

const key = (i: number) => ({
  query: `query number ${i} about topic ${i % 37}`,
  provider: SearchProvider.LOCAL,
  type: SearchType.WEB,
  limit: 10,
  offset: 0,
});

const result = (i: number): SearchResult => ({
  query: key(i).query,
  provider: 'local',
  type: 'web',
  total: 10,
  hits: Array.from({ length: 10 }, (_, r) => ({
    title: `Result ${r} for ${i}`,
    url: `https://example.org/${i}/${r}`,
    snippet:
      'A snippet of about a hundred and twenty characters that stands in for what a search provider returns here.',
    source: 'example.org',
    rank: r + 1,
    score: 1 / (r + 1),
  })),
  tookMs: 3,
  servedBy: 'bench',
});

async function main(): Promise<void> {
  const {
    entries,
    reads,
    concurrency: k,
    pairs,
  } = benchArgs(
    process.argv.slice(2),
    { entries: 1000, reads: 20000, concurrency: 16, pairs: 5 },
    'npm run bench:cache-tiers -- [--entries E] [--reads N] [--concurrency K] [--pairs P]',
  );
  const port = await freePort();
  const server = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const url = `redis://127.0.0.1:${port}`;
  try {
    for (let t = 0; ; t++) {
      try {
        const probe = new Redis(url, {
          lazyConnect: true,
          maxRetriesPerRequest: 0,
          retryStrategy: () => null,
        });
        probe.on('error', () => undefined);
        await probe.connect();
        await probe.quit();
        break;
      } catch {
        if (t > 100) throw new Error('redis-server did not start');
        await sleep(50);
      }
    }
    const redis = new RedisClient({ url });
    await waitUntilReady(redis.connection, 5000);
    const info = await redis.run((r) => r.info('server'));
    const version = /redis_version:(\S+)/.exec(info)?.[1];
    const loader = new SearchCache({ redis, prefix: '{bench}' });
    for (let i = 0; i < entries; i++) await loader.set(key(i), result(i));
    // Zipf-like popularity: index = floor(entries * u^3) puts most reads on few keys.
    const order = Array.from({ length: reads }, () => Math.floor(entries * Math.random() ** 3));

    const run = async (l1: boolean) => {
      const cache = new SearchCache({
        redis,
        prefix: '{bench}',
        ...(l1 ? { l1: { maxsize: entries, ttlSeconds: 10 } } : {}),
      });
      const lat: number[] = [];
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: k }, async () => {
          while (next < reads) {
            const i = order[next++]!;
            const s = performance.now();
            const r = await cache.get(key(i));
            lat.push(performance.now() - s);
            if (!r) throw new Error('unexpected miss');
          }
        }),
      );
      const rps = reads / ((performance.now() - t0) / 1000);
      lat.sort((a, b) => a - b);
      return { rps, p50: lat[Math.floor(lat.length / 2)]!, p99: lat[Math.floor(lat.length * 0.99)]! };
    };
    await run(false);
    await run(true);
    console.log(
      `bench:cache-tiers  ${os.cpus().length} cpus, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, redis ${version}`,
    );
    console.log(`  ${entries} entries (~2 KB each), ${reads} reads (Zipf-like), ${k} concurrent readers`);
    const ratios: number[] = [];
    for (let p = 0; p < pairs; p++) {
      const [a, b] = p % 2 === 0 ? [await run(false), await run(true)] : [undefined, undefined];
      const bb = b ?? (await run(true));
      const aa = a ?? (await run(false));
      ratios.push(bb.rps / aa.rps);
      console.log(
        `  pair ${p + 1}: redis only ${Math.round(aa.rps)} reads/s (p50 ${aa.p50.toFixed(3)} ms, p99 ${aa.p99.toFixed(3)} ms)` +
          ` | with in-process tier ${Math.round(bb.rps)} reads/s (p50 ${bb.p50.toFixed(3)} ms, p99 ${bb.p99.toFixed(3)} ms)  ratio ${(bb.rps / aa.rps).toFixed(2)}`,
      );
    }
    ratios.sort((a, b) => a - b);
    console.log(
      `  median ratio (with tier / redis only): ${ratios[Math.floor(ratios.length / 2)]!.toFixed(2)}`,
    );
    await redis.close();
  } finally {
    server.kill('SIGTERM');
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
