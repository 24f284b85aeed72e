import { type Job } from 'bullmq';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import { AsyncBatchProcessor } from '../../shared/batch/index.js';
import { Cell0Error, ClosedError, ErrorCode } from '../../shared/errors.js';
import { type Logger } from '../../shared/logger.js';
import { type BatchClient } from './batch-client.js';
import {
  BatchJobName,
  batchKeys,
  type BatchCommands,
  type BatchResultLine,
  type BatchStatus,
  type BatchView,
  type ItemJobData,
  type ItemsJobData,
  type ItemSpec,
  type ItemStatus,
} from './batch-model.js';
import { runToEnd } from './run-item.js';

/** What a runner needs of its Batches. */
export interface RunnerHost {
  client: BatchClient;
  prefix: string;
  /** Items run at once by this process (each one waits for its job). */
  concurrency: number;
  ttlSeconds: number;
  itemWaitMs: number;
  /** The batch's view (counts and status), for its parent job's return value. */
  view(id: string): Promise<BatchView | undefined>;
  /** The batch's status, read at most every statusCacheMs (fresh: read now). */
  status(id: string, fresh: boolean): Promise<BatchStatus | undefined>;
  /** A Redis call through the producer's breaker. */
  redis<T>(fn: (r: RedisConnection & BatchCommands) => Promise<T>): Promise<T>;
  /** Aborted when the runner must stop at once (close after its grace). */
  stop: AbortSignal;
  log: Logger;
}

/** A line to record: its batch and the line's text. */
interface Recorded {
  batchId: string;
  line: number;
  status: ItemStatus;
  text: string;
}

/**
 * Runs the jobs of the batches queue in one process. An `items` job is a chunk of a batch's requests: each
 * request is submitted exactly as a single request is (caches, shedding, coalescing) and waited for, at most
 * `concurrency` of them at once over every chunk the process holds, and how each ended is recorded. The
 * lines that finish close together — of one chunk or of several — are recorded in one batch-record.lua call
 * per batch (a few commands for all of them), which counts each line once even when a chunk runs twice (its
 * runner died: BullMQ's stalled recovery gives the chunk to another, whose submissions join the finished
 * jobs and whose records of lines already recorded change nothing). A chunk's job completes only once all
 * its lines are recorded.
 */
export class BatchRunner {
  private readonly recorder: AsyncBatchProcessor<Recorded, number>;
  /** Items running now, and the callers waiting for a slot (FIFO). */
  private running = 0;
  private readonly slots: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(private readonly host: RunnerHost) {
    host.stop.addEventListener(
      'abort',
      () => {
        for (const s of this.slots.splice(0)) s.reject(new ClosedError('Batches'));
      },
      { once: true },
    );
    this.recorder = new AsyncBatchProcessor<Recorded, number>({
      handler: (lines, batchId) => this.recordNow(batchId, lines),
      keyOf: (l) => l.batchId,
      maxBatchSize: 256,
      // Lines finishing within 20 ms share one call (the results stream is polled every 200 ms anyway).
      maxWaitMs: 20,
      maxConcurrentBatches: 4,
      maxQueuedItems: 1_000_000,
    });
  }

  /** The processor of the batches queue's jobs. */
  async process(job: Job): Promise<unknown> {
    if (job.name === BatchJobName.GATE) return null;
    if (job.name === BatchJobName.BATCH) {
      // Every chunk has finished (the flow's guarantee): the batch's counts are final.
      const view = await this.host.view((job.data as { batchId: string }).batchId);
      return view ? { status: view.status, request_counts: view.request_counts } : null;
    }
    const { batchId, items } = chunkOf(job);
    const settled = await Promise.allSettled(items.map((it) => this.runItem(batchId, it)));
    // Redis trouble (or a close) ended some items unrecorded: the chunk is retried; recorded lines stay.
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return { items: items.length };
  }

  /**
   * One request of a chunk: waits for a slot, runs the request to its end, frees the slot and waits until
   * its line is recorded (the slot does not wait for the record call: lines are gathered for a few ms).
   */
  private async runItem(batchId: string, it: ItemSpec): Promise<void> {
    await this.acquire();
    let recorded: { done: Promise<void> };
    try {
      recorded = await this.runOne(batchId, it);
    } finally {
      this.release();
    }
    await recorded.done;
  }

