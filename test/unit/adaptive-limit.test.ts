import { describe, expect, it } from '@jest/globals';
import { RateLimitedError } from '../../shared/errors.js';
import {
  ConcurrencyLimiter,
  FixedLimit,
  GradientLimit,
  type Permit,
} from '../../workers/providers/adaptive-limit.js';
import { CapacityFollower } from '../../workers/worker/capacity.js';
import { QueueName } from '../../shared/queues/names.js';
import { type Worker } from 'bullmq';

/**
 * A deterministic backend for the limit: `latency(n)` is the time of a call when n calls are in flight.
 * The first call reaches an idle server (`idle`, its no-load latency: the head of the line, as when a fleet
 * starts); then the limit is fed one finished call at a time, fully used (the closed loop of a busy queue).
 */
function drive(
  limit: GradientLimit,
  latency: (n: number) => number,
  samples: number,
  idle?: number,
): number[] {
  const seen: number[] = [];
  let t = 0;
  if (idle !== undefined) limit.update({ rtt: idle, inFlight: limit.limit, dropped: false, at: t });
  for (let i = 0; i < samples; i++) {
    const n = limit.limit;
    t += latency(n) / n;
    seen.push(limit.update({ rtt: latency(n), inFlight: n, dropped: false, at: t }));
  }
  return seen;
}

/** Per-token latency of a batching GPU with `slots` slots (the simulator's model: s=100 tok/s, c=1500). */
function gpu(slots: number, workers = 1): (n: number) => number {
  return (perWorker) => {
    const n = perWorker * workers;
    const running = Math.min(n, slots);
    const aggregate = (100 * running) / (1 + ((running - 1) * 100) / 1500);
    const perToken = running / aggregate; // seconds per token of one running request
    // Requests beyond the slots wait in line: a FIFO queue of (n − slots) ahead, served `slots` at a time.
    const queued = Math.max(0, n - slots);
    return 1000 * perToken * (1 + queued / slots);
  };
}

describe('GradientLimit', () => {
  it('grows while the latency stays flat, up to the cap and never past it', () => {
    const limit = new GradientLimit({ initial: 1, max: 50 });
    const seen = drive(limit, () => 10, 300);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!);
    expect(Math.max(...seen)).toBe(50);
    expect(seen.at(-1)).toBe(50);
  });

  it('shrinks when the latency rises past tolerance × the no-load minimum', () => {
    const limit = new GradientLimit({ initial: 40, max: 64, tolerance: 2 });
    // A server that runs one call at a time: latency grows with every call in flight.
    const seen = drive(limit, (n) => 10 * n, 400, 10);
    expect(seen.at(-1)!).toBeLessThanOrEqual(3);
    expect(Math.min(...seen)).toBeGreaterThanOrEqual(1);
  });

  it('backs off on a drop (429/503/timeout), once per round trip, never below 1', () => {
    const limit = new GradientLimit({ initial: 20, max: 64 });
    limit.update({ rtt: 100, inFlight: 20, dropped: false, at: 0 });
    const before = limit.state().estimate;
    limit.update({ rtt: 100, inFlight: 20, dropped: true, at: 1000 });
    expect(limit.state().estimate).toBeCloseTo(before * 0.9, 6);
    // A second drop within the same round trip (100 ms) is the same overload: no second cut.
    limit.update({ rtt: 100, inFlight: 20, dropped: true, at: 1050 });
    expect(limit.state().estimate).toBeCloseTo(before * 0.9, 6);
    expect(limit.state().drops).toBe(1);
    for (let i = 0; i < 200; i++) limit.update({ rtt: 100, inFlight: 1, dropped: true, at: 2000 + i * 1000 });
    expect(limit.limit).toBe(1);
  });

  it('does not grow while the worker is idle (fewer than half the permits in use)', () => {
    const limit = new GradientLimit({ initial: 10, max: 64 });
    for (let i = 0; i < 100; i++) limit.update({ rtt: 5, inFlight: 2, dropped: false, at: i });
    expect(limit.limit).toBe(10);
  });

  it('finds a 1-slot server small and a 64-slot batching server large (2 workers each)', () => {
    const one = new GradientLimit({ initial: 4, max: 128 });
    const wide = new GradientLimit({ initial: 4, max: 128 });
    const oneSeen = drive(one, gpu(1, 2), 600, gpu(1)(1));
    const wideSeen = drive(wide, gpu(64, 2), 600, gpu(64)(1));
    // Settled: the last 200 samples.
    const oneTail = oneSeen.slice(-200);
    const wideTail = wideSeen.slice(-200);
    expect(Math.max(...oneTail)).toBeLessThanOrEqual(4);
    expect(Math.min(...wideTail) * 2).toBeGreaterThanOrEqual(40);
    expect(Math.max(...wideTail) * 2).toBeLessThanOrEqual(96);
  });

  it('rejects impossible settings with the field named', () => {
    expect(() => new GradientLimit({ max: 0 })).toThrow(/max must be an integer/);
    expect(() => new GradientLimit({ max: 4, tolerance: 0.5 })).toThrow(/tolerance/);
    expect(() => new FixedLimit(0)).toThrow(/limit must be an integer/);
  });
});

