/*
 * bench:semantic's scoring and printing (bench/semantic.ts runs the measurement).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { type Redis } from 'ioredis';

export function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

export type Kind = 'exact' | 'paraphrase' | 'miss';
export interface Query {
  kind: Kind;
  prompt: string;
  /** index of the stored prompt it comes from */
  source: number;
}
export interface Outcome {
  /** stored prompt answered, or undefined for a miss */
  answered: string | undefined;
}

export function score(queries: readonly Query[], outcomes: readonly Outcome[], stored: readonly string[]) {
  const r = {
    paraphrases: 0,
    paraphraseHits: 0,
    exact: 0,
    exactHits: 0,
    misses: 0,
    falseHits: 0,
    wrongHits: 0,
  };
  outcomes.forEach((o, i) => {
    const q = queries[i]!;
    if (q.kind === 'miss') {
      r.misses++;
      if (o.answered !== undefined) r.falseHits++;
      return;
    }
    const right = o.answered === stored[q.source];
    if (q.kind === 'exact') {
      r.exact++;
      if (right) r.exactHits++;
    } else {
      r.paraphrases++;
      if (right) r.paraphraseHits++;
    }
    if (o.answered !== undefined && !right) r.wrongHits++;
  });
  return r;
}

/** Microseconds redis-server has spent in commands so far (INFO commandstats, every command). */
export async function redisCommandUsec(r: Redis): Promise<number> {
  const info = await r.info('commandstats');
  let usec = 0;
  for (const m of info.matchAll(/,usec=(\d+),/g)) usec += Number(m[1]);
  return usec;
}

export function median(xs: readonly number[]): number {
  return pct(
    [...xs].sort((a, b) => a - b),
    0.5,
  );
}

/** The durations (µs, sorted) of the script calls (EVALSHA) in a SLOWLOG GET reply. */
export function scriptDurations(reply: unknown): number[] {
  const out: number[] = [];
  if (!Array.isArray(reply)) return out;
  for (const e of reply as unknown[][]) {
    const args = e[3];
    if (Array.isArray(args) && String(args[0]).toLowerCase() === 'evalsha') out.push(Number(e[2]));
  }
  return out.sort((a, b) => a - b);
}

