/*
 * bench:e2e --stages: where each measured job's time went. The producer notes each job's due time and the
 * time its result was seen; the job's hash gives the time it was added (`timestamp`, set as the add is
 * built), taken by a worker (`processedOn`) and finished (`finishedOn`). All are wall-clock ms of one
 * machine. Printed per producer: the percentiles of each stage over all jobs, and the mean stage split of
 * the slowest 1 % (the tail), so a periodic stall shows where it sits. The producer and the worker also
 * print their event-loop delay, GC pauses, system calls and bytes read and written over the measured jobs
 * (watchPauses).
 */
import { readFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { type Redis } from 'ioredis';
import { percentile } from './e2e-common.js';

/** One measured job as the producer saw it: due and result-seen times (epoch ms, fractional) and its id. */
export interface StageSample {
  jobId: string;
  due: number;
  seen: number;
}

const STAGES = ['submit→added', 'added→active', 'active→finished', 'finished→seen'] as const;

/** Epoch ms with sub-ms precision (performance.now() on the epoch). */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Reads the jobs' hashes under `queueKey` ("prefix:queue") and prints the stage table. */
export async function printStages(
  redis: Redis,
  queueKey: string,
  samples: readonly StageSample[],
  label: string,
): Promise<void> {
  const pipe = redis.pipeline();
  for (const s of samples) pipe.hmget(`${queueKey}:${s.jobId}`, 'timestamp', 'processedOn', 'finishedOn');
  const res = (await pipe.exec()) ?? [];
  const rows: { total: number; parts: number[] }[] = [];
  samples.forEach((s, i) => {
    const [err, v] = res[i] ?? [];
    const [added, active, finished] = ((err ? [] : v) as (string | null)[]).map(Number);
    if (![added, active, finished].every((x) => Number.isFinite(x) && x! > 0)) return;
    rows.push({
      total: s.seen - s.due,
      parts: [added! - s.due, active! - added!, finished! - active!, s.seen - finished!],
    });
  });
  if (rows.length === 0) {
    console.log(`stages ${label}: no job hashes found`);
    return;
  }
  const fmt = (x: number) => x.toFixed(1).padStart(7);
  const lines = [`stages ${label} (${rows.length} jobs; ms; timestamps are whole ms)`];
  lines.push(
    `  ${'stage'.padEnd(16)}${['p50', 'p95', 'p99', 'max'].map((h) => h.padStart(7)).join('')}  tail mean`,
  );
  rows.sort((a, b) => a.total - b.total);
  const tail = rows.slice(Math.floor(rows.length * 0.99));
  const all = [...STAGES.map((name, k) => ({ name, k })), { name: 'total', k: -1 }];
  for (const { name, k } of all) {
    const xs = rows.map((r) => (k < 0 ? r.total : r.parts[k]!)).sort((a, b) => a - b);
    const tailMean = tail.reduce((s, r) => s + (k < 0 ? r.total : r.parts[k]!), 0) / tail.length;
    lines.push(
      `  ${name.padEnd(16)}${[50, 95, 99].map((p) => fmt(percentile(xs, p))).join('')}${fmt(xs[xs.length - 1]!)}  ${fmt(tailMean)}`,
    );
  }
  console.log(lines.join('\n'));
}

/** Event-loop delay, GC pauses and allocation of this process, from `reset()` on (for --stages). */
export interface PauseWatch {
  reset(): void;
  /**
   * One line: event-loop delay p50/p99/max, the GC pauses (count, total, longest) by kind, and the bytes
   * allocated per job over `jobs` jobs (V8's sampling heap profiler, collected objects included).
   */
  report(label: string, jobs: number): Promise<string>;
  close(): void;
}

const GC_KINDS: Record<number, string> = {
  1: 'scavenge',
  2: 'minor-ms',
  4: 'mark-compact',
  8: 'incremental',
};

interface SamplingNode {
  selfSize: number;
  children: SamplingNode[];
  callFrame?: { functionName: string; url: string; lineNumber: number };
}

/**
 * The allocation sites that allocated most, per job (CELL0_BENCH_ALLOC_TOP=N prints the top N): each
 * sample is charged to the innermost frame of cell0's own code on its stack (`own`), or to its own frame
 * when no cell0 frame is on it.
 */
function allocationSites(head: SamplingNode, jobs: number, top: number): string {
  const by = new Map<string, number>();
  const frame = (n: SamplingNode) => {
    const f = n.callFrame;
    if (!f) return '(root)';
    const file = f.url.replace(/^.*\/(node_modules\/|dist\/)/, '$1');
    return `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
  };
  const own = (n: SamplingNode) => !!n.callFrame && /\/dist\//.test(n.callFrame.url);
  const walk = (n: SamplingNode, owner: string | undefined) => {
    const here = own(n) ? frame(n) : owner;
    if (n.selfSize > 0) {
      const k = here ? `own ${here}` : frame(n);
      by.set(k, (by.get(k) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, here);
  };
  walk(head, undefined);
  return [...by]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, b]) => `  ${(b / jobs).toFixed(0).padStart(6)} B/job  ${k}`)
    .join('\n');
}

/**
 * The read and write system calls of this process so far and their bytes (Linux /proc/self/io: syscr,
 * syscw, rchar, wchar), or undefined where that file is not there. Each write to a loopback socket also
 * runs the receiver's side of TCP, and every byte is built, copied and parsed: counts a busy machine's
 * timing does not blur.
 */
export function syscalls(): { r: number; w: number; rb: number; wb: number } | undefined {
  try {
    const io = readFileSync('/proc/self/io', 'utf8');
    const r = /syscr:\s*(\d+)/.exec(io);
    const w = /syscw:\s*(\d+)/.exec(io);
    const rb = /rchar:\s*(\d+)/.exec(io);
    const wb = /wchar:\s*(\d+)/.exec(io);
    return r && w && rb && wb
      ? { r: Number(r[1]), w: Number(w[1]), rb: Number(rb[1]), wb: Number(wb[1]) }
      : undefined;
  } catch {
    return undefined;
  }
}

function allocatedBytes(n: SamplingNode): number {
  return n.children.reduce((s, c) => s + allocatedBytes(c), n.selfSize);
}

export function watchPauses(): PauseWatch {
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  let gcs = new Map<string, { n: number; ms: number; max: number }>();
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const detail = (e as { detail?: { kind?: number } }).detail;
      const kind = GC_KINDS[detail?.kind ?? 0] ?? 'other';
      const g = gcs.get(kind) ?? { n: 0, ms: 0, max: 0 };
      g.n++;
      g.ms += e.duration;
      g.max = Math.max(g.max, e.duration);
      gcs.set(kind, g);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  const session = new Session();
  session.connect();
  const post = <T>(method: string, params?: object) =>
    new Promise<T>((resolve, reject) =>
      session.post(method, params, (err, r) => (err ? reject(err) : resolve(r as T))),
    );
  let sampling: Promise<unknown> | undefined;
  let sys0 = syscalls();
  return {
    reset() {
      sys0 = syscalls();
      loop.reset();
      gcs = new Map();
      // Every allocation of 16 KiB on average is sampled, whether it is collected later or not.
      sampling = (sampling ?? Promise.resolve())
        .then(() => post('HeapProfiler.stopSampling'))
        .catch(() => undefined)
        .then(() =>
          post('HeapProfiler.startSampling', {
            samplingInterval: 16_384,
            includeObjectsCollectedByMajorGC: true,
            includeObjectsCollectedByMinorGC: true,
          }),
        );
    },
    async report(label, jobs) {
      const ms = (ns: number) => (ns / 1e6).toFixed(1);
      const gc = [...gcs]
        .map(([k, g]) => `${k} ${g.n}× ${g.ms.toFixed(0)} ms (longest ${g.max.toFixed(1)})`)
        .join(', ');
      let alloc = '';
      if (sampling) {
        await sampling;
        sampling = undefined;
        const r = await post<{ profile: { head: SamplingNode } }>('HeapProfiler.stopSampling');
        alloc = `; allocated ${(allocatedBytes(r.profile.head) / jobs / 1024).toFixed(1)} KiB/job`;
        const top = Number(process.env.CELL0_BENCH_ALLOC_TOP ?? 0);
        if (top > 0) alloc += `\n${allocationSites(r.profile.head, jobs, top)}`;
      }
      const sys = syscalls();
      const calls =
        sys && sys0
          ? `; read/write per job ${((sys.r - sys0.r) / jobs).toFixed(2)}/${((sys.w - sys0.w) / jobs).toFixed(2)} ` +
            `system calls, ${((sys.rb - sys0.rb) / jobs).toFixed(0)}/${((sys.wb - sys0.wb) / jobs).toFixed(0)} bytes`
          : '';
      return (
        `pauses ${label}: event-loop delay p50 ${ms(loop.percentile(50))} p99 ${ms(loop.percentile(99))} ` +
        `max ${ms(loop.max)} ms; GC ${gc || 'none'}${calls}${alloc}`
      );
    },
    close() {
      loop.disable();
      obs.disconnect();
      session.disconnect();
    },
  };
}
