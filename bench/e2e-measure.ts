/*
 * bench:e2e measurements: CPU of Redis and of the machine, Redis commands, the producers' results merged,
 * and the table cells.
 */
import { readFileSync } from 'node:fs';
import { type Redis } from 'ioredis';
import { percentile, type ProducerResult } from './e2e-common.js';

/** Above this many cores used by other processes during a side, a pair is not counted as quiet. */
export const QUIET_BG_CORES = 0.25;

/** Redis server CPU time (user + system) so far, ms. */
export async function redisCpuMs(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const get = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? NaN);
  return (get('used_cpu_user') + get('used_cpu_sys')) * 1000;
}

/**
 * CPU time all processes on the machine have used so far, ms (Linux /proc/stat; NaN elsewhere). Used to
 * tell how much of the machine something other than this benchmark took during a measurement.
 */
export function machineBusyMs(): number {
  try {
    const fields = readFileSync('/proc/stat', 'utf8')
      .split('\n')[0]!
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = fields[3]! + fields[4]!;
    return (total - idle) * 10; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/** Calls per command so far (INFO commandstats). */
export async function redisCalls(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/** The producers of one side as one: jobs and CPU summed, wall time the longest, percentiles of all. */
export function mergeResults(results: readonly ProducerResult[]): ProducerResult {
  if (results.length === 1) return results[0]!;
  const all = results.flatMap((r) => r.latencies ?? []).sort((a, b) => a - b);
  const count = results.reduce((s, r) => s + r.count, 0);
  const wallMs = Math.max(...results.map((r) => r.wallMs));
  const firstError = results.find((r) => r.firstError !== undefined)?.firstError;
  return {
    side: results[0]!.side,
    count,
    failures: results.reduce((s, r) => s + r.failures, 0),
    wallMs,
    jobsPerSec: Math.round((count / (wallMs / 1000)) * 100) / 100,
    p50: percentile(all, 50),
    p95: percentile(all, 95),
    p99: percentile(all, 99),
    mean: all.reduce((s, x) => s + x, 0) / (all.length || 1),
    cpuMs: results.reduce((s, r) => s + r.cpuMs, 0),
    ...(firstError !== undefined ? { firstError } : {}),
  };
}

export function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

export function row(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
}
