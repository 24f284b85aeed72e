import { once } from 'node:events';
import { ClosedError } from '../../shared/errors';
import { ResourceLimiter, type ResourceLimiterOptions } from '../../shared/resources/resource-limiter';
import { ResourceMonitor } from '../../shared/resources/resource-monitor';
import {
  type ResourceLimits,
  type ResourceSample,
  type ResourceViolation,
  type SampleSource,
} from '../../shared/resources/types';
import { until } from '../helpers/wait';
import { resourceSample } from '../helpers/resource-sample';

const sample = resourceSample;

/** A source whose latest sample the test sets. */
class FakeSource implements SampleSource {
  latest: ResourceSample | undefined;
  getCurrentUsage(): ResourceSample | undefined {
    return this.latest;
  }
}

/** Every pressure event in order, for counting transitions. */
function recordEvents(l: ResourceLimiter): string[] {
  const events: string[] = [];
  l.on('pressure:start', (v) => events.push(`start:${v.map((x) => x.resource).join(',')}`));
  l.on('pressure:change', (v) => events.push(`change:${v.map((x) => x.resource).join(',')}`));
  l.on('pressure:end', () => events.push('end'));
  return events;
}

const limiters: ResourceLimiter[] = [];
function limiter(opts: Partial<ResourceLimiterOptions> = {}): ResourceLimiter {
  const l = new ResourceLimiter({ source: new FakeSource(), ...opts });
  limiters.push(l);
  return l;
}

afterEach(async () => {
  await Promise.all(limiters.splice(0).map((l) => l.close()));
});

describe('ResourceLimiter: checks', () => {
  it('defaults: memory 85, cpu 90, disk 95, heap and event-loop delay off', () => {
    expect(limiter().limits).toEqual({
      maxMemoryPercent: 85,
      maxCpuPercent: 90,
      maxDiskPercent: 95,
      maxHeapPercent: 0,
      maxEventLoopDelayMs: 0,
    });
  });

  it('a sample under every limit is within; a value at its limit is not over it', () => {
    const l = limiter();
    expect(l.evaluate(sample({ memory: 85, cpu: 90, disk: 95 }))).toEqual({
      withinLimits: true,
      violations: [],
    });
    expect(l.underPressure).toBe(false);
    expect(l.violations).toEqual([]);
  });

  it('reports each limit exceeded with its value and threshold', () => {
    const l = limiter({
      limits: { maxHeapPercent: 80, maxEventLoopDelayMs: 50 },
      consecutive: 1,
      cpuConsecutive: 1,
    });
    const check = l.evaluate(sample({ memory: 90.5, cpu: 97, disk: 99, heap: 88, eld: 120 }));
    expect(check.withinLimits).toBe(false);
    expect(check.violations).toEqual<ResourceViolation[]>([
      { resource: 'memory', value: 90.5, threshold: 85 },
      { resource: 'cpu', value: 97, threshold: 90 },
      { resource: 'disk', value: 99, threshold: 95 },
      { resource: 'heap', value: 88, threshold: 80 },
      { resource: 'eventLoopDelay', value: 120, threshold: 50 },
    ]);
    expect(l.underPressure).toBe(true);
    expect(l.violations).toEqual(check.violations);
  });

  it('only the limits exceeded are reported', () => {
    const l = limiter();
    expect(l.evaluate(sample({ disk: 96 })).violations).toEqual([
      { resource: 'disk', value: 96, threshold: 95 },
    ]);
  });

  it('a limit of 0 is off', () => {
    const l = limiter({ limits: { maxMemoryPercent: 0, maxDiskPercent: 0 } });
    expect(l.evaluate(sample({ memory: 100, disk: 100, heap: 99, eld: 5000 })).withinLimits).toBe(true);
    // The limits left on still work.
    expect(l.evaluate(sample({ memory: 100, cpu: 100 })).withinLimits).toBe(true); // cpu needs 2 in a row
    expect(l.evaluate(sample({ memory: 100, cpu: 100 })).violations.map((v) => v.resource)).toEqual(['cpu']);
  });

  it.each<[keyof ResourceLimits, Parameters<typeof sample>[0]]>([
    ['maxMemoryPercent', { memory: 100 }],
    ['maxCpuPercent', { cpu: 100 }],
    ['maxDiskPercent', { disk: 100 }],
    ['maxHeapPercent', { heap: 100 }],
    ['maxEventLoopDelayMs', { eld: 60_000 }],
  ])('0 turns %s off, however high its value', (limit, values) => {
    // Every limit on (heap and event-loop delay are off by default) except the one under test.
    const on = {
      maxMemoryPercent: 85,
      maxCpuPercent: 90,
      maxDiskPercent: 95,
      maxHeapPercent: 90,
      maxEventLoopDelayMs: 500,
    };
    const l = limiter({ limits: { ...on, [limit]: 0 }, consecutive: 1, cpuConsecutive: 1 });
    for (let i = 0; i < 3; i++)
      expect(l.evaluate(sample(values))).toEqual({ withinLimits: true, violations: [] });
    expect(l.episodes).toBe(0);
    // The same value with the limit on is a violation: the sample is really over it.
    const lOn = limiter({ limits: on, consecutive: 1, cpuConsecutive: 1 });
    expect(lOn.evaluate(sample(values)).withinLimits).toBe(false);
  });

  it('checkLimits() is pure: it decides with the current state but changes nothing', () => {
    const source = new FakeSource();
    const l = limiter({ source });
    expect(l.checkLimits()).toEqual({ withinLimits: true, violations: [] }); // no sample yet
    source.latest = sample({ memory: 90 });
    expect(l.checkLimits().violations).toEqual([{ resource: 'memory', value: 90, threshold: 85 }]);
    expect(l.underPressure).toBe(false);
    expect(l.episodes).toBe(0);
    l.evaluate(sample({ memory: 86 }));
    // Under pressure, 82 is still a violation (hysteresis), 79 is not; neither changes the state.
    expect(l.checkLimits(sample({ memory: 82 })).withinLimits).toBe(false);
    expect(l.checkLimits(sample({ memory: 79 })).withinLimits).toBe(true);
    expect(l.underPressure).toBe(true);
    // cpuConsecutive 2: one sample over is counted as the first of a row, without being recorded.
    expect(l.checkLimits(sample({ memory: 86, cpu: 99 })).violations.map((v) => v.resource)).toEqual([
      'memory',
    ]);
    expect(l.checkLimits(sample({ memory: 86, cpu: 99 })).violations.map((v) => v.resource)).toEqual([
      'memory',
    ]);
  });
});

