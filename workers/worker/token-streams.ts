import { type Job } from 'bullmq';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import { type Logger } from '../../shared/logger.js';
import { createRedisConnection, waitUntilReady } from '../../shared/redis/connection.js';
import { QueueName, queueKey } from '../../shared/queues/names.js';
import { marksGateKey, tokenStreamKeys, type LocalStreamReaders } from '../../shared/queues/token-stream.js';
import { spanEvents } from '../../shared/tracing/tracing.js';
import { type CallContext } from '../providers/provider.js';
import { FlushPacer, TokenStreamWriter } from '../token-stream-writer.js';
import { hookFetches } from '../../shared/queues/bullmq-internals.js';
import { readMarksWithFinishes } from '../../shared/queues/finish-batch.js';
import { defineScripts, luaScript } from '../../shared/redis/lua-scripts.js';

/** How long marks read behind a fetch wait for their job to start (the job of another worker never does). */
const PREFETCH_KEEP_MS = 5000;
const ACTIVE_MARKS = 'cell0ActiveMarks';
/** The marks of an attempt nobody asked to stream or cancel (shared: read only). */
const UNMARKED: readonly (string | null)[] = Object.freeze([null, null]);
/** The inference queue's key ({prefix}:inference): its first shard, where every job's marks are kept. */
const inferenceKey = (prefix: string) => queueKey(prefix, QueueName.INFERENCE);
type ActiveMarksCommand = (
  activeKey: string,
  gateKey: string,
  jobKeyPrefix: string,
  count: number,
) => Promise<unknown>;

/** The fetches of one tick and the read of their jobs' marks sent behind them. */
interface PrefetchBatch {
  fetches: number;
  /**
   * The answers of the batch's fetches that have come (each names the job it activated, if any). Their
   * replies come before the read's own (same connection, answered in order); a fetch whose promise settles
   * a little later than its reply (finishes sent in one batched call, shared/queues/finish-batch.ts) is
   * waited for through `fetched` before they are used.
   */
  answers: unknown[];
  /** The fetches' promises (settled when their answers are in `answers`). */
  fetched: Promise<unknown>[];
  /** A fetch of the batch has been answered. */
  answered: boolean;
  done?: Promise<void>;
  settled: boolean;
}
import { type ResolvedWorkerOptions } from './options.js';

/** What the worker's token streams need. */
export interface TokenStreamsOptions {
  redisUrl: string;
  prefix: string;
  /** Most entries a stream keeps. */
  maxLen: number;
  /** Lifetime of a stream after its end (at least half of it after any write), ms. */
  ttlMs: number;
  rootLogger: Logger;
  log: Logger;
  /** Hands the connection to the worker, which closes it with its others. */
  adopt: (conn: RedisConnection) => void;
}

/**
 * The worker's side of token streams (see shared/queues/token-stream.ts): one connection of their own, so
 * stream writes never queue behind BullMQ's commands, and a writer per inference attempt.
 */
export class TokenStreams {
  private conn: RedisConnection | undefined;
  /** Mark reads waiting for the next MGET (sent once per tick: attempts that start together share it). */
  private marks: {
    keys: [string, string];
    resolve: (v: (string | null)[]) => void;
    reject: (e: unknown) => void;
  }[] = [];

  /** Marks read behind fetches, by `jobId@processedOn`; two generations, swapped every PREFETCH_KEEP_MS. */
  private prefetched = new Map<string, readonly (string | null)[]>();
  private olderPrefetched = new Map<string, readonly (string | null)[]>();
  /** Reads behind fetches that have been answered, whose own answer is next. */
  private readonly imminent = new Set<Promise<void>>();
  private rotate: NodeJS.Timeout | undefined;
  private readonly counts = { behindFetch: 0, atStart: 0 };
  /** The text-write interval of this worker's streams, from how many have text waiting (see FlushPacer). */
  private readonly pacer = new FlushPacer();
  /** The token stream readers of this process, if any (see {@link relayTo}). */
  private relay: LocalStreamReaders | undefined;

  constructor(private readonly opts: TokenStreamsOptions) {}

  /**
   * From now on, the writers of the attempts that start hand their entries to `readers` (the API's hub in
   * `cell0 start`) as they write them, besides writing them to Redis: see LocalStreamReaders.
   */
  relayTo(readers: LocalStreamReaders): void {
    this.relay = readers;
  }

