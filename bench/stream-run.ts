/*
 * One run of bench:stream on one side: K streams with unique prompts, either
 *   - burst: K streams started at once, W times over (a wave starts when the last one ended): a cold burst,
 *     where the K-th request waits for the other K-1 requests' setup;
 *   - closed: K clients, each starting its next stream when its previous one ended (K streams in flight, a
 *     closed loop as in wrk, autocannon -c or artillery), for a warm-up and then a measured window; only
 *     the streams started inside the window are timed.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { type Redis } from 'ioredis';
import { type Pool } from 'undici';
import { percentile } from './e2e-common.js';
import { commandCalls, cpuMsOf } from './fleet.js';
import { direct, viaCell0, type Side } from './stream-clients.js';
import { finishResult, firstText, type StreamResult } from './stream-read.js';

/** How a run's K streams are started. */
export type RunPlan =
  { mode: 'burst'; waves: number } | { mode: 'closed'; warmupMs: number; durationMs: number };

export interface RunStats {
  /** Streams timed (closed mode: those started inside the measured window). */
  n: number;
  ttftP50: number;
  ttftP99: number;
  tokensPerSecP50: number;
  /** Closed mode: streams started per second inside the measured window. */
  streamsPerSec?: number;
  errors: number;
  firstError?: string;
  /** Answers cell0 did not generate for this request (a cache hit or a joined generation): should be 0. */
  notOwn: number;
  /** CPU ms per stream of each process over the run (every stream of it, warm-up included). */
  cpuMs: Record<string, number>;
  /**
   * Per stream, of each process: its main thread's (the event loop's) CPU ms, in ns steps rather than the
   * 10 ms ticks of `cpuMs` (no GC helper or compiler threads), and its read and write system calls.
   */
  loop: Record<string, { cpuMs: number; reads: number; writes: number }>;
  /**
   * cell0 runs: Redis commands per stream (INFO commandstats delta: all, xadd, xread; `top`: the most
   * frequent, "name n" each). Commands a script runs count as well as the EVALSHA that ran them.
   */
  commands?: { all: number; xadd: number; xread: number; top: string };
  /**
   * Burst runs: per process (not the simulator or Redis), its event loop's CPU ms from a wave's start to the
   * client's first text of its first stream, and to the first text of its median stream (the K/2-th first
   * text), mean over waves: the CPU the p50 first token waits behind, a count that holds on a busy host
   * better than the time.
   */
  toFirstText?: Record<string, { first: number; median: number }>;
  /**
   * Burst runs with --backend-probe on: cell0's event-loop CPU ms from a burst's first request to its backend
   * calls number 1, K/4, K/2, 3K/4 and K (`at`) and to its last request's arrival, mean over the run's bursts
   * (bench/backend-call-probe.mjs).
   */
  backendCalls?: {
    at: number[];
    arrived: number;
    /**
     * The bursts whose loop met a scavenge of the young generation before their K/2-th backend call / the
     * K/2-th response's first write, of all bursts, and the scavenges' pause ms there per burst (mean).
     */
    scavenges?: { bursts: number; toHalfCall: number; toHalfText: number; msToHalfText: number };
  };
}

/** The lines of the probe's file (bench/backend-call-probe.mjs), or none yet. */
function probeLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '');
  } catch {
    return [];
  }
}

