import { type RedisConnection } from '../shared/redis/cluster.js';
import { JobCancelledError } from '../shared/errors.js';
import { type Logger } from '../shared/logger.js';
import {
  encodeEntry,
  type StreamUsage,
  type TokenStreamEntry,
  type TokenStreamKeys,
} from '../shared/queues/token-stream.js';

/** Options of {@link TokenStreamWriter}. */
export interface TokenStreamWriterOptions {
  /** A non-blocking connection the writes go on. */
  redis: RedisConnection;
  /**
   * Reads the `wanted` and `cancel` marks (default: one MGET on `redis`); the worker passes a reader that
   * gathers the marks of the attempts starting together into one MGET.
   */
  readMarks?: (wanted: string, cancel: string) => Promise<(string | null)[]>;
  keys: TokenStreamKeys;
  jobId: string;
  /** Most entries kept (XADD MAXLEN ~). */
  maxLen: number;
  /** Lifetime of the stream after its last write, ms. */
  ttlMs: number;
  logger: Logger;
}

/**
 * Writes one attempt of one job to its token stream (see shared/queues/token-stream.ts). `open()` reads the
 * `wanted` and `cancel` marks in one round trip; when nobody asked for a stream the writer stays inactive
 * and costs nothing more. Text is written as it arrives, one XADD in flight at a time: tokens that arrive
 * meanwhile go out together in the next one, so a fast backend costs a few writes per round trip, never
 * one per token, and the first token is never held back. Every write also reads `cancel`: once set, the
 * attempt's signal aborts with JobCancelledError. A failed write is logged and never fails the job; the
 * readers then fall back to the job's result.
 */
export class TokenStreamWriter {
  /** Aborted (with JobCancelledError) when the last reader left. */
  readonly signal: AbortSignal;
  private readonly ac = new AbortController();
  private active = false;
  private pending = '';
  private seq = 0;
  private flushing: Promise<void> | undefined;
  private failed = false;
  private attempt = 0;
  /** A restart to announce with the next write. */
  private restartPending = false;

  constructor(private readonly opts: TokenStreamWriterOptions) {
    this.signal = this.ac.signal;
  }

  /** True when a caller asked for the stream (text is being written). */
  get streaming(): boolean {
    return this.active;
  }

  /**
   * Starts the attempt: throws JobCancelledError when the job was cancelled before it ran; when the stream
   * is wanted, empties it (a retry starts over; the stream keeps its last id, so readers see only newer
   * entries) and writes the start entry.
   */
  async open(attempt: number): Promise<void> {
    const { redis, keys } = this.opts;
    let marks: (string | null)[];
    try {
      marks = await (this.opts.readMarks
        ? this.opts.readMarks(keys.wanted, keys.cancel)
        : redis.mget(keys.wanted, keys.cancel));
    } catch (err) {
      // Without the marks the job still runs; its streaming callers get the answer when it completes.
      this.opts.logger.warn({ jobId: this.opts.jobId, err }, 'could not read the token stream marks');
      return;
    }
    if (marks[1] != null) {
      // A cancel mark is used up by the attempt that honours it: a later re-run of the job is not stopped.
      await redis.del(keys.cancel).catch(() => undefined);
      throw new JobCancelledError(this.opts.jobId);
    }
    if (marks[0] == null) return;
    this.active = true;
    this.attempt = attempt;
    // A retry starts over: the stream is emptied but keeps its last id, so readers see only newer entries.
    this.restartPending = true;
    try {
      await redis.multi().xtrim(keys.stream, 'MAXLEN', 0).exec();
    } catch (err) {
      this.failed = true;
      this.opts.logger.warn({ jobId: this.opts.jobId, err }, 'could not write the token stream');
      return;
    }
    await this.write();
  }

  /** Adds text; written at once when no write is in flight, else with the next one. */
  push(text: string): void {
    if (!this.active || text.length === 0) return;
    this.pending += text;
    this.flushing ??= this.flush();
  }

  /**
   * The backend call starts over (a retry within the attempt): text not yet written is dropped, and a new
   * start entry tells readers that what they received so far is void.
   */
  restart(): void {
    if (!this.active) return;
    this.pending = '';
    this.seq = 0;
    this.restartPending = true;
    this.flushing ??= this.flush();
  }

  /** Writes what is pending and the end entry; resolves once it is in Redis (before the job completes). */
  async end(e: { finishReason: string; model: string; usage: StreamUsage }): Promise<void> {
    if (!this.active) return;
    await this.flushing;
    if (this.pending.length > 0) await this.write();
    await this.write({ kind: 'end', ...e });
  }

  private async flush(): Promise<void> {
    try {
      while (this.pending.length > 0 || this.restartPending) await this.write();
    } finally {
      this.flushing = undefined;
    }
  }

  /** One round trip: the pending text (or `extra`), the expiry, and a look at `cancel`. */
  private async write(extra?: TokenStreamEntry): Promise<void> {
    const { redis, keys } = this.opts;
    const entries: TokenStreamEntry[] = [];
    if (this.restartPending) {
      this.restartPending = false;
      this.seq = 0;
      entries.push({ kind: 'start', attempt: this.attempt });
    }
    if (this.pending.length > 0 && !extra)
      entries.push({ kind: 'text', seq: this.seq++, text: this.pending });
    if (extra) entries.push(extra);
    if (!extra) this.pending = '';
    if (this.failed || entries.length === 0) return;
    try {
      const m = redis.multi();
      for (const e of entries) m.xadd(keys.stream, 'MAXLEN', '~', this.opts.maxLen, '*', ...encodeEntry(e));
      const r = await m.pexpire(keys.stream, this.opts.ttlMs).exists(keys.cancel).exec();
      if (r?.[entries.length + 1]?.[1] === 1 && !this.ac.signal.aborted) {
        this.active = false;
        this.ac.abort(new JobCancelledError(this.opts.jobId));
        await redis.del(keys.cancel);
      }
    } catch (err) {
      // Readers fall back to the job's result; the generation itself goes on.
      this.failed = true;
      this.opts.logger.warn({ jobId: this.opts.jobId, err }, 'could not write the token stream');
    }
  }
}