  /** Stops the prefetch's clean-up timer (the connections are the worker's to close). Idempotent. */
  close(): void {
    clearInterval(this.rotate);
  }

  /** A worker's token streams: undefined when streams are off or the worker does not serve inference. */
  static forWorker(
    opts: Pick<ResolvedWorkerOptions, 'tokenStreams' | 'queues' | 'redisUrl' | 'prefix'>,
    parts: Pick<TokenStreamsOptions, 'rootLogger' | 'log' | 'adopt'>,
  ): TokenStreams | undefined {
    const ts = opts.tokenStreams;
    if (ts === false || ts === undefined || !opts.queues.includes(QueueName.INFERENCE)) return undefined;
    return new TokenStreams({
      redisUrl: opts.redisUrl,
      prefix: opts.prefix,
      maxLen: ts.maxLen ?? 10_000,
      ttlMs: ts.ttlMs ?? 300_000,
      ...parts,
    });
  }

  /** Opens the connection; resolves once it is ready (or after 10 s: writes then wait for it). */
  async start(): Promise<void> {
    const conn = this.connection();
    await waitUntilReady(conn, 10_000).catch(() => undefined);
    // The stream writes' script, loaded now: the first stream's first write is then one EVALSHA, not an
    // EVALSHA refused (NOSCRIPT) and an EVAL after it, a round trip more on its first token.
    await conn.script('LOAD', luaScript('token-write').lua).catch(() => undefined);
  }

  private connection(): RedisConnection {
    if (!this.conn) {
      this.conn = createRedisConnection({
        url: this.opts.redisUrl,
        role: 'worker',
        connectionName: 'cell0:worker:tokens',
        logger: this.opts.rootLogger,
      });
      this.opts.adopt(this.conn);
    }
    return this.conn;
  }

  /**
   * From now on, reads the marks of the jobs fetched on `conn` (the inference queue's BullMQ connection)
   * with their fetches, so that a job starts with its marks at hand instead of a round trip of its own
   * before the backend call: a job fetched by a finish gets them from the finish's own script call when the
   * finishes are batched with replies (finish-batch.ts readMarksWithFinishes), any other fetch has them read
   * right behind it (active-marks.lua: one command for the fetches of a tick). Call it once BullMQ has loaded
   * its scripts on `conn` (and after batchFinishes). Returns false, and the marks are read as each job
   * starts, when `queueKey` is not the inference queue's first shard (the one whose slot holds every job's
   * marks) or BullMQ's fetches could not be hooked.
   */
  readMarksBehindFetches(conn: RedisConnection, queueKey: string): boolean {
    if (queueKey !== inferenceKey(this.opts.prefix)) return false;
    defineScripts(conn, 'active-marks');
    const activeKey = `${queueKey}:active`;
    const gateKey = marksGateKey(this.opts.prefix, QueueName.INFERENCE);
    const jobKeyPrefix = `${queueKey}:`;
    this.rotate ??= setInterval(() => {
      this.olderPrefetched = this.prefetched;
      this.prefetched = new Map();
    }, PREFETCH_KEEP_MS);
    this.rotate.unref();
    let batch: PrefetchBatch | undefined;
    const send = (b: PrefetchBatch) => {
      batch = undefined;
      b.done = (conn as unknown as Record<string, ActiveMarksCommand>)[ACTIVE_MARKS]!(
        activeKey,
        gateKey,
        jobKeyPrefix,
        b.fetches,
      ).then(
        async (r) => {
          if (r === 0) {
            await Promise.allSettled(b.fetched);
            this.keepUnmarked(b.answers);
          } else this.keepPrefetched(r);
          this.settled(b);
        },
        () => this.settled(b),
      );
      if (b.answered) this.imminent.add(b.done);
    };
    // The jobs a finish fetches get their marks in the finish's own script call (finish-batch.ts), handed
    // over before BullMQ has them; the read below then follows only BullMQ's moveToActive fetches.
    const withFinishes = readMarksWithFinishes(conn, {
      gateKey,
      jobKeyPrefix,
      onFetched: (jobId, processedOn, marks) => {
        this.prefetched.set(
          `${jobId}@${processedOn}`,
          marks[0] == null && marks[1] == null ? UNMARKED : marks,
        );
      },
    });
    return hookFetches(
      conn,
      (answered) => {
        if (!batch) {
          const b: PrefetchBatch = (batch = {
            fetches: 0,
            answers: [],
            fetched: [],
            answered: false,
            settled: false,
          });
          // Behind every fetch of this tick (BullMQ sends them from promise callbacks, which run first).
          process.nextTick(() => send(b));
        }
        const b = batch;
        b.fetches++;
        // Once a fetch is answered, the read right behind it is about to be: a job that starts meanwhile
        // waits for it rather than reading its marks again.
        b.fetched.push(
          answered.then(
            (r) => {
              b.answers.push(r);
              b.answered = true;
              if (b.done && !b.settled) this.imminent.add(b.done);
            },
            () => undefined,
          ),
        );
      },
      !withFinishes,
    );
  }

