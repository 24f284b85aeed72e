import { type RedisConnection } from '../shared/redis/cluster.js';
import { defineScripts } from '../shared/redis/lua-scripts.js';
import { flushWritesOf } from '../shared/redis/connection.js';
import { JobCancelledError } from '../shared/errors.js';
import { type Logger } from '../shared/logger.js';
import {
  encodeEntry,
  type LocalStreamReaders,
  type LocalStreamWrite,
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
  readMarks?: (wanted: string, cancel: string) => Promise<readonly (string | null)[]>;
  keys: TokenStreamKeys;
  jobId: string;
  /** Most entries kept (XADD MAXLEN ~). */
  maxLen: number;
  /**
   * Lifetime of the stream after its end entry, ms; while it is written, renewed at most every half of it (a
   * stream never has less than half of it left).
   */
  ttlMs: number;
  /**
   * Least time between the starts of two text writes, ms (default 20): the first text goes out at once,
   * later tokens wait at most this long and go out together (one XADD for several tokens). The end, a
   * restart and a cancel check never wait for it. 0 writes whenever no write is in flight.
   */
  flushMs?: number;
  /**
   * Shared by the writers of one process: while many streams have text waiting, their interval grows
   * (see {@link FlushPacer}) and `flushMs` is not used. Without it the interval is always `flushMs`.
   */
  pacer?: FlushPacer;
  /** The clock the interval is measured on (ms). Default performance.now. */
  now?: () => number;
  /**
   * The token stream readers of this process (`cell0 start`: the API's hub): each write's entries are
   * handed to them as the write is sent, besides going to Redis (see {@link LocalStreamReaders}).
   */
  relay?: LocalStreamReaders;
  logger: Logger;
}

/**
 * shared/lua/token-write.lua: the writes gathered on a connection, `numKeys` (two per write: stream, cancel)
 * first, then the keys, the number of writes and each write's values. Per write: 1 (cancel honoured), 0
 * (written) or the error's message.
 */
type TokenWrite = (numKeys: number, ...args: (string | number)[]) => Promise<(number | string | string[])[]>;

/** A write's answer: 1 when a cancel was honoured (nothing written), else the id of its last entry, if any. */
type WriteAnswer = 1 | { lastId: string | undefined };

/** The writes gathered for one script call. */
interface GatheredWrites {
  keys: string[];
  args: (string | number)[];
  waiters: { resolve: (answer: WriteAnswer) => void; reject: (err: unknown) => void }[];
}

/**
 * Token writes given to a connection in the current turn of the event loop, by the hash tag of their keys
 * (on a Redis Cluster one script call takes keys of one slot; elsewhere there is one group).
 */
const gathered = new WeakMap<RedisConnection, Map<string, GatheredWrites>>();

/**
 * One write of a token stream (see shared/lua/token-write.lua for `args`), sent with the other writes given
 * to the connection in this turn of the event loop in one script call: the streams of one worker write on
 * timers and as their backends' tokens arrive, and those of one turn then cost one command instead of one
 * each. They leave when the loop's check phase comes, which is when the connection's writes would leave
 * anyway (shared/redis/connection.ts corks a connection until then), in the order they were given.
 */
function tokenWrite(
  redis: RedisConnection,
  stream: string,
  cancel: string,
  args: (string | number)[],
): Promise<WriteAnswer> {
  let byTag = gathered.get(redis);
  if (!byTag) {
    byTag = new Map();
    gathered.set(redis, byTag);
    setImmediate(() => sendGathered(redis));
  }
  const tag = redis.isCluster ? hashTagOf(stream) : '';
  let g = byTag.get(tag);
  if (!g) byTag.set(tag, (g = { keys: [], args: [], waiters: [] }));
  g.keys.push(stream, cancel);
  for (const a of args) g.args.push(a);
  const waiters = g.waiters;
  return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
}

/** The part of a key Redis Cluster hashes: the first non-empty `{…}`, else the whole key. */
function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

