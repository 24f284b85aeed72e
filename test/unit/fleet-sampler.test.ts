import { FleetSampler, quantileOfDelta, type FleetSources } from '../../dashboards/fleet-page/fleet-sampler';
import { type WorkerStatus } from '../../shared/fleet/worker-status';

function worker(id: string, cpu: number): WorkerStatus {
  return {
    id,
    host: 'h',
    pid: 1,
    queues: ['inference'],
    startedAt: '',
    updatedAt: '',
    active: 1,
    state: 'running',
    resources: { usage: { cpuPercent: cpu, memoryPercent: 40 } },
    models: { managers: [{ resident: [{ modelId: 'm1' }] }] },
    backends: [{ name: 'ollama@x', breaker: { state: 'open' } }],
  };
}

/** Sources whose counters the test moves by hand. */
function sources() {
  const s = {
    completed: 0,
    hits: 0,
    lookups: 0,
    buckets: [
      { le: 0.1, count: 0 },
      { le: 1, count: 0 },
      { le: Infinity, count: 0 },
    ],
    fail: false,
  };
  const src: FleetSources = {
    fleet: async () => {
      if (s.fail) throw new Error('Redis away');
      return [worker('a', 10), worker('b', 20)];
    },
    queueCounts: async () => ({ inference: { waiting: 3, prioritized: 2, active: 1 } }),
    completedTotal: async () => s.completed,
    requestBuckets: async () => s.buckets.map((b) => ({ ...b })),
    caches: () => ({ semantic: { hits: s.hits, lookups: s.lookups } }),
  };
  return { s, src };
}

describe('FleetSampler', () => {
  it('keeps at most `capacity` samples, oldest dropped first', async () => {
    let t = 1000;
    const { src } = sources();
    const sampler = new FleetSampler({ sources: src, capacity: 3, now: () => t });
    for (let i = 0; i < 5; i++) {
      t += 1000;
      await sampler.sample();
    }
    expect(sampler.samples().map((x) => x.at)).toEqual([4000, 5000, 6000]);
  });

  it('gives throughput, p95 and hit ratio per interval, from the deltas of cumulative counters', async () => {
    let t = 10_000;
    const { s, src } = sources();
    const sampler = new FleetSampler({ sources: src, now: () => t });
    await sampler.sample();
    t += 2000;
    s.completed = 10; // 10 jobs in 2 s
    s.hits = 1;
    s.lookups = 4;
    // 100 requests: 90 under 100 ms, 10 between 100 ms and 1 s → p95 at the middle of (0.1, 1]
    s.buckets = [
      { le: 0.1, count: 90 },
      { le: 1, count: 100 },
      { le: Infinity, count: 100 },
    ];
    await sampler.sample();
    const [first, second] = sampler.samples();
    expect(first!.throughput).toBeUndefined();
    expect(second!.throughput).toBe(5);
    expect(second!.p95).toBeCloseTo(0.55, 10);
    expect(second!.hitRatio).toEqual({ semantic: 0.25 });
    expect(second!.queues).toEqual({ inference: { waiting: 5, active: 1 } });
    expect(second!.workers).toEqual([
      { id: 'a', state: 'running', active: 1, cpu: 10, memory: 40 },
      { id: 'b', state: 'running', active: 1, cpu: 20, memory: 40 },
    ]);
    t += 2000; // nothing happened meanwhile: no p95, no hit ratio, throughput 0
    await sampler.sample();
    const third = sampler.samples()[2]!;
    expect(third.throughput).toBe(0);
    expect(third.p95).toBeUndefined();
    expect(third.hitRatio).toEqual({});
  });

  it('lists workers with models and breakers, says which part could not be read, and keeps the last known fleet', async () => {
    const { s, src } = sources();
    const sampler = new FleetSampler({ sources: src });
    const view = await sampler.view();
    sampler.stop();
    expect(view.workers[0]).toMatchObject({
      id: 'a',
      cpu: 10,
      residentModels: ['m1'],
      breakers: [{ name: 'ollama@x', state: 'open' }],
    });
    expect(view.errors).toEqual([]);
    s.fail = true;
    await sampler.sample();
    const after = await sampler.view();
    sampler.stop();
    expect(after.errors).toEqual(['fleet']);
    expect(after.workers.map((w) => w.id)).toEqual(['a', 'b']);
  });

  it('samples only while read: starts on the first view, stops idleStopMs after the last', async () => {
    jest.useFakeTimers();
    try {
      let t = 0;
      const { src } = sources();
      const sampler = new FleetSampler({ sources: src, intervalMs: 1000, idleStopMs: 5000, now: () => t });
      expect(sampler.running).toBe(false);
      await sampler.view();
      expect(sampler.running).toBe(true);
      t = 6000;
      jest.advanceTimersByTime(1000);
      expect(sampler.running).toBe(false);
    } finally {
      jest.useRealTimers();
    }
  });

  it('refuses bad options by name', () => {
    const { src } = sources();
    expect(() => new FleetSampler({ sources: src, capacity: 0 })).toThrow(/"capacity"/);
    expect(() => new FleetSampler({ sources: src, intervalMs: 1.5 })).toThrow(/"intervalMs"/);
  });
});

describe('quantileOfDelta', () => {
  it('is undefined with no observation in between, and the last finite bound in +Inf', () => {
    const b = [
      { le: 1, count: 5 },
      { le: Infinity, count: 5 },
    ];
    expect(quantileOfDelta(b, b, 0.95)).toBeUndefined();
    expect(
      quantileOfDelta(
        b,
        [
          { le: 1, count: 5 },
          { le: Infinity, count: 15 },
        ],
        0.95,
      ),
    ).toBe(1);
  });
});