describe('ConcurrencyLimiter', () => {
  function clock() {
    let t = 0;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  }

  /** A limiter on an injected clock with a gradient limit from `initial` up to `max`. */
  function gradient(initial: number, max: number) {
    const c = clock();
    const lim = new ConcurrencyLimiter({
      name: 'b',
      algorithm: new GradientLimit({ initial, max }),
      now: c.now,
    });
    return { c, lim };
  }

  /**
   * `rounds` rounds of calls that fill the limiter: each takes `lim.limit` permits, lets `ms(round)` pass on
   * the clock, then ends each permit with `end(permit, round, index)`.
   */
  async function fill(
    { c, lim }: ReturnType<typeof gradient>,
    rounds: number,
    ms: (round: number) => number,
    end: (p: Permit, round: number, i: number) => void,
  ): Promise<void> {
    for (let round = 0; round < rounds; round++) {
      const permits: Permit[] = [];
      for (let i = 0; i < lim.limit; i++) permits.push(await lim.acquire());
      c.advance(ms(round));
      for (const [i, p] of permits.entries()) end(p, round, i);
    }
  }

  it('lets `limit` calls through, queues the rest in order and hands permits on as calls end', async () => {
    const c = clock();
    const lim = new ConcurrencyLimiter({ name: 'b', algorithm: new FixedLimit(2), now: c.now });
    const a = await lim.acquire();
    const b = await lim.acquire();
    const order: string[] = [];
    const third = lim.acquire().then((p) => (order.push('third'), p));
    const fourth = lim.acquire().then((p) => (order.push('fourth'), p));
    expect(lim.metrics()).toMatchObject({ inFlight: 2, waiting: 2, mode: 'fixed', limit: 2 });
    a.success();
    const p3 = await third;
    expect(order).toEqual(['third']);
    b.ignore();
    const p4 = await fourth;
    expect(order).toEqual(['third', 'fourth']);
    p3.dropped();
    p4.success();
    expect(lim.metrics()).toMatchObject({ inFlight: 0, waiting: 0, waited: 2, drops: 1 });
  });

  it('measures latency per unit with the injected clock and grows an adaptive limit', async () => {
    const g = gradient(2, 8);
    // 10 tokens in 100 ms whatever the concurrency: flat latency.
    await fill(
      g,
      40,
      () => 100,
      (p) => p.success(10),
    );
    expect(g.lim.limit).toBe(8);
  });

  it('measures the backend by the time it reports, not the time its answer waited in this process', async () => {
    // Every call: 8 tokens that the backend says took it 8 ms, answered 80 ms after the permit here (a worker
    // whose own event loop is the bottleneck), after a first round where nothing waited (no-load 1 ms/token).
    const run = async (withBackendTime: boolean): Promise<number> => {
      const g = gradient(4, 64);
      await fill(
        g,
        30,
        (round) => (round === 0 ? 8 : 80),
        (p) => p.success(8, withBackendTime ? 8 : undefined),
      );
      return g.lim.limit;
    };
    // By this process's clock the calls look 10x slower than at no load: the limit shrinks to its floor.
    expect(await run(false)).toBe(1);
    // By the backend's own time they are as fast as ever: the limit grows to its cap.
    expect(await run(true)).toBe(64);
  });

  it("never takes a reported time longer than the call's own as its sample", async () => {
    const g = gradient(4, 64);
    // A backend clock running fast (or a bogus figure) past the first round: capped at the 8 ms seen here.
    await fill(
      g,
      30,
      () => 8,
      (p, round) => p.success(8, round === 0 ? 8 : 800),
    );
    expect(g.lim.limit).toBe(64);
    // Unusable reports (0, negative, NaN) leave the call's own time as the sample.
    await fill(
      g,
      1,
      () => 8,
      (p, _round, i) => p.success(8, [0, -1, NaN][i % 3]),
    );
    expect(g.lim.limit).toBe(64);
  });

  it('a wait longer than timeoutMs fails with RateLimitedError and frees its place', async () => {
    const lim = new ConcurrencyLimiter({ name: 'b', algorithm: new FixedLimit(1) });
    const held = await lim.acquire();
    await expect(lim.acquire({ timeoutMs: 5 })).rejects.toBeInstanceOf(RateLimitedError);
    expect(lim.metrics()).toMatchObject({ waiting: 0, timedOut: 1 });
    held.success();
    expect(lim.metrics().inFlight).toBe(0);
  });

  it('an aborted wait rejects with the signal reason and leaves the line', async () => {
    const lim = new ConcurrencyLimiter({ name: 'b', algorithm: new FixedLimit(1) });
    const held = await lim.acquire();
    const ac = new AbortController();
    const waiting = lim.acquire({ signal: ac.signal });
    ac.abort(new Error('cancelled'));
    await expect(waiting).rejects.toThrow('cancelled');
    expect(lim.metrics().waiting).toBe(0);
    held.ignore();
    // Ending a permit twice counts once.
    held.success();
    expect(lim.metrics().inFlight).toBe(0);
  });
});