export function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export function printRow(r: {
  entries: number;
  loadSeconds: number;
  loadPerSecond: number;
  redisUsedMemoryMiB: number;
  rssMiB: number;
  heapUsedMiB: number;
  newSpaceMiB: number;
  cache: Record<string, number | Record<string, number | Record<string, number>>>;
  scan: Record<string, number>;
  ratioP50: number;
  ratioP99: number;
  lshRecallVsScan: number;
  wrongEntries: readonly { query: string; source: string; answered: string }[];
  byPath?: readonly PathFigures[];
}): void {
  const c = r.cache;
  const s = r.scan;
  console.log(
    `\n== ${r.entries.toLocaleString('en')} entries in one scope (loaded +${r.loadSeconds}s, ${r.loadPerSecond}/s; redis ${r.redisUsedMemoryMiB} MiB)` +
      `\n  this process after the lookups: RSS ${r.rssMiB} MiB, heap used ${r.heapUsedMiB} MiB, new space ${r.newSpaceMiB} MiB`,
  );
  console.log(
    `  cache get():  ${c.lookups} lookups  p50 ${c.p50Ms} ms  p99 ${c.p99Ms} ms  max ${c.maxMs} ms  ` +
      `(band members visited/search ${c.meanBandMembersVisited}, guard refusals ${c.guardRejections})`,
  );
  console.log(
    `  CPU per lookup (this process): p50 ${c.cpuP50Ms} ms  p99 ${c.cpuP99Ms} ms  mean ${c.cpuMeanMs} ms; ` +
      `redis-server CPU per lookup (commandstats): mean ${c.redisCpuMeanMs} ms`,
  );
  console.log(
    `  main-thread CPU per lookup (no GC/libuv helper threads): p50 ${c.mainThreadCpuP50Ms} ms  p99 ${c.mainThreadCpuP99Ms} ms`,
  );
  console.log(
    `  node GC during the cache lookups: ${c.gcPauses} pauses (${c.gcScavenges} scavenges, ${c.gcMarkCompacts} mark-compacts), ` +
      `${c.gcPauseMs} ms in all, ${c.lookupsDuringGc} lookups overlapped one`,
  );
  const t = c.tail as unknown as
    | (Record<string, number> & {
        threadCpuMs: Record<string, number>;
        over2MsNoGcByQuarter: Record<string, number>;
      })
    | undefined;
  if (t)
    console.log(
      `  lookups over 2 ms with no GC pause, starting < 10 ms after one: ${t.over2MsNoGcWithin10MsOfGc}; ` +
        `CPU of this process's threads during the lookups (ms): ` +
        Object.entries(t.threadCpuMs)
          .map(([k, v]) => `${k} ${v}`)
          .join(', '),
    );
  if (t)
    console.log(
      `  lookups over 2 ms: ${t.over2Ms} (${t.over2MsWithGc} overlapped a GC pause; the ${t.over2MsNoGc} others: ` +
        `main-thread CPU median ${t.over2MsNoGcMainCpuMedianMs} ms, process CPU median ${t.over2MsNoGcProcessCpuMedianMs} ms; ` +
        `by quarter of the window ${Object.values(t.over2MsNoGcByQuarter).join('/')}); ` +
        `p99 of the lookups no GC pause overlapped ${t.p99WithoutGcMs} ms\n` +
        `  redis script calls: ${t.redisScriptCalls}, time in redis p50 ${t.redisScriptP50Ms} ms  p99 ${t.redisScriptP99Ms} ms  ` +
        `max ${t.redisScriptMaxMs} ms, ${t.redisScriptsOver1Ms} over 1 ms (SLOWLOG)`,
    );
  const byPath = r.byPath;
  if (byPath)
    console.log(
      `  by answer (script calls awaited: exact hit 1, similarity hit 2-3, miss 1-2): ` +
        byPath
          .map(
            (b) =>
              `${b.path} ${b.lookups} (over 2 ms ${b.over2Ms}): p50 ${b.p50Ms} / p99 ${b.p99Ms} ms, ` +
              `main-thread CPU p50 ${b.mainCpuP50Ms} / p99 ${b.mainCpuP99Ms} ms`,
          )
          .join('; '),
    );
  console.log(
    `  scan (in-memory, all ${r.entries} vectors): ${s.lookups} lookups  p50 ${s.p50Ms} ms  p99 ${s.p99Ms} ms`,
  );
  console.log(`  ratio scan/cache: p50 ${r.ratioP50}x  p99 ${r.ratioP99}x`);
  console.log(
    `  answers  cache: exact ${c.exactHits}/${c.exact}, paraphrase ${c.paraphraseHits}/${c.paraphrases}, ` +
      `false hits on misses ${c.falseHits}/${c.misses}, wrong entry ${c.wrongHits}`,
  );
  console.log(
    `           scan:  exact ${s.exactHits}/${s.exact}, paraphrase ${s.paraphraseHits}/${s.paraphrases}, ` +
      `false hits on misses ${s.falseHits}/${s.misses}, wrong entry ${s.wrongHits}`,
  );
  for (const w of r.wrongEntries)
    console.log(`  wrong entry: "${w.query}" (from "${w.source}") answered with "${w.answered}"`);
  console.log(`  LSH recall vs the scan (same entry, on the scan's similarity hits): ${r.lshRecallVsScan}`);
}

/** CPU time (ms) each thread of this process has used so far, by thread id, with its name (Linux /proc). */
export function threadCpuMs(): Map<string, { name: string; ms: number }> {
  const out = new Map<string, { name: string; ms: number }>();
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).trim();
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, { name, ms: (Number(f[11]) + Number(f[12])) * 10 });
    }
  } catch {
    // not Linux
  }
  return out;
}