function sendGathered(redis: RedisConnection): void {
  const byTag = gathered.get(redis);
  gathered.delete(redis);
  if (!byTag) return;
  // Defined on the connection on first use: most workers' attempts are never streamed.
  const r = defineScripts<{ cell0TokenWrite: TokenWrite }>(redis, 'token-write');
  for (const g of byTag.values()) {
    r.cell0TokenWrite(g.keys.length, ...g.keys, g.waiters.length, ...g.args).then(
      (res) =>
        g.waiters.forEach((w, i) => {
          const v = res[i];
          if (v === 1) w.resolve(1);
          else if (Array.isArray(v)) w.resolve({ lastId: v[0] });
          else w.reject(new Error(`token stream write refused: ${String(v)}`));
        }),
      (err: unknown) => g.waiters.forEach((w) => w.reject(err)),
    );
  }
  // In the check phase the connection's own uncork, scheduled by this call's write, would wait a whole turn.
  // Only this connection's: the others' commands of this check phase (requests started by request-turns,
  // say) go out together when their own uncork runs.
  flushWritesOf(redis);
}

/** Default {@link TokenStreamWriterOptions.flushMs}. */
export const TOKEN_FLUSH_MS = 20;

/** Options of {@link FlushPacer}. */
export interface FlushPacerOptions {
  /** The interval between two text writes of a stream while few streams have text waiting, ms. Default 20. */
  baseMs?: number;
  /** Streams with text waiting at once up to which `baseMs` holds; beyond, the interval grows in proportion. Default 16. */
  streams?: number;
  /** The longest interval, ms. Default 80. */
  maxMs?: number;
  /**
   * Paced writes fall due on a shared grid of this step, ms (default 10; 0: each when its own interval ends):
   * a write's due time is rounded up to the next step, and every write due at one step is released by one
   * timer, in one turn, so the writes of streams running side by side go in one script call and wake each
   * reading process's read once, not once per stream.
   */
  gridMs?: number;
  /** The clock of the grid (ms). Default performance.now. */
  now?: () => number;
}

/**
 * The text-write interval of a process's token streams, from how many of them have text waiting now. Up to
 * `streams` streams each writes every `baseMs`; with more, every stream's interval grows in proportion
 * (up to `maxMs`), so the process's stream writes per second stay about `streams / baseMs` however many
 * streams run: each write costs the worker a script call and each reader process a wake-up and a response
 * write (at 100 streams on one process, the stream writes, their reads and the SSE writes were about a fifth
 * of its CPU in bench:stream). A reader then gets several tokens per chunk more often; the first text and the
 * end never wait.
 */
export class FlushPacer {
  /** Streams whose text is waiting for (or on its way in) their next write. */
  waiting = 0;
  private readonly o: Required<FlushPacerOptions>;

  /** Writes waiting for a step of the grid, by the step's time; one timer per step. */
  private readonly due = new Map<number, { releases: Set<() => void>; timer: NodeJS.Timeout | undefined }>();

  constructor(opts: FlushPacerOptions = {}) {
    this.o = { baseMs: TOKEN_FLUSH_MS, streams: 16, maxMs: 80, gridMs: 10, now: () => performance.now() };
    if (opts.baseMs !== undefined) this.o.baseMs = opts.baseMs;
    if (opts.streams !== undefined) this.o.streams = opts.streams;
    if (opts.maxMs !== undefined) this.o.maxMs = opts.maxMs;
    if (opts.gridMs !== undefined) this.o.gridMs = opts.gridMs;
    if (opts.now !== undefined) this.o.now = opts.now;
    if (!(Number.isFinite(this.o.baseMs) && this.o.baseMs >= 0))
      throw new TypeError('FlushPacer: option "baseMs" must be a number of ms >= 0');
    if (!(Number.isInteger(this.o.streams) && this.o.streams >= 1))
      throw new TypeError('FlushPacer: option "streams" must be an integer >= 1');
    if (!(Number.isFinite(this.o.maxMs) && this.o.maxMs >= this.o.baseMs))
      throw new TypeError('FlushPacer: option "maxMs" must be a number of ms >= baseMs');
    if (!(Number.isFinite(this.o.gridMs) && this.o.gridMs >= 0))
      throw new TypeError('FlushPacer: option "gridMs" must be a number of ms >= 0');
  }