describe('ResourceLimiter: hysteresis and consecutive samples', () => {
  it('pressure ends only once the value is below limit - hysteresis', () => {
    const l = limiter(); // memory 85, hysteresis 5: release below 80
    const events = recordEvents(l);
    expect(l.evaluate(sample({ memory: 86 })).withinLimits).toBe(false);
    expect(l.evaluate(sample({ memory: 84 })).violations).toEqual([
      { resource: 'memory', value: 84, threshold: 85 },
    ]);
    expect(l.evaluate(sample({ memory: 80 })).withinLimits).toBe(false);
    expect(l.underPressure).toBe(true);
    expect(l.evaluate(sample({ memory: 79.9 }))).toEqual({ withinLimits: true, violations: [] });
    expect(l.underPressure).toBe(false);
    expect(events).toEqual(['start:memory', 'end']);
    // Once released, 84 is within again (it is below the limit).
    expect(l.evaluate(sample({ memory: 84 })).withinLimits).toBe(true);
  });

  it('a value hovering around the limit does not flap', () => {
    const hovering = [84, 86, 84, 85.5, 86, 84.5, 86, 84, 85.9, 84];
    const flappy = limiter({ hysteresis: 0 });
    const flappyEvents = recordEvents(flappy);
    const steady = limiter();
    const steadyEvents = recordEvents(steady);
    for (const m of hovering) {
      flappy.evaluate(sample({ memory: m }));
      steady.evaluate(sample({ memory: m }));
    }
    // Without hysteresis every crossing is a transition: that is what hysteresis is for.
    expect(flappyEvents.length).toBeGreaterThan(4);
    expect(flappy.episodes).toBeGreaterThan(2);
    expect(steadyEvents).toEqual(['start:memory']);
    expect(steady.episodes).toBe(1);
    expect(steady.underPressure).toBe(true);
  });

  it('for the event-loop delay the hysteresis is a % of the limit', () => {
    const l = limiter({ limits: { maxEventLoopDelayMs: 200 } }); // release below 190 ms
    expect(l.evaluate(sample({ eld: 250 })).withinLimits).toBe(false);
    expect(l.evaluate(sample({ eld: 191 })).withinLimits).toBe(false);
    expect(l.evaluate(sample({ eld: 189 })).withinLimits).toBe(true);
  });

  it('consecutive: pressure starts after that many samples in a row over a limit', () => {
    const l = limiter({ consecutive: 3 });
    expect(l.evaluate(sample({ memory: 90 })).withinLimits).toBe(true);
    expect(l.evaluate(sample({ memory: 90 })).withinLimits).toBe(true);
    expect(l.evaluate(sample({ memory: 50 })).withinLimits).toBe(true); // the row is broken
    expect(l.evaluate(sample({ memory: 90 })).withinLimits).toBe(true);
    expect(l.evaluate(sample({ memory: 90 })).withinLimits).toBe(true);
    expect(l.evaluate(sample({ memory: 90 })).withinLimits).toBe(false);
    expect(l.episodes).toBe(1);
  });

  it('memory at once, CPU only after two samples in a row by default', () => {
    const l = limiter();
    expect(l.evaluate(sample({ cpu: 99 })).withinLimits).toBe(true); // one spike
    expect(l.evaluate(sample({ cpu: 40 })).withinLimits).toBe(true);
    expect(l.evaluate(sample({ cpu: 99 })).withinLimits).toBe(true);
    expect(l.evaluate(sample({ cpu: 99 })).violations).toEqual([
      { resource: 'cpu', value: 99, threshold: 90 },
    ]);
    const m = limiter();
    expect(m.evaluate(sample({ memory: 86 })).withinLimits).toBe(false);
  });

  it('cpuConsecutive is its own option', () => {
    const l = limiter({ cpuConsecutive: 1, consecutive: 2 });
    expect(l.evaluate(sample({ cpu: 99, memory: 99 })).violations.map((v) => v.resource)).toEqual(['cpu']);
    expect(l.evaluate(sample({ cpu: 99, memory: 99 })).violations.map((v) => v.resource)).toEqual([
      'memory',
      'cpu',
    ]);
  });

  it('the same sample object evaluated again is not counted twice', () => {
    const l = limiter();
    const s = sample({ cpu: 99 });
    l.evaluate(s);
    expect(l.evaluate(s).withinLimits).toBe(true);
    expect(l.checkLimits(s).withinLimits).toBe(true);
    expect(l.evaluate(sample({ cpu: 99 })).withinLimits).toBe(false);
  });

  it("'pressure:change' when the set of violated resources changes, not when only values do", () => {
    const l = limiter({ cpuConsecutive: 1 });
    const events = recordEvents(l);
    l.evaluate(sample({ memory: 90 }));
    l.evaluate(sample({ memory: 92 }));
    l.evaluate(sample({ memory: 92, cpu: 95 }));
    l.evaluate(sample({ memory: 70, cpu: 95 }));
    l.evaluate(sample({ memory: 70, cpu: 50 }));
    expect(events).toEqual(['start:memory', 'change:memory,cpu', 'change:cpu', 'end']);
  });
});

