/*
 * bench:e2e — end-to-end overhead of cell0 against bare BullMQ.
 *
 * Pushes N no-op jobs end to end through
 *   A  bare BullMQ: a producer process doing queue.add + job.waitUntilFinished(queueEvents), and a worker
 *      process running new Worker(queue, async () => ({ ok: true }), { concurrency: C });
 *   B  cell0: a producer process calling Cell0Client.infer (unique prompts, so nothing coalesces), and a
 *      worker process running Cell0Worker with the no-op inference backend, concurrency C.
 * Both producers keep W jobs in flight. Each side of each pair runs in fresh child processes under a fresh
 * key prefix, which is deleted afterwards. Pairs alternate their order (A B, B A, …) to cancel drift; the
 * headline is the median of the per-pair throughput ratios B/A.
 *
 *   npm run bench:e2e -- [--jobs N] [--concurrency C] [--window W] [--pairs P] [--warmup M]
 *                        [--redis URL] [--json] [--cpu-prof DIR] [--metrics off|on|ab] [--stages]
 *                        [--node-flags F] [--against DIR]
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { SIDE_LABEL, median, type ProducerResult, type Side } from './e2e-common.js';
import { liveChildren, nextMessage, send, spawnChild, stopChild } from './e2e-children.js';
import { parseArgs, type Options } from './e2e-options.js';
import {
  QUIET_BG_CORES,
  fmt,
  machineBusyMs,
  mergeResults,
  redisCalls,
  redisCpuMs,
  row,
} from './e2e-measure.js';

const WORKER_SCRIPT = join(__dirname, 'e2e-worker.ts');
const PRODUCER_SCRIPT = join(__dirname, 'e2e-producer.ts');

/** Prefixes not cleaned yet, for Ctrl-C. */
const dirtyPrefixes = new Set<string>();

/**
 * Deletes every key under `prefix` (SCAN + UNLINK); returns how many. cell0 names its queues' keys inside
 * the hash tag (`{bench-…:inference}:…`, shared/queues/shards.ts) and bare BullMQ after it (`{bench-…}:…`),
 * so the pattern stops before the tag's closing brace: the run id is unique, and both shapes match.
 */