  /** The interval between two text writes of one stream now, ms. */
  intervalMs(): number {
    const { baseMs, streams, maxMs } = this.o;
    return this.waiting <= streams ? baseMs : Math.min(maxMs, (baseMs * this.waiting) / streams);
  }

  /** The pacer's clock (ms). */
  now(): number {
    return this.o.now();
  }

  /**
   * Calls `release` at the first step of the grid at or after `at` (the pacer's clock), with every other
   * write due at that step, in one timer callback. Returns the cancel of that call (the writer hurried: its
   * end or a restart); the step's timer is cleared once none is left for it.
   */
  releaseAt(at: number, release: () => void): () => void {
    const grid = this.o.gridMs;
    const step = grid > 0 ? Math.ceil(at / grid) * grid : at;
    let slot = this.due.get(step);
    if (!slot) {
      const s: { releases: Set<() => void>; timer: NodeJS.Timeout | undefined } = {
        releases: new Set(),
        timer: undefined,
      };
      s.timer = setTimeout(
        () => {
          if (this.due.get(step) === s) this.due.delete(step);
          for (const r of s.releases) r();
        },
        Math.max(0, step - this.o.now()),
      );
      this.due.set(step, (slot = s));
    }
    const s = slot;
    s.releases.add(release);
    return () => {
      if (!s.releases.delete(release) || s.releases.size > 0) return;
      clearTimeout(s.timer);
      if (this.due.get(step) === s) this.due.delete(step);
    };
  }
}

/**
 * Writes one attempt of one job to its token stream (see shared/queues/token-stream.ts). `open()` reads the
 * `wanted` and `cancel` marks in one round trip; when nobody asked for a stream the writer stays inactive
 * and costs nothing more. The first text is written as soon as it arrives, with the attempt's start entry;
 * after it, one write at most per `flushMs` (and one text write in flight at a time): tokens that arrive
 * meanwhile go out together in the next one, so a stream costs a few writes (and its readers a few
 * wake-ups) per `flushMs`, never one per token.
 * The end entry goes out at once with the text still pending, in one round trip. Every write also reads
 * `cancel`: once set, the attempt's signal aborts with JobCancelledError. A failed write is logged and
 * never fails the job; the readers then fall back to the job's result.
 *
 * With a relay (`cell0 start`), a first attempt whose writes the readers of this process take is not written
 * to Redis while they are its only readers: its entries are kept here. Once a reader in another process
 * opens the stream (the hub reads its remote-reader entry and calls back), or the readers here stop taking
 * the writes (they left: the cancel they set is then checked), the kept entries and every later write go to
 * Redis as above, from the attempt's first entry.
 */
export class TokenStreamWriter {
  /** Made on first use: most attempts are not streamed, and nothing reads their signal. */
  private ac: AbortController | undefined;
  private active = false;
  private pending = '';
  private seq = 0;
  private flushing: Promise<void> | undefined;
  private failed = false;
  private attempt = 0;
  /** A restart to announce with the next write. */
  private restartPending = false;
  /** The stream is to be emptied before the next write (a new attempt). */
  private trimPending = false;
  /** When the last text write started (opts.now's clock); -Infinity before the first. */
  private lastTextAt = -Infinity;
  /** Ends the wait for the next text write early (end, restart). */
  private hurry: (() => void) | undefined;
  private ending = false;
  private readonly flushMs: number;
  private readonly now: () => number;
  /** Called once, when the first text is in Redis (the stage timings of a traced stream). */
  onFirstText: (() => void) | undefined;
  private textWritten = false;
  /** When this attempt's writes last set the stream's lifetime (see write()). */
  private renewedAt = -Infinity;
  /** The id of this attempt's last entry stored in the stream (where its next write's entries follow). */
  private lastStoredId: string | undefined;
  /** The write on its way to Redis, if any. */
  private inFlight: Promise<unknown> | undefined;
  /** The attempt is over for the readers of this process (see release()). */
  private released = false;
  /**
   * Nothing of this attempt is in Redis yet, and it is not to be while the readers of this process are its
   * only readers: its writes are handed to them and kept here (see {@link kept}). Set when the attempt
   * opens with a relay; cleared for good once a write goes to Redis.
   */
  private localOnly = false;
  /** The entries handed to this process's readers and not written to Redis (local-only writes). */
  private kept: TokenStreamEntry[] = [];
  /** The hand-over of the last local-only write: told where the stream stands once it is in Redis. */
  private lastLocal: LocalStreamWrite | undefined;
  /** A reader in another process came: the kept entries go to Redis at once (see onRemote). */
  private switchPending = false;
  /** The end entry has been written (or handed over): nothing follows. */
  private endWritten = false;

