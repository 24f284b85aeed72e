/*
 * The CPU that cell0 controls, as opposed to the host's. A busy neighbour on the same host must never read
 * as pressure on cell0, so the limit is measured on what cell0 owns: the cgroup's CPU quota when one is set
 * (a container with `--cpus`, a systemd unit with CPUQuota), else this process's own CPU time. Readings are
 * cumulative counters; a sliding window over them gives the percentage, so one busy second does not flap.
 */
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import os from 'node:os';

/** What a CPU figure is measured against. */
export type CpuScope = 'cgroup' | 'process';

/** One reading of a cumulative CPU-time counter. */
export interface CpuReading {
  /** When it was read, ms on a monotonic clock (performance.now() for the real sources). */
  at: number;
  /** CPU time used so far by what is measured, µs (it only grows). */
  usedMicros: number;
  /**
   * Cores the percentage is of: the cgroup's quota in cores (quota / period), or 1 for a process (a Node
   * process runs its JavaScript on one thread: one core fully busy is where it saturates).
   */
  capacityCores: number;
  scope: CpuScope;
}

/** Something that reads a cumulative CPU counter (the real sources, or a test's fake). */
export interface CpuUsageSource {
  read(): CpuReading;
}

/** This process's CPU time (user + system, all its threads), measured against one core. */
export function processCpuSource(
  opts: { now?: () => number; cpuUsage?: () => NodeJS.CpuUsage } = {},
): CpuUsageSource {
  const now = opts.now ?? (() => performance.now());
  const usage = opts.cpuUsage ?? (() => process.cpuUsage());
  return {
    read(): CpuReading {
      const u = usage();
      return { at: now(), usedMicros: u.user + u.system, capacityCores: 1, scope: 'process' };
    },
  };
}

/** Options of {@link cgroupCpuSource}. */
export interface CgroupCpuOptions {
  /** Where the cgroup filesystem is mounted. Default /sys/fs/cgroup. */
  root?: string;
  /**
   * This process's cgroup, relative to the root (e.g. "/system.slice/cell0.service"). Default: read from
   * /proc/self/cgroup when `root` is the default, else "/" (a test's fake folder is the cgroup itself).
   */
  path?: string;
  now?: () => number;
}

/** A quota found in the cgroup tree, and where its usage counter is. */
interface Quota {
  cores: number;
  /** Reads the group's usage, µs. */
  usage: () => number;
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** The folders from `path` up to the root, nearest first. */
function ancestors(root: string, path: string): string[] {
  const out: string[] = [];
  let p = posix.normalize('/' + path);
  for (;;) {
    out.push(join(root, p));
    if (p === '/') break;
    p = posix.dirname(p);
  }
  return out;
}

/** cgroup v2: cpu.max ("max 100000" or "<quota> <period>") and cpu.stat usage_usec. */
function v2Quota(root: string, path: string): Quota | undefined {
  for (const dir of ancestors(root, path)) {
    const max = readText(join(dir, 'cpu.max'))?.trim().split(/\s+/);
    if (!max || max[0] === 'max') continue;
    const quota = Number(max[0]);
    const period = Number(max[1] ?? 100_000);
    if (!(quota > 0 && period > 0)) continue;
    const stat = join(dir, 'cpu.stat');
    return {
      cores: quota / period,
      usage: () => Number(/^usage_usec\s+(\d+)/m.exec(readText(stat) ?? '')?.[1] ?? NaN),
    };
  }
  return undefined;
}

/** cgroup v1: cpu.cfs_quota_us (-1 = none) and cpu.cfs_period_us; usage from cpuacct.usage (ns). */
function v1Quota(root: string, path: string): Quota | undefined {
  for (const cpuDir of ['cpu', 'cpu,cpuacct', 'cpuacct,cpu']) {
    const cpuRoot = join(root, cpuDir);
    for (const dir of ancestors(cpuRoot, path)) {
      const quota = Number(readText(join(dir, 'cpu.cfs_quota_us'))?.trim());
      const period = Number(readText(join(dir, 'cpu.cfs_period_us'))?.trim());
      if (!(quota > 0 && period > 0)) continue;
      // cpuacct is usually mounted with cpu (same folder) or beside it under the same relative path.
      const rel = dir.slice(cpuRoot.length);
      const candidates = [join(dir, 'cpuacct.usage'), join(root, 'cpuacct', rel, 'cpuacct.usage')];
      const file = candidates.find((f) => readText(f) !== undefined);
      if (!file) continue;
      return { cores: quota / period, usage: () => Number(readText(file)?.trim()) / 1000 };
    }
  }
  return undefined;
}

/** This process's cgroup path from /proc/self/cgroup: the v2 line ("0::/x"), else the v1 cpu controller's. */
function ownCgroupPath(): string {
  const text = readText('/proc/self/cgroup') ?? '';
  let v1: string | undefined;
  for (const line of text.split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line.trim()) ?? [];
    if (path === undefined) continue;
    if (controllers === '') return path;
    if (controllers?.split(',').includes('cpu')) v1 = path;
  }
  return v1 ?? '/';
}