describe('slow start (the limit doubling per first-output time until strain)', () => {
  function clock() {
    let t = 0;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  }

  /**
   * A cold burst of `n` streamed calls through a limiter: every call granted gives its first output
   * `firstMs(k)` after its permit (k: how many first outputs came before it), none ends. Returns how many
   * first-output times passed until every call had its permit (Infinity past `rounds`), and the permits.
   */
  async function burst(
    lim: ConcurrencyLimiter,
    c: ReturnType<typeof clock>,
    n: number,
    firstMs: (k: number) => number,
    rounds = 20,
  ): Promise<{ rounds: number; granted: number }> {
    const granted: Permit[] = [];
    for (let i = 0; i < n; i++) void lim.acquire().then((p) => granted.push(p));
    await new Promise((r) => setImmediate(r));
    let reported = 0;
    for (let r = 0; r < rounds; r++) {
      if (granted.length === n) return { rounds: r, granted: n };
      const batch = granted.slice(reported);
      reported = granted.length;
      c.advance(firstMs(reported));
      for (const p of batch) p.firstOutput();
      // Let the permits handed on settle.
      await new Promise((r) => setImmediate(r));
    }
    return { rounds: granted.length === n ? rounds : Infinity, granted: granted.length };
  }

  it('lets a cold burst of 100 streams through within five first-token times, no call ended', async () => {
    const c = clock();
    const lim = new ConcurrencyLimiter({
      name: 'b',
      algorithm: new GradientLimit({ max: 128 }),
      now: c.now,
    });
    expect(lim.limit).toBe(4);
    // A batching server: every first token in 40 ms however many are in flight.
    const r = await burst(lim, c, 100, () => 40);
    expect(r.granted).toBe(100);
    // 4 → 8 → 16 → 32 → 64 → 128: five doublings.
    expect(r.rounds).toBeLessThanOrEqual(5);
    expect(lim.limit).toBeGreaterThanOrEqual(100);
  });

  it('without first outputs (unstreamed calls) the limit keeps its gradient ramp', async () => {
    const c = clock();
    const lim = new ConcurrencyLimiter({
      name: 'b',
      algorithm: new GradientLimit({ max: 128 }),
      now: c.now,
    });
    const permits: Permit[] = [];
    for (let i = 0; i < 100; i++) void lim.acquire().then((p) => permits.push(p));
    await new Promise((r) => setImmediate(r));
    expect(permits).toHaveLength(4);
    expect(lim.metrics().waiting).toBe(96);
  });

  it('ends at the first slow first output: a one-slot server stays small', async () => {
    const c = clock();
    const algorithm = new GradientLimit({ max: 128 });
    const lim = new ConcurrencyLimiter({ name: 'b', algorithm, now: c.now });
    const permits: Permit[] = [];
    for (let i = 0; i < 100; i++) void lim.acquire().then((p) => permits.push(p));
    await new Promise((r) => setImmediate(r));
    expect(permits).toHaveLength(4);
    // One slot, 200 ms generations: the first call's first token in 40 ms, the second's after the first
    // call's generation (240 ms: more than 5 × 40).
    c.advance(40);
    permits[0]!.firstOutput();
    expect(algorithm.slowStart).toBe(true);
    c.advance(200);
    permits[1]!.firstOutput();
    expect(algorithm.slowStart).toBe(false);
    expect(lim.capacity).toBe(lim.limit);
    // The first call, let through alone, raised it to 2 × 1: below the start of 4.
    expect(lim.limit).toBe(4);
    // Later prompt first outputs no longer move it.
    permits[2]!.firstOutput();
    permits[3]!.firstOutput();
    expect(lim.limit).toBe(4);
  });

  it('ends on a drop and on a call slower than tolerance × the no-load minimum', () => {
    const dropped = new GradientLimit({ max: 64 });
    dropped.update({ rtt: 10, inFlight: 4, dropped: true, at: 0 });
    expect(dropped.slowStart).toBe(false);
    const before = dropped.limit;
    dropped.firstOutput({ latency: 1, inFlight: 64 });
    expect(dropped.limit).toBe(before);

    const slow = new GradientLimit({ max: 64, tolerance: 2 });
    slow.firstOutput({ latency: 40, inFlight: 1 });
    slow.update({ rtt: 10, inFlight: 4, dropped: false, at: 0 });
    expect(slow.slowStart).toBe(true);
    slow.update({ rtt: 100, inFlight: 4, dropped: false, at: 1 });
    expect(slow.slowStart).toBe(false);
  });

  it('does not grow on first outputs while fewer than half the permits are in use, else to twice those', () => {
    const limit = new GradientLimit({ initial: 20, max: 128 });
    expect(limit.slowStart).toBe(false);
    for (let i = 0; i < 50; i++) limit.firstOutput({ latency: 40, inFlight: 9 });
    expect(limit.limit).toBe(20);
    expect(limit.slowStart).toBe(true);
    limit.firstOutput({ latency: 40, inFlight: 15 });
    expect(limit.limit).toBe(30);
    limit.firstOutput({ latency: 40, inFlight: 12 });
    expect(limit.limit).toBe(30);
    limit.firstOutput({ latency: 40, inFlight: 100 });
    expect(limit.limit).toBe(128);
  });

  it('a late first output of a call let through almost alone neither raises the limit nor ends slow start', () => {
    const limit = new GradientLimit({ initial: 20, max: 128 });
    limit.firstOutput({ latency: 42, inFlight: 10 });
    expect(limit.slowStart).toBe(true);
    // One stream at a time (1 of 20 permits in use), its first token late (a busy host): more than 5 × 42.
    limit.firstOutput({ latency: 225, inFlight: 1 });
    limit.firstOutput({ latency: 400, inFlight: 9 });
    expect(limit.slowStart).toBe(true);
    expect(limit.limit).toBe(20);
    // A burst then doubles it as before.
    limit.firstOutput({ latency: 50, inFlight: 20 });
    expect(limit.limit).toBe(40);
    // A late first output with half the permits in use (not app-limited) still ends slow start.
    limit.firstOutput({ latency: 225, inFlight: 20 });
    expect(limit.slowStart).toBe(false);
    expect(limit.limit).toBe(40);
  });

  it('after light traffic with one late first token, a burst of 100 still reaches the backend in a few first-token times', async () => {
    const c = clock();
    const algorithm = new GradientLimit({ max: 128 });
    const lim = new ConcurrencyLimiter({ name: 'b', algorithm, now: c.now });
    // Light traffic, one stream at a time; the third's first token late (the host busy, 230 ms > 5 × 40).
    for (const ms of [40, 42, 230, 41]) {
      const p = await lim.acquire();
      c.advance(ms);
      p.firstOutput();
      c.advance(160);
      p.success(32);
    }
    expect(algorithm.slowStart).toBe(true);
    // Then 100 streams at once, first tokens in 40 ms: 4 → 8 → … → 128.
    const r = await burst(lim, c, 100, () => 40);
    expect(r.granted).toBe(100);
    expect(r.rounds).toBeLessThanOrEqual(5);
  });

  it('a limiter in slow start offers its cap as capacity (what a worker holds jobs for); a fixed one its limit', async () => {
    const c = clock();
    const adaptive = new ConcurrencyLimiter({
      name: 'a',
      algorithm: new GradientLimit({ max: 96 }),
      now: c.now,
    });
    // No first output seen (unstreamed calls only): its limit, as without slow start.
    expect(adaptive.capacity).toBe(4);
    const p = await adaptive.acquire();
    c.advance(40);
    p.firstOutput();
    expect(adaptive.capacity).toBe(96);
    p.success();
    const q = await adaptive.acquire();
    q.dropped();
    expect(adaptive.capacity).toBe(adaptive.limit);
    const fixed = new ConcurrencyLimiter({ name: 'f', algorithm: new FixedLimit(7) });
    expect(fixed.capacity).toBe(7);
    // A first output reported twice, or after the end, counts once / not at all.
    const r = await fixed.acquire();
    r.firstOutput();
    r.firstOutput();
    r.success();
    r.firstOutput();
    expect(fixed.metrics().inFlight).toBe(0);
  });
});

