import { Counter, type Registry } from 'prom-client';
import { BATCH_SIZE_BOUNDS } from '../batch/async-batch-processor.js';
import { FastHistogram } from './fast-metrics.js';

/** One batcher's running totals, as its stats() gives them. */
export interface BatcherSnapshot {
  /** enqueue (the producer's adds, one pipeline per batch), embedding (the worker's embedding calls). */
  batcher: string;
  batches: number;
  items: number;
  /** Backend calls the batches took (embedding: a batch with a bad input is split). Default = batches. */
  backendCalls?: number;
  /** Batches by size: counts per bound of BATCH_SIZE_BOUNDS, then past the last (AsyncBatchProcessor.sizeCounts). */
  sizes?: readonly number[];
}

/**
 * Batching families, read from the batchers' own totals at scrape time (their hot paths gain nothing):
 * batches, items and backend calls by batcher, and the batch-size histogram `cell0_batch_size` (items per
 * batch; its _sum and _count are the items and batches). Items per backend call is
 * `rate(cell0_batch_items_total[5m]) / rate(cell0_batch_backend_calls_total[5m])`.
 */
export class BatchMetrics {
  private readonly sources = new Set<() => BatcherSnapshot[]>();

  constructor(registry: Registry) {
    const registers = [registry];
    const sources = this.sources;
    const all = () => [...sources].flatMap((s) => s());
    const counter = (name: string, help: string, value: (b: BatcherSnapshot) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['batcher'],
        registers,
        collect() {
          this.reset();
          for (const b of all()) this.inc({ batcher: b.batcher }, value(b));
        },
      });
    counter(
      'cell0_batches_total',
      'Batches sent, by batcher (enqueue: producer adds per round trip; embedding: texts per model)',
      (b) => b.batches,
    );
    counter('cell0_batch_items_total', 'Items sent in batches, by batcher', (b) => b.items);
    new FastHistogram({
      name: 'cell0_batch_size',
      help: 'Items per batch, by batcher (enqueue: adds per Redis round trip; embedding: texts per batch)',
      labelNames: ['batcher'],
      buckets: [...BATCH_SIZE_BOUNDS],
      registers,
      collect() {
        const h = this as FastHistogram<'batcher'>;
        h.reset();
        for (const b of all()) if (b.sizes) h.addTotals([b.batcher], b.sizes, b.items, b.batches);
      },
    });
    counter(
      'cell0_batch_backend_calls_total',
      'Backend calls (or Redis round trips) the batches took, by batcher',
      (b) => b.backendCalls ?? b.batches,
    );
  }

  /** Reads `source` at each scrape; returns the function that stops it. */
  addSource(source: () => BatcherSnapshot[]): () => void {
    this.sources.add(source);
    return () => this.sources.delete(source);
  }
}
