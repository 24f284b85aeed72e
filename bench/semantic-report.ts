/*
 * bench:semantic's scoring and printing (bench/semantic.ts runs the measurement).
 */
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

export function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export function printRow(r: {
  entries: number;
  loadSeconds: number;
  loadPerSecond: number;
  redisUsedMemoryMiB: number;
  cache: Record<string, number>;
  scan: Record<string, number>;
  ratioP50: number;
  ratioP99: number;
  lshRecallVsScan: number;
}): void {
  const c = r.cache;
  const s = r.scan;
  console.log(
    `\n== ${r.entries.toLocaleString('en')} entries in one scope (loaded +${r.loadSeconds}s, ${r.loadPerSecond}/s; redis ${r.redisUsedMemoryMiB} MiB)`,
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
  console.log(`  LSH recall vs the scan (same entry, on the scan's similarity hits): ${r.lshRecallVsScan}`);
}