describe('capacity rises reported as they happen', () => {
  it('tells its listeners when slow start opens its capacity and when its limit grows, not otherwise', async () => {
    let t = 0;
    const lim = new ConcurrencyLimiter({
      name: 'b',
      algorithm: new GradientLimit({ max: 96 }),
      now: () => t,
    });
    const seen: number[] = [];
    const off = lim.onCapacityRaised(() => seen.push(lim.capacity));
    // A listener that throws does not break the permit's bookkeeping.
    lim.onCapacityRaised(() => {
      throw new Error('listener');
    });
    const permits = await Promise.all([1, 2, 3, 4].map(() => lim.acquire()));
    t += 40;
    // The first prompt first output starts slow start: capacity 4 → the cap, at once.
    permits[0]!.firstOutput();
    expect(seen).toEqual([96]);
    // Slow start: the limit doubles but the capacity (the cap) does not rise again.
    permits[3]!.firstOutput();
    expect(lim.limit).toBe(8);
    expect(seen).toEqual([96]);
    // A drop ends slow start: capacity falls to the limit (no rise told).
    permits[1]!.dropped();
    expect(lim.capacity).toBe(lim.limit);
    expect(seen).toEqual([96]);
    off();
    permits[2]!.success();
    permits[0]!.success();
    permits[3]!.success();
    expect(seen).toEqual([96]);
  });

  it('tells its listeners when a finished call grows the limit (no slow start)', async () => {
    let t = 0;
    const lim = new ConcurrencyLimiter({
      name: 'b',
      algorithm: new GradientLimit({ initial: 2, max: 8, smoothing: 1 }),
      now: () => t,
    });
    let told = 0;
    lim.onCapacityRaised(() => told++);
    const a = await lim.acquire();
    const b = await lim.acquire();
    t += 10;
    a.success();
    expect(lim.limit).toBeGreaterThan(2);
    expect(told).toBe(1);
    b.ignore();
    expect(told).toBe(1);
  });
});

