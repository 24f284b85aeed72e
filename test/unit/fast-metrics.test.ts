import { Counter, Histogram, Registry } from 'prom-client';
import { FastCounter, FastHistogram } from '../../shared/metrics/fast-metrics';

/*
 * The hot-path metric classes must expose exactly what prom-client's own Counter and Histogram expose for
 * the same calls: the same exposition lines, the same get() objects. (A counter's series may come in
 * another order: its children are folded in when it is read.)
 */

/** The exposition's lines within each family, sorted. */
async function lines(r: Registry): Promise<string[]> {
  return (await r.metrics()).split('\n\n').map((family) => family.split('\n').sort().join('\n'));
}

function byLabels<T extends { labels: object }>(values: T[]): T[] {
  return [...values].sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)));
}

function pair(defaultLabels?: Record<string, string>) {
  const plain = new Registry();
  const fast = new Registry();
  if (defaultLabels) {
    plain.setDefaultLabels(defaultLabels);
    fast.setDefaultLabels(defaultLabels);
  }
  const buckets = [0.01, 0.1, 1, 10];
  const h = {
    plain: new Histogram({
      name: 'x_seconds',
      help: 'h',
      labelNames: ['queue', 'kind'],
      buckets,
      registers: [plain],
    }),
    fast: new FastHistogram({
      name: 'x_seconds',
      help: 'h',
      labelNames: ['queue', 'kind'],
      buckets,
      registers: [fast],
    }),
  };
  const c = {
    plain: new Counter({ name: 'x_total', help: 'c', labelNames: ['queue', 'kind'], registers: [plain] }),
    fast: new FastCounter({ name: 'x_total', help: 'c', labelNames: ['queue', 'kind'], registers: [fast] }),
  };
  const u = {
    plain: new Histogram({ name: 'y_seconds', help: 'u', buckets, registers: [plain] }),
    fast: new FastHistogram({ name: 'y_seconds', help: 'u', buckets, registers: [fast] }),
  };
  return { plain, fast, h, c, u };
}

describe('FastCounter and FastHistogram', () => {
  test('the same exposition and get() as prom-client for the same calls', async () => {
    const p = pair({ role: 'worker' });
    for (const side of ['plain', 'fast'] as const) {
      const a = p.h[side].labels('inference', 'x');
      for (const v of [0, 0.005, 0.01, 0.02, 0.5, 1, 3, 10, 11, 500]) a.observe(v);
      p.h[side].observe({ queue: 'search', kind: 'y' }, 0.2);
      p.h[side].labels({ queue: 'search', kind: 'y' }).observe(0.05);
      p.h[side].zero({ queue: 'embedding', kind: 'z' });
      p.u[side].observe(0.3);
      p.u[side].observe(42);
      const c = p.c[side].labels('inference', 'x');
      c.inc();
      c.inc(2.5);
      c.inc(0);
      p.c[side].labels('search', 'y').inc(0);
      p.c[side].inc({ queue: 'search', kind: 'w' }, 3);
    }
    expect(await lines(p.fast)).toEqual(await lines(p.plain));
    expect(await p.h.fast.get()).toEqual(await p.h.plain.get());
    const [cf, cp] = [await p.c.fast.get(), await p.c.plain.get()];
    expect({ ...cf, values: byLabels(cf.values) }).toEqual({ ...cp, values: byLabels(cp.values) });
    // Increments after a read are folded at the next read, never twice.
    for (const side of ['plain', 'fast'] as const) {
      p.c[side].labels('inference', 'x').inc(4);
      p.h[side].labels('inference', 'x').observe(0.07);
    }
    expect(await lines(p.fast)).toEqual(await lines(p.plain));
    expect(await lines(p.fast)).toEqual(await lines(p.plain));
    // remove() and reset() as prom-client's.
    for (const side of ['plain', 'fast'] as const) {
      p.h[side].remove('search', 'y');
      p.c[side].labels('search', 'w').inc(2);
      p.c[side].remove({ queue: 'search', kind: 'w' });
    }
    // The removed series are gone, increments not yet read included.
    expect(await lines(p.fast)).toEqual(await lines(p.plain));
    expect((await p.fast.metrics()).includes('kind="w"')).toBe(false);
    for (const side of ['plain', 'fast'] as const) {
      p.c[side].reset();
      p.c[side].labels('inference', 'x').inc(1);
    }
    expect(await lines(p.fast)).toEqual(await lines(p.plain));
    for (const side of ['plain', 'fast'] as const) p.h[side].reset();
    expect(await lines(p.fast)).toEqual(await lines(p.plain));
  });

  test('a child is the same object for the same labels; bad values and label counts throw', () => {
    const { h, c } = pair();
    expect(h.fast.labels('a', 'b')).toBe(h.fast.labels({ queue: 'a', kind: 'b' }));
    expect(c.fast.labels('a', 'b')).toBe(c.fast.labels('a', 'b'));
    expect(() => h.fast.labels('a')).toThrow(/labels/);
    expect(() => h.fast.labels('a', 'b').observe(NaN)).toThrow(TypeError);
    expect(() => c.fast.labels('a', 'b').inc(-1)).toThrow(TypeError);
    expect(() => c.fast.labels('a', 'b').inc(Infinity)).toThrow(TypeError);
  });

  test('startTimer observes the elapsed seconds', async () => {
    const { h } = pair();
    const end = h.fast.labels('a', 'b').startTimer();
    const s = end();
    expect(s).toBeGreaterThanOrEqual(0);
    const got = await h.fast.get();
    expect(got.values.find((v) => v.metricName === 'x_seconds_count')?.value).toBe(1);
    expect(got.values.find((v) => v.metricName === 'x_seconds_sum')?.value).toBe(s);
  });
});