  /**
   * The marks gate of the queue `queueKey` when the marks of its jobs are kept as read behind their fetch
   * (the inference queue's first shard, once {@link readMarksBehindFetches} runs on it): a take behind a
   * producer's adds (local-take.ts) reads them too, and hands them over through {@link keepMarks}.
   */
  marksGate(queueKey: string): string | undefined {
    return this.rotate && queueKey === inferenceKey(this.opts.prefix)
      ? marksGateKey(this.opts.prefix, QueueName.INFERENCE)
      : undefined;
  }

  /** The marks of a job's activation (its `processedOn`), read with the call that activated it. */
  keepMarks(jobId: string, processedOn: number, marks: readonly (string | null)[]): void {
    this.prefetched.set(`${jobId}@${processedOn}`, marks[0] == null && marks[1] == null ? UNMARKED : marks);
  }

  /** The read behind a batch of fetches is answered (or failed). */
  private settled(b: PrefetchBatch): void {
    b.settled = true;
    if (b.done) this.imminent.delete(b.done);
  }

  /** Marks taken so far: read behind the job's fetch, or read as the job started. */
  marksStats(): { behindFetch: number; atStart: number } {
    return { ...this.counts };
  }

  private keepPrefetched(r: unknown): void {
    if (!Array.isArray(r)) return;
    const a = r as (string | null | undefined)[];
    for (let i = 0; i + 3 < a.length; i += 4) {
      const jobId = a[i];
      const processedOn = a[i + 1];
      if (typeof jobId === 'string' && typeof processedOn === 'string')
        this.prefetched.set(`${jobId}@${processedOn}`, [a[i + 2] ?? null, a[i + 3] ?? null]);
    }
  }

  /**
   * The read behind the fetches found no mark in the queue: each job those fetches activated (named, with
   * its activation's `processedOn`, in the fetch's answer: BullMQ's [job fields, jobId, ...]) starts
   * unmarked. The fetches ran before the read, so this holds for their activations; the answers are in
   * by now (same connection, answered in order).
   */
  private keepUnmarked(answers: unknown[]): void {
    for (const answer of answers) {
      if (!Array.isArray(answer)) continue;
      const [fields, jobId] = answer as unknown[];
      if (!Array.isArray(fields) || typeof jobId !== 'string') continue;
      let processedOn = NaN;
      for (let i = 0; i + 1 < fields.length; i += 2)
        if (fields[i] === 'processedOn') processedOn = Number(fields[i + 1]);
      if (Number.isFinite(processedOn)) this.prefetched.set(`${jobId}@${processedOn}`, UNMARKED);
    }
  }

  /** The prefetched marks of one activation of a job, taken (each is used once). */
  private takePrefetched(key: string): readonly (string | null)[] | undefined {
    const hit = this.prefetched.get(key) ?? this.olderPrefetched.get(key);
    if (hit) {
      this.prefetched.delete(key);
      this.olderPrefetched.delete(key);
    }
    return hit;
  }

  /**
   * The marks of the attempt that started with the fetch stamped `processedOn`: read behind that fetch when
   * that read answered for this very activation, else read now (with those of the others starting in this
   * tick).
   */
  private async marksOf(jobId: string, processedOn: number | undefined): Promise<readonly (string | null)[]> {
    if (processedOn !== undefined && this.rotate) {
      const key = `${jobId}@${processedOn}`;
      let hit = this.takePrefetched(key);
      if (!hit && this.imminent.size > 0) {
        // Usually one read is on its way: waited for without gathering the set.
        await (this.imminent.size === 1 ? this.imminent.values().next().value : Promise.all(this.imminent));
        hit = this.takePrefetched(key);
      }
      if (hit) {
        this.counts.behindFetch++;
        return hit;
      }
    }
    this.counts.atStart++;
    const keys = tokenStreamKeys(this.opts.prefix, QueueName.INFERENCE, jobId);
    return this.readMarks(keys.wanted, keys.cancel);
  }

