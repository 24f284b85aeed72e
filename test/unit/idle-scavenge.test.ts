import {
  PerformanceObserver,
  constants,
  type EventLoopUtilization,
  type PerformanceEntry,
} from 'node:perf_hooks';
import { exposedGc, IdleScavenger, type GcFunction } from '../../shared/resources/idle-scavenge';

/**
 * A loop whose utilisation the test sets: each check() sees the `active` and `idle` ms given to step() since
 * the one before.
 */
function fakeLoop() {
  let total: EventLoopUtilization = { active: 0, idle: 0, utilization: 0 };
  const utilization = (prev?: EventLoopUtilization): EventLoopUtilization => {
    if (!prev) return { ...total };
    const active = total.active - prev.active;
    const idle = total.idle - prev.idle;
    return { active, idle, utilization: active / Math.max(1e-9, active + idle) };
  };
  const step = (active: number, idle: number) => {
    total = { active: total.active + active, idle: total.idle + idle, utilization: 0 };
  };
  return { utilization, step };
}

/** `times` checks of `s`, each after `active` ms of work and `idle` ms of idleness on `loop`. */
function checks(
  loop: ReturnType<typeof fakeLoop>,
  s: IdleScavenger,
  active: number,
  idle: number,
  times = 1,
): void {
  for (let i = 0; i < times; i++) {
    loop.step(active, idle);
    s.check();
  }
}

function scavenger(opts: { idleMs?: number; minBusyMs?: number; youngSize?: () => number } = {}) {
  const loop = fakeLoop();
  const calls: { type: string }[] = [];
  const gc: GcFunction = (o) => calls.push(o);
  const s = new IdleScavenger({ youngSize: () => 32 << 20, ...opts, gc, utilization: loop.utilization });
  s.start();
  return { s, loop, calls };
}

describe('IdleScavenger', () => {
  it('scavenges the young generation once the loop has been idle for idleMs after work, and once only', async () => {
    const { s, loop, calls } = scavenger({ idleMs: 30, minBusyMs: 5 });
    try {
      // A burst: 40 ms of work over four checks.
      checks(loop, s, 10, 0, 4);
      expect(calls).toEqual([]);
      // Idle, 10 ms per check (with the check's own few µs of work): nothing before 30 ms.
      checks(loop, s, 0.01, 10, 2);
      expect(calls).toEqual([]);
      checks(loop, s, 0.01, 10);
      expect(calls).toEqual([{ type: 'minor' }]);
      // Still idle: no work since, no second scavenge.
      checks(loop, s, 0.01, 10, 10);
      expect(calls).toHaveLength(1);
      expect(s.scavenges).toBe(1);
    } finally {
      await s.close();
    }
  });

  it('does nothing while the loop works (under steady load), nor after too little work', async () => {
    const { s, loop, calls } = scavenger({ idleMs: 30, minBusyMs: 5 });
    try {
      // Steady load: some work in every check, however short the checks' idle parts.
      checks(loop, s, 2, 8, 100);
      expect(calls).toEqual([]);
      // Idle for 20 ms, then work again: the idle time starts over.
      checks(loop, s, 0.01, 10, 2);
      checks(loop, s, 3, 7);
      checks(loop, s, 0.01, 10, 2);
      expect(calls).toEqual([]);
      checks(loop, s, 0.01, 10);
      expect(calls).toHaveLength(1);
      // Then only 3 ms of work (less than minBusyMs) and a long idle time: not worth a scavenge.
      checks(loop, s, 3, 0);
      checks(loop, s, 0.01, 10, 10);
      expect(calls).toHaveLength(1);
    } finally {
      await s.close();
    }
  });

  it('stops for good once a scavenge has made the young generation smaller (no floor under it)', async () => {
    let size = 32 << 20;
    const shrinks: [number, number][] = [];
    const loop = fakeLoop();
    const calls: unknown[] = [];
    const s = new IdleScavenger({
      idleMs: 30,
      gc: (o) => {
        calls.push(o);
        size = 2 << 20;
      },
      utilization: loop.utilization,
      youngSize: () => size,
      onShrink: (from, to) => shrinks.push([from, to]),
    });
    s.start();
    try {
      const burstThenIdle = () => {
        checks(loop, s, 20, 0);
        checks(loop, s, 0.01, 10, 5);
      };
      burstThenIdle();
      expect(calls).toHaveLength(1);
      expect(shrinks).toEqual([[32 << 20, 2 << 20]]);
      burstThenIdle();
      s.start();
      burstThenIdle();
      expect(calls).toHaveLength(1);
    } finally {
      await s.close();
    }
  });

  it('rejects bad options by name', () => {
    expect(() => new IdleScavenger({ idleMs: -1, gc: () => undefined })).toThrow(/"idleMs"/);
    expect(() => new IdleScavenger({ checkEveryMs: 0, gc: () => undefined })).toThrow(/"checkEveryMs"/);
  });

  it("V8's own collector runs a scavenge of the young generation", async () => {
    const gc = exposedGc();
    const seen = new Promise<number>((resolve) => {
      const obs = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
          if (kind === constants.NODE_PERFORMANCE_GC_MINOR) {
            obs.disconnect();
            resolve(kind);
          }
        }
      });
      obs.observe({ entryTypes: ['gc'] });
    });
    gc({ type: 'minor' });
    await expect(seen).resolves.toBe(constants.NODE_PERFORMANCE_GC_MINOR);
  });
});
