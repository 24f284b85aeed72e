import { randomBytes } from 'node:crypto';
import { type RedisConnection } from '../shared/redis/cluster.js';
import { type Logger, silentLogger } from '../shared/logger.js';
import { closeRedis, createRedisConnection } from '../shared/redis/connection.js';
import {
  compareStreamIds,
  decodeEntry,
  isRemoteReaderEntry,
  sameEntry,
  tokenStreamKeys,
  type LocalStreamReaders,
  type LocalStreamWrite,
  type TokenStreamEntry,
  type TokenStreamKeys,
} from '../shared/queues/token-stream.js';
import { QueueName, queueKey } from '../shared/queues/names.js';
import { withDefaults } from '../shared/with-defaults.js';
import { defineScripts, luaScript } from '../shared/redis/lua-scripts.js';
import { sleep } from '../shared/sleep.js';

/** Options of {@link TokenStreamHub}. */
export interface TokenStreamHubOptions {
  /** redis:// URL: the hub opens one blocking connection of its own for all the streams it reads. */
  redisUrl: string;
  /** Queue key prefix ({hash tag}). */
  prefix: string;
  /** A non-blocking connection for the marks and wake-ups (the producer's). */
  redis: RedisConnection;
  /** Lifetime of the marks (`wanted`, `readers`), ms; renewed while reading. Default 300000. */
  markTtlMs?: number;
  /** Lifetime of a cancel mark, ms: long enough for the worker's next write. Default 30000. */
  cancelTtlMs?: number;
  /** Longest wait of one blocking read, ms (a new stream wakes it at once). Default 5000. */
  blockMs?: number;
  /**
   * How long a stream that ended without being written to Redis (its writer, in this process, kept it out
   * while the readers here were its only ones) is kept after its last reader here left, ms: a caller of the
   * same job that comes meanwhile (its result not yet out) is handed the whole stream from memory, as it
   * would have read it from Redis. Default 2000.
   */
  endedKeepMs?: number;
  logger?: Logger;
}

/** One caller reading one job's token stream. */
export interface TokenStreamReader {
  /** The next entry, in order, or undefined once the reader is closed. Waits while none is there yet. */
  next(): Promise<TokenStreamEntry | undefined>;
  /** The next entry already received, or undefined when there is none now (never waits). */
  take(): TokenStreamEntry | undefined;
  /** Resolves when an entry can be taken, or the reader is closed. */
  wait(): Promise<void>;
  /** True once closed (by close() or the hub's). */
  readonly closed: boolean;
  /** When this process received the stream's first text (a performance.now() reading); undefined before. */
  readonly firstTextAt: number | undefined;
  /**
   * Reads whatever the stream holds beyond what has been received (one XRANGE): after the job finished,
   * every entry the worker wrote is there, so this makes the reader's view complete without waiting.
   */
  catchUp(): Promise<void>;
  /**
   * Stops reading. When this was the job's last reader (in every process) and the stream had not ended,
   * the job is cancelled: pass `cancel: false` to leave it running.
   */
  close(opts?: { cancel?: boolean }): Promise<void>;
}

