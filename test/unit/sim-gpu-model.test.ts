import {
  GPU_DEFAULTS,
  GpuModel,
  SERVER_BUSY_MESSAGE,
  aggregateTokensPerSec,
  validateGpuProfile,
} from '../../workers/providers/simulator/gpu-model.js';
import { SimHttpError } from '../../workers/providers/simulator/http-exchange.js';
import { fixedPace, gpuPace } from '../../workers/providers/simulator/pace.js';

const profile = { ...GPU_DEFAULTS, singleStreamTokensPerSec: 100, maxAggregateTokensPerSec: 1000 };

describe('aggregateTokensPerSec (continuous batching)', () => {
  it('gives one request the single-stream speed, rises with concurrency towards the ceiling, slows each request', () => {
    expect(aggregateTokensPerSec(profile, 0)).toBe(0);
    expect(aggregateTokensPerSec(profile, 1)).toBeCloseTo(100, 9);
    let previous = 100;
    let previousShare = 100;
    for (const n of [2, 4, 8, 16, 64, 256]) {
      const total = aggregateTokensPerSec(profile, n);
      expect(total).toBeGreaterThan(previous);
      expect(total).toBeLessThan(1000);
      expect(total / n).toBeLessThan(previousShare);
      previous = total;
      previousShare = total / n;
    }
    expect(aggregateTokensPerSec(profile, 10_000)).toBeGreaterThan(990);
    // 4 requests: 400 / (1 + 3 * 0.1) = 307.7 tokens/s in all.
    expect(aggregateTokensPerSec(profile, 4)).toBeCloseTo(400 / 1.3, 6);
  });
});

describe('validateGpuProfile', () => {
  it('accepts the defaults and names every bad field', () => {
    expect(validateGpuProfile({}, 'gpu')).toEqual([]);
    const issues = validateGpuProfile(
      {
        numParallel: 0,
        maxQueue: -1,
        prefillTokensPerSec: 0,
        singleStreamTokensPerSec: 200,
        maxAggregateTokensPerSec: 100,
      },
      'gpu',
    );
    expect(issues.map((i) => i.field).sort()).toEqual([
      'gpu.maxAggregateTokensPerSec',
      'gpu.maxQueue',
      'gpu.numParallel',
      'gpu.prefillTokensPerSec',
    ]);
  });
});

describe('GpuModel slots and queue', () => {
  it('runs numParallel at once, queues up to maxQueue in order, then answers 503 like Ollama', async () => {
    const gpu = new GpuModel({ numParallel: 2, maxQueue: 2 });
    const clock = () => 0;
    const signal = new AbortController().signal;
    const a = await gpu.acquire('m', signal, clock);
    const b = await gpu.acquire('m', signal, clock);
    const order: string[] = [];
    const c = gpu.acquire('m', signal, clock).then((s) => (order.push('c'), s));
    const d = gpu.acquire('m', signal, clock).then((s) => (order.push('d'), s));
    const e = await gpu.acquire('m', signal, clock).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(SimHttpError);
    expect((e as SimHttpError).status).toBe(503);
    expect((e as SimHttpError).message).toBe(SERVER_BUSY_MESSAGE);
    expect(gpu.stats()).toMatchObject({ rejected: 1, maxQueued: 2, models: { m: { busy: 2, queued: 2 } } });
    // Another model has slots of its own.
    await gpu.acquire('other', signal, clock);
    a.release(0);
    a.release(0); // idempotent: frees one slot only
    await c;
    expect(gpu.stats().models.m).toEqual({ busy: 2, queued: 1 });
    b.release(0);
    await d;
    expect(order).toEqual(['c', 'd']);
    gpu.resetCounters();
    expect(gpu.stats()).toMatchObject({ rejected: 0, maxQueued: 0 });
  });

  it('drops a waiting request whose client goes away', async () => {
    const gpu = new GpuModel({ numParallel: 1, maxQueue: 1 });
    const clock = () => 0;
    const held = await gpu.acquire('m', new AbortController().signal, clock);
    const gone = new AbortController();
    const waiting = gpu.acquire('m', gone.signal, clock);
    gone.abort(new Error('client closed'));
    await expect(waiting).rejects.toThrow('client closed');
    expect(gpu.stats().models.m).toEqual({ busy: 1, queued: 0 });
    held.release(0);
    expect(gpu.stats().models.m).toEqual({ busy: 0, queued: 0 });
  });

  it('shares decode speed between busy slots as they come and go', async () => {
    const gpu = new GpuModel({
      numParallel: 8,
      singleStreamTokensPerSec: 100,
      maxAggregateTokensPerSec: 1000,
    });
    let t = 0;
    const clock = () => t;
    const signal = new AbortController().signal;
    const first = await gpu.acquire('m', signal, clock);
    first.startDecode(0);
    // Alone for 1 s at 100 tokens/s: the first token at 0, then 100 more.
    expect(first.produced(1000)).toBe(101);
    expect(first.timeOf(201, 1000)).toBeCloseTo(2000, 6);
    t = 1000;
    const second = await gpu.acquire('m', signal, clock);
    const shared = aggregateTokensPerSec(gpu.profile, 2) / 2;
    expect(first.msPerToken()).toBeCloseTo(1000 / shared, 6);
    expect(second.produced(1500)).toBe(0); // not decoding yet
    second.startDecode(1000);
    expect(first.produced(2000)).toBe(101 + Math.floor(shared));
    expect(second.produced(2000)).toBe(1 + Math.floor(shared));
    t = 2000;
    second.release(2000);
    // Alone again: back to 100 tokens/s from t = 2000.
    expect(first.produced(2500)).toBe(101 + Math.floor(shared + 50));
  });
});

describe('paces', () => {
  it('fixed: the first token at firstDue, then one per interval', () => {
    const pace = fixedPace(100, 10);
    expect(pace.due(99)).toBe(0);
    expect(pace.due(100)).toBe(1);
    expect(pace.due(299)).toBe(2);
    expect(pace.timeOf(3, 0)).toBe(300);
    expect(pace.msPerToken()).toBe(100);
  });

  it("gpu: nothing before firstDue, then the slot's shared progress", async () => {
    const gpu = new GpuModel({ singleStreamTokensPerSec: 10, maxAggregateTokensPerSec: 100 });
    const slot = await gpu.acquire('m', new AbortController().signal, () => 0);
    const pace = gpuPace(200, slot);
    expect(pace.due(100)).toBe(0);
    expect(pace.timeOf(3, 100)).toBeCloseTo(400, 6);
    expect(pace.due(200)).toBe(1);
    expect(pace.due(1200)).toBe(11);
    expect(pace.timeOf(21, 1200)).toBeCloseTo(2200, 6);
    expect(pace.msPerToken()).toBeCloseTo(100, 6);
  });
});