/** What the probe wrote since `from` lines, for bursts of k requests (see RunStats.backendCalls). */
function backendCallsOf(file: string, from: number, k: number): RunStats['backendCalls'] {
  const bursts = probeLines(file)
    .slice(from)
    .map(
      (l) =>
        JSON.parse(l) as {
          requests: number;
          arrivedCpu: number;
          callCpu: number[];
          scavengesToHalfCall?: [number, number];
          scavengesToHalfText?: [number, number];
        },
    )
    .filter((b) => b.requests === k && b.callCpu.length === k);
  if (bursts.length === 0) return undefined;
  const mean = (g: (b: (typeof bursts)[number]) => number) =>
    bursts.reduce((s, b) => s + g(b), 0) / bursts.length;
  const nth = [1, Math.ceil(k / 4), Math.ceil(k / 2), Math.ceil((3 * k) / 4), k];
  const scavenges = bursts.every((b) => b.scavengesToHalfCall && b.scavengesToHalfText)
    ? {
        bursts: bursts.length,
        toHalfCall: bursts.filter((b) => b.scavengesToHalfCall![0] > 0).length,
        toHalfText: bursts.filter((b) => b.scavengesToHalfText![0] > 0).length,
        msToHalfText: mean((b) => b.scavengesToHalfText![1]),
      }
    : undefined;
  return {
    at: nth.map((n) => mean((b) => b.callCpu[n - 1]!)),
    arrived: mean((b) => b.arrivedCpu),
    ...(scavenges ? { scavenges } : {}),
  };
}

/** Redis commands per stream between two commandstats readings. */
export function commandsPer(a: Map<string, number>, b: Map<string, number>, n: number) {
  const d = (c?: string) =>
    c === undefined
      ? [...b].reduce((s, [k, v]) => s + v - (a.get(k) ?? 0), 0)
      : (b.get(c) ?? 0) - (a.get(c) ?? 0);
  const top = [...b.keys()]
    .map((c) => [c, d(c) - (c === 'info' ? 1 : 0)] as const)
    .filter(([, v]) => v > 0)
    .sort((x, y) => y[1] - x[1])
    .slice(0, 10)
    .map(([c, v]) => `${c} ${(v / n).toFixed(1)}`)
    .join(', ');
  // The commandstats reading itself (INFO) is not cell0's.
  return { all: (d() - 1) / n, xadd: d('xadd') / n, xread: d('xread') / n, top };
}

