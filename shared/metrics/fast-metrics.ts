import {
  Counter,
  Histogram,
  type CounterConfiguration,
  type HistogramConfiguration,
  type LabelValues,
  type MetricObjectWithValues,
  type MetricValueWithName,
} from 'prom-client';

/*
 * Hot-path metrics: prom-client's own labelled children validate and hash their labels and allocate on
 * every inc()/observe(). These subclasses keep the same metric objects (registry, exposition, get(), the
 * labels()/inc()/observe() API) but their children are plain accumulators: an increment or observation is
 * a few number writes, with no allocation and no label work. The figures are folded into the exposition
 * when the metric is read (a scrape).
 */

const SEP = '\u0001';

/** Label values in labelNames' order, from labels(...values) or labels({name: value}). */
function labelValues(names: readonly string[], args: unknown[]): string[] {
  const values =
    args.length === 1 && typeof args[0] === 'object' && args[0] !== null
      ? names.map((n) => (args[0] as Record<string, unknown>)[n])
      : args;
  if (values.length !== names.length || values.some((v) => v === undefined))
    throw new Error(`Invalid number of arguments (${values.length}): expected labels ${names.join(', ')}`);
  return values.map(String);
}

/** One counter series: increments accumulate here until the next read folds them into the counter. */
class FastCounterChild implements Counter.Internal {
  pending = 0;
  touched = false;
  constructor(readonly target: Counter.Internal) {}

  inc(value = 1): void {
    if (!(value >= 0 && value < Infinity))
      throw new TypeError(`Counter increment must be a finite number >= 0, got ${value}`);
    this.pending += value;
    this.touched = true;
  }

  fold(): void {
    if (!this.touched) return;
    this.target.inc(this.pending);
    this.pending = 0;
    this.touched = false;
  }
}

/** A prom-client Counter whose labelled children cost one addition per inc(). */
export class FastCounter<T extends string = string> extends Counter<T> {
  private readonly children = new Map<string, FastCounterChild>();
  private readonly names: readonly string[];

  constructor(config: CounterConfiguration<T>) {
    super(config);
    this.names = (config.labelNames ?? []) as readonly string[];
  }

  override labels(...args: unknown[]): Counter.Internal {
    const values = labelValues(this.names, args);
    const key = values.join(SEP);
    let c = this.children.get(key);
    if (!c) {
      c = new FastCounterChild(super.labels(...values));
      this.children.set(key, c);
    }
    return c;
  }

  override async get(): ReturnType<Counter<T>['get']> {
    for (const c of this.children.values()) c.fold();
    return super.get();
  }

  override remove(...args: unknown[]): void {
    const values = labelValues(this.names, args);
    const c = this.children.get(values.join(SEP));
    if (c) {
      c.pending = 0;
      c.touched = false;
    }
    super.remove(...values);
  }

  override reset(): void {
    // Also called by prom-client's constructor, before this class's fields exist.
    for (const c of (this.children as Map<string, FastCounterChild> | undefined)?.values() ?? []) {
      c.pending = 0;
      c.touched = false;
    }
    super.reset();
  }
}

/** One histogram series: counts per bucket (not cumulative), sum and count. */
class FastHistogramChild<T extends string> implements Histogram.Internal<T> {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  /** Exported even without observations (zero()). */
  zeroed = false;

  constructor(
    readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    if (i < b.length) this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  startTimer(): () => number {
    const t0 = performance.now();
    return () => {
      const s = (performance.now() - t0) / 1000;
      this.observe(s);
      return s;
    };
  }
}

/**
 * A prom-client Histogram whose series are kept here: an observation through a labelled child is a bucket
 * search and three number writes. Exposition, get(), observe(labels, v), zero(), remove() and reset() work
 * as prom-client's (exemplars are not supported).
 */
export class FastHistogram<T extends string = string> extends Histogram<T> {
  private readonly series = new Map<string, FastHistogramChild<T>>();
  private readonly names: readonly string[];
  private readonly bounds: readonly number[];
  private readonly fullName: string;

  constructor(config: HistogramConfiguration<T>) {
    super(config);
    this.names = (config.labelNames ?? []) as readonly string[];
    this.bounds = (this as unknown as { upperBounds: number[] }).upperBounds;
    this.fullName = config.name;
    // prom-client sets observe per instance: route it to the series kept here.
    (this as { observe: (a: unknown, b?: unknown) => void }).observe = (a, b) =>
      typeof a === 'number'
        ? this.labels().observe(a)
        : this.labels(a as LabelValues<T>).observe(b as number);
  }

  override labels(...args: unknown[]): FastHistogramChild<T> {
    const values = labelValues(this.names, args);
    const key = values.join(SEP);
    let s = this.series.get(key);
    if (!s) {
      const labels: Record<string, string> = {};
      this.names.forEach((n, i) => (labels[n] = values[i]!));
      s = new FastHistogramChild<T>(labels, this.bounds);
      this.series.set(key, s);
    }
    return s;
  }

  /**
   * Adds totals kept elsewhere to a series (a scrape-time fold): `counts` per bucket bound (not cumulative;
   * entries past the last bound are ignored: they count in `count` only), their `sum` and `count`.
   */
  addTotals(values: string[], counts: ArrayLike<number>, sum: number, count: number): void {
    const s = this.labels(...values);
    for (let i = 0; i < s.counts.length && i < counts.length; i++) s.counts[i]! += counts[i]!;
    s.sum += sum;
    s.count += count;
    s.zeroed = true;
  }

  override zero(labels: LabelValues<T>): void {
    const s = this.labels(labels);
    s.counts.fill(0);
    s.sum = 0;
    s.count = 0;
    s.zeroed = true;
  }

  override remove(...args: unknown[]): void {
    this.series.delete(labelValues(this.names, args).join(SEP));
  }

  override reset(): void {
    // Also called by prom-client's constructor, before this class's fields exist.
    (this.series as Map<string, unknown> | undefined)?.clear();
  }

  /** The values in prom-client's shape (what its registry formats). */
  async getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    const self = this as unknown as { collect?: () => unknown; help: string; aggregator: string };
    if (self.collect) await self.collect();
    const bucket = `${this.fullName}_bucket`;
    const values: unknown[] = [];
    for (const s of this.series.values()) {
      if (s.count === 0 && !s.zeroed) continue;
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i]!;
        values.push({
          labels: { le: this.bounds[i] },
          sharedLabels: s.labels,
          value: acc,
          metricName: bucket,
          exemplar: null,
        });
      }
      values.push(
        {
          labels: { le: '+Inf' },
          sharedLabels: s.labels,
          value: s.count,
          metricName: bucket,
          exemplar: null,
        },
        { labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.fullName}_sum` },
        { labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.fullName}_count` },
      );
    }
    return {
      name: this.fullName,
      help: self.help,
      type: 'histogram',
      values,
      aggregator: self.aggregator,
    } as unknown as MetricObjectWithValues<MetricValueWithName<T>>;
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    const data = await this.getForPromString();
    // As prom-client's get(): the series' labels and `le` in one labels object.
    data.values = data.values.map((v) => {
      const { sharedLabels, labels, ...rest } = v as unknown as {
        sharedLabels: Record<string, string>;
        labels: Record<string, string | number>;
      };
      return { ...rest, labels: { ...sharedLabels, ...labels } } as unknown as MetricValueWithName<T>;
    });
    return data;
  }
}