  /**
   * The writer of the attempt of an inference job that has just started, opened (see
   * TokenStreamWriter.openWith), or undefined when nobody asked for its stream or to cancel it: most jobs
   * are not streamed, and they cost no writer, no keys and no extra round trip. Throws JobCancelledError
   * when the job was cancelled before it ran. When the marks cannot be read the job runs without a stream
   * (its streaming callers get the answer when it completes).
   */
  openFor(job: Job): TokenStreamWriter | undefined | Promise<TokenStreamWriter | undefined> {
    const jobId = job.id ?? '';
    const processedOn = job.processedOn;
    // Read behind the job's fetch (the usual case): decided without a promise when it is unmarked.
    const hit =
      processedOn !== undefined && this.rotate ? this.takePrefetched(`${jobId}@${processedOn}`) : undefined;
    if (hit) {
      this.counts.behindFetch++;
      return hit[0] == null && hit[1] == null ? undefined : this.opened(job, hit);
    }
    return this.openLater(job);
  }

  private async openLater(job: Job): Promise<TokenStreamWriter | undefined> {
    const jobId = job.id ?? '';
    let marks: readonly (string | null)[];
    try {
      marks = await this.marksOf(jobId, job.processedOn);
    } catch (err) {
      this.opts.log.warn({ jobId, err }, 'could not read the token stream marks');
      return undefined;
    }
    return marks[0] == null && marks[1] == null ? undefined : this.opened(job, marks);
  }

  /** A writer for the attempt, opened with its marks (one of them set). */
  private async opened(job: Job, marks: readonly (string | null)[]): Promise<TokenStreamWriter> {
    const writer = this.writerFor(job);
    await writer.openWith(marks, job.attemptsStarted);
    return writer;
  }

  /** The writer of one attempt of an inference job (unopened). */
  writerFor(job: Job): TokenStreamWriter {
    const jobId = job.id ?? '';
    const processedOn = job.processedOn;
    return new TokenStreamWriter({
      redis: this.connection(),
      keys: tokenStreamKeys(this.opts.prefix, QueueName.INFERENCE, jobId),
      jobId,
      readMarks: () => this.marksOf(jobId, processedOn),
      maxLen: this.opts.maxLen,
      ttlMs: this.opts.ttlMs,
      pacer: this.pacer,
      ...(this.relay ? { relay: this.relay } : {}),
      logger: this.opts.log,
    });
  }

  /** The `wanted` and `cancel` marks of one attempt, read with those of the others starting in this tick. */
  private readMarks(wanted: string, cancel: string): Promise<(string | null)[]> {
    return new Promise((resolve, reject) => {
      if (this.marks.length === 0) process.nextTick(() => this.flushMarks());
      this.marks.push({ keys: [wanted, cancel], resolve, reject });
    });
  }

  private flushMarks(): void {
    const batch = this.marks;
    this.marks = [];
    this.connection()
      .mget(batch.flatMap((m) => m.keys))
      .then(
        (values) => batch.forEach((m, i) => m.resolve([values[2 * i] ?? null, values[2 * i + 1] ?? null])),
        (err: unknown) => batch.forEach((m) => m.reject(err)),
      );
  }
}

/**
 * The backend call's token callbacks for an attempt whose stream is wanted (none otherwise). Call it in the
 * backend call's span: with tracing on, the first token from the backend and the moment it is in Redis are
 * events of that span (the stage timings of a streamed first token, see docs/benchmarks.md).
 */
export function streamCallbacks(
  stream: TokenStreamWriter | undefined,
): Pick<CallContext, 'onToken' | 'onRestart'> {
  if (!stream?.streaming) return {};
  const mark = spanEvents();
  if (!mark) return { onToken: (t) => stream.push(t), onRestart: () => stream.restart() };
  stream.onFirstText = () => mark('first token stored');
  let first = true;
  return {
    onToken: (t) => {
      if (first && t.length > 0) {
        first = false;
        mark('first token');
      }
      stream.push(t);
    },
    onRestart: () => stream.restart(),
  };
}
