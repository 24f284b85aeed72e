import { BatchQueueFullError, ClosedError } from '../errors.js';

/**
 * What a batch call gives back for each item, in the order of the items it was handed: a value, or an Error
 * for that item alone. An array of another length is a bug in the call and fails the whole batch.
 */
export type BatchOutcome<R> = R | Error;

/** The function that handles one batch: every item shares the partition key. */
export type BatchHandler<T, R> = (items: T[], key: string) => Promise<BatchOutcome<R>[]>;

/** Options of {@link AsyncBatchProcessor}. */
export interface AsyncBatchProcessorOptions<T, R> {
  /** Runs one batch. A throw (or a rejected promise) fails every item of that batch with that error. */
  handler: BatchHandler<T, R>;
  /** Flush a partition as soon as this many items wait in it. Default 64. */
  maxBatchSize?: number;
  /**
   * Flush a partition once its oldest item has waited this long, ms. 0 = at the end of the current turn of
   * the event loop (items added in the same tick still share a batch). Default 5.
   */
  maxWaitMs?: number;
  /** Batches running at once, over all partitions; more wait for a slot. Default 4. */
  maxConcurrentBatches?: number;
  /**
   * Items accepted but not yet finished (waiting and in flight) above which `add` refuses with
   * BatchQueueFullError: backpressure instead of unbounded memory. Default 10000.
   */
  maxQueuedItems?: number;
  /** The partition of an item: only items with the same key share a batch (e.g. the model). Default: one. */
  keyOf?: (item: T) => string;
  /** Sizes kept for the percentile figures of {@link AsyncBatchProcessor.stats}. Default 1024. */
  statsWindow?: number;
  /**
   * Asked when a partition's wait ends before it is full: true keeps it open another `maxWaitMs` (more items
   * are known to be on their way, e.g. jobs a worker is still fetching); false, a throw or a rejection send
   * it now. Gets the partition key, its size and how long its oldest item has waited (ms); it bounds the
   * holding itself. Default: none (a partition leaves when its wait ends).
   */
  holdOpen?: (key: string, size: number, waitedMs: number) => boolean | Promise<boolean>;
  /**
   * How much of `maxBatchSize` an item takes (an integer >= 1; e.g. the jobs of a group added together).
   * An item is never split: a batch holds whole items up to `maxBatchSize` in all, or one item larger
   * than that alone. Default: 1 per item.
   */
  sizeOf?: (item: T) => number;
  /**
   * With `maxWaitMs` 0: runs a partition's send through this hook instead of a setImmediate. The hook calls
   * `fire` later in the same turn of the event loop (e.g. connection.ts `beforeSend`: right before a Redis
   * connection's held writes leave, so the batch's commands go out in the same socket write as the rest of
   * the turn's commands on it), or returns false, without calling it, when it cannot (then a setImmediate
   * as without it). Default: none.
   */
  endOfTurn?: (fire: () => void) => boolean;
}

/** Figures of an {@link AsyncBatchProcessor} since it was made. */
/** Upper bounds of the batch-size distribution {@link AsyncBatchProcessor.sizeCounts} keeps. */
export const BATCH_SIZE_BOUNDS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** The bin of a batch of `n` items: the first bound >= n, or BATCH_SIZE_BOUNDS.length past the last. */
function sizeBin(n: number): number {
  let i = 0;
  while (i < BATCH_SIZE_BOUNDS.length && n > BATCH_SIZE_BOUNDS[i]!) i++;
  return i;
}

export interface BatchStats {
  /** Batches handed to the handler. */
  batches: number;
  /** Items handed to the handler. */
  items: number;
  /** Items refused because the queue was full. */
  refused: number;
  /** Items whose caller aborted before their batch left. */
  aborted: number;
  /** Batches whose handler threw (every item of it failed). */
  failedBatches: number;
  /** Items waiting for a batch now, and items in batches running now. */
  waiting: number;
  inFlight: number;
  meanBatchSize: number;
  p95BatchSize: number;
  /** Time from `add` to the item's batch leaving, ms. */
  meanWaitMs: number;
  p95WaitMs: number;
}

interface Pending<T, R> {
  item: T;
  addedAt: number;
  resolve: (r: R) => void;
  reject: (e: Error) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Set once the item left in a batch (its abort no longer removes it). */
  sent: boolean;
  /** Its share of maxBatchSize (sizeOf). */
  size: number;
}

interface Partition<T, R> {
  key: string;
  items: Pending<T, R>[];
  /** The sizes of its waiting items, summed. */
  size: number;
  timer: NodeJS.Timeout | undefined;
  /** The wait handed to `endOfTurn` (fires only while it is still this object). */
  hooked: object | undefined;
  /** Waiting for a batch slot: flush as soon as one frees. */
  due: boolean;
  /** `holdOpen` is being asked whether to keep waiting. */
  holding: boolean;
}

