/*
 * Shared pieces of bench:e2e: the configuration handed to the child processes, the messages they send
 * back over IPC, and small statistics helpers.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type * as producersIndex from '../producers/index.js';
import type { QueueName } from '../shared/queues/names.js';
import type * as workersIndex from '../workers/index.js';

type ProducersModule = typeof producersIndex;
type WorkersModule = typeof workersIndex;

/** A: bare BullMQ (Queue.add + Job.waitUntilFinished, a plain Worker). B: cell0 (Cell0Client + Cell0Worker). */
export type Side = 'bare' | 'cell0';

export const SIDE_LABEL: Record<Side, string> = { bare: 'A bare BullMQ', cell0: 'B cell0' };

/** The queue both sides use, each under its own fresh prefix. */
export const BENCH_QUEUE = 'inference' as QueueName;

/** Passed to bench/e2e-worker.ts as JSON in argv[2]. */
export interface WorkerConfig {
  side: Side;
  redisUrl: string;
  prefix: string;
  concurrency: number;
  /** cell0 side: count in a prom-client registry (Cell0Metrics) as `cell0 worker` does. Default false. */
  metrics?: boolean;
  /** cell0 side: the compiled cell0 to run (a `dist/` directory); default this checkout's. */
  dist?: string;
  /** Print the event-loop delay and GC pauses over the measured jobs (bench/e2e-stages.ts). */
  stages?: boolean;
}

/** Passed to bench/e2e-producer.ts as JSON in argv[2]. */
export interface ProducerConfig {
  side: Side;
  redisUrl: string;
  prefix: string;
  /** Measured jobs. */
  jobs: number;
  /** Jobs in flight at once. */
  window: number;
  /** Jobs run before measuring, not counted. */
  warmup: number;
  /** Makes every prompt unique across runs, so cell0's coalescing never merges two jobs. */
  runId: string;
  /** How long one job may take before it counts as a failure, ms. */
  waitMs: number;
  /**
   * Open loop: start jobs at this rate (jobs/s, evenly spaced) whatever is in flight, instead of keeping
   * `window` in flight; latency counts from each job's scheduled start. Unset: closed loop.
   */
  rate?: number;
  /** cell0 side: count in a prom-client registry (Cell0Metrics) as the API does. Default false. */
  metrics?: boolean;
  /** cell0 side: the compiled cell0 to run (a `dist/` directory); default this checkout's. */
  dist?: string;
  /** Print the measured jobs' stages (bench/e2e-stages.ts). Default false. */
  stages?: boolean;
}

/** What a producer measured. Latencies in ms; jobsPerSec = jobs / wall time from first add to last result. */
export interface ProducerResult {
  side: Side;
  count: number;
  failures: number;
  wallMs: number;
  jobsPerSec: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  /** CPU time (user + system) the producer process spent during the measured jobs, ms. */
  cpuMs: number;
  /** First failure message, if any (to tell a timeout from a real error). */
  firstError?: string;
  /** Every successful job's latency, ms (to merge the percentiles of several producers). */
  latencies?: number[];
}

/** Child → parent. */
export type ChildMessage =
  | { type: 'ready' }
  /** Producer: warm-up done; waits for "go" before the measured jobs. */
  | { type: 'measuring' }
  | { type: 'result'; result: ProducerResult }
  /** Worker: CPU time (user + system) since "mark", ms. */
  | { type: 'stats'; cpuMs: number }
  | { type: 'error'; message: string };

/** Parent → child. */
export type ParentMessage =
  /** To the producer: start the measured jobs. */
  | { type: 'go' }
  /** To the worker: start counting CPU time. */
  | { type: 'mark' }
  /** To the worker: report CPU time since "mark" (and, with --stages, its pauses over `jobs` jobs). */
  | { type: 'stats'; jobs?: number };

const CHILD_TYPES: readonly string[] = ['ready', 'measuring', 'result', 'stats', 'error'];
const PARENT_TYPES: readonly string[] = ['go', 'mark', 'stats'];

function hasType(m: unknown, types: readonly string[]): boolean {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return typeof t === 'string' && types.includes(t);
}

export function isChildMessage(m: unknown): m is ChildMessage {
  return hasType(m, CHILD_TYPES);
}

export function isParentMessage(m: unknown): m is ParentMessage {
  return hasType(m, PARENT_TYPES);
}

/** CPU time (user + system) of this process since `since` (a process.cpuUsage() value), ms. */
export function cpuMsSince(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

/** Nearest-rank percentile of an ascending-sorted array (NaN when empty). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Median of a list (mean of the two middle values for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Reads the JSON config a child process was started with. */
export function childConfig<T>(): T {
  const raw = process.argv[2];
  if (!raw) throw new Error(`${process.argv[1]}: expected a JSON config as the first argument`);
  return JSON.parse(raw) as T;
}

/** Sends a message to the parent process (no-op when started without IPC). */
export function sendToParent(msg: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      process.stdout.write(JSON.stringify(msg) + '\n');
      resolve();
      return;
    }
    process.send(msg, undefined, {}, () => resolve());
  });
}

/**
 * cell0's compiled `cell0` entry point (the producers' side: dist/, what `npm start` and a service importing
 * cell0 run), loaded at run time
 * so the benchmark measures production code rather than sources transpiled on the fly. Types come from
 * the sources. `npm run bench:e2e` builds first.
 */
export async function loadCompiledProducers(dist = DIST): Promise<ProducersModule> {
  return (await import(compiled(dist, 'producers'))) as ProducersModule;
}

/**
 * The compiled `cell0/workers` entry point, alone: a worker process loads what `cell0 worker` loads, not the
 * producers' side (the API, express), whose modules would only enlarge its heap.
 */
export async function loadCompiledWorkers(dist = DIST): Promise<WorkersModule> {
  return (await import(compiled(dist, 'workers'))) as WorkersModule;
}

const DIST = join(__dirname, '..', 'dist');

function compiled(dist: string, part: 'producers' | 'workers'): string {
  const file = join(dist, part, 'index.js');
  if (!existsSync(file))
    throw new Error('dist/ is missing: run `npm run build` first (npm run bench:e2e does)');
  return file;
}