/** The entries of one job's stream read by this process, shared by its local readers. */
interface Subscription {
  jobId: string;
  keys: TokenStreamKeys;
  /** Id of the last entry received (remote-reader entries included: where the next read starts). */
  lastId: string;
  /**
   * Id of the last token stream entry received (remote-reader entries left out): a writer's write that
   * follows its last stored entry is taken when this is that entry.
   */
  lastEntryId: string;
  entries: TokenStreamEntry[];
  readers: Set<LocalReader>;
  ended: boolean;
  /** The marks are written (resolves once `wanted` and `readers` are in Redis). */
  ready: Promise<void>;
  /** When the first text entry was received (performance.now()). */
  firstTextAt?: number;
  /** The number of this subscription's wake-up (written with its marks, in the same transaction). */
  wakeSeq: number;
  /** The marks' reply has come: they are in Redis (so is any write this process sends from now on after them). */
  marked: boolean;
  /**
   * The writer of this process that hands the stream's entries over as it writes them (see
   * {@link TokenStreamHub.writing}): while there is one, the stream is not read from Redis.
   */
  writer: object | undefined;
  /**
   * Entries handed over by a writer whose write failed without saying whether Redis stored it: when the
   * stream is read again, copies of them right after `lastId` are skipped.
   */
  unstored: TokenStreamEntry[] | undefined;
  /** A remote-reader entry was read: a process other than this one reads the stream too. */
  remote: boolean;
  /**
   * While `writer` keeps the stream out of Redis (its readers here being the only ones): told when a
   * remote-reader entry is read. The stream stays in the read set meanwhile, for that entry alone.
   */
  onRemote: (() => void) | undefined;
  /** Its end came from a writer that kept the stream out of Redis: its entries are only here. */
  outOfRedis: boolean;
  /** Removes the subscription once it has been kept long enough without readers (see endedKeepMs). */
  keepTimer: NodeJS.Timeout | undefined;
}

/** shared/lua/token-stream-open.lua and token-stream-leave.lua, as ioredis commands. */
interface StreamScripts {
  cell0TokenStreamOpen(
    wanted: string,
    gate: string,
    readers: string,
    cancel: string,
    wake: string,
    stream: string,
    markTtlMs: number,
    wakeSeq: number,
    wakeTtlMs: number,
  ): Promise<number>;
  cell0TokenStreamLeave(
    readers: string,
    cancel: string,
    wanted: string,
    gate: string,
    cancelIfLast: '0' | '1',
    cancelTtlMs: number,
  ): Promise<number>;
}

/** Lifetime of a hub's wake-up stream after its last wake-up, ms. */
const WAKE_TTL_MS = 60_000;

class LocalReader implements TokenStreamReader {
  private index = 0;
  /** The subscription's marks are written. */
  readonly ready: Promise<void>;
  private wake: (() => void) | undefined;
  private waiting: Promise<void> | undefined;
  closed = false;

  constructor(
    private readonly sub: Subscription,
    private readonly hub: TokenStreamHub,
  ) {
    this.ready = sub.ready;
  }

  notify(): void {
    const w = this.wake;
    this.wake = undefined;
    this.waiting = undefined;
    w?.();
  }

  get firstTextAt(): number | undefined {
    return this.sub.firstTextAt;
  }

  take(): TokenStreamEntry | undefined {
    if (this.closed || this.index >= this.sub.entries.length) return undefined;
    return this.sub.entries[this.index++];
  }

  wait(): Promise<void> {
    if (this.closed || this.index < this.sub.entries.length) return Promise.resolve();
    this.waiting ??= new Promise<void>((resolve) => (this.wake = resolve));
    return this.waiting;
  }

  async next(): Promise<TokenStreamEntry | undefined> {
    while (!this.closed && this.index >= this.sub.entries.length) await this.wait();
    return this.take();
  }

  catchUp(): Promise<void> {
    return this.hub.catchUp(this.sub);
  }

  close(opts: { cancel?: boolean } = {}): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.notify();
    return this.hub.leave(this.sub, this, opts.cancel ?? true);
  }
}

/**
 * Reads the token streams of the jobs this process's callers stream (see shared/queues/token-stream.ts),
 * all on ONE blocking connection: a single XREAD BLOCK covers every stream being read, plus a wake-up
 * stream of the hub's own that is written to whenever a new stream is added, so the read starts over with
 * it at once. Callers of one job in this process share one subscription: its entries are kept in memory
 * while anyone reads them, and a local reader that joins late is handed them from the first.
 */