describe('ResourceLimiter: cleanup handlers', () => {
  it('run once per episode, with the violations that started it', async () => {
    const l = limiter();
    const calls: ResourceViolation[][] = [];
    l.registerCleanupHandler((v) => {
      calls.push(v);
    });
    for (const m of [90, 91, 92]) l.evaluate(sample({ memory: m }));
    await l.handlersIdle();
    expect(calls).toEqual([[{ resource: 'memory', value: 90, threshold: 85 }]]);
    l.evaluate(sample({ memory: 50 }));
    await l.handlersIdle();
    expect(calls).toHaveLength(1);
    l.evaluate(sample({ disk: 99 }));
    await l.handlersIdle();
    expect(calls).toHaveLength(2);
    expect(calls[1]).toEqual([{ resource: 'disk', value: 99, threshold: 95 }]);
    expect(l.episodes).toBe(2);
  });

  it('run in the background: evaluate() returns before an async handler finishes', async () => {
    const l = limiter();
    let finished = false;
    l.registerCleanupHandler(async () => {
      await new Promise((r) => setTimeout(r, 30));
      finished = true;
    });
    l.evaluate(sample({ memory: 99 }));
    expect(finished).toBe(false);
    await l.handlersIdle();
    expect(finished).toBe(true);
  });

  it('throwing and rejecting handlers are isolated and reported; the others still run', async () => {
    const l = limiter();
    const errors: { message: string; handler: string }[] = [];
    l.on('handler:error', ({ error, handler }) => errors.push({ message: error.message, handler }));
    const ran: string[] = [];
    l.registerCleanupHandler(() => {
      ran.push('throws');
      throw new Error('sync boom');
    }, 'throws');
    l.registerCleanupHandler(async () => {
      ran.push('rejects');
      throw new Error('async boom');
    }, 'rejects');
    l.registerCleanupHandler(function evictModels() {
      ran.push('ok');
    });
    expect(() => l.evaluate(sample({ memory: 99 }))).not.toThrow();
    await l.handlersIdle();
    expect(ran.sort()).toEqual(['ok', 'rejects', 'throws']);
    expect(errors.sort((a, b) => a.handler.localeCompare(b.handler))).toEqual([
      { message: 'async boom', handler: 'rejects' },
      { message: 'sync boom', handler: 'throws' },
    ]);
  });

  it('a hung handler times out and does not stall the next episode', async () => {
    const l = limiter({ handlerTimeoutMs: 50 });
    const errors: { error: Error; handler: string }[] = [];
    l.on('handler:error', (e) => errors.push(e));
    let hungCalls = 0;
    let okCalls = 0;
    l.registerCleanupHandler(() => {
      hungCalls++;
      return new Promise<void>(() => undefined);
    }, 'hung');
    l.registerCleanupHandler(() => {
      okCalls++;
    }, 'ok');
    l.evaluate(sample({ memory: 99 }));
    const t0 = Date.now();
    await l.handlersIdle();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.handler).toBe('hung');
    expect(errors[0]!.error.message).toMatch(/did not finish within 50 ms/);
    expect(okCalls).toBe(1);
    l.evaluate(sample({ memory: 10 }));
    l.evaluate(sample({ memory: 99 }));
    await l.handlersIdle();
    expect([hungCalls, okCalls]).toEqual([2, 2]);
    expect(errors).toHaveLength(2);
  });

  it('the function registerCleanupHandler returns unregisters the handler', async () => {
    const l = limiter();
    let a = 0;
    let b = 0;
    const offA = l.registerCleanupHandler(() => {
      a++;
    });
    l.registerCleanupHandler(() => {
      b++;
    });
    l.evaluate(sample({ memory: 99 }));
    await l.handlersIdle();
    offA();
    offA(); // harmless twice
    l.evaluate(sample({ memory: 10 }));
    l.evaluate(sample({ memory: 99 }));
    await l.handlersIdle();
    expect([a, b]).toEqual([1, 2]);
  });
});