/** A process's main-thread CPU ms (/proc/PID/schedstat, ns) and read / write system calls (/proc/PID/io). */
function loopCounts(pid: number | undefined): { cpuMs: number; reads: number; writes: number } {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)`, 'm').exec(io)?.[1] ?? NaN);
    const ns = Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
    return { cpuMs: ns / 1e6, reads: field('syscr'), writes: field('syscw') };
  } catch {
    return { cpuMs: NaN, reads: NaN, writes: NaN };
  }
}

/** Runs `one` K at a time as the plan says; returns the timed streams and how many ran in all. */
async function drive(
  plan: RunPlan,
  k: number,
  one: (name: string) => Promise<StreamResult>,
  atFirstTexts?: (wave: number, nth: number) => void,
): Promise<{ timed: StreamResult[]; all: number; windowMs: number }> {
  if (plan.mode === 'burst') {
    const timed: StreamResult[] = [];
    for (let w = 0; w < plan.waves; w++) {
      let n = 0;
      if (atFirstTexts) firstText.hook = () => atFirstTexts(w, n++);
      try {
        timed.push(...(await Promise.all(Array.from({ length: k }, (_, i) => one(`wave ${w} reader ${i}`)))));
      } finally {
        firstText.hook = undefined;
      }
    }
    return { timed, all: timed.length, windowMs: NaN };
  }
  const timed: StreamResult[] = [];
  let all = 0;
  const measureFrom = performance.now() + plan.warmupMs;
  const endAt = measureFrom + plan.durationMs;
  await Promise.all(
    Array.from({ length: k }, async (_, i) => {
      for (let n = 0; ; n++) {
        const startedAt = performance.now();
        if (startedAt >= endAt) return;
        const r = await one(`client ${i} stream ${n}`);
        all++;
        if (startedAt >= measureFrom) timed.push(r);
      }
    }),
  );
  return { timed, all, windowMs: plan.durationMs };
}

/** One run of K streams on one side, unique prompts. */
export async function run(
  side: Side,
  pool: Pool,
  k: number,
  plan: RunPlan,
  tag: string,
  maxTokens: number,
  pids: Record<string, number | undefined>,
  redis?: Redis,
  probeFile?: string,
): Promise<RunStats> {
  const probeFrom = probeFile && plan.mode === 'burst' ? probeLines(probeFile).length : undefined;
  const calls0 = redis ? await commandCalls(redis) : undefined;
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMsOf(pid)]));
  const loop0 = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, loopCounts(pid)]));
  // Burst runs: each wave's event-loop CPU of the service's processes at its start, at its first first text
  // and at its median one (only the main thread's schedstat is read there: a file read, no await).
  const own = Object.entries(pids).filter(([name]) => name !== 'simulator' && name !== 'redis');
  const marks: { start: number[]; first: number[]; median: number[] }[] = [];
  const cpuNow = () => own.map(([, pid]) => loopCounts(pid).cpuMs);
  const atFirstTexts =
    plan.mode === 'burst' && own.length > 0
      ? (wave: number, nth: number) => {
          const m = marks[wave];
          if (!m) return;
          if (nth === 0) m.first = cpuNow();
          if (nth === Math.floor(k / 2)) m.median = cpuNow();
        }
      : undefined;
  const { timed, all, windowMs } = await drive(
    plan,
    k,
    (name) => {
      if (atFirstTexts && name.endsWith(' reader 0')) marks.push({ start: cpuNow(), first: [], median: [] });
      const prompt = `Stream ${tag} ${name}: describe ${randomBytes(6).toString('hex')} in detail`;
      return (side === 'direct' ? direct : viaCell0)(pool, prompt, maxTokens).catch(
        (err: unknown): StreamResult => ({ ...finishResult(0, undefined, 0, '', 0, 0), error: String(err) }),
      );
    },
    atFirstTexts,
  );
  const done = marks.filter((m) => m.median.length > 0);
  const toFirstText =
    done.length > 0
      ? Object.fromEntries(
          own.map(([name], j) => {
            const mean = (g: (m: (typeof done)[number]) => number) =>
              done.reduce((s, m) => s + g(m), 0) / done.length;
            return [
              name,
              {
                first: mean((m) => m.first[j]! - m.start[j]!),
                median: mean((m) => m.median[j]! - m.start[j]!),
              },
            ];
          }),
        )
      : undefined;
  const backendCalls =
    probeFile && probeFrom !== undefined ? backendCallsOf(probeFile, probeFrom, k) : undefined;
  const ok = timed.filter((r) => r.error === undefined && Number.isFinite(r.ttftMs));
  const ttft = ok.map((r) => r.ttftMs).sort((a, b) => a - b);
  const tps = ok
    .map((r) => r.tokensPerSec)
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
  const failed = timed.filter((r) => !ok.includes(r));
  const cpuMs: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) cpuMs[name] = (cpuMsOf(pid) - cpu0[name]!) / all;
  const loop: RunStats['loop'] = {};
  for (const [name, pid] of Object.entries(pids)) {
    const [a, b] = [loop0[name]!, loopCounts(pid)];
    loop[name] = {
      cpuMs: (b.cpuMs - a.cpuMs) / all,
      reads: (b.reads - a.reads) / all,
      writes: (b.writes - a.writes) / all,
    };
  }
  // The last stream's job may still be completing: its commands are counted once they are all in.
  const commands = redis && calls0 ? commandsPer(calls0, await commandCalls(redis), all) : undefined;
  return {
    ...(commands ? { commands } : {}),
    ...(toFirstText ? { toFirstText } : {}),
    ...(backendCalls ? { backendCalls } : {}),
    n: timed.length,
    ttftP50: percentile(ttft, 50),
    ttftP99: percentile(ttft, 99),
    tokensPerSecP50: percentile(tps, 50),
    ...(Number.isFinite(windowMs) ? { streamsPerSec: (timed.length * 1000) / windowMs } : {}),
    errors: failed.length,
    ...(failed[0] ? { firstError: failed[0].error ?? 'no text' } : {}),
    notOwn: timed.filter((r) => r.cache === 'exact' || r.cache === 'semantic' || r.coalesced === 'joined')
      .length,
    cpuMs,
    loop,
  };
}