export class TokenStreamHub {
  private readonly opts: Required<Omit<TokenStreamHubOptions, 'logger'>>;
  private readonly log: Logger;
  private readonly subs = new Map<string, Subscription>();
  private readonly wakeKey: string;
  /**
   * Id of the last wake-up read. The read asks for entries after it, not after `$` (what is there when the
   * read reaches Redis): a stream added while the read was on its way, whose wake-up Redis ran first,
   * would otherwise wait for the read's timeout.
   */
  private wakeId = '0-0';
  /** Wake-ups written so far (the number of the last one); each subscription's marks carry one. */
  private wakeSeq = 0;
  /**
   * The highest wake-up number the read loop has seen: the marks of every subscription numbered up to it
   * are in Redis (they went in one transaction with their wake-up, on one connection, in order).
   */
  private wakeSeen = 0;
  private conn: RedisConnection | undefined;
  private readonly scripts: StreamScripts;
  private openScriptLoaded = false;
  private loop: Promise<void> | undefined;
  private closed = false;
  /** Renews the marks of the streams read now, every third of their lifetime (see renewMarks). */
  private renewTimer: NodeJS.Timeout | undefined;

  constructor(opts: TokenStreamHubOptions) {
    this.opts = withDefaults<Required<Omit<TokenStreamHubOptions, 'logger'>>>(
      { markTtlMs: 300_000, cancelTtlMs: 30_000, blockMs: 5000, endedKeepMs: 2000 },
      {
        redisUrl: opts.redisUrl,
        prefix: opts.prefix,
        redis: opts.redis,
        markTtlMs: opts.markTtlMs,
        cancelTtlMs: opts.cancelTtlMs,
        blockMs: opts.blockMs,
        endedKeepMs: opts.endedKeepMs,
      },
    );
    for (const k of ['markTtlMs', 'cancelTtlMs', 'blockMs', 'endedKeepMs'] as const)
      if (!(Number.isInteger(this.opts[k]) && this.opts[k] > 0))
        throw new TypeError(`TokenStreamHub: option "${k}" must be a positive integer of ms`);
    this.log = opts.logger ?? silentLogger();
    this.scripts = defineScripts<StreamScripts>(opts.redis, 'token-stream-open', 'token-stream-leave');
    this.loadOpenScript();
    opts.redis.on('ready', this.loadOpenScript);
    // In the inference queue's slot: one XREAD covers it and the token streams.
    this.wakeKey = `${queueKey(opts.prefix, QueueName.INFERENCE)}:token-hub:${randomBytes(8).toString('hex')}`;
  }

  /**
   * True when a job added after {@link openNow} is sure to find its marks: one connection to one Redis
   * carries both, in order. On a Redis Cluster a sharded queue's job may live on another node than its
   * token stream (which stays in the inference queue's slot), so there the marks are awaited (open()).
   */
  get marksPrecedeAdds(): boolean {
    return !this.opts.redis.isCluster && this.openScriptLoaded;
  }

  /**
   * The marks' script must be in Redis's script cache for openNow's order to hold: ioredis sends EVALSHA,
   * and a NOSCRIPT answer makes it send the script again, after the add that followed it on the connection.
   * So it is loaded when the hub is made and each time the connection is (re)established (a restarted Redis
   * forgot it), and until it is in, the marks are awaited (open()) as on a cluster. Should the cache be
   * emptied under a running hub (SCRIPT FLUSH), a job may be added before its marks: it then runs
   * unstreamed, and its readers get the text from its result.
   */
  private readonly loadOpenScript = (): void => {
    this.openScriptLoaded = false;
    this.opts.redis.script('LOAD', luaScript('token-stream-open').lua).then(
      () => (this.openScriptLoaded = !this.closed),
      (err: unknown) => this.log.debug({ err }, 'could not load the token stream marks script'),
    );
  };

  /** Streams read now (one per job with local readers). */
  get size(): number {
    return this.subs.size;
  }

