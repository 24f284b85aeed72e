/*
 * What ran on the machine's cores during bench:semantic's slow lookups: reads the lookups the bench wrote
 * with `--spans FILE` and a system-wide CPU sample taken at the same time on the same clock, and tells for
 * each lookup over 2 ms which threads held the cores (this process's main thread, its other threads by what
 * they ran — V8's compilers, the scavenger, … —, redis-server, other processes, idle cores).
 *
 *   perf record -a -k CLOCK_MONOTONIC -F 1999 -e cpu-clock -o perf.data &   # while the bench runs
 *   stdbuf -oL node --max-semi-space-size=16 --import tsx bench/semantic.ts --spans spans.json
 *   perf script -i perf.data -F comm,pid,tid,cpu,time,ip,sym,dso --ns > perf.txt
 *   node --import tsx bench/semantic-attribution.ts spans.json perf.txt
 *
 * A lookup is counted once, under the first that applies: a GC pause overlapped it; a compile job of this
 * process ran alongside (two samples or more); other processes held a core (three or more); a core was idle
 * while the lookup waited (two or more); else none.
 */
import { readFileSync } from 'node:fs';

interface Span {
  startNs: string;
  endNs: string;
  ms: number;
  mainCpuMs: number;
  cpuMs: number;
  gc: boolean;
  path: string;
}

interface Sample {
  ns: bigint;
  pid: number;
  comm: string;
  sym: string;
}

const LINE = /^\s*(.+?)\s+(\d+)\/\d+\s+\[\d+\]\s+(\d+)\.(\d{9}):\s+\S+\s+(.*)$/;

/** The samples of `perf script -F comm,pid,tid,cpu,time,ip,sym,dso --ns`, in time order. */
function parsePerfScript(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    out.push({
      ns: BigInt(m[3]!) * 1_000_000_000n + BigInt(m[4]!),
      pid: Number(m[2]),
      comm: m[1]!,
      sym: m[5]!,
    });
  }
  return out.sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
}

/** What a sample was doing, seen from the bench process `pid` and its redis-server `redisPid`. */
function categoryOf(s: Sample, pid: number, redisPid: number): string {
  if (s.pid === 0) return 'idle';
  if (s.pid === redisPid) return 'redis-server';
  if (s.pid !== pid) return 'other processes';
  if (s.comm === 'MainThread') return 'main thread';
  if (/compiler|maglev|turboshaft|Compil/.test(s.sym)) return 'compile';
  if (/Scaveng/.test(s.sym)) return 'scavenge';
  if (/ArrayBufferSweeper/.test(s.sym)) return 'array-buffer sweep';
  if (/Mark/.test(s.sym)) return 'marking';
  return 'other threads of the process';
}

function count<K>(keys: readonly K[]): Map<K, number> {
  const m = new Map<K, number>();
  for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
  return m;
}

function main(): void {
  const [spansFile, perfFile] = process.argv.slice(2);
  if (!spansFile || !perfFile) {
    console.error('usage: node --import tsx bench/semantic-attribution.ts SPANS.json PERF-SCRIPT.txt');
    process.exit(2);
  }
  const { pid, redisPid, lookups } = JSON.parse(readFileSync(spansFile, 'utf8')) as {
    pid: number;
    redisPid: number;
    lookups: Span[];
  };
  const samples = parsePerfScript(readFileSync(perfFile, 'utf8'));
  const slow = lookups.filter((l) => l.ms > 2);
  const verdicts: string[] = [];
  const helperSyms: string[] = [];
  let first = 0;
  console.log(`${slow.length} of ${lookups.length} lookups over 2 ms; samples in each by what ran:`);
  for (const l of slow) {
    const start = BigInt(l.startNs);
    const end = BigInt(l.endNs);
    while (first < samples.length && samples[first]!.ns < start) first++;
    const inside: Sample[] = [];
    for (let i = first; i < samples.length && samples[i]!.ns <= end; i++) inside.push(samples[i]!);
    const cats = count(inside.map((s) => categoryOf(s, pid, redisPid)));
    for (const s of inside) if (s.pid === pid && s.comm !== 'MainThread') helperSyms.push(s.sym);
    const verdict = l.gc
      ? 'a GC pause'
      : (cats.get('compile') ?? 0) >= 2
        ? 'a compile job alongside'
        : (cats.get('other processes') ?? 0) >= 3
          ? 'other processes on the cores'
          : (cats.get('idle') ?? 0) >= 2
            ? 'an idle core while it waited'
            : 'none of these';
    verdicts.push(verdict);
    const shown = [...cats].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`);
    console.log(
      `  ${l.ms.toFixed(2)} ms (${l.path}; main-thread CPU ${l.mainCpuMs.toFixed(2)}, process CPU ` +
        `${l.cpuMs.toFixed(2)}): ${shown.join(', ') || 'no samples'} -> ${verdict}`,
    );
  }
  console.log('\nby cause:');
  for (const [k, v] of [...count(verdicts)].sort((a, b) => b[1] - a[1])) console.log(`  ${v}  ${k}`);
  console.log("\nthis process's other threads in those lookups, by category and top functions:");
  const helperCats = count(
    helperSyms.map((sym) => categoryOf({ ns: 0n, pid, comm: '', sym }, pid, redisPid)),
  );
  for (const [k, v] of [...helperCats].sort((a, b) => b[1] - a[1])) console.log(`  ${v}  ${k}`);
  for (const [k, v] of [...count(helperSyms)].sort((a, b) => b[1] - a[1]).slice(0, 10))
    console.log(`  ${v}  ${k.slice(0, 140)}`);
}

main();