const DEFAULTS = {
  maxBatchSize: 64,
  maxWaitMs: 5,
  maxConcurrentBatches: 4,
  maxQueuedItems: 10_000,
  statsWindow: 1024,
};

/**
 * Groups items that arrive close together into batches, handled by one call each (one Redis round trip,
 * one backend request for many inputs).
 *
 * - A partition (by `keyOf`) is flushed when `maxBatchSize` items wait in it, or when its oldest item has
 *   waited `maxWaitMs`; at most `maxConcurrentBatches` batches run at once, and a partition that is due
 *   while every slot is busy leaves as soon as one frees (with whatever has gathered by then, up to the
 *   batch size), so batches grow under load instead of queueing.
 * - Every item gets its own answer: the handler returns one value or Error per item, so a bad item fails
 *   alone; a handler that throws fails its whole batch.
 * - Bounded: with `maxQueuedItems` accepted and unfinished, `add` refuses at once with BatchQueueFullError.
 * - An item whose signal aborts before its batch leaves is dropped and rejected with the signal's reason;
 *   once sent it can no longer be recalled, but its caller is still answered at once with the reason.
 * - `flush()` sends everything waiting now; `close()` refuses new items and drains the rest.
 */
export class AsyncBatchProcessor<T, R> {
  private readonly opts: Required<
    Omit<AsyncBatchProcessorOptions<T, R>, 'keyOf' | 'holdOpen' | 'sizeOf' | 'endOfTurn'>
  > & {
    keyOf: ((item: T) => string) | undefined;
    holdOpen: AsyncBatchProcessorOptions<T, R>['holdOpen'];
    sizeOf: ((item: T) => number) | undefined;
    endOfTurn: AsyncBatchProcessorOptions<T, R>['endOfTurn'];
  };
  private readonly partitions = new Map<string, Partition<T, R>>();
  /** Partitions due while every slot was busy, in the order they became due. */
  private readonly due: Partition<T, R>[] = [];
  private readonly running = new Set<Promise<void>>();
  private accepted = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly sizes: Uint32Array;
  /** Batches sent by size bin (see sizeBin). */
  private readonly sizeBins = new Float64Array(BATCH_SIZE_BOUNDS.length + 1);
  private readonly waits: Float64Array;
  private sampleCount = 0;
  private waitSamples = 0;
  private flushing = 0;
  private readonly counters = {
    batches: 0,
    items: 0,
    refused: 0,
    aborted: 0,
    failedBatches: 0,
    waitSum: 0,
    waitCount: 0,
    inFlight: 0,
  };

  constructor(options: AsyncBatchProcessorOptions<T, R>) {
    if (typeof options?.handler !== 'function')
      throw new TypeError('AsyncBatchProcessor: option "handler" must be a function');
    const merged = { ...DEFAULTS };
    for (const k of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
      const v = options[k];
      if (v !== undefined) merged[k] = v;
    }
    const positive = ['maxBatchSize', 'maxConcurrentBatches', 'maxQueuedItems', 'statsWindow'] as const;
    for (const k of positive)
      if (!(Number.isInteger(merged[k]) && merged[k] >= 1))
        throw new TypeError(`AsyncBatchProcessor: option "${k}" must be an integer >= 1, got ${merged[k]}`);
    if (!(Number.isFinite(merged.maxWaitMs) && merged.maxWaitMs >= 0))
      throw new TypeError(`AsyncBatchProcessor: option "maxWaitMs" must be a number >= 0`);
    this.opts = {
      ...merged,
      handler: options.handler,
      keyOf: options.keyOf,
      holdOpen: options.holdOpen,
      sizeOf: options.sizeOf,
      endOfTurn: options.endOfTurn,
    };
    this.sizes = new Uint32Array(merged.statsWindow);
    this.waits = new Float64Array(merged.statsWindow);
  }

