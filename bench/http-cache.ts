/*
 * bench:http-cache — requests/s of one express app's two routes doing the same handler work (build a
 * ~2 KB JSON document from a small computation): `/bare/:id` as is, `/cached/:id` behind the
 * ResponseCache middleware (ALWAYS, cache warm, so every measured request is a HIT served from Redis).
 *
 * Redis is a private redis-server on a free loopback port (no persistence), killed at the end. The load
 * driver (an undici Pool, K connections, each looping requests for a fixed duration) runs in a child
 * process so it does not share the server's CPU. Requests cycle over 100 ids (100 cache entries). Runs
 * alternate A B / B A for P pairs; the headline is the median of the per-pair ratios cached / bare
 * (target >= 0.7).
 *
 *   npm run bench:http-cache -- [--duration SECONDS] [--connections K] [--pairs P] [--json]
 */
import { benchArgs } from './args.js';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import express from 'express';
import { Pool } from 'undici';
import { CacheStrategy, ResponseCache } from '../shared/cache/http/index.js';
import { waitUntilReady } from '../shared/redis/connection.js';
import { RedisClient } from '../shared/redis/redis-client.js';
import { redisAnswers } from '../shared/redis/embedded-redis.js';
import { sleep } from '../shared/sleep.js';
import { median } from './e2e-common.js';

const IDS = 100;
const TARGET = 0.7;

interface Options {
  duration: number;
  connections: number;
  pairs: number;
  json: boolean;
}

function parseArgs(argv: readonly string[]): Options {
  const o = benchArgs(
    argv,
    { duration: 3, connections: 32, pairs: 5 },
    'npm run bench:http-cache -- [--duration SECONDS] [--connections K] [--pairs P] [--json]',
  );
  if (o.pairs < 5) o.pairs = 5;
  return o;
}

// ------------------------------------------------------------------------------------------------------
// Driver (child process)

interface DriveRequest {
  url: string;
  route: 'bare' | 'cached';
  durationMs: number;
  connections: number;
}

interface DriveResult {
  route: 'bare' | 'cached';
  requests: number;
  rps: number;
  errors: number;
  hits: number;
  bytes: number;
}

