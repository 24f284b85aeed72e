import { performance } from 'node:perf_hooks';
import { FlowProducer, Job, Queue, Worker, type FlowJobNode, type JobsOptions } from 'bullmq';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import { Cell0Error, ErrorCode, ClosedError } from '../../shared/errors.js';
import { silentLogger, type Logger } from '../../shared/logger.js';
import { closeRedis, createRedisConnection } from '../../shared/redis/connection.js';
import { connectionLogFor } from '../../shared/redis/connection-log.js';
import { settledWithin, sleep } from '../../shared/sleep.js';
import { stopCutShortWorker } from '../../shared/queues/bullmq-internals.js';
import { withDefaults } from '../../shared/with-defaults.js';
import { type BatchClient } from './batch-client.js';
import { type BatchItem } from './batch-input.js';
import { DEFAULTS, type BatchesOptions } from './batch-options.js';
import { BatchRunner } from './batch-runner.js';
import {
  BATCH_QUEUE,
  BatchJobName,
  batchIndexKey,
  batchKeys,
  decodeBatch,
  defineBatchScripts,
  FINAL_STATUSES,
  isBatchId,
  newBatchId,
  type BatchCommands,
  type BatchStatus,
  type BatchView,
  type ItemsJobData,
  type OpenAIBatchInput,
} from './batch-model.js';
import { BatchFiles } from './batch-files.js';
import { telemetryOption } from '../../shared/tracing/tracing.js';
import { queuePrefix } from '../../shared/queues/names.js';

export { type BatchesOptions } from './batch-options.js';

/** A gate child waits this long at most; it is promoted as soon as the batch's last item is added. */
const GATE_DELAY_MS = 365 * 24 * 3600 * 1000;

/**
 * Batch jobs: many requests submitted as one, each run exactly like a single request (coalescing with
 * identical jobs, running or finished; the caches first), results collected per batch.
 *
 * A batch is a BullMQ flow (see batch-model.ts) whose children are chunks of its requests. When a runner
 * takes a chunk ({@link BatchRunner}), each request is submitted through the producer's {@link JobSubmitter}
 * — the same path as POST /v1/inference — and waited for, and its line is recorded with batch-record.lua,
 * which counts each line once even when a chunk runs twice (its runner died after recording). The runner's
 * concurrency bounds how many of a batch's requests are on the work queues at once, so a 50,000-item
 * batch does not flood them; the load shedder's refusals make an item wait and retry, never fail.
 */
export class Batches {
  readonly prefix: string;
  private readonly opts: Required<Omit<BatchesOptions, 'client' | 'logger'>>;
  private readonly client: BatchClient;
  private readonly log: Logger;
  private conn: (RedisConnection & BatchCommands) | undefined;
  private workerConn: RedisConnection | undefined;
  private queue: Queue | undefined;
  private flow: FlowProducer | undefined;
  private worker: Worker | undefined;
  private runner: BatchRunner | undefined;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  /** Batches still being added in the background. */
  private readonly adding = new Set<Promise<void>>();
  /** Status reads by batch: the read (in flight or done) and when it was made. */
  private readonly statusCache = new Map<string, { status: Promise<BatchStatus | undefined>; at: number }>();
  private readonly stop = new AbortController();
  private fileStore: BatchFiles | undefined;

  constructor(opts: BatchesOptions) {
    this.client = opts.client;
    this.opts = withDefaults(DEFAULTS, {
      ...(opts.runner !== undefined ? { runner: opts.runner } : {}),
      ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
      ...(opts.ttlSeconds !== undefined ? { ttlSeconds: opts.ttlSeconds } : {}),
      ...(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {}),
      ...(opts.itemsPerJob !== undefined ? { itemsPerJob: opts.itemsPerJob } : {}),
      ...(opts.itemWaitMs !== undefined ? { itemWaitMs: opts.itemWaitMs } : {}),
      ...(opts.statusCacheMs !== undefined ? { statusCacheMs: opts.statusCacheMs } : {}),
      ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
      ...(opts.lockDurationMs !== undefined ? { lockDurationMs: opts.lockDurationMs } : {}),
      ...(opts.stalledIntervalMs !== undefined ? { stalledIntervalMs: opts.stalledIntervalMs } : {}),
    });
    for (const k of [
      'concurrency',
      'ttlSeconds',
      'chunkSize',
      'itemsPerJob',
      'itemWaitMs',
      'pollMs',
    ] as const) {
      const v = this.opts[k];
      if (!(Number.isInteger(v) && v >= 1))
        throw new TypeError(`Batches: option "${k}" must be an integer >= 1, got ${String(v)}`);
    }
    this.prefix = this.client.submitter.prefix;
    this.log = opts.logger ?? silentLogger();
  }