  constructor(private readonly opts: TokenStreamWriterOptions) {
    this.flushMs = opts.flushMs ?? TOKEN_FLUSH_MS;
    if (!(Number.isFinite(this.flushMs) && this.flushMs >= 0))
      throw new TypeError('TokenStreamWriter: option "flushMs" must be a number of ms >= 0');
    this.now = opts.now ?? (() => performance.now());
  }

  /**
   * One write (see {@link tokenWrite}): the cancel's check or not, the emptying or not, and the entries'
   * values (each entry's count of fields and values, then those).
   */
  private tokenWrite(
    checkCancel: '0' | '1',
    trim: '0' | '1',
    entries: (string | number)[],
    renew: '0' | '1' = '0',
  ): Promise<WriteAnswer> {
    const { redis, keys, maxLen, ttlMs } = this.opts;
    return tokenWrite(redis, keys.stream, keys.cancel, [
      checkCancel,
      trim,
      maxLen,
      ttlMs,
      renew,
      entries.length,
      ...entries,
    ]);
  }

  /** Aborted (with JobCancelledError) when the last reader left. */
  get signal(): AbortSignal {
    return (this.ac ??= new AbortController()).signal;
  }

  /** True when a caller asked for the stream (text is being written). */
  get streaming(): boolean {
    return this.active;
  }

  /**
   * Starts the attempt: throws JobCancelledError when the job was cancelled before it ran; when the stream
   * is wanted, the emptying of the stream (a retry starts over; the stream keeps its last id, so readers see
   * only newer entries) and the start entry go out with the attempt's first write.
   */
  async open(attempt: number): Promise<void> {
    const { redis, keys } = this.opts;
    let marks: readonly (string | null)[];
    try {
      marks = await (this.opts.readMarks
        ? this.opts.readMarks(keys.wanted, keys.cancel)
        : redis.mget(keys.wanted, keys.cancel));
    } catch (err) {
      // Without the marks the job still runs; its streaming callers get the answer when it completes.
      this.opts.logger.warn({ jobId: this.opts.jobId, err }, 'could not read the token stream marks');
      return;
    }
    await this.openWith(marks, attempt);
  }

  /**
   * Like {@link open}, with the `wanted` and `cancel` marks already read (`[wanted, cancel]`): the worker
   * reads them first and makes a writer only for the attempts that have one.
   */
  async openWith(marks: readonly (string | null | undefined)[], attempt: number): Promise<void> {
    let wanted = marks[0] != null;
    if (marks[1] != null) {
      // A cancel mark is used up by the attempt that honours it: a later re-run of the job is not stopped.
      // A reader that came back since (its marks delete the cancel and set `wanted`) keeps the job running.
      const honoured = await this.tokenWrite('1', '0', []).catch(() => 1 as const);
      if (honoured === 1) throw new JobCancelledError(this.opts.jobId);
      wanted = true;
    }
    if (!wanted) return;
    this.active = true;
    this.attempt = attempt;
    // A first attempt's stream holds nothing of an earlier one that a reader elsewhere could mistake for
    // it, so it may stay out of Redis while only this process reads it (see write()). A later attempt is
    // written as before: its start entry voids the earlier attempt's text there.
    this.localOnly = this.opts.relay !== undefined && attempt <= 1;
    // A retry starts over: the stream is emptied but keeps its last id, so readers see only newer entries.
    // The emptying and the start entry go with the attempt's first write (its first text, a restart or its
    // end), in that write's script call, behind its cancel check: nothing is written now. A write of their
    // own at the start cost every streamed attempt one more script call, one more wake-up of each reading
    // process's read and one more cancel check, and told readers nothing they need before the first text
    // (readers reset their place on the start entry, which still comes before any text of the attempt).
    this.trimPending = true;
    this.restartPending = true;
  }