async function drive(job: DriveRequest): Promise<DriveResult> {
  const pool = new Pool(job.url, { connections: job.connections, pipelining: 1 });
  let requests = 0;
  let errors = 0;
  let hits = 0;
  let bytes = 0;
  let next = 0;
  const t0 = performance.now();
  const deadline = t0 + job.durationMs;
  await Promise.all(
    Array.from({ length: job.connections }, async () => {
      while (performance.now() < deadline) {
        const id = next++ % IDS;
        try {
          const res = await pool.request({ path: `/${job.route}/${id}`, method: 'GET' });
          const body = await res.body.arrayBuffer();
          if (res.statusCode !== 200) errors++;
          if (res.headers['x-cache'] === 'HIT') hits++;
          bytes += body.byteLength;
          requests++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await pool.close();
  return { route: job.route, requests, rps: requests / seconds, errors, hits, bytes };
}

function runDriverProcess(): void {
  process.on('message', (msg: DriveRequest | 'exit') => {
    if (msg === 'exit') process.exit(0);
    drive(msg).then(
      (r) => process.send!(r),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
  process.send!('ready');
}

// ------------------------------------------------------------------------------------------------------
// Server side (main process)

/** The handler work both routes do: a small computation rendered as a ~2 KB JSON document. */
function buildDocument(id: number): unknown {
  let seed = (id * 2654435761) >>> 0;
  const rnd = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const lines = Array.from({ length: 28 }, (_, i) => {
    const unit = Math.round(rnd() * 10_000) / 100;
    const qty = 1 + Math.floor(rnd() * 9);
    return {
      sku: `SKU-${id.toString(36).padStart(4, '0')}-${i}`,
      unit,
      qty,
      net: Math.round(unit * qty * 100) / 100,
      vat: Math.round(unit * qty * 20) / 100,
    };
  });
  const net = lines.reduce((s, l) => s + l.net, 0);
  const sorted = lines.map((l) => l.net).sort((a, b) => a - b);
  return {
    id,
    currency: 'EUR',
    lines,
    totals: {
      net: Math.round(net * 100) / 100,
      vat: Math.round(net * 20) / 100,
      median: sorted[sorted.length >> 1],
      max: sorted[sorted.length - 1],
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function startRedis(): Promise<{ url: string; child: ChildProcess; dir: string }> {
  const port = await freePort();
  const dir = mkdtempSync(join(os.tmpdir(), 'cell0-bench-redis-'));
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  child.on('error', (err) => {
    console.error(`cannot start redis-server: ${err.message}`);
    process.exit(1);
  });
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (!(await redisAnswers(url, 500))) {
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer`);
    await sleep(50);
  }
  return { url, child, dir };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const redisServer = await startRedis();
  const redis = new RedisClient({ url: redisServer.url });
  await waitUntilReady(redis.connection, 10_000);
  const cache = new ResponseCache({ redis, config: { prefix: '{bench-httpcache}' } });
  cache.configureEndpoint('/cached/:id', CacheStrategy.ALWAYS, 3600);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(cache.middleware());
  app.get('/bare/:id', (req, res) => {
    res.json(buildDocument(Number(req.params.id)));
  });
  app.get('/cached/:id', (req, res) => {
    res.json(buildDocument(Number(req.params.id)));
  });
  const server: Server = createHttpServer(app);
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const driver = fork(process.argv[1]!, ['--driver'], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await once(driver, 'message');
  const run = async (route: 'bare' | 'cached', durationMs = o.duration * 1000): Promise<DriveResult> => {
    const job: DriveRequest = { url, route, durationMs, connections: o.connections };
    driver.send(job);
    const [r] = (await once(driver, 'message')) as [DriveResult];
    if (r.errors > 0) throw new Error(`${route}: ${r.errors} failed requests`);
    return r;
  };

  const docBytes = Buffer.byteLength(JSON.stringify(buildDocument(1)));
  const redisVersion = await redis
    .run((r) => r.info('server'))
    .then((info) => /redis_version:(\S+)/.exec(info)?.[1] ?? '?')
    .catch(() => '?');
  const pairs: Array<{ order: string; bare: number; cached: number; ratio: number; hitShare: number }> = [];
  try {
    // Warm-up (JIT, connections) and cache fill; not counted.
    await run('bare', 1000);
    await run('cached', 1000);
    await cache.whenIdle();
    for (let i = 0; i < o.pairs; i++) {
      let bare: DriveResult;
      let cached: DriveResult;
      if (i % 2 === 0) {
        bare = await run('bare');
        cached = await run('cached');
      } else {
        cached = await run('cached');
        bare = await run('bare');
      }
      pairs.push({
        order: i % 2 === 0 ? 'A B' : 'B A',
        bare: Math.round(bare.rps),
        cached: Math.round(cached.rps),
        ratio: Math.round((cached.rps / bare.rps) * 1000) / 1000,
        hitShare: Math.round((cached.hits / cached.requests) * 1000) / 1000,
      });
    }
  } finally {
    driver.send('exit');
    await new Promise<void>((r) => server.close(() => r()));
    server.closeAllConnections();
    await redis.close();
    redisServer.child.kill('SIGTERM');
    await once(redisServer.child, 'exit');
    rmSync(redisServer.dir, { recursive: true, force: true });
  }

  const cpus = os.cpus();
  const stats = cache.getStats();
  const summary = {
    date: new Date().toISOString(),
    machine: {
      cpu: `${cpus.length} x ${cpus[0]?.model ?? '?'}`,
      memGiB: Math.round(os.totalmem() / 2 ** 30),
      os: `${os.platform()} ${os.release()} ${os.arch()}`,
      node: process.version,
      redis: redisVersion,
      loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    },
    durationSeconds: o.duration,
    connections: o.connections,
    documentBytes: docBytes,
    pairs,
    medianRatio: median(pairs.map((p) => p.ratio)),
    cacheStats: stats,
  };
  console.log('bench:http-cache');
  console.log(
    `  machine: ${summary.machine.cpu}, ${summary.machine.memGiB} GiB, ${summary.machine.os}, node ${process.version}, redis ${redisVersion}, loadavg ${summary.machine.loadavg.join(' ')}`,
  );
  console.log(
    `  load: ${o.connections} keep-alive connections (undici Pool, child process), ${o.duration} s per run, ${IDS} ids, ${docBytes}-byte JSON`,
  );
  for (const [i, p] of pairs.entries())
    console.log(
      `  pair ${i + 1} (${p.order}): bare ${p.bare} req/s, cached ${p.cached} req/s (HIT ${Math.round(p.hitShare * 100)}%), ratio ${p.ratio}`,
    );
  console.log(
    `  median ratio cached/bare: ${summary.medianRatio} (target >= ${TARGET}: ${summary.medianRatio >= TARGET ? 'met' : 'NOT met'})`,
  );
  console.log(
    `  cache: hits ${stats.hits}, misses ${stats.misses}, stored ${stats.stored}, errors ${stats.errors}, hit rate ${stats.hitRate.toFixed(4)}`,
  );
  if (o.json) console.log(JSON.stringify(summary));
}

if (process.argv.includes('--driver')) {
  runDriverProcess();
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