  /** Connects (and starts the runner). Idempotent. */
  start(): Promise<void> {
    this.starting ??= (async () => {
      // A connection of its own: adding a chunk of a large batch is one MULTI that may take longer than
      // a single request's command timeout. It fails fast while Redis is away, as the producer's does.
      const conn = createRedisConnection({
        url: this.client.redisUrl,
        role: 'client',
        commandTimeoutMs: 60_000,
        connectionName: 'cell0:batches',
        logger: this.log,
      });
      this.conn = defineBatchScripts(conn);
      // A batch and its items are one flow on one queue: one hash tag, so one cluster slot.
      const prefix = queuePrefix(this.prefix, BATCH_QUEUE);
      this.queue = new Queue(BATCH_QUEUE, { connection: conn, prefix, ...telemetryOption() });
      this.flow = new FlowProducer({ connection: conn, prefix, ...telemetryOption() });
      const connLog = connectionLogFor(this.log);
      connLog.watch(this.queue, `queue:${BATCH_QUEUE}`);
      await this.queue.waitUntilReady();
      this.runner = new BatchRunner({
        client: this.client,
        prefix: this.prefix,
        concurrency: this.opts.concurrency,
        ttlSeconds: this.opts.ttlSeconds,
        itemWaitMs: this.opts.itemWaitMs,
        view: (id) => this.get(id),
        status: (id, fresh) => this.status(id, fresh),
        redis: (fn) => this.redis(fn),
        stop: this.stop.signal,
        log: this.log,
      });
      const runner = this.runner;
      if (!this.opts.runner) return;
      // A worker needs a connection whose commands wait for a reconnect (BullMQ's blocking fetch).
      this.workerConn = createRedisConnection({
        url: this.client.redisUrl,
        role: 'worker',
        connectionName: 'cell0:batch-runner',
        logger: this.log,
      });
      this.worker = new Worker(BATCH_QUEUE, (job: Job) => runner.process(job), {
        connection: this.workerConn,
        prefix: queuePrefix(this.prefix, BATCH_QUEUE),
        ...telemetryOption(),
        // Chunks held at once: twice what fills `concurrency` slots, plus one, so that while chunks finish
        // their last requests (and record them) and the next are fetched, the slots still have requests to
        // run (the runner itself caps the requests running at `concurrency`).
        concurrency: 2 * Math.ceil(this.opts.concurrency / this.opts.itemsPerJob) + 1,
        lockDuration: this.opts.lockDurationMs,
        stalledInterval: this.opts.stalledIntervalMs,
        autorun: true,
      });
      this.worker.on('error', (err) => this.log.warn({ err: err.message }, 'batch runner error'));
      this.worker.on('failed', (job, err) => void runner.onFailed(job, err));
      await this.worker.waitUntilReady();
    })();
    return this.starting;
  }

  /** The batches queue (for the dashboard). */
  getQueue(): Queue {
    if (!this.queue) throw new ClosedError('Batches');
    return this.queue;
  }

