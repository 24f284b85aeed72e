/*
 * bench:semantic — lookup latency of the semantic cache (LSH bands in Redis + exact re-rank) against a
 * brute-force scan of the same stored vectors.
 *
 * Starts a PRIVATE redis-server (free port, no persistence; killed at the end), loads 10k and then 100k
 * synthetic prompts (bench/semantic-corpus.ts: templates × vocabulary) into one scope through
 * SemanticCache.set() (many in flight: commands pipeline on the connection), then runs 2000 lookups:
 * 20% exact (case/punctuation variants), 40% paraphrases of stored prompts, 40% new prompts of the same
 * templates (misses that look like hits). Reported for each size:
 *   - cache:    SemanticCache.get() latency p50/p99 (exact key, then LSH candidates + cosine re-rank);
 *   - baseline: the same lookup with the similarity step replaced by a scan of ALL stored vectors held in
 *               memory (one contiguous Int8Array fetched from Redis beforehand, norms precomputed: the
 *               fairest scan, with no Redis transfer per query), then the same guard and value fetch;
 *   - the ratio baseline/cache at p50 and p99, and what each answered (paraphrase hit rate, wrong hits).
 * Targets: cache p99 <= 2 ms at 100k, and >= 50x faster than the scan (p50). Exit code 1 when missed.
 *
 * Where the tail comes from is printed too: the lookups over 2 ms that a GC pause overlapped and the others
 * (with their own CPU time), Redis's time per script call (SLOWLOG during the lookups), and the CPU time of
 * each of this process's threads (V8's helper threads compile and collect alongside the main thread).
 *
 *   npm run bench:semantic -- [--lookups N] [--warm-up N (6000)] [--scan-lookups N] [--embedder lexical|hashed] [--json]
 *                              [--cpu-profile FILE]   (V8 CPU profile of the lookups at the largest size)
 *                              [--heap-profile FILE]  (sampling heap profile of the same lookups: what they
 *                                                      allocate, garbage included)
 *                              [--trace-jit]          (V8's optimisations and deopts during the same lookups,
 *                                                      between "trace-jit: begin/end" lines; use stdbuf -oL)
 *                              [--spans FILE]         (each of the same lookups' start and end on the system's
 *                                                      monotonic clock, with its figures, as JSON: to match
 *                                                      with a system-wide `perf record -k CLOCK_MONOTONIC`;
 *                                                      bench/semantic-attribution.ts reads both)
 */
import { execSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { type Redis } from 'ioredis';
import inspector from 'node:inspector/promises';
import os from 'node:os';
import v8 from 'node:v8';
import { constants, performance, PerformanceObserver } from 'node:perf_hooks';
import { CacheMatchConfidence } from '../shared/cache/semantic/confidence.js';
import { HashedNgramEmbedder } from '../shared/cache/semantic/embedder.js';
import { LexicalEmbedder } from '../shared/cache/semantic/lexical-embedder.js';
import { analyzePrompt, compareAnalyses } from '../shared/cache/semantic/guard.js';
import { seededRandom } from '../shared/cache/semantic/lsh.js';
import { keyBase, promptId, ScopeKeys, scopeHash } from '../shared/cache/semantic/scope.js';
import { parseRecord, SemanticCache } from '../shared/cache/semantic/semantic-cache.js';
import { normalizePrompt } from '../shared/cache/semantic/text.js';
import { waitUntilReady } from '../shared/redis/connection.js';
import { RedisClient } from '../shared/redis/redis-client.js';
import { distinctPrompts, paraphrase } from './semantic-corpus.js';
import { sleep } from '../shared/sleep.js';
import { startRedisServer } from './fleet.js';
import {
  pct,
  printRow,
  redisCommandUsec,
  round,
  score,
  scriptDurations,
  tailOf,
  threadCpuMs,
  type Outcome,
  type Path,
  type Query,
} from './semantic-report.js';

const SIZES = [10_000, 100_000];
const PREFIX = '{bench}';
const SCOPE = { model: 'llama3.1:8b', params: { temperature: 0.2, top_p: 0.9 }, tenant: 'bench' };

/**
 * Warm-up lookups at each size. The targets are about a serving process's steady state, and V8 optimises the
 * lookup path only after thousands of calls: each function reaches its optimising compiler after its own
 * number of runs, and at 100k entries the guard's deeper rules (entityOnlyIn, quotedOnlyIn, swappedWords,
 * affixAntonym, compareAnalyses), which the 10k phase rarely reaches, and Node's stream functions of the
 * connection still tier up after 1,000 warm-up lookups. With 1,000 (the default until 2026-12-04) the window
 * at 100k held 34-40 compile jobs (0.5-0.8 s of a helper thread at load 4-8, --trace-jit) competing for the
 * 2 vCPUs with the lookups and redis-server; with 4,000, 12 (94 ms); with 6,000, 8 (33 ms). `--warm-up 1000`
 * still measures that early window (a process's first few thousand lookups).
 */
const WARM_UP = 6000;

interface Args {
  lookups: number;
  /**
   * Lookups of the same mix (other prompts) run before the measured ones at each size (default 6000: the
   * measured lookups are those of a process past V8's tier-up of the lookup path; see WARM_UP).
   */
  warmUp: number;
  scanLookups: number;
  json: boolean;
  embedder: 'lexical' | 'hashed';
  /** Write a CPU profile (.cpuprofile) of the lookups at the largest size to this file. */
  cpuProfile: string | undefined;
  /** Write a sampling heap profile (.heapprofile: every allocation, collected or not) of the same lookups. */
  heapProfile: string | undefined;
  /**
   * Turn V8's --trace-opt and --trace-deopt on during the measured lookups at the largest size only, between
   * two marker lines (run under `stdbuf -oL` so V8's lines and the markers keep their order).
   */
  traceJit: boolean;
  /** Write each measured lookup at the largest size (monotonic start/end, figures) to this file (JSON). */
  spans: string | undefined;
}

/**
 * Reads one semantic-cache entry as the cache stores it (shared/lua/includes/entry-record.lua): one string,
 * "stored at LF prompt length in bytes LF prompt value". Returns [value, prompt], or nulls when it is gone.
 */
async function readEntry(raw: Redis, key: string): Promise<[string | null, string | null]> {
  const buf = await raw.getBuffer(key);
  if (!buf) return [null, null];
  const a = buf.indexOf(10);
  const b = a < 0 ? -1 : buf.indexOf(10, a + 1);
  if (b < 0) return [null, null];
  const plen = Number(buf.toString('latin1', a + 1, b));
  if (!Number.isInteger(plen)) return [null, null];
  return [buf.toString('utf8', b + 1 + plen), buf.toString('utf8', b + 1, b + 1 + plen)];
}

/**
 * Every entry of the slow log (SLOWLOG GET -1), read by `redis-cli --json` in a child process when it is
 * installed, else on `raw`. After 2,000 lookups the reply holds ~8,000 entries; read on a connection of this
 * process it arrives in many socket chunks through Node's stream code and ioredis's reply parser, the same
 * functions the cache's own connection runs, and V8 threw their optimised code away ("insufficient type
 * feedback"): after the 10k window that made them compile again among the measured lookups at 100k.
 */
async function slowlogEntries(raw: Redis, url: string): Promise<unknown> {
  const { hostname, port } = new URL(url);
  const out = spawnSync('redis-cli', ['-h', hostname, '-p', port, '--json', 'SLOWLOG', 'GET', '-1'], {
    encoding: 'utf8',
    maxBuffer: 256 * 2 ** 20,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  if (out.status === 0 && out.stdout.length > 0) {
    try {
      return JSON.parse(out.stdout) as unknown;
    } catch {
      // not JSON (an older redis-cli): read it on the connection
    }
  }
  return raw.call('SLOWLOG', 'GET', '-1');
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = {
    lookups: 2000,
    warmUp: WARM_UP,
    scanLookups: 400,
    json: false,
    embedder: 'lexical',
    cpuProfile: undefined,
    heapProfile: undefined,
    traceJit: false,
    spans: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--json') a.json = true;
    else if (k === '--lookups') a.lookups = Number(argv[++i]);
    else if (k === '--scan-lookups') a.scanLookups = Number(argv[++i]);
    else if (k === '--warm-up') a.warmUp = Number(argv[++i]);
    else if (k === '--cpu-profile' && argv[i + 1]) a.cpuProfile = argv[++i];
    else if (k === '--heap-profile' && argv[i + 1]) a.heapProfile = argv[++i];
    else if (k === '--trace-jit') a.traceJit = true;
    else if (k === '--spans' && argv[i + 1]) a.spans = argv[++i];
    else if (k === '--embedder' && (argv[i + 1] === 'lexical' || argv[i + 1] === 'hashed'))
      a.embedder = argv[++i] as 'lexical' | 'hashed';
    else {
      console.error(
        `unknown argument ${k}\nusage: npm run bench:semantic -- [--lookups N] [--warm-up N] [--scan-lookups N] [--embedder lexical|hashed] [--cpu-profile FILE] [--heap-profile FILE] [--trace-jit] [--spans FILE] [--json]`,
      );
      process.exit(2);
    }
  }
  return a;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = new Date();
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    // not a git checkout
  }
  const { url, redis: raw, version: redisVersion, child } = await startRedisServer();
  const client = new RedisClient({ url, commandTimeoutMs: 10_000, breakerThreshold: 1000 });
  let exitCode = 0;
  try {
    await waitUntilReady(client.connection, 10_000);
    const cpus = os.cpus();
    const machine = {
      date: started.toISOString(),
      commit,
      cpus: cpus.length,
      cpuModel: cpus[0]?.model ?? '?',
      ramGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      node: process.version,
      redis: redisVersion,
      loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
      /** V8/node flags of this run: the bench runs with the young generation `npm start` gives cell0. */
      nodeFlags: process.execArgv.filter((f) => f.startsWith('--max-') || f.startsWith('--min-')),
    };
    if (!args.json) {
      console.log('bench:semantic — semantic cache lookup (LSH in Redis + re-rank) vs brute-force scan');
      console.log(
        `machine: ${machine.cpus} cpus (${machine.cpuModel}), ${machine.ramGiB} GiB RAM, node ${machine.node}, ` +
          `redis ${machine.redis} (private, no persistence), load ${machine.loadavg.join(' ')}, ` +
          `node flags: ${machine.nodeFlags.join(' ') || '(none)'}`,
      );
      console.log(`date: ${machine.date}  commit: ${machine.commit}`);
    }

    // The embedder: its cost per prompt, and what loading the lexicon costs (time, memory) on first use.
    const heap0 = process.memoryUsage();
    const tLoad = performance.now();
    const embedder = args.embedder === 'hashed' ? new HashedNgramEmbedder() : new LexicalEmbedder();
    embedder.embedOne('load the lexicon');
    const loadMs = performance.now() - tLoad;
    const heap1 = process.memoryUsage();
    const embedding = {
      name: embedder.name,
      firstCallMs: Math.round(loadMs),
      rssMB: Math.round(((heap1.rss - heap0.rss) / 1e6) * 10) / 10,
      heapMB: Math.round(((heap1.heapUsed - heap0.heapUsed) / 1e6) * 10) / 10,
      usPerPrompt: 0,
    };
    const cache = new SemanticCache<string>({
      redis: client,
      prefix: PREFIX,
      embedder,
      ttlSeconds: 3600,
      maxEntriesPerScope: 200_000,
    });
    const keys = new ScopeKeys(keyBase(PREFIX), scopeHash(SCOPE, `${embedder.name}/${embedder.dims}`));
    const maxSize = SIZES[SIZES.length - 1]!;
    const t0 = performance.now();
    const stored = distinctPrompts('bench/stored', maxSize, new Set(), normalizePrompt);
    const storedSet = new Set(stored.map(normalizePrompt));
    // the measured lookups' new prompts first, then the warm-up's (none of which is measured)
    const fresh = distinctPrompts('bench/fresh', args.lookups + args.warmUp, storedSet, normalizePrompt);
    if (!args.json)
      console.log(`corpus: ${stored.length} prompts generated in ${Math.round(performance.now() - t0)} ms`);

    {
      const n = Math.min(5000, stored.length);
      embedder.embedOne(stored[0]!);
      const e0 = performance.now();
      for (let i = 0; i < n; i++) embedder.embedOne(stored[i]!);
      embedding.usPerPrompt = Math.round(((performance.now() - e0) * 1000) / n);
      if (!args.json)
        console.log(
          `embedder ${embedding.name}: ${embedding.usPerPrompt} µs per prompt (${n} distinct prompts); ` +
            `first call ${embedding.firstCallMs} ms, +${embedding.rssMB} MB RSS, +${embedding.heapMB} MB heap`,
        );
    }
    const results = [];
    let loaded = 0;
    for (const size of SIZES) {
      // ---- load (many set() in flight: the commands pipeline on the one connection)
      const tl = performance.now();
      const inflight = 256;
      let next = loaded;
      await Promise.all(
        Array.from({ length: inflight }, async () => {
          for (;;) {
            const i = next++;
            if (i >= size) return;
            await cache.set(stored[i]!, `answer #${i}`, SCOPE);
          }
        }),
      );
      const loadMs = performance.now() - tl;
      const loadedNow = size - loaded;
      loaded = size;
      const count = await raw.zcard(keys.lru);
      if (count !== size) throw new Error(`expected ${size} entries in the scope, found ${count}`);

      // ---- queries: 20% exact (case/punctuation variants), 40% paraphrases, 40% new prompts
      const makeQueries = (seed: string, count: number, freshFrom: number): Query[] => {
        const rand = seededRandom(seed);
        const out: Query[] = [];
        for (let i = 0; i < count; i++) {
          const source = Math.floor(rand() * size);
          const r = rand();
          const s = stored[source]!;
          if (r < 0.2)
            out.push({
              kind: 'exact',
              prompt: rand() < 0.5 ? s.toUpperCase() : s.replace(/[?]?$/, ' ?'),
              source,
            });
          else if (r < 0.6) out.push({ kind: 'paraphrase', prompt: paraphrase(s, rand), source });
          else out.push({ kind: 'miss', prompt: fresh[(freshFrom + i) % fresh.length]!, source: -1 });
        }
        return out;
      };
      const queries = makeQueries(`bench/queries/${size}`, args.lookups, 0);

      // ---- cache lookups (sequential: latency of one call, not throughput)
      // Let the load's garbage and Redis's incremental rehashing settle, then warm the JIT up on every
      // path (exact, similarity hit, guard, miss) with queries of the same mix but other prompts, until
      // V8 has optimised the lookup path (WARM_UP).
      await sleep(3000);
      for (const q of makeQueries(`bench/warm-up/${size}`, args.warmUp, args.lookups))
        await cache.get(q.prompt, SCOPE);
      const before = cache.getStats();
      const lat: number[] = [];
      const spans: [number, number][] = [];
      const outcomes: Outcome[] = [];
      // GC pauses of this process during the lookups: reported, so a tail can be told from the cache's work.
      const pauses: [number, number][] = [];
      // Scavenges (young generation) and mark-compacts (whole heap, marked concurrently on helper threads):
      // counts that depend on what the lookups allocate and keep, not on the machine's load.
      const gcKinds = { minor: 0, major: 0 };
      const gcObserver = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          pauses.push([e.startTime, e.startTime + e.duration]);
          const kind = (e.toJSON() as { detail?: { kind?: number } }).detail?.kind ?? 0;
          if (kind & constants.NODE_PERFORMANCE_GC_MAJOR) gcKinds.major++;
          else if (kind & constants.NODE_PERFORMANCE_GC_MINOR) gcKinds.minor++;
        }
      });
      gcObserver.observe({ entryTypes: ['gc'] });
      const largest = size === SIZES[SIZES.length - 1];
      const profiler = args.cpuProfile !== undefined && largest ? new inspector.Session() : undefined;
      if (profiler) {
        profiler.connect();
        await profiler.post('Profiler.enable');
        await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
        await profiler.post('Profiler.start');
      }
      const heapProfiler = args.heapProfile !== undefined && largest ? new inspector.Session() : undefined;
      if (heapProfiler) {
        heapProfiler.connect();
        await heapProfiler.post('HeapProfiler.startSampling', {
          samplingInterval: 1024,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true,
        });
      }
      // Redis's own time per script call: every command goes to the slow log during the lookups.
      await raw.config('SET', 'slowlog-log-slower-than', '0');
      await raw.config('SET', 'slowlog-max-len', String(args.lookups * 8));
      await raw.slowlog('RESET');
      const threads0 = threadCpuMs();
      const cpu0 = process.cpuUsage();
      const redisUsec0 = await redisCommandUsec(raw);
      // CPU time of this process per lookup (user + system): unlike the wall clock it does not count the time
      // other processes hold the cores, so its tail stays readable on a busy machine. The main thread's own
      // CPU time leaves out the GC and libuv helper threads, which run alongside on the other core.
      const cpuLat: number[] = [];
      const mainLat: number[] = [];
      const paths: Path[] = [];
      // Monotonic start and end of each lookup (ns), only when asked for: CLOCK_MONOTONIC, perf's -k clock.
      const monotonic: bigint[] | undefined = args.spans !== undefined && largest ? [] : undefined;
      const traceJit = args.traceJit && largest;
      if (traceJit) {
        console.log('trace-jit: begin (the measured lookups)');
        v8.setFlagsFromString('--trace-opt');
        v8.setFlagsFromString('--trace-deopt');
      }
      for (const q of queries) {
        const c = process.cpuUsage();
        const m = process.threadCpuUsage();
        const s = performance.now();
        monotonic?.push(process.hrtime.bigint());
        const hit = await cache.get(q.prompt, SCOPE);
        monotonic?.push(process.hrtime.bigint());
        const e = performance.now();
        const cd = process.cpuUsage(c);
        const md = process.threadCpuUsage(m);
        cpuLat.push((cd.user + cd.system) / 1000);
        mainLat.push((md.user + md.system) / 1000);
        lat.push(e - s);
        spans.push([s, e]);
        outcomes.push({ answered: hit?.prompt });
        paths.push(
          hit === undefined
            ? 'miss'
            : hit.confidence === CacheMatchConfidence.EXACT
              ? 'exact hit'
              : 'similarity hit',
        );
      }
      const cpu = process.cpuUsage(cpu0);
      const threads1 = threadCpuMs();
      if (traceJit) {
        v8.setFlagsFromString('--no-trace-opt');
        v8.setFlagsFromString('--no-trace-deopt');
        console.log('trace-jit: end');
      }
      const threadCpu: Record<string, number> = {};
      for (const [tid, t] of threads1) {
        const before = threads0.get(tid)?.ms ?? 0;
        threadCpu[t.name] = round((threadCpu[t.name] ?? 0) + (t.ms - before));
      }
      const redisUsec = (await redisCommandUsec(raw)) - redisUsec0;

      if (profiler) {
        const { profile } = await profiler.post('Profiler.stop');
        writeFileSync(args.cpuProfile!, JSON.stringify(profile));
        profiler.disconnect();
      }
      if (heapProfiler) {
        const { profile } = await heapProfiler.post('HeapProfiler.stopSampling');
        writeFileSync(args.heapProfile!, JSON.stringify(profile));
        heapProfiler.disconnect();
      }
      await new Promise((r) => setImmediate(r));
      gcObserver.disconnect();
      // read after the profiles and the GC count: the reply is large (every command of the lookups)
      const scriptUs = scriptDurations(await slowlogEntries(raw, url));
      await raw.config('SET', 'slowlog-log-slower-than', '10000');
      const overlapped = spans.map(([s, e]) => pauses.some(([ps, pe]) => ps < e && pe > s));
      if (monotonic)
        writeFileSync(
          args.spans!,
          JSON.stringify({
            pid: process.pid,
            redisPid: child.pid,
            lookups: lat.map((ms, i) => ({
              startNs: String(monotonic[2 * i]),
              endNs: String(monotonic[2 * i + 1]),
              ms,
              mainCpuMs: mainLat[i],
              cpuMs: cpuLat[i],
              gc: overlapped[i],
              path: paths[i],
            })),
          }),
        );
      const gcHit = overlapped.filter(Boolean).length;
      const { byPath, ...tail } = tailOf({
        lat,
        spans,
        overlapped,
        pauses,
        mainLat,
        cpuLat,
        scriptUs,
        threadCpu,
        paths,
      });
      const gcMs = pauses.reduce((sum, [ps, pe]) => sum + (pe - ps), 0);
      const after = cache.getStats();
      // This process's memory after the lookups: what the young generation's size costs (resident pages).
      const mem = process.memoryUsage();
      const newSpace = v8.getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space');
      lat.sort((a, b) => a - b);
      cpuLat.sort((a, b) => a - b);
      mainLat.sort((a, b) => a - b);

      // ---- baseline: scan of every stored vector, held in memory
      // Every candidate record of the scope (the same int8 vectors the cache re-ranks), read once.
      const dims = embedder.dims;
      const vectors = new Int8Array(size * dims);
      const norms = new Float64Array(size);
      const prompts: string[] = [];
      const ids: string[] = [];
      let cursor = '0';
      do {
        // Pages of ~100 records (~30 KB): a reply of 2,000 (~600 KB) arrived in many socket chunks, a path
        // of Node's Readable.read the lookups never take, and V8 threw its optimised code away here, between
        // the 10k and the 100k lookups (the same function serves the cache's connection).
        const [nextCursor, flat] = await raw.hscanBuffer(keys.vec, cursor, 'COUNT', 100);
        cursor = nextCursor.toString();
        for (let j = 1; j < flat.length; j += 2) {
          const rec = parseRecord(flat[j]!, dims);
          if (!rec) throw new Error('unreadable candidate record');
          const i = ids.length;
          const v = new Int8Array(rec.vector.buffer, rec.vector.byteOffset, dims);
          vectors.set(v, i * dims);
          let n = 0;
          for (let d = 0; d < dims; d++) n += v[d]! * v[d]!;
          norms[i] = Math.sqrt(n);
          ids.push(rec.id);
          prompts.push(rec.prompt);
        }
      } while (cursor !== '0');
      if (ids.length !== size) throw new Error(`expected ${size} vectors, read ${ids.length}`);
      const threshold = cache.thresholds.high;
      const scanQueries = queries.slice(0, Math.min(args.scanLookups, queries.length));
      const scanLat: number[] = [];
      const scanOutcomes: Outcome[] = [];
      const sims = new Float64Array(size);
      for (const q of scanQueries) {
        const s = performance.now();
        let answered: string | undefined;
        const norm = normalizePrompt(q.prompt);
        const qid = promptId(norm);
        const [exactValue, exactPrompt] = await readEntry(raw, keys.entry(qid));
        if (exactValue != null && exactPrompt != null && normalizePrompt(exactPrompt) === norm)
          answered = exactPrompt;
        else {
          const [vec] = await embedder.embed([q.prompt]);
          let qn = 0;
          for (let d = 0; d < dims; d++) qn += vec![d]! * vec![d]!;
          qn = Math.sqrt(qn);
          for (let i = 0; i < size; i++) {
            let dot = 0;
            const base = i * dims;
            for (let d = 0; d < dims; d++) dot += vec![d]! * vectors[base + d]!;
            sims[i] = norms[i]! === 0 || qn === 0 ? 0 : dot / (qn * norms[i]!);
          }
          const above: number[] = [];
          for (let i = 0; i < size; i++) if (sims[i]! >= threshold) above.push(i);
          above.sort((a, b) => sims[b]! - sims[a]!);
          const qa = analyzePrompt(q.prompt);
          for (const i of above.slice(0, 8)) {
            if (compareAnalyses(qa, analyzePrompt(prompts[i]!)) !== undefined) continue;
            const row = await readEntry(raw, keys.entry(ids[i]!));
            if (row[0] !== null) {
              answered = row[1] ?? undefined;
              break;
            }
          }
        }
        scanLat.push(performance.now() - s);
        scanOutcomes.push({ answered });
      }
      scanLat.sort((a, b) => a - b);

      // LSH recall against the scan on the queries both ran: of the scan's similarity hits, how many the
      // cache answered with the same entry.
      let scanSemantic = 0;
      let agree = 0;
      scanOutcomes.forEach((o, i) => {
        const q = scanQueries[i]!;
        if (o.answered === undefined || q.kind === 'exact') return;
        scanSemantic++;
        if (outcomes[i]!.answered === o.answered) agree++;
      });

      const cacheScore = score(queries, outcomes, stored);
      // The hits answered from another entry than the query's source: printed, to judge each by eye (a stored
      // prompt that asks the same as the source is a right answer from another entry; anything else is a
      // false hit).
      const wrongEntries = queries
        .map((q, i) => ({ q, answered: outcomes[i]!.answered }))
        .filter(
          ({ q, answered }) => q.kind !== 'miss' && answered !== undefined && answered !== stored[q.source],
        )
        .map(({ q, answered }) => ({ query: q.prompt, source: stored[q.source]!, answered: answered! }));
      const scanScore = score(scanQueries, scanOutcomes, stored);
      const searches = after.search.count - before.search.count;
      const row = {
        entries: size,
        loadSeconds: Math.round(loadMs / 100) / 10,
        loadPerSecond: Math.round(loadedNow / (loadMs / 1000)),
        rssMiB: Math.round(mem.rss / 2 ** 20),
        heapUsedMiB: Math.round(mem.heapUsed / 2 ** 20),
        newSpaceMiB: Math.round((newSpace?.space_size ?? 0) / 2 ** 20),
        redisUsedMemoryMiB: Math.round(
          Number(/used_memory:(\d+)/.exec(await raw.info('memory'))?.[1] ?? 0) / 2 ** 20,
        ),
        cache: {
          lookups: lat.length,
          p50Ms: round(pct(lat, 0.5)),
          p99Ms: round(pct(lat, 0.99)),
          maxMs: round(lat[lat.length - 1] ?? 0),
          cpuP50Ms: round(pct(cpuLat, 0.5)),
          cpuP99Ms: round(pct(cpuLat, 0.99)),
          mainThreadCpuP50Ms: round(pct(mainLat, 0.5)),
          mainThreadCpuP99Ms: round(pct(mainLat, 0.99)),
          cpuMeanMs: round((cpu.user + cpu.system) / 1000 / queries.length),
          redisCpuMeanMs: round(redisUsec / 1000 / queries.length),
          meanBandMembersVisited:
            searches === 0
              ? 0
              : Math.round(
                  (after.search.meanBandMembersVisited * after.search.count -
                    before.search.meanBandMembersVisited * before.search.count) /
                    searches,
                ),
          guardRejections: after.guardRejections - before.guardRejections,
          gcPauses: pauses.length,
          gcScavenges: gcKinds.minor,
          gcMarkCompacts: gcKinds.major,
          gcPauseMs: round(gcMs),
          lookupsDuringGc: gcHit,
          tail,
          ...cacheScore,
        },
        scan: {
          lookups: scanLat.length,
          p50Ms: round(pct(scanLat, 0.5)),
          p99Ms: round(pct(scanLat, 0.99)),
          ...scanScore,
        },
        ratioP50: round(pct(scanLat, 0.5) / pct(lat, 0.5)),
        ratioP99: round(pct(scanLat, 0.99) / pct(lat, 0.99)),
        lshRecallVsScan: scanSemantic === 0 ? 1 : round(agree / scanSemantic),
        wrongEntries,
        byPath,
      };
      results.push(row);
      if (!args.json) printRow(row);
    }
    // The guard's cost: analysing and comparing a stored prompt with its paraphrase, per pair. Measured after
    // the lookups: run first, these 2,000 paraphrase pairs (every one accepted) were the guard's first type
    // feedback, so V8 optimised its functions for them and threw that code away at the lookups' first
    // refusals, and they reached optimised code again only among the measured lookups at 100k.
    {
      const n = Math.min(2000, stored.length);
      const rand = seededRandom('bench/guard');
      const pairs = stored.slice(0, n).map((p) => [p, paraphrase(p, rand)] as const);
      compareAnalyses(analyzePrompt(pairs[0]![0]), analyzePrompt(pairs[0]![1]));
      const g0 = performance.now();
      for (const [a, b] of pairs) compareAnalyses(analyzePrompt(a), analyzePrompt(b));
      const perPair = (performance.now() - g0) / n;
      if (!args.json)
        console.log(
          `\nguard: ${(perPair * 1000).toFixed(1)} µs per pair (both prompts analysed), ${n} pairs`,
        );
    }
    const last = results[results.length - 1]!;
    const pass = last.cache.p99Ms <= 2 && last.ratioP50 >= 50;
    if (!pass) exitCode = 1;
    if (args.json) console.log(JSON.stringify({ machine, embedding, results, pass }, null, 2));
    else
      console.log(
        `\ntargets at ${last.entries}: p99 <= 2 ms (${last.cache.p99Ms} ms) and >= 50x faster than the scan at p50 ` +
          `(${last.ratioP50}x): ${pass ? 'PASS' : 'FAIL'}`,
      );
  } finally {
    raw.disconnect();
    await client.close();
    child.kill('SIGTERM');
  }
  process.exitCode = exitCode;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