/** Where the lookups' tail comes from: GC pauses, the lookups' own CPU, Redis's time per script call. */
export function tailOf(m: {
  lat: readonly number[];
  spans: readonly [number, number][];
  overlapped: readonly boolean[];
  pauses: readonly [number, number][];
  mainLat: readonly number[];
  cpuLat: readonly number[];
  scriptUs: readonly number[];
  threadCpu: Record<string, number>;
  /** What each lookup answered: an exact hit (one script call), a similarity hit (three), a miss (one or two). */
  paths: readonly Path[];
}) {
  const { lat, spans, overlapped, pauses, mainLat, cpuLat, scriptUs, threadCpu, paths } = m;
  // The lookups over 2 ms: those a GC pause landed in, and the others with their own CPU time.
  const slow = lat.map((ms, i) => ({ ms, gc: overlapped[i]!, main: mainLat[i]!, cpu: cpuLat[i]! }));
  const slowOther = slow.filter((x) => x.ms > 2 && !x.gc);
  return {
    over2Ms: slow.filter((x) => x.ms > 2).length,
    over2MsWithGc: slow.filter((x) => x.ms > 2 && x.gc).length,
    over2MsNoGc: slowOther.length,
    over2MsNoGcWithin10MsOfGc: slow.filter(
      (x, i) => x.ms > 2 && !x.gc && pauses.some(([, pe]) => pe <= spans[i]![0] && spans[i]![0] - pe < 10),
    ).length,
    /**
     * The same, by quarter of the measured window: piled up in the first quarter, they point at
     * work that ends as the process warms up (V8's compile jobs of functions that tier up then).
     */
    over2MsNoGcByQuarter: Object.fromEntries(
      [1, 2, 3, 4].map((q) => [
        `q${q}`,
        slow.filter((x, i) => x.ms > 2 && !x.gc && Math.floor((i * 4) / slow.length) === q - 1).length,
      ]),
    ),
    threadCpuMs: threadCpu,
    over2MsNoGcMainCpuMedianMs: round(median(slowOther.map((x) => x.main))),
    over2MsNoGcProcessCpuMedianMs: round(median(slowOther.map((x) => x.cpu))),
    p99WithoutGcMs: round(
      pct(
        slow
          .filter((x) => !x.gc)
          .map((x) => x.ms)
          .sort((a, b) => a - b),
        0.99,
      ),
    ),
    redisScriptCalls: scriptUs.length,
    redisScriptP50Ms: round(pct(scriptUs, 0.5) / 1000),
    redisScriptP99Ms: round(pct(scriptUs, 0.99) / 1000),
    redisScriptMaxMs: round((scriptUs[scriptUs.length - 1] ?? 0) / 1000),
    redisScriptsOver1Ms: scriptUs.filter((us) => us > 1000).length,
    byPath: PATHS.map((path): PathFigures => {
      const at = paths.flatMap((p, i) => (p === path ? [i] : []));
      const sorted = (xs: number[]) => xs.sort((a, b) => a - b);
      const main = sorted(at.map((i) => mainLat[i]!));
      const wall = sorted(at.map((i) => lat[i]!));
      return {
        path,
        lookups: at.length,
        over2Ms: at.filter((i) => lat[i]! > 2).length,
        mainCpuP50Ms: round(pct(main, 0.5)),
        mainCpuP99Ms: round(pct(main, 0.99)),
        p50Ms: round(pct(wall, 0.5)),
        p99Ms: round(pct(wall, 0.99)),
      };
    }),
  };
}

export type Path = 'exact hit' | 'similarity hit' | 'miss';
/** The lookups of one answer path: how many, how many over 2 ms, their wall and main-thread CPU times. */
export interface PathFigures {
  path: Path;
  lookups: number;
  over2Ms: number;
  mainCpuP50Ms: number;
  mainCpuP99Ms: number;
  p50Ms: number;
  p99Ms: number;
}
const PATHS: readonly Path[] = ['exact hit', 'similarity hit', 'miss'];