  /**
   * Creates a batch of validated items for `owner` (a tenant id, or '' for none) and starts adding its
   * jobs. Resolves once the batch exists and its first items are queued; the rest are added in the
   * background, a chunk per round trip.
   */
  async create(
    items: readonly BatchItem[],
    opts: { owner?: string; openai?: OpenAIBatchInput } = {},
  ): Promise<BatchView> {
    if (this.closing) throw new ClosedError('Batches');
    await this.start();
    if (items.length === 0) throw new TypeError('Batches.create: a batch needs at least one item');
    const id = newBatchId();
    const keys = batchKeys(this.prefix, id);
    const now = Date.now();
    await this.redis((r) =>
      r.hset(keys.meta, {
        status: 'validating',
        owner: opts.owner ?? '',
        total: items.length,
        completed: 0,
        failed: 0,
        cancelled: 0,
        created_at: now,
        ...(opts.openai ? { openai: JSON.stringify(opts.openai) } : {}),
      }),
    );
    // the owner's list of batches (GET /v1/batches), newest first; ids whose batch is gone are dropped as met
    const index = batchIndexKey(this.prefix, opts.owner ?? '');
    await this.redis(async (r) => {
      await r.zadd(index, now, id);
      await r.expire(index, this.opts.ttlSeconds + 3600 * 24 * 30);
    });
    const chunk = this.opts.chunkSize;
    const first = items.slice(0, chunk);
    const gated = items.length > chunk;
    const children: FlowJobNode[] = this.chunks(id, first);
    if (gated)
      children.unshift({
        name: BatchJobName.GATE,
        queueName: BATCH_QUEUE,
        data: { batchId: id },
        opts: { jobId: `${id}-gate`, delay: GATE_DELAY_MS, removeOnComplete: true },
      });
    try {
      await this.redis(() =>
        this.flow!.add({
          name: BatchJobName.BATCH,
          queueName: BATCH_QUEUE,
          data: { batchId: id, total: items.length },
          opts: {
            jobId: id,
            removeOnComplete: { age: this.opts.ttlSeconds },
            removeOnFail: { age: this.opts.ttlSeconds },
          },
          children,
        }),
      );
    } catch (err) {
      await this.failBatch(id, err).catch(() => undefined);
      throw err;
    }
    await this.redis((r) => r.cell0BatchTransition(keys.meta, 'validating', 'in_progress', Date.now()));
    if (gated) {
      const p = this.addRest(id, items.slice(chunk)).finally(() => this.adding.delete(p));
      this.adding.add(p);
    }
    return (await this.get(id))!;
  }

  /** The items jobs of requests: one per `itemsPerJob` of them, in order. */
  private chunks(
    batchId: string,
    items: readonly BatchItem[],
  ): { name: string; queueName: string; data: ItemsJobData; opts: JobsOptions }[] {
    const out = [];
    for (let i = 0; i < items.length; i += this.opts.itemsPerJob) {
      const data: ItemsJobData = {
        batchId,
        items: items.slice(i, i + this.opts.itemsPerJob).map((it) => ({
          line: it.line,
          custom_id: it.custom_id,
          queue: it.queue,
          data: it.data,
        })),
      };
      out.push({ name: BatchJobName.ITEMS, queueName: BATCH_QUEUE, data, opts: this.itemOpts() });
    }
    return out;
  }

  private itemOpts(): JobsOptions {
    return {
      // Redis trouble while an item runs: retried. What the item's own job does is recorded, not retried here.
      attempts: 5,
      backoff: { type: 'exponential', delay: 1000 },
      // The result is in the batch's results stream; the item job has nothing more to keep.
      removeOnComplete: true,
      removeOnFail: { age: this.opts.ttlSeconds },
      // An item that failed for good is recorded as failed; it must not hold its batch open.
      ignoreDependencyOnFailure: true,
    };
  }

  /** Adds a large batch's remaining items, a chunk per round trip, then opens the gate. */
  private async addRest(id: string, rest: readonly BatchItem[]): Promise<void> {
    const queue = this.queue!;
    const parent = { id, queue: queue.qualifiedName };
    try {
      for (let i = 0; i < rest.length; i += this.opts.chunkSize) {
        const part = rest.slice(i, i + this.opts.chunkSize);
        if ((await this.status(id, true)) === 'cancelling') {
          // Cancelled while being added: what was not added is recorded cancelled, never queued.
          await this.recordCancelled(id, rest.slice(i));
          break;
        }
        await this.redis(() =>
          queue.addBulk(
            this.chunks(id, part).map((c) => ({ name: c.name, data: c.data, opts: { ...c.opts, parent } })),
          ),
        );
      }
    } catch (err) {
      this.log.error({ batchId: id, err: (err as Error).message }, 'could not add all of a batch');
      await this.failBatch(id, err).catch(() => undefined);
    } finally {
      try {
        const gate = await this.redis(() => Job.fromId(queue, `${id}-gate`));
        await gate?.promote();
      } catch (err) {
        this.log.warn({ batchId: id, err: (err as Error).message }, 'could not open a batch gate');
      }
    }
  }