  /**
   * Starts reading job `jobId`'s token stream (inference queue). Resolves once the job is marked as
   * streamed, so add or join the job after this: the worker then writes its tokens from the first.
   */
  async open(jobId: string): Promise<TokenStreamReader> {
    const reader = this.openNow(jobId);
    try {
      await reader.ready;
    } catch (err) {
      await reader.close({ cancel: false });
      throw err;
    }
    return reader;
  }

  /**
   * Starts reading job `jobId`'s token stream without waiting: the marks go out now on the producer's
   * connection (the `redis` option), and commands on one connection run in the order they were sent, so a
   * job added or joined after this call on that connection (the JobSubmitter's) is marked as streamed
   * before any worker can take it; the add need not wait a round trip for the marks. `ready` settles with
   * the marks' reply: should they fail, the job runs unstreamed and its readers get the text from the
   * job's result (the failure is logged here, and `ready` rejects for whoever awaits it).
   */
  openNow(jobId: string): TokenStreamReader & { readonly ready: Promise<void> } {
    if (this.closed) throw new TypeError('TokenStreamHub is closed');
    let sub = this.subs.get(jobId);
    if (!sub) {
      const keys = tokenStreamKeys(this.opts.prefix, QueueName.INFERENCE, jobId);
      const s: Subscription = {
        jobId,
        keys,
        lastId: '0-0',
        lastEntryId: '0-0',
        entries: [],
        readers: new Set(),
        ended: false,
        ready: Promise.resolve(),
        wakeSeq: ++this.wakeSeq,
        marked: false,
        writer: undefined,
        unstored: undefined,
        remote: false,
        onRemote: undefined,
        outOfRedis: false,
        keepTimer: undefined,
      };
      s.ready = this.scripts
        .cell0TokenStreamOpen(
          keys.wanted,
          keys.gate,
          keys.readers,
          keys.cancel,
          this.wakeKey,
          keys.stream,
          this.opts.markTtlMs,
          s.wakeSeq,
          WAKE_TTL_MS,
        )
        .then(() => {
          s.marked = true;
        });
      s.ready.catch((err: unknown) =>
        this.log.warn(
          { jobId, err },
          'could not mark the token stream as wanted: its readers get the result',
        ),
      );
      this.subs.set(jobId, s);
      this.readSet = undefined;
      sub = s;
      this.ensureLoop();
      this.renewTimer ??= setInterval(
        () => this.renewMarks(),
        Math.max(1, Math.floor(this.opts.markTtlMs / 3)),
      );
      this.renewTimer.unref();
    }
    const reader = new LocalReader(sub, this);
    sub.readers.add(reader);
    clearTimeout(sub.keepTimer);
    sub.keepTimer = undefined;
    return reader;
  }

  /** One XRANGE past the last received entry, delivered like the loop's reads. */
  async catchUp(sub: Subscription): Promise<void> {
    // A writer of this process hands the entries over: what Redis holds beyond `lastId` is already here.
    if (sub.ended || sub.writer !== undefined) return;
    const rows = await this.opts.redis.xrange(sub.keys.stream, `(${sub.lastId}`, '+');
    this.deliver(sub, rows);
  }

  /** A local reader left: the last one of the process ends the subscription (and may cancel the job). */
  async leave(sub: Subscription, reader: LocalReader, cancel: boolean): Promise<void> {
    sub.readers.delete(reader);
    if (sub.readers.size > 0 || this.subs.get(sub.jobId) !== sub) return;
    if (sub.outOfRedis && sub.keepTimer === undefined && !this.closed) {
      // Its entries are nowhere else: kept a while for a caller of the job that comes before its result.
      sub.keepTimer = setTimeout(() => {
        sub.keepTimer = undefined;
        if (sub.readers.size === 0 && this.subs.get(sub.jobId) === sub) void this.drop(sub, false);
      }, this.opts.endedKeepMs);
      sub.keepTimer.unref();
      return;
    }
    await this.drop(sub, cancel);
  }

