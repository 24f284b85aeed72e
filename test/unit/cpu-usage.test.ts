/*
 * cell0's CPU figure: what it measures (the cgroup's quota when one is set, else this process, never the
 * host), over a sliding window. The cgroup is a fake folder with the kernel's file formats; counters and
 * clocks are injected, so every figure is exact.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CpuWindow,
  cgroupCpuSource,
  detectCpuSource,
  processCpuSource,
  type CpuReading,
} from '../../shared/resources/cpu-usage';
import { createSystemSampler } from '../../shared/resources/resource-monitor';
import { ResourceLimiter } from '../../shared/resources/resource-limiter';
import { type ResourceSample } from '../../shared/resources/types';
import { busyHost, drivenCpu } from '../helpers/pressure';

const roots: string[] = [];
function fakeRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'cell0-cgroup-'));
  roots.push(root);
  return root;
}
function write(root: string, rel: string, text: string): void {
  const file = join(root, rel);
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, text);
}
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

/** A clock the test moves by hand. */
function clock(start = 1000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

const reading = (at: number, usedMicros: number, scope: CpuReading['scope'] = 'process'): CpuReading => ({
  at,
  usedMicros,
  capacityCores: 1,
  scope,
});

describe('CpuWindow', () => {
  it('gives the % of capacity used between the window start and now', () => {
    const w = new CpuWindow(10_000);
    expect(w.push(reading(0, 0))).toBeUndefined();
    // 500 ms of CPU in 1 s, on one core: 50%.
    expect(w.push(reading(1000, 500_000))).toBeCloseTo(50, 6);
    // Then 1 s fully busy: 1.5 s of CPU over 2 s.
    expect(w.push(reading(2000, 1_500_000))).toBeCloseTo(75, 6);
  });

  it('averages over the window, so one busy second among idle ones stays low; sustained load shows', () => {
    const w = new CpuWindow(10_000);
    let used = 0;
    w.push(reading(0, used));
    const figures: number[] = [];
    for (let s = 1; s <= 20; s++) {
      used += s === 12 ? 1_000_000 : 20_000; // idle (2%) but one fully busy second
      figures.push(w.push(reading(s * 1000, used))!);
    }
    // The spike is spread over the 10 s window: about 12%, far from a 90% limit.
    expect(Math.max(...figures.slice(10))).toBeLessThan(15);
    for (let s = 21; s <= 40; s++) {
      used += 950_000;
      figures.push(w.push(reading(s * 1000, used))!);
    }
    // Ten seconds in a row at 95%: the window is all busy.
    expect(figures.at(-1)).toBeCloseTo(95, 6);
  });

  it('keeps about one window of readings: the oldest kept reading is the newest that covers it', () => {
    const w = new CpuWindow(3000);
    let used = 0;
    for (let s = 0; s <= 10; s++) w.push(reading(s * 1000, (used += 100_000)));
    expect(w.spanMs()).toBe(3000);
  });

  it('0 = each interval alone', () => {
    const w = new CpuWindow(0);
    w.push(reading(0, 0));
    expect(w.push(reading(1000, 900_000))).toBeCloseTo(90, 6);
    expect(w.push(reading(2000, 1_000_000))).toBeCloseTo(10, 6);
  });

  it('starts again when the scope or capacity changes, or the clock goes back', () => {
    const w = new CpuWindow(10_000);
    w.push(reading(0, 0));
    w.push(reading(1000, 500_000));
    expect(w.push(reading(2000, 10, 'cgroup'))).toBeUndefined();
    expect(w.push({ ...reading(3000, 100_010, 'cgroup'), capacityCores: 2 })).toBeUndefined();
    expect(w.push({ ...reading(4000, 1_100_010, 'cgroup'), capacityCores: 2 })).toBeCloseTo(50, 6);
    expect(w.push({ ...reading(3500, 1_200_000, 'cgroup'), capacityCores: 2 })).toBeUndefined();
  });

  it('refuses a negative window', () => {
    expect(() => new CpuWindow(-1)).toThrow('"windowMs"');
  });
});

describe('processCpuSource', () => {
  it("reads this process's user + system time against one core", () => {
    const c = clock();
    let usage = { user: 300, system: 200 };
    const src = processCpuSource({ now: c.now, cpuUsage: () => usage });
    expect(src.read()).toEqual({ at: 1000, usedMicros: 500, capacityCores: 1, scope: 'process' });
    usage = { user: 900_300, system: 100_200 };
    c.advance(1000);
    expect(src.read()).toEqual({ at: 2000, usedMicros: 1_000_500, capacityCores: 1, scope: 'process' });
  });

  it('reads the real counters by default', () => {
    const r = processCpuSource().read();
    expect(r.scope).toBe('process');
    expect(r.usedMicros).toBeGreaterThan(0);
  });
});

describe('cgroupCpuSource (fake cgroup folders)', () => {
  it('cgroup v2: usage_usec against the quota of cpu.max', () => {
    const root = fakeRoot();
    write(root, 'cgroup.controllers', 'cpu memory\n');
    write(root, 'cpu.max', '50000 100000\n');
    write(root, 'cpu.stat', 'usage_usec 1000000\nuser_usec 800000\nsystem_usec 200000\n');
    const c = clock();
    const src = cgroupCpuSource({ root, now: c.now })!;
    expect(src.read()).toEqual({ at: 1000, usedMicros: 1_000_000, capacityCores: 0.5, scope: 'cgroup' });
    // 400 ms of CPU in one second against half a core: 80% of the quota.
    write(root, 'cpu.stat', 'usage_usec 1400000\nuser_usec 1100000\nsystem_usec 300000\n');
    c.advance(1000);
    const w = new CpuWindow(10_000);
    w.push({ ...src.read(), at: 1000, usedMicros: 1_000_000 });
    expect(w.push(src.read())).toBeCloseTo(80, 6);
  });

  it('cgroup v2: the nearest ancestor with a quota counts; "max" everywhere = no quota', () => {
    const root = fakeRoot();
    write(root, 'cpu.max', 'max 100000\n');
    write(root, 'kubepods/cpu.max', '200000 100000\n');
    write(root, 'kubepods/cpu.stat', 'usage_usec 42\n');
    write(root, 'kubepods/pod1/cpu.max', 'max 100000\n');
    write(root, 'kubepods/pod1/cpu.stat', 'usage_usec 7\n');
    const src = cgroupCpuSource({ root, path: '/kubepods/pod1' })!;
    expect(src.read()).toMatchObject({ usedMicros: 42, capacityCores: 2, scope: 'cgroup' });

    const none = fakeRoot();
    write(none, 'cpu.max', 'max 100000\n');
    write(none, 'cpu.stat', 'usage_usec 42\n');
    expect(cgroupCpuSource({ root: none })).toBeUndefined();
  });

  it('cgroup v1: cfs quota and period, usage from cpuacct (ns)', () => {
    const root = fakeRoot();
    write(root, 'cpu/cpu.cfs_quota_us', '150000\n');
    write(root, 'cpu/cpu.cfs_period_us', '100000\n');
    write(root, 'cpuacct/cpuacct.usage', '3000000000\n');
    expect(cgroupCpuSource({ root })!.read()).toMatchObject({
      usedMicros: 3_000_000,
      capacityCores: 1.5,
      scope: 'cgroup',
    });
    // Combined mount (cpu,cpuacct) with the counter beside the quota.
    const both = fakeRoot();
    write(both, 'cpu,cpuacct/docker/abc/cpu.cfs_quota_us', '100000\n');
    write(both, 'cpu,cpuacct/docker/abc/cpu.cfs_period_us', '100000\n');
    write(both, 'cpu,cpuacct/docker/abc/cpuacct.usage', '5000\n');
    expect(cgroupCpuSource({ root: both, path: '/docker/abc' })!.read()).toMatchObject({
      usedMicros: 5,
      capacityCores: 1,
    });
  });

  it('cgroup v1 with no quota (-1), or no cgroup at all: undefined, and detectCpuSource falls back to the process', () => {
    const root = fakeRoot();
    write(root, 'cpu/cpu.cfs_quota_us', '-1\n');
    write(root, 'cpu/cpu.cfs_period_us', '100000\n');
    write(root, 'cpuacct/cpuacct.usage', '3000000000\n');
    expect(cgroupCpuSource({ root })).toBeUndefined();
    expect(cgroupCpuSource({ root: fakeRoot() })).toBeUndefined();
    expect(detectCpuSource({ cgroupRoot: root }).read().scope).toBe('process');
  });
});

describe('the system sampler measures cell0, not the host', () => {
  it('host busy (a neighbour), cell0 idle: the figure is low and the limiter sees no pressure', async () => {
    const own = drivenCpu();
    own.set(2);
    const sampler = createSystemSampler({
      diskPath: process.cwd(),
      cpu: { source: own.source, hostTimes: busyHost(), windowMs: 5000 },
    });
    let latest: ResourceSample | undefined;
    const limiter = new ResourceLimiter({ source: { getCurrentUsage: () => latest }, cpuConsecutive: 1 });
    try {
      for (let i = 0; i < 5; i++) {
        latest = await sampler.sample();
        expect(limiter.evaluate(latest).withinLimits).toBe(true);
      }
      expect(latest?.hostCpuPercent).toBe(100);
      expect(latest?.cpuPercent).toBeCloseTo(2, 6);
      expect(limiter.episodes).toBe(0);
      // cell0 itself busy: the same limiter sees it (two samples in a row over 90%, window of 5 s).
      own.set(97);
      const checks = [];
      for (let i = 0; i < 8; i++) checks.push(limiter.evaluate(await sampler.sample()).withinLimits);
      expect(checks.at(-1)).toBe(false);
      expect(limiter.violations).toEqual([expect.objectContaining({ resource: 'cpu', threshold: 90 })]);
    } finally {
      sampler.close();
      await limiter.close();
    }
  });
});