  /** A batch that could not be enqueued whole: status failed, with the reason. */
  private async failBatch(id: string, err: unknown): Promise<void> {
    const keys = batchKeys(this.prefix, id);
    const code = err instanceof Cell0Error ? err.code : ErrorCode.INTERNAL;
    await this.redis(async (r) => {
      await r.hset(keys.meta, 'errors', JSON.stringify([{ code, message: (err as Error).message }]));
      await r.cell0BatchTransition(keys.meta, 'validating,in_progress,cancelling', 'failed', Date.now());
    });
  }

  /**
   * A batch's view, or undefined when there is none with that id — or, with `owner`, none of that tenant
   * (another tenant's batch is answered exactly as an unknown one, after the same one read).
   */
  async get(id: string, opts: { owner?: string } = {}): Promise<BatchView | undefined> {
    if (!isBatchId(id)) return undefined;
    await this.start();
    const h = await this.redis((r) => r.hgetall(batchKeys(this.prefix, id).meta));
    if (opts.owner !== undefined && h.owner !== opts.owner) return undefined;
    return decodeBatch(id, h);
  }

  /**
   * The owner's batches, newest first: at most `limit`, those created before `after` (a batch id) when
   * given. Batches whose retention ended are left out (and dropped from the list).
   */
  async list(owner: string, opts: { limit: number; after?: string }): Promise<BatchView[]> {
    await this.start();
    const index = batchIndexKey(this.prefix, owner);
    let ids: string[];
    if (opts.after !== undefined) {
      const score = await this.redis((r) => r.zscore(index, opts.after!));
      if (score === null) return [];
      // newest first after `after`: lower scores, and equal scores ordered after it
      const older = await this.redis((r) => r.zrevrangebyscore(index, score, '-inf'));
      ids = older.slice(older.indexOf(opts.after) + 1);
    } else ids = await this.redis((r) => r.zrevrange(index, 0, -1));
    const out: BatchView[] = [];
    const gone: string[] = [];
    for (let i = 0; i < ids.length && out.length < opts.limit; i += 100) {
      const part = ids.slice(i, i + 100);
      const views = await Promise.all(part.map((id) => this.get(id, { owner })));
      for (let k = 0; k < part.length && out.length < opts.limit; k++) {
        const v = views[k];
        if (v) out.push(v);
        else gone.push(part[k]!);
      }
    }
    if (gone.length > 0) await this.redis((r) => r.zrem(index, ...gone));
    return out;
  }

  /**
   * Cancels a batch: items not yet started are not run (recorded `cancelled`); running ones finish. The
   * batch is `cancelling` until then, `cancelled` after. A finished batch is left as it is. Undefined when
   * there is no such batch (for `owner`).
   */
  async cancel(id: string, opts: { owner?: string } = {}): Promise<BatchView | undefined> {
    const view = await this.get(id, opts);
    if (!view) return undefined;
    const keys = batchKeys(this.prefix, id);
    await this.redis((r) =>
      r.cell0BatchTransition(keys.meta, 'validating,in_progress', 'cancelling', Date.now()),
    );
    this.statusCache.delete(id);
    return this.get(id, opts);
  }

  /**
   * The batch's result lines (JSON text) in the order its items finished. With `follow` (default) it
   * waits for new lines until the batch is finished; without, it ends at the lines there are now.
   * Undefined when there is no such batch (for `owner`).
   */
  async results(
    id: string,
    opts: { owner?: string; follow?: boolean; signal?: AbortSignal } = {},
  ): Promise<AsyncIterable<string[]> | undefined> {
    const view = await this.get(id, opts);
    if (!view) return undefined;
    return this.readResults(id, opts.follow ?? true, opts.signal);
  }