const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * The cgroup's CPU usage against its quota, or undefined when no quota applies (no cgroup filesystem, or
 * "max" / -1 all the way up). The nearest ancestor with a quota counts: its usage covers every process the
 * quota throttles. cgroup v2 first, then v1.
 */
export function cgroupCpuSource(opts: CgroupCpuOptions = {}): CpuUsageSource | undefined {
  const root = opts.root ?? DEFAULT_CGROUP_ROOT;
  const path = opts.path ?? (opts.root === undefined ? ownCgroupPath() : '/');
  const now = opts.now ?? (() => performance.now());
  // The process may see its cgroup under a path the mount does not show (no cgroup namespace): try the
  // path, then the root itself.
  const quota =
    v2Quota(root, path) ??
    v1Quota(root, path) ??
    (path !== '/' ? (v2Quota(root, '/') ?? v1Quota(root, '/')) : undefined);
  if (!quota || !Number.isFinite(quota.usage())) return undefined;
  return {
    read(): CpuReading {
      return { at: now(), usedMicros: quota.usage(), capacityCores: quota.cores, scope: 'cgroup' };
    },
  };
}

/** The cgroup's quota when one is set, else this process. */
export function detectCpuSource(opts: { cgroupRoot?: string; cgroupPath?: string } = {}): CpuUsageSource {
  return (
    cgroupCpuSource({
      ...(opts.cgroupRoot !== undefined ? { root: opts.cgroupRoot } : {}),
      ...(opts.cgroupPath !== undefined ? { path: opts.cgroupPath } : {}),
    }) ?? processCpuSource()
  );
}

/**
 * Percent of capacity used over a sliding window of readings: (used now - used at the window's start) /
 * (elapsed × capacity). The window keeps the newest reading at least `windowMs` old, so the figure always
 * covers about `windowMs` once that much has been read (less right after start). A change of scope or
 * capacity (a quota set or lifted at run time) starts the window again.
 */
export class CpuWindow {
  private readings: CpuReading[] = [];

  constructor(readonly windowMs: number) {
    if (!(Number.isFinite(windowMs) && windowMs >= 0))
      throw new TypeError(`CpuWindow: "windowMs" must be >= 0, got ${String(windowMs)}`);
  }

  /** Adds a reading; returns the % over the window, or undefined while there is no earlier reading. */
  push(r: CpuReading): number | undefined {
    const last = this.readings.at(-1);
    if (last && (last.scope !== r.scope || last.capacityCores !== r.capacityCores || r.at <= last.at))
      this.readings = [];
    this.readings.push(r);
    // Drop the oldest while the next one is still at least windowMs back: the first kept reading is the
    // newest one that covers the whole window.
    while (this.readings.length > 2 && r.at - this.readings[1]!.at >= this.windowMs) this.readings.shift();
    const first = this.readings[0]!;
    if (first === r) return undefined;
    const elapsedMicros = (r.at - first.at) * 1000;
    const used = r.usedMicros - first.usedMicros;
    if (!(elapsedMicros > 0) || !(r.capacityCores > 0) || !Number.isFinite(used)) return undefined;
    return (Math.max(0, used) / (elapsedMicros * r.capacityCores)) * 100;
  }

  /** Span of the current window, ms (0 before two readings). */
  spanMs(): number {
    const first = this.readings[0];
    const last = this.readings.at(-1);
    return first && last ? last.at - first.at : 0;
  }
}

/** Cumulative busy and total time of all the host's cores, ms (os.cpus(): /proc/stat on Linux). */
export function hostCpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times;
    busy += t.user + t.nice + t.sys + t.irq;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { busy, total };
}