  /**
   * The attempt is over (however it ended): the readers of this process that this writer fed read the
   * stream from Redis again once its write on the way is answered (a retry may run elsewhere). Later writes
   * (text still pending) go to Redis only. Idempotent.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    const relay = this.opts.relay;
    if (!relay) return;
    const done = () => relay.released(this.opts.jobId, this);
    if (this.inFlight) void this.inFlight.then(done, done);
    else done();
  }

  /** Adds text: written at once when it is the first, else with the next write (see flushMs). */
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
    this.hurry?.();
    this.flushing ??= this.flush();
  }

  /**
   * Writes what is pending and the end entry in one round trip; resolves once they are in Redis (before
   * the job completes).
   */
  async end(e: { finishReason: string; model: string; usage: StreamUsage }): Promise<void> {
    if (!this.active) return;
    this.ending = true;
    this.hurry?.();
    await this.flushing;
    await this.write({ kind: 'end', ...e });
  }

  /**
   * The hub of this process found a reader of this stream in another process (its marks' remote-reader
   * entry, shared/lua/token-stream-open.lua): the entries kept so far go to Redis now, from the first, and
   * every later write with them, as for a stream without local readers.
   */
  private readonly onRemote = (): void => {
    if (!this.localOnly || this.endWritten || this.released || !this.active) return;
    this.localOnly = false;
    this.switchPending = true;
    this.hurry?.();
    this.flushing ??= this.flush();
  };

  private async flush(): Promise<void> {
    const pacer = this.opts.pacer;
    if (pacer) pacer.waiting++;
    try {
      while ((this.pending.length > 0 || this.restartPending || this.switchPending) && !this.ending) {
        const interval = pacer ? pacer.intervalMs() : this.flushMs;
        const wait = this.restartPending || this.switchPending ? 0 : this.lastTextAt + interval - this.now();
        if (wait > 0) {
          await new Promise<void>((resolve) => {
            let released = false;
            const release = () => {
              if (released) return;
              released = true;
              this.hurry = undefined;
              clearTimeout(timer);
              cancel?.();
              resolve();
            };
            this.hurry = release;
            // With a pacer the write waits for its step of the shared grid (see FlushPacerOptions.gridMs).
            const timer = pacer ? undefined : setTimeout(release, wait);
            const cancel = pacer?.releaseAt(pacer.now() + wait, release);
          });
          if (this.ending) break;
        }
        await this.write();
      }
    } finally {
      if (pacer) pacer.waiting--;
      this.flushing = undefined;
    }
  }

  /**
   * One write: handed to the readers of this process, and (unless they are its only readers, see
   * {@link localOnly}) one round trip, one write of a token-write.lua call (with the connection's other writes
   * of the turn): the cancel's check first, then a pending emptying and restart, the pending text, `extra` and
   * the expiry: a cancel honoured writes none of this write's entries and deletes the stream, all before any
   * reader can read.
   */
  private async write(extra?: TokenStreamEntry): Promise<void> {
    const entries: TokenStreamEntry[] = [];
    if (this.restartPending) {
      this.restartPending = false;
      this.seq = 0;
      entries.push({ kind: 'start', attempt: this.attempt });
    }
    if (this.pending.length > 0) {
      entries.push({ kind: 'text', seq: this.seq++, text: this.pending });
      this.pending = '';
      this.lastTextAt = this.now();
    }
    if (extra) entries.push(extra);
    this.switchPending = false;
    // After a cancel nothing more is written: the stream was deleted with the mark.
    if (this.failed || !this.active || (entries.length === 0 && this.kept.length === 0)) return;
    if (extra?.kind === 'end') this.endWritten = true;
    const relay = this.released ? undefined : this.opts.relay;
    const { jobId, keys } = this.opts;
    /** The hand-over of this write's entries to this process's readers, when they took them. */
    let local: LocalStreamWrite | undefined;
    if (this.localOnly) {
      // Handed to this process's readers, and not written to Redis while they are the only ones: a write's
      // script call, its cancel check and each entry's XADD saved, and nothing for a read here to read back.
      // The attempt's first write starts their stream (null); a later one is taken only by the readers that
      // have every entry before it (a sentinel no stream id equals: not by readers that came since).
      local = relay?.writing(
        jobId,
        keys.stream,
        this,
        entries,
        this.kept.length === 0 ? null : '',
        this.onRemote,
      );
      if (local && !local.remote) {
        for (const e of entries) this.kept.push(e);
        this.lastLocal = local;
        if (!this.textWritten && entries.some((e) => e.kind === 'text')) {
          this.textWritten = true;
          this.onFirstText?.();
        }
        return;
      }
      // Not taken (the readers here left, and their leave may have set the cancel this write checks; or
      // their hub closed), or a reader in another process reads the stream: from now on the attempt is
      // written to Redis, from its first entry (with the emptying of the stream).
      this.localOnly = false;
    } else if (this.kept.length > 0) {
      // The first write to Redis after local-only ones (a reader elsewhere came): these entries go to the
      // readers here that hold the kept ones (only they take a write after the sentinel).
      if (entries.length > 0) local = relay?.writing(jobId, keys.stream, this, entries, '');
    } else if (entries.length > 0 && relay) {
      const after = this.trimPending ? null : this.lastStoredId;
      if (after !== undefined) local = relay.writing(jobId, keys.stream, this, entries, after);
    }
    // Told where the stream stands once the write is in: this write's hand-over, or the last local-only one
    // (its readers hold every entry of the attempt so far, all of which this write stores).
    const told = local ?? (entries.length === 0 ? this.lastLocal : undefined);
    const written = this.kept.length > 0 ? this.kept.concat(entries) : entries;
    this.kept = [];
    this.lastLocal = undefined;
    // Settled once the write's answer has been told to the readers of this process (see release()).
    let settle: () => void = () => undefined;
    this.inFlight = new Promise<void>((resolve) => (settle = resolve));
    try {
      const args: (string | number)[] = [];
      for (const e of written) {
        const fields = encodeEntry(e);
        args.push(fields.length, ...fields);
      }
      const trim = this.trimPending;
      this.trimPending = false;
      // The stream's lifetime is set by the attempt's first write, then at most every half lifetime, and
      // by the end (the stream lives ttlMs after it): not by every write (each renewal was a PEXPIRE in
      // Redis, about six per stream). Between renewals the stream has at least half its lifetime left, and
      // a write that finds it gone makes it again with its lifetime (token-write.lua).
      const now = this.now();
      const renew = this.endWritten || now - this.renewedAt >= this.opts.ttlMs / 2;
      if (renew) this.renewedAt = now;
      const answer = await this.tokenWrite('1', trim ? '1' : '0', args, renew ? '1' : '0');
      const honoured = answer === 1 ? 1 : 0;
      if (answer === 1) told?.notStored(false);
      else {
        if (answer.lastId !== undefined) this.lastStoredId = answer.lastId;
        told?.stored(answer.lastId);
      }
      if (!this.textWritten && honoured !== 1 && written.some((e) => e.kind === 'text')) {
        this.textWritten = true;
        this.onFirstText?.();
      }
      if (honoured === 1 && !this.signal.aborted) {
        this.active = false;
        this.ac!.abort(new JobCancelledError(this.opts.jobId));
      }
    } catch (err) {
      // Readers fall back to the job's result; the generation itself goes on. Whether Redis stored the
      // write is not known: the readers of this process skip its entries should they find them there.
      told?.notStored(true);
      this.failed = true;
      this.opts.logger.warn({ jobId: this.opts.jobId, err }, 'could not write the token stream');
    } finally {
      this.inFlight = undefined;
      settle();
    }
  }
}