  /**
   * Runs one request (or skips it: batch cancelled) and hands its line to the recorder; `done` is the record
   * (in an object: an async function would wait for a promise it returns).
   */
  private async runOne(batchId: string, it: ItemSpec): Promise<{ done: Promise<void> }> {
    const status = await this.host.status(batchId, false);
    if (status === undefined) return { done: Promise.resolve() };
    if (status === 'cancelling' || status === 'cancelled' || status === 'failed') {
      return {
        done: this.record(batchId, it, 'cancelled', {
          error: {
            code: ErrorCode.BATCH_CANCELLED,
            message:
              status === 'failed'
                ? 'not run: the batch failed before it started'
                : 'not run: the batch was cancelled before it started',
          },
        }),
      };
    }
    const item: ItemJobData = { batchId, ...it };
    const r = await runToEnd(this.host.client, item, this.host.itemWaitMs, this.host.stop);
    if (r.state === 'completed')
      return {
        done: this.record(batchId, it, 'completed', {
          job_id: r.jobId,
          cached: r.cached ?? false,
          result: r.result,
        }),
      };
    return {
      done: this.record(batchId, it, 'failed', {
        job_id: r.jobId,
        error: { code: r.code ?? ErrorCode.JOB_FAILED, message: r.message },
      }),
    };
  }

  private acquire(): Promise<void> {
    if (this.host.stop.aborted) return Promise.reject(new ClosedError('Batches'));
    if (this.running < this.host.concurrency) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.slots.push({ resolve, reject }));
  }

  private release(): void {
    const next = this.slots.shift();
    if (next) next.resolve();
    else this.running--;
  }

  /** Records how an item ended (once per line), in the next record call of its batch. */
  record(batchId: string, it: ItemSpec, status: ItemStatus, rest: Partial<BatchResultLine>): Promise<void> {
    const line: BatchResultLine = {
      custom_id: it.custom_id,
      line: it.line,
      status,
      queue: it.queue,
      ...rest,
    };
    return this.recorder
      .add({ batchId, line: it.line, status, text: JSON.stringify(line) })
      .then(() => undefined);
  }

  /** Records many items with one status (never-queued items of a cancelled batch), a call per 256. */
  async recordMany(batchId: string, items: readonly ItemSpec[], status: ItemStatus): Promise<void> {
    const error = {
      code: ErrorCode.BATCH_CANCELLED,
      message: 'not run: the batch was cancelled before it started',
    };
    await Promise.all(items.map((it) => this.record(batchId, it, status, { error })));
  }

  /** A chunk whose attempts are spent on Redis trouble: its lines not recorded yet are recorded failed. */
  async onFailed(job: Job | undefined, err: Error): Promise<void> {
    if (!job || (job.name !== BatchJobName.ITEMS && job.name !== BatchJobName.ITEM)) return;
    if (job.attemptsMade < (job.opts.attempts ?? 1)) return;
    const code = err instanceof Cell0Error ? err.code : ErrorCode.INTERNAL;
    const { batchId, items } = chunkOf(job);
    await Promise.all(
      items.map((it) => this.record(batchId, it, 'failed', { error: { code, message: err.message } })),
    ).catch((e: unknown) =>
      this.host.log.warn({ err: (e as Error).message }, 'could not record a failed batch item'),
    );
  }

  /** One batch-record.lua call for the lines of one batch. */
  private async recordNow(batchId: string, lines: Recorded[]): Promise<number[]> {
    const keys = batchKeys(this.host.prefix, batchId);
    const triples: (string | number)[] = [];
    for (const l of lines) triples.push(l.line, l.status, l.text);
    await this.host.redis((r) =>
      r.cell0BatchRecord(keys.meta, keys.done, keys.results, Date.now(), this.host.ttlSeconds, ...triples),
    );
    return lines.map(() => 1);
  }

  /** Waits for the lines handed over so far to be recorded. */
  close(): Promise<void> {
    return this.recorder.close();
  }
}

/** The batch and requests of an `items` job (or of an `item` job, a chunk of one). */
function chunkOf(job: Job): ItemsJobData {
  if (job.name === BatchJobName.ITEMS) return job.data as ItemsJobData;
  const { batchId, ...it } = job.data as ItemJobData;
  return { batchId, items: [it] };
}