  /** The subscription is over for this process: counted out of the readers (and may cancel the job). */
  private async drop(sub: Subscription, cancel: boolean): Promise<void> {
    this.subs.delete(sub.jobId);
    this.readSet = undefined;
    try {
      // Nobody reads the job any more: the worker stops it at its next write.
      const left = await this.scripts.cell0TokenStreamLeave(
        sub.keys.readers,
        sub.keys.cancel,
        sub.keys.wanted,
        sub.keys.gate,
        cancel && !sub.ended ? '1' : '0',
        this.opts.cancelTtlMs,
      );
      if (left <= 0 && cancel && !sub.ended)
        this.log.debug({ jobId: sub.jobId }, 'last stream reader left: job cancelled');
    } catch (err) {
      this.log.warn({ jobId: sub.jobId, err }, 'could not update the token stream readers');
    }
  }

  /** Entries read from Redis (a read begun before a writer of this process took the stream over is void). */
  private deliver(sub: Subscription, rows: [string, string[]][]): void {
    if (sub.writer !== undefined) {
      // A writer of this process feeds the stream; one that keeps it out of Redis is told of a reader
      // elsewhere (its remote-reader entry is what it is read for).
      if (sub.onRemote === undefined) return;
      for (const [id, fields] of rows) {
        if (compareStreamIds(id, sub.lastId) <= 0) continue;
        sub.lastId = id;
        if (isRemoteReaderEntry(fields)) sub.remote = true;
      }
      if (sub.remote) {
        const tell = sub.onRemote;
        sub.onRemote = undefined;
        this.readSet = undefined;
        tell();
      }
      return;
    }
    let added = false;
    for (const [id, fields] of rows) {
      if (compareStreamIds(id, sub.lastId) <= 0) continue;
      sub.lastId = id;
      if (isRemoteReaderEntry(fields)) {
        sub.remote = true;
        continue;
      }
      sub.lastEntryId = id;
      const e = decodeEntry(fields);
      if (!e) continue;
      if (sub.unstored) {
        // The copy of an entry handed over already (its write's answer was lost), or the first entry after
        // a write that was not stored after all.
        if (sameEntry(sub.unstored[0]!, e)) {
          sub.unstored.shift();
          if (sub.unstored.length === 0) sub.unstored = undefined;
          continue;
        }
        sub.unstored = undefined;
      }
      this.add(sub, e);
      this.counts.redis++;
      added = true;
    }
    if (added) for (const r of sub.readers) r.notify();
  }

  private add(sub: Subscription, e: TokenStreamEntry): void {
    sub.entries.push(e);
    if (e.kind === 'text') sub.firstTextAt ??= performance.now();
    if (e.kind === 'end') {
      sub.ended = true;
      this.readSet = undefined;
    }
  }

  /** Counts of {@link deliveries}. */
  private readonly counts = { local: 0, redis: 0 };

  /** Entries received so far: handed over by a writer of this process, or read from Redis. */
  deliveries(): { local: number; redis: number } {
    return { ...this.counts };
  }

  /**
   * The readers of this process for the writers of a worker in it (`cell0 start`; see
   * {@link LocalStreamReaders}). A stream whose readers have marked it takes a write's entries when it has
   * every entry before them (its place is the writer's last stored entry, or the write empties the stream
   * first); from then on that writer feeds it and it is not read from Redis, until the writer's attempt is
   * over or a write is not stored. The entries still go to Redis, so every other reader is as before.
   */
  readonly local: LocalStreamReaders = {
    writing: (jobId, stream, writer, entries, after, onRemote) =>
      this.writing(jobId, stream, writer, entries, after, onRemote),
    released: (jobId, writer) => {
      const sub = this.subs.get(jobId);
      if (sub?.writer === writer) this.detach(sub);
    },
  };