describe('CapacityFollower', () => {
  it('applies a reported rise at once (not at its next re-read) and fills the raised workers only', async () => {
    let capacity = 2;
    let onRaised: () => void = () => undefined;
    let unwatched = false;
    const raised: [QueueName, number][] = [];
    const w = { concurrency: 64 } as unknown as Worker;
    const f = new CapacityFollower({
      capacity: { [QueueName.INFERENCE]: () => capacity },
      workers: () => [[QueueName.INFERENCE, [w]]] as [QueueName, Worker[]][],
      cap: () => 64,
      intervalMs: 3_600_000,
      watch: (l) => {
        onRaised = l;
        return () => (unwatched = true);
      },
      raised: (queue, worker) => raised.push([queue, worker.concurrency]),
    });
    f.start();
    // Lowered at start (64 → 4): nothing to fill.
    expect(w.concurrency).toBe(4);
    expect(raised).toEqual([]);
    capacity = 20;
    onRaised();
    onRaised();
    // Applied after the current synchronous work, once for the rises of one turn.
    expect(w.concurrency).toBe(4);
    await Promise.resolve();
    expect(w.concurrency).toBe(40);
    expect(raised).toEqual([[QueueName.INFERENCE, 40]]);
    f.close();
    expect(unwatched).toBe(true);
    capacity = 30;
    onRaised();
    await Promise.resolve();
    expect(w.concurrency).toBe(40);
  });

  it("holds twice the backends' limit in jobs, at least 1, at most the configured concurrency", () => {
    expect(CapacityFollower.concurrencyFor(3, 64)).toBe(6);
    expect(CapacityFollower.concurrencyFor(0, 64)).toBe(1);
    expect(CapacityFollower.concurrencyFor(50, 64)).toBe(64);
    expect(CapacityFollower.concurrencyFor(undefined, 64)).toBe(64);
  });

  it('sets the BullMQ worker concurrency of the queues it follows, and only those', () => {
    let limit = 2;
    const inference = { concurrency: 64 } as unknown as Worker;
    const search = { concurrency: 8 } as unknown as Worker;
    const f = new CapacityFollower({
      capacity: { [QueueName.INFERENCE]: () => limit },
      workers: () =>
        [
          [QueueName.INFERENCE, [inference]],
          [QueueName.SEARCH, [search]],
        ] as [QueueName, Worker[]][],
      cap: () => 64,
    });
    f.apply();
    expect(inference.concurrency).toBe(4);
    limit = 20;
    f.apply();
    expect(inference.concurrency).toBe(40);
    expect(search.concurrency).toBe(8);
  });

  it("splits a queue's figure over the workers of its shards, at least 1 each", () => {
    let limit = 5;
    const shards = [64, 64, 64].map((concurrency) => ({ concurrency }) as unknown as Worker);
    const f = new CapacityFollower({
      capacity: { [QueueName.INFERENCE]: () => limit },
      workers: () => [[QueueName.INFERENCE, shards]] as [QueueName, Worker[]][],
      cap: () => 64,
    });
    f.apply();
    // 10 jobs (twice the limit of 5) over 3 shards.
    expect(shards.map((w) => w.concurrency)).toEqual([4, 3, 3]);
    limit = 0;
    f.apply();
    expect(shards.map((w) => w.concurrency)).toEqual([1, 1, 1]);
  });
});