  /**
   * Queues `item` for the next batch of its partition and resolves with its own result. Rejects with
   * BatchQueueFullError when the queue is full, ClosedError after close(), the signal's reason when it
   * aborts, or the item's (or its batch's) error.
   */
  add(item: T, opts: { signal?: AbortSignal } = {}): Promise<R> {
    if (this.closed) return Promise.reject(new ClosedError('AsyncBatchProcessor'));
    const signal = opts.signal;
    if (signal?.aborted) {
      this.counters.aborted++;
      return Promise.reject(abortReason(signal));
    }
    if (this.accepted >= this.opts.maxQueuedItems) {
      this.counters.refused++;
      return Promise.reject(new BatchQueueFullError(this.opts.maxQueuedItems));
    }
    const key = this.opts.keyOf ? this.opts.keyOf(item) : '';
    let part = this.partitions.get(key);
    if (!part) {
      part = { key, items: [], size: 0, timer: undefined, hooked: undefined, due: false, holding: false };
      this.partitions.set(key, part);
    }
    const p = part;
    const size = this.opts.sizeOf ? Math.max(1, Math.floor(this.opts.sizeOf(item))) : 1;
    this.accepted++;
    return new Promise<R>((resolve, reject) => {
      const pending: Pending<T, R> = {
        item,
        addedAt: performance.now(),
        resolve,
        reject,
        signal,
        onAbort: undefined,
        sent: false,
        size,
      };
      if (signal) {
        pending.onAbort = () => this.abort(p, pending);
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      p.items.push(pending);
      p.size += size;
      if (p.size >= this.opts.maxBatchSize) this.markDue(p);
      else this.arm(p);
    });
  }

  /** Sends every waiting item now (in batches of at most `maxBatchSize`) and resolves when they are done. */
  async flush(): Promise<void> {
    this.flushing++;
    try {
      for (;;) {
        for (const p of [...this.partitions.values()]) if (p.items.length > 0) this.markDue(p);
        if (this.running.size === 0) break;
        await Promise.race(this.running);
      }
    } finally {
      this.flushing--;
    }
  }

  /** Refuses new items and drains the accepted ones (their callers get their results). Idempotent. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.flush();
    return this.closing;
  }

  /** Figures since creation. */
  stats(): BatchStats {
    const sizes = Array.from(this.sizes.subarray(0, Math.min(this.sampleCount, this.sizes.length))).sort(
      (a, b) => a - b,
    );
    const waits = Array.from(this.waits.subarray(0, Math.min(this.waitSamples, this.waits.length))).sort(
      (a, b) => a - b,
    );
    const pct = (arr: number[]) =>
      arr.length === 0 ? 0 : arr[Math.min(arr.length - 1, Math.floor(0.95 * arr.length))]!;
    const c = this.counters;
    return {
      batches: c.batches,
      items: c.items,
      refused: c.refused,
      aborted: c.aborted,
      failedBatches: c.failedBatches,
      waiting: this.waitingCount(),
      inFlight: c.inFlight,
      meanBatchSize: c.batches === 0 ? 0 : round(c.items / c.batches),
      p95BatchSize: pct(sizes),
      meanWaitMs: c.waitCount === 0 ? 0 : round(c.waitSum / c.waitCount),
      p95WaitMs: round(pct(waits)),
    };
  }

  /**
   * Batches sent so far by size: one count per bound of BATCH_SIZE_BOUNDS (a batch counts under the first
   * bound >= its size), then those larger than the last bound. For the batch-size histogram.
   */
  sizeCounts(): number[] {
    return Array.from(this.sizeBins);
  }

  private waitingCount(): number {
    let n = 0;
    for (const p of this.partitions.values()) n += p.items.length;
    return n;
  }

  /** Starts the wait of the partition's oldest item (it is due `maxWaitMs` after it arrived). */
  private arm(p: Partition<T, R>, again = false): void {
    if (p.timer || p.hooked || p.due || p.holding) return;
    if (this.flushing > 0) return this.markDue(p);
    const oldest = p.items[0];
    if (!oldest) return;
    const fire = () => {
      p.timer = undefined;
      if (this.opts.holdOpen && p.items.length > 0) this.askHold(p);
      else this.markDue(p);
    };
    const left = again ? this.opts.maxWaitMs : this.opts.maxWaitMs - (performance.now() - oldest.addedAt);
    // maxWaitMs 0: after the current tick, so items added together still share one batch.
    if (this.opts.maxWaitMs === 0 && this.opts.endOfTurn) {
      const hook = {};
      p.hooked = hook;
      const fired = () => {
        if (p.hooked !== hook) return;
        p.hooked = undefined;
        fire();
      };
      if (this.opts.endOfTurn(fired)) return;
      p.hooked = undefined;
    }
    p.timer =
      this.opts.maxWaitMs === 0
        ? (setImmediate(fire) as unknown as NodeJS.Timeout)
        : setTimeout(fire, Math.max(0, left));
  }

  /** The partition's wait ended before it filled: `holdOpen` says whether to wait once more. */
  private askHold(p: Partition<T, R>): void {
    p.holding = true;
    const oldest = p.items[0]!;
    const decide = (keep: boolean) => {
      p.holding = false;
      if (p.items.length === 0) return this.forget(p);
      if (p.due) return;
      if (keep && this.flushing === 0) this.arm(p, true);
      else this.markDue(p);
    };
    try {
      Promise.resolve(this.opts.holdOpen!(p.key, p.items.length, performance.now() - oldest.addedAt)).then(
        (keep) => decide(keep === true),
        () => decide(false),
      );
    } catch {
      decide(false);
    }
  }

  private disarm(p: Partition<T, R>): void {
    p.hooked = undefined;
    if (!p.timer) return;
    clearTimeout(p.timer);
    clearImmediate(p.timer as unknown as NodeJS.Immediate);
    p.timer = undefined;
  }

  /** The partition should leave now: at once if a slot is free, else as soon as one frees. */
  private markDue(p: Partition<T, R>): void {
    this.disarm(p);
    if (p.due) return;
    p.due = true;
    this.due.push(p);
    this.next();
  }

  /** Sends due partitions, oldest first, while batch slots are free. */
  private next(): void {
    while (this.due.length > 0 && this.counters.inFlight < this.opts.maxConcurrentBatches) {
      const p = this.due.shift()!;
      p.due = false;
      if (p.items.length > 0) this.send(p);
      // What is left behind is due at once when it is a full batch, else it starts its own wait.
      if (p.size >= this.opts.maxBatchSize) {
        p.due = true;
        this.due.push(p);
      } else if (p.items.length > 0) this.arm(p);
      else this.forget(p);
    }
  }

  /** Sends one batch of `p` (a slot is free). */
  private send(p: Partition<T, R>): void {
    // Whole items up to maxBatchSize in all; an item larger than that leaves alone.
    let n = 0;
    let size = 0;
    while (n < p.items.length && (n === 0 || size + p.items[n]!.size <= this.opts.maxBatchSize))
      size += p.items[n++]!.size;
    const batch = p.items.splice(0, n);
    p.size -= size;
    const now = performance.now();
    for (const it of batch) {
      it.sent = true;
      const waited = now - it.addedAt;
      this.counters.waitSum += waited;
      this.counters.waitCount++;
      this.waits[this.waitSamples++ % this.waits.length] = waited;
    }
    // Sizes and item counts in sizeOf units (one per item by default).
    this.sizes[this.sampleCount++ % this.sizes.length] = size;
    this.sizeBins[sizeBin(size)]!++;
    this.counters.batches++;
    this.counters.items += size;
    this.counters.inFlight++;
    const run = this.run(batch, p.key).finally(() => {
      this.counters.inFlight--;
      this.running.delete(run);
      this.next();
    });
    this.running.add(run);
  }

  private async run(batch: Pending<T, R>[], key: string): Promise<void> {
    let out: BatchOutcome<R>[];
    try {
      out = await this.opts.handler(
        batch.map((b) => b.item),
        key,
      );
      if (!Array.isArray(out) || out.length !== batch.length)
        throw new TypeError(
          `AsyncBatchProcessor: the handler returned ${Array.isArray(out) ? out.length : typeof out} results for ${batch.length} items`,
        );
    } catch (err) {
      this.counters.failedBatches++;
      const e = err instanceof Error ? err : new Error(String(err));
      for (const b of batch) this.settle(b, e);
      return;
    }
    batch.forEach((b, i) => this.settle(b, out[i] as BatchOutcome<R>));
  }

  private settle(b: Pending<T, R>, outcome: BatchOutcome<R>): void {
    this.accepted--;
    if (b.onAbort) b.signal?.removeEventListener('abort', b.onAbort);
    if (outcome instanceof Error) b.reject(outcome);
    else b.resolve(outcome);
  }

  private abort(p: Partition<T, R>, b: Pending<T, R>): void {
    if (b.sent) {
      // Already in a running batch: the caller stops waiting now; the batch's answer for it is dropped.
      b.reject(abortReason(b.signal!));
      return;
    }
    const i = p.items.indexOf(b);
    if (i < 0) return;
    p.items.splice(i, 1);
    p.size -= b.size;
    this.accepted--;
    this.counters.aborted++;
    if (p.items.length === 0 && !p.due && !p.holding) {
      this.disarm(p);
      this.forget(p);
    }
    b.reject(abortReason(b.signal!));
  }

  /** Drops an empty partition (keys come and go: models, tenants). */
  private forget(p: Partition<T, R>): void {
    if (p.items.length > 0 || p.due || p.holding) return;
    this.disarm(p);
    if (this.partitions.get(p.key) === p) this.partitions.delete(p.key);
  }
}

function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new DOMException('The operation was aborted', 'AbortError');
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