  private writing(
    jobId: string,
    stream: string,
    writer: object,
    entries: readonly TokenStreamEntry[],
    after: string | null,
    onRemote?: () => void,
  ): LocalStreamWrite | undefined {
    const sub = this.subs.get(jobId);
    // Only once the marks are in Redis (they withdrew any cancel, so this write cannot honour one; a
    // stream is read from Redis only then too) and while its readers are here.
    if (!sub || sub.keys.stream !== stream || sub.ended || !sub.marked || this.closed) return undefined;
    if (sub.writer !== writer) {
      // A write after the writer's own last one: taken only with every entry before it here.
      if (after !== null && (sub.writer !== undefined || sub.unstored || sub.lastEntryId !== after))
        return undefined;
      sub.writer = writer;
      sub.unstored = undefined;
      // A writer that keeps the stream out of Redis leaves it in the read set (for a remote-reader entry),
      // unless a reader elsewhere is known already (it then writes to Redis, and is not read back).
      sub.onRemote = sub.remote ? undefined : onRemote;
      if (sub.onRemote === undefined) this.readSet = undefined;
    } else if (onRemote === undefined && sub.onRemote !== undefined) {
      // The writer writes to Redis now: what it writes is not read back.
      sub.onRemote = undefined;
      this.readSet = undefined;
    }
    for (const e of entries) this.add(sub, e);
    if (sub.ended && sub.onRemote !== undefined) sub.outOfRedis = true;
    this.counts.local += entries.length;
    for (const r of sub.readers) r.notify();
    const remote = sub.remote;
    return {
      remote,
      stored: (lastId) => {
        if (sub.writer !== writer || lastId === undefined) return;
        sub.lastEntryId = lastId;
        if (compareStreamIds(lastId, sub.lastId) > 0) sub.lastId = lastId;
      },
      notStored: (maybe) => {
        if (sub.writer !== writer) return;
        this.detach(sub);
        if (maybe) sub.unstored = [...entries];
      },
    };
  }

  /** The stream is read from Redis again, after its last entry stored. */
  private detach(sub: Subscription): void {
    sub.writer = undefined;
    sub.onRemote = undefined;
    this.readSet = undefined;
    if (sub.ended || this.closed || this.subs.get(sub.jobId) !== sub) return;
    // The loop's read may be blocked on a set without it: a wake-up makes it start over. It carries the
    // number of the last marks sent: it goes on their connection after them, so they are in Redis when it
    // is (and the wake-up stream keeps one entry: a smaller number would hide theirs).
    this.opts.redis
      .pipeline()
      .xadd(this.wakeKey, 'MAXLEN', '1', '*', 'w', String(this.wakeSeq))
      .pexpire(this.wakeKey, WAKE_TTL_MS)
      .exec()
      .catch((err: unknown) => this.log.debug({ err }, 'could not wake the token stream read'));
  }

  /**
   * Keeps the marks of the streams read now alive (one pipeline of PEXPIREs): a stream read for longer than
   * the marks' lifetime would otherwise lose its `readers` count, and another process's leave would then
   * count down from nothing and cancel a job that this process still reads. A mark already deleted (a
   * cancel) is not brought back: PEXPIRE only lengthens what is there.
   */
  private renewMarks(): void {
    if (this.subs.size === 0) {
      clearInterval(this.renewTimer);
      this.renewTimer = undefined;
      return;
    }
    const ttl = this.opts.markTtlMs;
    const p = this.opts.redis.pipeline();
    let gate: string | undefined;
    for (const sub of this.subs.values()) {
      if (sub.ended) continue;
      p.pexpire(sub.keys.wanted, ttl).pexpire(sub.keys.readers, ttl);
      gate = sub.keys.gate;
    }
    if (gate === undefined) return;
    p.pexpire(gate, ttl, 'GT');
    p.exec().catch((err: unknown) => this.log.debug({ err }, 'could not renew the token stream marks'));
  }