describe('ResourceLimiter: inject()', () => {
  it('forces a violation at once when the source has a sample, and clears it', () => {
    const source = new FakeSource();
    source.latest = sample();
    const l = limiter({ source });
    const events = recordEvents(l);
    l.inject({ resource: 'memory', value: 99, threshold: 85 });
    expect(l.underPressure).toBe(true);
    expect(l.violations).toEqual([{ resource: 'memory', value: 99, threshold: 85 }]);
    l.inject(undefined);
    expect(l.underPressure).toBe(false);
    expect(events).toEqual(['start:memory', 'end']);
    expect(l.episodes).toBe(1);
  });

  it('without a sample it takes effect on the next evaluate(), and lasts until cleared', () => {
    const l = limiter();
    l.inject({ resource: 'eventLoopDelay', value: 500, threshold: 100 });
    expect(l.underPressure).toBe(false);
    expect(l.evaluate(sample()).violations).toEqual([
      { resource: 'eventLoopDelay', value: 500, threshold: 100 },
    ]);
    expect(l.evaluate(sample()).withinLimits).toBe(false);
    l.inject(undefined);
    expect(l.evaluate(sample()).withinLimits).toBe(true);
  });

  it('is added to the sample violations, replacing one of the same resource', () => {
    const l = limiter();
    l.inject({ resource: 'memory', value: 99, threshold: 85 });
    expect(l.evaluate(sample({ memory: 90, disk: 99 })).violations).toEqual([
      { resource: 'disk', value: 99, threshold: 95 },
      { resource: 'memory', value: 99, threshold: 85 },
    ]);
  });

  it('refuses a violation of an unknown resource', () => {
    const l = limiter();
    expect(() => l.inject({ resource: 'gpu' as never, value: 1, threshold: 1 })).toThrow(TypeError);
  });
});