async function cleanPrefix(redis: Redis, prefix: string): Promise<number> {
  const pattern = `${prefix.endsWith('}') ? prefix.slice(0, -1) : prefix}*`;
  let deleted = 0;
  let cursor = '0';
  do {
    const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = nextCursor;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  dirtyPrefixes.delete(prefix);
  return deleted;
}

/** A producer's result plus the CPU the worker and Redis spent during the measured jobs. */
interface SideResult extends ProducerResult {
  workerCpuMs: number;
  /** Redis server CPU over the measured jobs (the whole server: other clients would count too). */
  redisCpuMs: number;
  /**
   * CPU other processes on the machine used during the measured jobs, in cores (machine busy time minus
   * producer, worker and Redis, over wall time). Near 0 on a quiet machine; NaN when not on Linux.
   */
  bgCores: number;
  /** Redis commands per measured job, by command (INFO commandstats; the whole server). */
  redisCallsPerJob: Record<string, number>;
}

/** One side of one pair: fresh worker and producer processes under a fresh prefix. */
async function runSide(side: Side, opts: Options, redis: Redis): Promise<SideResult> {
  const runId = randomBytes(6).toString('hex');
  const prefix = `{bench-${runId}}`;
  dirtyPrefixes.add(prefix);
  // --metrics ab runs cell0 on both sides, with metrics on side B only; --against runs cell0 on both sides,
  // another build of it on side A.
  const child: Side = opts.metrics === 'ab' || opts.against ? 'cell0' : side;
  const dist = opts.against && side === 'bare' ? { dist: opts.against } : {};
  const metrics = side === 'cell0' && opts.metrics !== 'off';
  const worker = spawnChild(
    WORKER_SCRIPT,
    {
      side: child,
      redisUrl: opts.redisUrl,
      prefix,
      concurrency: opts.concurrency,
      metrics,
      ...(opts.stages ? { stages: true } : {}),
      ...dist,
    },
    opts,
    `${side}-worker`,
  );
  try {
    await nextMessage(worker, 'ready', 60_000, `${side} worker`);
    const n = opts.producers;
    const producers = Array.from({ length: n }, (_, k) =>
      spawnChild(
        PRODUCER_SCRIPT,
        {
          side: child,
          metrics,
          ...dist,
          redisUrl: opts.redisUrl,
          prefix,
          jobs: Math.ceil(opts.jobs / n),
          window: opts.window,
          warmup: Math.ceil(opts.warmup / n),
          runId: `${runId}-${k}`,
          waitMs: 60_000,
          ...(opts.rate > 0 ? { rate: opts.rate / n } : {}),
          ...(opts.stages ? { stages: true } : {}),
        },
        opts,
        `${side}-producer-${k}`,
      ),
    );
    try {
      const timeoutMs = 60_000 + (opts.jobs + opts.warmup) * 20;
      await Promise.all(producers.map((p) => nextMessage(p, 'measuring', timeoutMs, `${side} producer`)));
      send(worker, { type: 'mark' });
      const redisCpu0 = await redisCpuMs(redis);
      const calls0 = await redisCalls(redis);
      const busy0 = machineBusyMs();
      const resultMessages = producers.map((p) => nextMessage(p, 'result', timeoutMs, `${side} producer`));
      for (const p of producers) send(p, { type: 'go' });
      const { latencies: _all, ...result } = mergeResults(
        (await Promise.all(resultMessages)).map((m) => m.result),
      );
      const busy1 = machineBusyMs();
      const redisCpu1 = await redisCpuMs(redis);
      const calls1 = await redisCalls(redis);
      const redisCallsPerJob: Record<string, number> = {};
      for (const [cmd, n] of calls1) {
        // The two INFO calls and this benchmark's own reads are not the jobs' doing.
        if (cmd === 'info') continue;
        const d = (n - (calls0.get(cmd) ?? 0)) / result.count;
        if (d >= 0.005) redisCallsPerJob[cmd] = Math.round(d * 100) / 100;
      }
      const stats = nextMessage(worker, 'stats', 10_000, `${side} worker`);
      send(worker, { type: 'stats', jobs: result.count });
      const { cpuMs: workerCpuMs } = await stats;
      await Promise.all(producers.map((p) => stopChild(p, 10_000, null)));
      const redisCpu = redisCpu1 - redisCpu0;
      const bg = (busy1 - busy0 - result.cpuMs - workerCpuMs - redisCpu) / result.wallMs;
      return {
        ...result,
        side,
        workerCpuMs: Math.round(workerCpuMs * 100) / 100,
        redisCpuMs: Math.round(redisCpu * 100) / 100,
        bgCores: Math.round(Math.max(0, bg) * 100) / 100,
        redisCallsPerJob,
      };
    } finally {
      await Promise.all(producers.map((p) => stopChild(p, 5000)));
    }
  } finally {
    await stopChild(worker, 35_000);
    await cleanPrefix(redis, prefix);
  }
}

interface Pair {
  index: number;
  order: string;
  bare: SideResult;
  cell0: SideResult;
  ratio: number;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.metrics === 'ab')
    Object.assign(SIDE_LABEL, { bare: 'A cell0 no metrics', cell0: 'B cell0 metrics' });
  if (opts.against) Object.assign(SIDE_LABEL, { bare: 'A cell0 --against', cell0: 'B cell0 this' });
  const redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true });
  redis.on('error', () => undefined);
  await redis.connect();
  const info = await redis.info('server');
  const redisVersion = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? 'unknown';

  const onSignal = () => {
    console.error('\ninterrupted: stopping children and deleting bench keys');
    void abort(130, opts.redisUrl);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const cpus = os.cpus();
  const machine = {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    ramGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis: redisVersion,
    loadAvg: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
  const date = new Date().toISOString();

  console.log('bench:e2e — end-to-end overhead, cell0 vs bare BullMQ (no-op jobs)');
  console.log(`date     ${date}`);
  console.log(`machine  ${machine.cpu}, ${machine.cores} cores, ${machine.ramGiB} GiB RAM, ${machine.os}`);
  console.log(
    `runtime  Node ${machine.node}, Redis ${machine.redis} at ${opts.redisUrl.replace(/\/\/[^@/]*@/, '//***@')}`,
  );
  console.log(`load     ${machine.loadAvg.join(' ')} (1/5/15-minute load average at start)`);
  console.log(
    `setup    jobs N=${opts.jobs}/side/pair, worker concurrency C=${opts.concurrency}, ` +
      `${opts.rate > 0 ? `open loop at ${opts.rate} jobs/s` : `window W=${opts.window}/producer`}, producers ${opts.producers}/side, ` +
      `pairs P=${opts.pairs}, warmup ${opts.warmup} jobs/side (not counted)`,
  );
  console.log(
    '         A = bare BullMQ (Queue.add + Job.waitUntilFinished, Worker async () => ({ ok: true }))',
  );
  console.log('         B = cell0 (Cell0Client.infer, unique prompts + Cell0Worker, NoopInferenceBackend);');
  console.log(
    '             no caches configured (unique prompts); each run: fresh processes + fresh key prefix',
  );
  if (opts.metrics !== 'off')
    console.log(
      opts.metrics === 'ab'
        ? '         --metrics ab: A is cell0 WITHOUT metrics, B is cell0 WITH them (Cell0Metrics in both processes)'
        : '         --metrics on: B counts in Cell0Metrics (worker and producer)',
    );
  if (opts.against)
    console.log(`         --against: A is NOT bare BullMQ but the cell0 compiled in ${opts.against}`);
  if (opts.cpuProfDir) console.log(`         CPU profiles of every child written to ${opts.cpuProfDir}`);
  if (opts.nodeFlags.length > 0)
    console.log(`         node flags of every child: ${opts.nodeFlags.join(' ')}`);
  console.log('');

  const widths = [10, 9, 7, 7, 7, 9, 7, 7, 7, 6, 8];
  const header = row(
    ['pair', 'A jobs/s', 'A p50', 'A p95', 'A p99', 'B jobs/s', 'B p50', 'B p95', 'B p99', 'B/A', 'bg A/B'],
    widths,
  );
  console.log(header);
  console.log('-'.repeat(header.length));

  const pairs: Pair[] = [];
  for (let p = 0; p < opts.pairs; p++) {
    const order: Side[] = p % 2 === 0 ? ['bare', 'cell0'] : ['cell0', 'bare'];
    const results: Partial<Record<Side, SideResult>> = {};
    for (const side of order) results[side] = await runSide(side, opts, redis);
    const bare = results.bare!;
    const cell0 = results.cell0!;
    const pair: Pair = {
      index: p + 1,
      order: order.map((s) => (s === 'bare' ? 'A' : 'B')).join(' '),
      bare,
      cell0,
      ratio: cell0.jobsPerSec / bare.jobsPerSec,
    };
    pairs.push(pair);
    console.log(
      row(
        [
          `${pair.index} (${pair.order})`,
          fmt(bare.jobsPerSec),
          fmt(bare.p50),
          fmt(bare.p95),
          fmt(bare.p99),
          fmt(cell0.jobsPerSec),
          fmt(cell0.p50),
          fmt(cell0.p95),
          fmt(cell0.p99),
          fmt(pair.ratio, 2),
          `${fmt(bare.bgCores, 1)}/${fmt(cell0.bgCores, 1)}`,
        ],
        widths,
      ),
    );
    for (const r of [bare, cell0]) {
      if (r.failures > 0)
        console.log(
          `   ${SIDE_LABEL[r.side]}: ${r.failures} of ${r.count} jobs failed (${r.firstError ?? '?'})`,
        );
    }
  }
  console.log('(latencies in ms: call to result, per job; jobs/s = N / producer wall time;');
  console.log(' bg A/B = cores used by other processes on the machine during each side, 0.0 = quiet)');

  const side = (s: Side) => {
    const rs = pairs.map((p) => p[s]);
    return {
      jobsPerSec: median(rs.map((r) => r.jobsPerSec)),
      p50: median(rs.map((r) => r.p50)),
      p95: median(rs.map((r) => r.p95)),
      p99: median(rs.map((r) => r.p99)),
      failures: rs.reduce((n, r) => n + r.failures, 0),
      bgCores: median(rs.map((r) => r.bgCores)),
      cpuUsPerJob: {
        producer: median(rs.map((r) => (r.cpuMs * 1000) / r.count)),
        worker: median(rs.map((r) => (r.workerCpuMs * 1000) / r.count)),
        redis: median(rs.map((r) => (r.redisCpuMs * 1000) / r.count)),
        total: median(rs.map((r) => ((r.cpuMs + r.workerCpuMs + r.redisCpuMs) * 1000) / r.count)),
      },
    };
  };
  const ratios = pairs.map((p) => p.ratio);
  // A pair during which other processes took a real share of the 2 cores measures them, not cell0.
  const quiet = pairs.filter(
    (p) => !(p.bare.bgCores > QUIET_BG_CORES) && !(p.cell0.bgCores > QUIET_BG_CORES),
  );
  const quietRatios = quiet.map((p) => p.ratio);
  const summary = {
    date,
    machine,
    options: {
      jobs: opts.jobs,
      concurrency: opts.concurrency,
      window: opts.window,
      pairs: opts.pairs,
      warmup: opts.warmup,
    },
    pairs: pairs.map((p) => ({
      pair: p.index,
      order: p.order,
      bare: p.bare,
      cell0: p.cell0,
      ratio: Math.round(p.ratio * 1000) / 1000,
    })),
    bare: side('bare'),
    cell0: side('cell0'),
    medianRatio: median(ratios),
    minRatio: Math.min(...ratios),
    maxRatio: Math.max(...ratios),
    quietPairs: quiet.map((p) => p.index),
    medianQuietRatio: quietRatios.length > 0 ? median(quietRatios) : NaN,
    cpuRatio: NaN,
  };
  summary.cpuRatio = summary.bare.cpuUsPerJob.total / summary.cell0.cpuUsPerJob.total;

  console.log('');
  console.log('summary (medians over pairs)');
  const sw = [16, 9, 7, 7, 7, 8];
  console.log(row(['side', 'jobs/s', 'p50', 'p95', 'p99', 'failures'], sw));
  for (const s of ['bare', 'cell0'] as const) {
    const m = summary[s];
    console.log(
      row([SIDE_LABEL[s], fmt(m.jobsPerSec), fmt(m.p50), fmt(m.p95), fmt(m.p99), String(m.failures)], sw),
    );
  }
  console.log('');
  console.log('CPU per measured job, µs (medians over pairs; user + system; redis = whole server)');
  const cw = [16, 9, 7, 7, 7];
  console.log(row(['side', 'producer', 'worker', 'redis', 'total'], cw));
  for (const s of ['bare', 'cell0'] as const) {
    const c = summary[s].cpuUsPerJob;
    console.log(
      row([SIDE_LABEL[s], fmt(c.producer, 0), fmt(c.worker, 0), fmt(c.redis, 0), fmt(c.total, 0)], cw),
    );
  }
  console.log('');
  console.log('Redis commands per measured job (last pair; whole server)');
  const last = pairs[pairs.length - 1];
  if (last) {
    for (const s of ['bare', 'cell0'] as const) {
      const calls = Object.entries(last[s].redisCallsPerJob).sort((x, y) => y[1] - x[1]);
      const total = calls.reduce((a, [, n]) => a + n, 0);
      console.log(
        `${SIDE_LABEL[s].padEnd(16)}  ${total.toFixed(2)}  (${calls.map(([c, n]) => `${c} ${n}`).join(', ')})`,
      );
    }
  }
  console.log('');
  console.log(
    `pair ratios B/A (jobs/s): ${ratios.map((r) => r.toFixed(2)).join(', ')}  (min ${fmt(summary.minRatio, 2)}, max ${fmt(summary.maxRatio, 2)})`,
  );
  console.log(
    `quiet pairs (bg <= ${QUIET_BG_CORES} cores on both sides): ${quiet.length ? quiet.map((p) => p.index).join(', ') : 'none'}; ` +
      `median ratio over them: ${fmt(summary.medianQuietRatio, 2)}`,
  );
  console.log(`CPU-per-job ratio (bare total / cell0 total): ${fmt(summary.cpuRatio, 2)}`);
  // The headline uses the quiet pairs when there are at least 3 of them, all pairs otherwise.
  const headline = quiet.length >= 3 ? summary.medianQuietRatio : summary.medianRatio;
  console.log(
    `cell0 / bare BullMQ throughput ratio: ${headline.toFixed(2)} (median over ${quiet.length >= 3 ? `${quiet.length} quiet` : `all ${pairs.length}`} pairs; target >= 1.4)`,
  );
  if (opts.json) console.log(JSON.stringify(summary));

  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  await redis.quit();
}

let aborting: Promise<never> | undefined;

/** Kills every child, deletes the keys of unfinished runs and exits. The first caller decides the exit code. */
function abort(code: number, redisUrl: string): Promise<never> {
  aborting ??= (async () => {
    await Promise.allSettled([...liveChildren].map((c) => stopChild(c, 3000, 'SIGKILL')));
    if (dirtyPrefixes.size > 0) {
      const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
      redis.on('error', () => undefined);
      for (const p of [...dirtyPrefixes]) await cleanPrefix(redis, p).catch(() => 0);
      redis.disconnect();
    }
    process.exit(code);
  })();
  return aborting;
}

main().catch(async (err: unknown) => {
  if (!aborting) console.error(err instanceof Error ? err.message : err);
  let redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  try {
    redisUrl = parseArgs(process.argv.slice(2)).redisUrl;
  } catch {
    // keep the default
  }
  await abort(1, redisUrl);
});