  private ensureLoop(): void {
    if (this.loop || this.closed) return;
    this.conn ??= createRedisConnection({
      url: this.opts.redisUrl,
      role: 'events',
      connectionName: 'cell0:token-streams',
      logger: this.log,
    });
    this.loop = this.run().finally(() => (this.loop = undefined));
  }

  /**
   * The streams the loop reads, in its XREAD's order: made again only when the set changes (a stream opened,
   * ended or left, a wake-up seen), not for every read; between two changes only their ids are refreshed.
   */
  private readSet: { subs: Subscription[]; byKey: Map<string, Subscription>; waiting: number } | undefined;

  /** The read set, made again after a change (see {@link readSet}). */
  private currentReadSet(): NonNullable<TokenStreamHub['readSet']> {
    if (this.readSet) return this.readSet;
    // A stream is read only once its marks are in Redis (its wake-up was seen): its reader's marks deleted
    // any cancel mark, so what is read then belongs to an attempt that goes on (an attempt that honoured a
    // cancel before took its entries with it: see the worker's TokenStreamWriter).
    const subs: Subscription[] = [];
    const byKey = new Map<string, Subscription>();
    let waiting = 0;
    for (const s of this.subs.values())
      if (!s.ended) {
        waiting++;
        if (s.wakeSeq > this.wakeSeen || (s.writer !== undefined && s.onRemote === undefined)) continue;
        subs.push(s);
        byKey.set(s.keys.stream, s);
      }
    return (this.readSet = { subs, byKey, waiting });
  }

  /** The read loop: runs while there are streams to read. */
  private async run(): Promise<void> {
    const conn = this.conn!;
    while (!this.closed) {
      const set = this.currentReadSet();
      if (set.waiting === 0) break;
      const n = set.subs.length;
      const args: (string | number)[] = new Array<string | number>(4 + 2 * n);
      args[0] = 'BLOCK';
      args[1] = this.opts.blockMs;
      args[2] = 'STREAMS';
      args[3] = this.wakeKey;
      args[4 + n] = this.wakeId;
      for (let i = 0; i < n; i++) {
        const sub = set.subs[i]!;
        args[4 + i] = sub.keys.stream;
        args[5 + n + i] = sub.lastId;
      }
      let res: [string, [string, string[]][]][] | null;
      try {
        res = (await conn.xread(...(args as ['BLOCK', number, 'STREAMS', ...string[]]))) as
          [string, [string, string[]][]][] | null;
      } catch (err) {
        if (this.closed) break;
        this.log.debug({ err }, 'token stream read failed; retrying');
        await sleep(200, { unref: true });
        continue;
      }
      for (const [key, rows] of res ?? []) {
        if (key === this.wakeKey) {
          const last = rows[rows.length - 1];
          if (last) {
            this.wakeId = last[0];
            const seq = Number(decodeWake(last[1]));
            if (Number.isInteger(seq) && seq > this.wakeSeen) {
              this.wakeSeen = seq;
              this.readSet = undefined;
            }
          }
          continue;
        }
        const sub = set.byKey.get(key);
        if (sub) this.deliver(sub, rows);
      }
    }
  }

  /** Stops reading every stream (readers get undefined); cuts the blocking connection. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.opts.redis.off('ready', this.loadOpenScript);
    for (const sub of this.subs.values()) {
      clearTimeout(sub.keepTimer);
      for (const r of sub.readers) {
        r.closed = true;
        r.notify();
      }
    }
    this.subs.clear();
    this.readSet = undefined;
    clearInterval(this.renewTimer);
    this.renewTimer = undefined;
    // A QUIT would queue behind the blocking read: cut the connection.
    this.conn?.disconnect(false);
    await this.loop;
    if (this.conn) await closeRedis(this.conn).catch(() => undefined);
  }
}

/** The number a wake-up entry carries (its `w` field). */
function decodeWake(fields: readonly string[]): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'w') return fields[i + 1];
  return undefined;
}