  private async *readResults(id: string, follow: boolean, signal?: AbortSignal): AsyncGenerator<string[]> {
    const keys = batchKeys(this.prefix, id);
    let last = '-';
    let read = 0;
    for (;;) {
      if (signal?.aborted || this.closing) return;
      const entries = await this.redis((r) =>
        r.xrange(keys.results, last === '-' ? '-' : `(${last}`, '+', 'COUNT', 1000),
      );
      if (entries.length > 0) {
        last = entries[entries.length - 1]![0];
        // An entry holds the lines of one record call: a field "l" per line.
        const lines: string[] = [];
        for (const [, fields] of entries) for (let i = 1; i < fields.length; i += 2) lines.push(fields[i]!);
        read += lines.length;
        yield lines;
        continue;
      }
      if (!follow) return;
      const h = await this.redis((r) => r.hmget(keys.meta, 'status', 'completed', 'failed', 'cancelled'));
      // Gone (retention ended) or finished with every recorded line read: the stream is complete.
      if (h[0] === null) return;
      const recorded = Number(h[1]) + Number(h[2]) + Number(h[3]);
      if (FINAL_STATUSES.includes(h[0] as BatchStatus) && read >= recorded) return;
      try {
        await sleep(this.opts.pollMs, signal ? { signal } : {});
      } catch {
        return;
      }
    }
  }

  /** Records never-queued items of a cancelled batch as cancelled (a few record calls for all of them). */
  private recordCancelled(batchId: string, items: readonly BatchItem[]): Promise<void> {
    return this.runner!.recordMany(batchId, items, 'cancelled');
  }

  /** The batch's status, read at most every statusCacheMs per batch (fresh: read now). */
  private status(id: string, fresh: boolean): Promise<BatchStatus | undefined> {
    const c = this.statusCache.get(id);
    const now = Date.now();
    // Callers that come while a read is in flight share it (a chunk's items all ask at once).
    if (!fresh && c && now - c.at < this.opts.statusCacheMs) return c.status;
    const status = this.redis((r) => r.hget(batchKeys(this.prefix, id).meta, 'status')).then(
      (s) => (s ?? undefined) as BatchStatus | undefined,
    );
    if (this.statusCache.size > 10_000) this.statusCache.clear();
    const entry = { status, at: now };
    this.statusCache.set(id, entry);
    // A failed read is not kept: the next caller reads again.
    status.catch(() => {
      if (this.statusCache.get(id) === entry) this.statusCache.delete(id);
    });
    return status;
  }

  /** The input files of OpenAI-shaped batches (POST /v1/files), kept as long as batches are. */
  get files(): BatchFiles {
    return (this.fileStore ??= new BatchFiles(
      async (fn) => {
        await this.start();
        return this.redis(fn);
      },
      this.prefix,
      this.opts.ttlSeconds,
    ));
  }

  /** A Redis call through the producer's breaker. */
  private redis<T>(fn: (r: RedisConnection & BatchCommands) => Promise<T>): Promise<T> {
    if (!this.conn) throw new ClosedError('Batches');
    const conn = this.conn;
    return this.client.submitter.redis.run(() => fn(conn));
  }

  /**
   * Stops the runner (items in progress are left to BullMQ's stalled recovery), waits for batches still
   * being added, closes the queue. Idempotent. The steps share one budget of `graceMs`; with Redis
   * unreachable (its connections made but none ready) they do not wait at all, since BullMQ's closes would only wait for a
   * reconnect and the items in progress are recovered by the stalled check either way.
   */
  close(graceMs = 2000): Promise<void> {
    this.closing ??= (async () => {
      // Connected once and none ready now: Redis is gone. (Still starting: the full budget.)
      const down =
        this.conn !== undefined && ![this.conn, this.workerConn].some((c) => c?.status === 'ready');
      const until = performance.now() + (down ? 0 : graceMs);
      const left = () => Math.max(0, until - performance.now());
      await settledWithin(this.starting ?? Promise.resolve(), left());
      await settledWithin(Promise.allSettled([...this.adding]), left());
      if (this.worker) {
        const w = this.worker;
        const closed = w.close();
        if (!(await settledWithin(closed, left()))) {
          this.stop.abort();
          // A close cut short leaves BullMQ's lock extender and stalled checker re-arming and its fetch loop
          // reconnecting (they would hold the process open, retrying a Redis that is gone): stop them.
          if (!(await settledWithin(w.close(true), left()))) await stopCutShortWorker(w);
        }
      }
      this.stop.abort();
      await settledWithin(this.runner?.close() ?? Promise.resolve(), left());
      await settledWithin(Promise.allSettled([this.queue?.close(), this.flow?.close()]), left());
      if (this.workerConn) await closeRedis(this.workerConn);
      if (this.conn) await closeRedis(this.conn);
    })();
    return this.closing;
  }
}
