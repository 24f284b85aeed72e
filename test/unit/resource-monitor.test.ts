import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClosedError } from '../../shared/errors';
import {
  createSystemSampler,
  ResourceMonitor,
  getResourceMonitor,
  resetResourceMonitor,
  type ResourceMonitorOptions,
} from '../../shared/resources/resource-monitor';
import { type ResourceSample } from '../../shared/resources/types';
import { rejectionOf } from '../helpers/wait';
import { resourceSample } from '../helpers/resource-sample';

/** A sample whose memoryPercent says which one it is. */
const sample = (n: number): ResourceSample => resourceSample({ memory: n, cpu: 1, disk: 1 });

/** A sampler that numbers its samples 1, 2, 3... */
function counting(): { sampler: () => ResourceSample; calls: () => number } {
  let n = 0;
  return { sampler: () => sample(++n), calls: () => n };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ids = (samples: ResourceSample[]) => samples.map((s) => s.memoryPercent);

const monitors: ResourceMonitor[] = [];
function monitor(opts: ResourceMonitorOptions): ResourceMonitor {
  const m = new ResourceMonitor(opts);
  monitors.push(m);
  return m;
}

afterEach(async () => {
  await Promise.all(monitors.splice(0).map((m) => m.close()));
  await resetResourceMonitor();
});

describe('ResourceMonitor with an injected sampler', () => {
  it('start() takes a first sample before it resolves, then samples on the interval', async () => {
    const c = counting();
    const m = monitor({ intervalMs: 100, sampler: c.sampler });
    expect(m.getCurrentUsage()).toBeUndefined();
    await m.start();
    expect(c.calls()).toBe(1);
    expect(m.getCurrentUsage()?.memoryPercent).toBe(1);
    await m.start(); // idempotent: no second first sample
    expect(c.calls()).toBe(1);
    const [next] = (await once(m, 'sample')) as [ResourceSample];
    expect(next.memoryPercent).toBe(2);
    expect(m.getCurrentUsage()).toBe(next);
  });

  it("emits 'sample' for every sample, including record()ed ones", async () => {
    const c = counting();
    const m = monitor({ intervalMs: 100, sampler: c.sampler });
    const seen: number[] = [];
    m.on('sample', (s) => seen.push(s.memoryPercent));
    const s = await m.sampleNow();
    expect(s.memoryPercent).toBe(1);
    m.record(sample(42));
    expect(seen).toEqual([1, 42]);
    expect(m.getCurrentUsage()?.memoryPercent).toBe(42);
  });

  it('keeps a bounded history ring, oldest first', async () => {
    const c = counting();
    const m = monitor({ intervalMs: 100, historySize: 3, sampler: c.sampler });
    expect(m.getHistory()).toEqual([]);
    await m.sampleNow();
    await m.sampleNow();
    expect(ids(m.getHistory())).toEqual([1, 2]);
    for (let i = 0; i < 3; i++) await m.sampleNow();
    expect(ids(m.getHistory())).toEqual([3, 4, 5]);
    expect(ids(m.getHistory(2))).toEqual([4, 5]);
    expect(ids(m.getHistory(1))).toEqual([5]);
    expect(m.getHistory(0)).toEqual([]);
    expect(ids(m.getHistory(10))).toEqual([3, 4, 5]);
    m.record(sample(6));
    expect(ids(m.getHistory())).toEqual([4, 5, 6]);
    expect(() => m.getHistory(-1)).toThrow(TypeError);
  });

  it("a sampler error emits 'error', rejects sampleNow() and keeps the previous sample", async () => {
    let fail = false;
    const m = monitor({
      intervalMs: 100,
      sampler: () => {
        if (fail) throw new Error('no /proc');
        return sample(1);
      },
    });
    const errors: Error[] = [];
    m.on('error', (e) => errors.push(e));
    const first = await m.sampleNow();
    fail = true;
    const err = await rejectionOf(m.sampleNow());
    expect((err as Error).message).toBe('no /proc');
    expect(errors.map((e) => e.message)).toEqual(['no /proc']);
    expect(m.getCurrentUsage()).toBe(first);
    expect(m.getHistory()).toHaveLength(1);
  });

  it('without an error listener a failing sampler does not crash, and sampling goes on', async () => {
    let calls = 0;
    const m = monitor({
      intervalMs: 100,
      sampler: async () => {
        calls++;
        if (calls <= 2) throw new Error('transient');
        return sample(calls);
      },
    });
    await m.start(); // the first sample failed: start() still resolves and the timer retries
    expect(m.getCurrentUsage()).toBeUndefined();
    // Called directly, it rejects with the sampler's own error (not an unhandled-'error' one).
    expect(((await rejectionOf(m.sampleNow())) as Error).message).toBe('transient');
    // Not events.once(): it listens for 'error' too, which would make the monitor emit it.
    const s = await new Promise<ResourceSample>((resolve) => m.once('sample', resolve));
    expect(s.memoryPercent).toBe(3);
    expect(m.listenerCount('error')).toBe(0);
  });

  it('never overlaps samples when the sampler is slower than the interval', async () => {
    let running = 0;
    let maxRunning = 0;
    let calls = 0;
    const m = monitor({
      intervalMs: 100,
      sampler: async () => {
        calls++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(250);
        running--;
        return sample(calls);
      },
    });
    // A sampleNow() during a sample joins it instead of starting another.
    const [a, b] = await Promise.all([m.sampleNow(), m.sampleNow()]);
    expect(a).toBe(b);
    expect(calls).toBe(1);
    await m.start();
    for (let i = 0; i < 2; i++) await once(m, 'sample');
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(maxRunning).toBe(1);
  });

  it('close() stops sampling: nothing is sampled or emitted afterwards', async () => {
    const c = counting();
    const m = monitor({ intervalMs: 100, sampler: c.sampler });
    await m.start();
    await once(m, 'sample');
    await Promise.all([m.close(), m.close()]);
    await m.close();
    const calls = c.calls();
    let emitted = 0;
    m.on('sample', () => emitted++);
    await sleep(350);
    expect(c.calls()).toBe(calls);
    expect(emitted).toBe(0);
    expect(await rejectionOf(m.sampleNow())).toBeInstanceOf(ClosedError);
    expect(await rejectionOf(m.start())).toBeInstanceOf(ClosedError);
    expect(() => m.record(sample(9))).toThrow(ClosedError);
  });

  it('a sample under way when close() is called is not recorded', async () => {
    let release!: () => void;
    const m = monitor({
      intervalMs: 100,
      sampler: () => new Promise<ResourceSample>((r) => (release = () => r(sample(7)))),
    });
    let emitted = 0;
    m.on('sample', () => emitted++);
    const pending = m.sampleNow();
    await m.close();
    release();
    await pending;
    expect(emitted).toBe(0);
    expect(m.getCurrentUsage()).toBeUndefined();
  });

  it('refuses bad options, naming them', () => {
    expect(() => new ResourceMonitor({ intervalMs: 99 })).toThrow('"intervalMs"');
    expect(() => new ResourceMonitor({ historySize: 0 })).toThrow('"historySize"');
    expect(() => new ResourceMonitor({ historySize: 2.5 })).toThrow(TypeError);
    expect(() => new ResourceMonitor({ diskPath: '' })).toThrow('"diskPath"');
    expect(new ResourceMonitor({ intervalMs: undefined }).intervalMs).toBe(2000);
    expect(new ResourceMonitor().historySize).toBe(300);
  });
});

describe('getResourceMonitor()', () => {
  it('returns one monitor per process until reset', async () => {
    const a = getResourceMonitor({ intervalMs: 100, sampler: counting().sampler });
    expect(getResourceMonitor()).toBe(a);
    expect(a.intervalMs).toBe(100);
    await resetResourceMonitor();
    expect(await rejectionOf(a.sampleNow())).toBeInstanceOf(ClosedError);
    const b = getResourceMonitor({ sampler: counting().sampler });
    expect(b).not.toBe(a);
    expect(b.intervalMs).toBe(2000);
  });
});

describe('the real system sampler', () => {
  it('reads finite values within range from this machine', async () => {
    const m = monitor({ intervalMs: 100 });
    const s = await m.sampleNow();
    for (const v of [s.memoryPercent, s.cpuPercent, s.diskPercent, s.process.heapPercent]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(100);
    }
    expect(Math.abs(s.memoryTotalBytes - os.totalmem()) / os.totalmem()).toBeLessThan(0.01);
    expect(s.memoryUsedBytes).toBeGreaterThan(0);
    expect(s.memoryUsedBytes).toBeLessThanOrEqual(s.memoryTotalBytes);
    expect(s.memoryPercent).toBeCloseTo((s.memoryUsedBytes / s.memoryTotalBytes) * 100, 0);
    expect(s.diskPercent).toBeGreaterThan(0); // the test runs on a disk that holds files
    expect(s.process.heapLimitBytes).toBeGreaterThan(0);
    expect(s.process.heapUsedBytes).toBeGreaterThan(0);
    expect(s.process.rssBytes).toBeGreaterThan(s.process.heapUsedBytes / 2);
    for (const v of [s.process.eventLoopDelayMeanMs, s.process.eventLoopDelayP99Ms]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThanOrEqual(0);
    }
    expect(Math.abs(s.at - Date.now())).toBeLessThan(5000);
    // Percentages are rounded to 0.1.
    expect(Math.round(s.memoryPercent * 10)).toBeCloseTo(s.memoryPercent * 10, 6);
  });

  it("reads the host's CPU from the kernel counters and this process's own: a core busy here shows in both", async () => {
    // No quota in an empty cgroup folder: cell0's figure is this process's CPU, % of one core.
    const cgroupRoot = mkdtempSync(join(tmpdir(), 'cell0-nocgroup-'));
    const sampler = createSystemSampler({ diskPath: process.cwd(), cpu: { cgroupRoot, windowMs: 0 } });
    try {
      await sampler.sample();
      const t0 = performance.now();
      const u0 = process.cpuUsage();
      // This process spinning for 400 ms: at least its share of the machine is busy over that window, and
      // the CPU time the kernel gave it (all of one core on a quiet machine, less on a busy one) is cell0's.
      const until = Date.now() + 400;
      while (Date.now() < until) Math.sqrt(Math.random());
      const s = await sampler.sample();
      const u = process.cpuUsage(u0);
      const own = ((u.user + u.system) / 1000 / (performance.now() - t0)) * 100;
      expect(s.hostCpuPercent).toBeGreaterThanOrEqual((100 / os.cpus().length) * 0.5);
      expect(s.hostCpuPercent).toBeLessThanOrEqual(100);
      expect(s.cpuScope).toBe('process');
      expect(s.cpuCores).toBe(1);
      expect(s.cpuPercent).toBeGreaterThan(0);
      expect(Math.abs(s.cpuPercent - Math.min(100, own))).toBeLessThan(20);
    } finally {
      sampler.close();
      rmSync(cgroupRoot, { recursive: true, force: true });
    }
  });

  it('reads memory as the host (or cgroup) reports it: used = total - available', async () => {
    const sampler = createSystemSampler({ diskPath: process.cwd() });
    try {
      const s = await sampler.sample();
      const limit = process.constrainedMemory();
      const total = limit > 0 && limit < os.totalmem() ? limit : os.totalmem();
      expect(s.memoryTotalBytes).toBe(total);
      expect(s.memoryUsedBytes).toBeGreaterThan(0);
      expect(s.memoryUsedBytes).toBeLessThanOrEqual(total);
    } finally {
      sampler.close();
    }
  });
});
