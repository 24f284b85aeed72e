import { type Job } from 'bullmq';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import { type Logger } from '../../shared/logger.js';
import { createRedisConnection, waitUntilReady } from '../../shared/redis/connection.js';
import { QueueName } from '../../shared/queues/names.js';
import { tokenStreamKeys } from '../../shared/queues/token-stream.js';
import { spanEvents } from '../../shared/tracing/tracing.js';
import { type CallContext } from '../providers/provider.js';
import { TokenStreamWriter } from '../token-stream-writer.js';
import { type ResolvedWorkerOptions } from './options.js';

/** What the worker's token streams need. */
export interface TokenStreamsOptions {
  redisUrl: string;
  prefix: string;
  /** Most entries a stream keeps. */
  maxLen: number;
  /** Lifetime of a stream after its last write, ms. */
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

  constructor(private readonly opts: TokenStreamsOptions) {}

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
    await waitUntilReady(this.connection(), 10_000).catch(() => undefined);
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

  /** The writer of one attempt of an inference job. */
  writerFor(job: Job): TokenStreamWriter {
    const jobId = job.id ?? '';
    return new TokenStreamWriter({
      redis: this.connection(),
      keys: tokenStreamKeys(this.opts.prefix, QueueName.INFERENCE, jobId),
      jobId,
      readMarks: (wanted, cancel) => this.readMarks(wanted, cancel),
      maxLen: this.opts.maxLen,
      ttlMs: this.opts.ttlMs,
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