describe('ResourceLimiter: following a source', () => {
  it("follows a ResourceMonitor's samples after start()", async () => {
    let memory = 10;
    const monitor = new ResourceMonitor({ intervalMs: 100, sampler: () => sample({ memory }) });
    const l = limiter({ source: monitor });
    try {
      await monitor.start();
      l.start();
      l.start(); // idempotent: one listener
      expect(monitor.listenerCount('sample')).toBe(1);
      expect(l.underPressure).toBe(false);
      memory = 95;
      const [violations] = await once(l, 'pressure:start');
      expect(violations).toEqual([{ resource: 'memory', value: 95, threshold: 85 }]);
      memory = 10;
      await once(l, 'pressure:end');
      // record() is evaluated synchronously, in the same tick.
      monitor.record(sample({ disk: 99 }));
      expect(l.underPressure).toBe(true);
      await l.close();
      expect(monitor.listenerCount('sample')).toBe(0);
    } finally {
      await monitor.close();
    }
  });

  it('evaluates the latest sample at once on start()', () => {
    const source = new FakeSource();
    source.latest = sample({ memory: 99 });
    const l = limiter({ source });
    l.start();
    expect(l.underPressure).toBe(true);
  });

  it('polls a source without events every pollMs', async () => {
    const source = new FakeSource();
    const l = limiter({ source, pollMs: 10 });
    l.start();
    source.latest = sample({ memory: 99 });
    await until(() => l.underPressure, 2000, 'pressure from polling');
    source.latest = sample({ memory: 10 });
    await until(() => !l.underPressure, 2000, 'end of pressure from polling');
    expect(l.episodes).toBe(1);
  });

  it('close() is idempotent, stops following and waits for running handlers', async () => {
    const source = new FakeSource();
    const l = limiter({ source, pollMs: 10 });
    let done = false;
    l.registerCleanupHandler(async () => {
      await new Promise((r) => setTimeout(r, 50));
      done = true;
    });
    l.start();
    source.latest = sample({ memory: 99 });
    await until(() => l.underPressure, 2000, 'pressure');
    await Promise.all([l.close(), l.close()]);
    expect(done).toBe(true);
    await l.close();
    source.latest = sample({ memory: 10 });
    await new Promise((r) => setTimeout(r, 50));
    expect(l.underPressure).toBe(true); // no longer polling
    expect(() => l.evaluate(sample())).toThrow(ClosedError);
    expect(() => l.start()).toThrow(ClosedError);
  });

  it('close() does not wait longer than handlerTimeoutMs for a hung handler', async () => {
    const l = limiter({ handlerTimeoutMs: 50 });
    l.registerCleanupHandler(() => new Promise<void>(() => undefined));
    l.evaluate(sample({ memory: 99 }));
    const t0 = Date.now();
    await l.close();
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('ResourceLimiter: options', () => {
  const source = new FakeSource();
  it.each<[string, Partial<ResourceLimiterOptions>]>([
    ['limits.maxMemoryPercent', { limits: { maxMemoryPercent: 101 } }],
    ['limits.maxCpuPercent', { limits: { maxCpuPercent: -1 } }],
    ['limits.maxDiskPercent', { limits: { maxDiskPercent: Number.NaN } }],
    ['limits.maxHeapPercent', { limits: { maxHeapPercent: 150 } }],
    ['limits.maxEventLoopDelayMs', { limits: { maxEventLoopDelayMs: -5 } }],
    ['limits.maxCpuPercent', { limits: { maxCpuPercent: 4 } }], // at or below the hysteresis: never released
    ['hysteresis', { hysteresis: 100 }],
    ['hysteresis', { hysteresis: -1 }],
    ['consecutive', { consecutive: 0 }],
    ['cpuConsecutive', { cpuConsecutive: 1.5 }],
    ['pollMs', { pollMs: 0 }],
    ['handlerTimeoutMs', { handlerTimeoutMs: 0 }],
  ])('refuses a bad %s', (option, opts) => {
    expect(() => new ResourceLimiter({ source, ...opts })).toThrow(TypeError);
    expect(() => new ResourceLimiter({ source, ...opts })).toThrow(`"${option}"`);
  });

  it('refuses a missing source', () => {
    expect(() => new ResourceLimiter({} as ResourceLimiterOptions)).toThrow('"source"');
  });

  it('accepts limits at the edges and leaves unset ones at their defaults', () => {
    const l = new ResourceLimiter({ source, limits: { maxMemoryPercent: 100, maxCpuPercent: undefined } });
    expect(l.limits.maxMemoryPercent).toBe(100);
    expect(l.limits.maxCpuPercent).toBe(90);
    expect(Object.isFrozen(l.limits)).toBe(true);
  });
});
