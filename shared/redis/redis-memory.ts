import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import { RedisEvictionPolicyError, RedisFullError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import { tcpOpen } from '../net.js';
import { withDefaults } from '../with-defaults.js';
import { mastersOf, nodeUrls, type RedisConnection } from './cluster.js';

/** What `INFO memory` says about Redis's memory. */
export interface RedisMemoryInfo {
  /** used_memory, bytes. */
  usedBytes: number;
  /** maxmemory, bytes; 0 = no limit. */
  maxBytes: number;
  /** maxmemory_policy; undefined when Redis did not say (and CONFIG GET is disabled). */
  policy: string | undefined;
  /** used / max in %, one decimal; null when there is no limit. */
  usedPercent: number | null;
}

/** Parses the text of `INFO memory` (or `INFO`). */
export function parseMemoryInfo(info: string): RedisMemoryInfo {
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
  const usedBytes = Number(field('used_memory') ?? 0);
  const maxBytes = Number(field('maxmemory') ?? 0);
  return {
    usedBytes,
    maxBytes,
    policy: field('maxmemory_policy'),
    usedPercent: maxBytes > 0 ? Math.round((usedBytes / maxBytes) * 1000) / 10 : null,
  };
}

/**
 * Reads Redis's memory use and eviction policy. `INFO memory` works everywhere, including managed Redis
 * services that disable CONFIG; CONFIG GET is only a fallback for a server whose INFO lacks the policy.
 * On a cluster every master is read and the fullest one is reported (a full master refuses the writes of
 * its slots whatever the others hold), with the first policy that is not noeviction if any.
 */
export async function readRedisMemory(redis: RedisConnection): Promise<RedisMemoryInfo> {
  const masters = mastersOf(redis);
  if (masters.length === 1 && masters[0] === redis) return readNodeMemory(masters[0]);
  const infos = await Promise.all(masters.map((m) => readNodeMemory(m)));
  if (infos.length === 0) return readNodeMemory(redis as Redis);
  const fullest = infos.reduce((a, b) => (memoryShare(b) > memoryShare(a) ? b : a));
  const badPolicy = infos.find((i) => i.policy !== undefined && i.policy !== 'noeviction')?.policy;
  return { ...fullest, policy: badPolicy ?? fullest.policy };
}

/** used / max, or 0 without a limit. */
function memoryShare(i: RedisMemoryInfo): number {
  return i.maxBytes > 0 ? i.usedBytes / i.maxBytes : 0;
}

async function readNodeMemory(redis: Redis): Promise<RedisMemoryInfo> {
  const info = parseMemoryInfo(await redis.info('memory'));
  if (info.policy === undefined) {
    try {
      const r = (await redis.config('GET', 'maxmemory-policy')) as unknown;
      if (Array.isArray(r) && typeof r[1] === 'string') info.policy = r[1];
    } catch {
      // CONFIG disabled (managed Redis) and INFO silent: the policy cannot be known.
    }
  }
  return info;
}

/**
 * Throws RedisEvictionPolicyError unless Redis's maxmemory-policy is `noeviction`: with any other policy,
 * Redis evicts keys under memory pressure and BullMQ loses jobs (their data goes, their ids stay queued).
 * Returns the policy (undefined when Redis does not tell it: the check cannot refuse what it cannot see).
 */
export async function assertNoEviction(redis: RedisConnection): Promise<string | undefined> {
  const { policy } = await readRedisMemory(redis);
  if (policy !== undefined && policy !== 'noeviction') throw new RedisEvictionPolicyError(policy);
  return policy;
}

/**
 * For a process about to start: checks the policy of the Redis at `url` if it answers within `timeoutMs`.
 * Resolves `checked` or `unreachable` (a Redis that is down now is checked by each component when it
 * connects); throws RedisEvictionPolicyError.
 */
export async function checkEvictionPolicyAt(
  url: string,
  timeoutMs = 2000,
): Promise<'checked' | 'unreachable'> {
  // A cluster: every seed node is checked; one that answers is enough to call it checked.
  const results = await Promise.all(nodeUrls(url).map((u) => checkNodeEvictionPolicy(u, timeoutMs)));
  return results.includes('checked') ? 'checked' : 'unreachable';
}

async function checkNodeEvictionPolicy(url: string, timeoutMs: number): Promise<'checked' | 'unreachable'> {
  const u = new URL(url);
  if (
    u.protocol === 'redis:' &&
    !(await tcpOpen(u.hostname.replace(/^\[|\]$/g, ''), Number(u.port || 6379), timeoutMs))
  )
    return 'unreachable';
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectionName: 'cell0:preflight',
  });
  client.on('error', () => undefined);
  try {
    try {
      await client.connect();
    } catch {
      return 'unreachable';
    }
    await assertNoEviction(client);
    return 'checked';
  } finally {
    client.disconnect();
  }
}

/** What the watch last read, and what it makes of it. */
export interface RedisMemoryReading extends RedisMemoryInfo {
  /**
   * `ok`; `watermark`: used memory at or over the watermark (new work is shed); `full`: at maxmemory
   * (REDIS_FULL_PERCENT of it), or
   * Redis refused a write for memory since the last reading; `eviction_policy`: the policy is not
   * noeviction (changed while running).
   */
  state: 'ok' | 'watermark' | 'full' | 'eviction_policy';
  /** The watermark in force, % of maxmemory; 0 = off. */
  watermarkPercent: number;
  /** When this was read (ms since epoch). */
  readAt: number;
}

/** Options of {@link RedisMemoryWatch}. */
export interface RedisMemoryWatchOptions {
  /** The connection INFO is read on; a function when the connection is made later. */
  redis: RedisConnection | (() => RedisConnection | undefined);
  /**
   * Used memory (% of maxmemory) at and over which new work is shed; 0 = off. No effect when Redis has no
   * maxmemory. Default 90 (CELL0_REDIS_MEMORY_WATERMARK).
   */
  watermarkPercent?: number;
  /** How often INFO memory is read, ms. Default 1000. */
  everyMs?: number;
  /** Retry-After of a refusal, ms. Default 5000. */
  retryAfterMs?: number;
  logger?: Logger;
}

const DEFAULTS = { watermarkPercent: 90, everyMs: 1000, retryAfterMs: 5000 };

/**
 * Used memory (% of maxmemory) from which Redis counts as full. Not 100: used_memory moves with client
 * buffers, so a Redis that has just refused a write can read a little under its maxmemory a moment later.
 */
export const REDIS_FULL_PERCENT = 99;

/** True when `info` says Redis is (as good as) at its maxmemory. */
export function isFull(info: RedisMemoryInfo): boolean {
  return info.maxBytes > 0 && info.usedBytes >= (info.maxBytes * REDIS_FULL_PERCENT) / 100;
}

/** Events of {@link RedisMemoryWatch}. */
export interface RedisMemoryWatchEvents {
  /** The state changed (ok → watermark → full, and back). */
  'memory:state': [RedisMemoryReading];
}

/**
 * Reads Redis's memory use in the background (INFO memory, an unref'd timer) so that admission decides
 * synchronously on the last reading: `check()` throws RedisFullError while Redis is over the watermark or
 * full. A refused write (OOM) seen by the caller is reported with `noteOom()` and counts as full at once.
 * Logs each state change once.
 */
export class RedisMemoryWatch extends EventEmitter<RedisMemoryWatchEvents> {
  private readonly opts: Omit<RedisMemoryWatchOptions, 'redis'> & typeof DEFAULTS;
  private readonly conn: () => RedisConnection | undefined;
  private readonly log: Logger;
  private last: RedisMemoryReading | undefined;
  private oomAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;

  constructor(options: RedisMemoryWatchOptions) {
    super();
    const opts = withDefaults<RedisMemoryWatchOptions & typeof DEFAULTS>(DEFAULTS, options);
    if (!(opts.watermarkPercent >= 0 && opts.watermarkPercent <= 100))
      throw new TypeError(
        `RedisMemoryWatch: option "watermarkPercent" must be from 0 to 100, got ${opts.watermarkPercent}`,
      );
    if (!(opts.everyMs > 0)) throw new TypeError(`RedisMemoryWatch: option "everyMs" must be > 0`);
    this.opts = opts;
    const r = options.redis;
    this.conn = typeof r === 'function' ? r : () => r;
    this.log = opts.logger ?? silentLogger();
  }

  /** Starts reading in the background (the first reading now). Idempotent. */
  start(): Promise<void> {
    if (!this.timer) {
      this.timer = setInterval(() => void this.refresh(), this.opts.everyMs);
      this.timer.unref();
    }
    return this.refresh();
  }

  /** Reads INFO memory now (shared by concurrent callers); a failed read keeps the last reading. */
  refresh(): Promise<void> {
    this.reading ??= this.read()
      .catch(() => undefined)
      .finally(() => (this.reading = undefined));
    return this.reading;
  }

  /** The last reading, or undefined before the first one. */
  snapshot(): RedisMemoryReading | undefined {
    if (!this.last) return undefined;
    // An OOM reported after the last reading makes it full until the next reading says otherwise.
    if (this.oomAt > this.last.readAt && this.last.state !== 'eviction_policy')
      return { ...this.last, state: 'full' };
    return this.last;
  }

  /** A write was refused with OOM: full at once (the next reading decides again). */
  noteOom(): void {
    const before = this.snapshot()?.state;
    this.oomAt = Date.now();
    if (before !== 'full') {
      const now = this.snapshot();
      if (now) this.changed(before, now);
      void this.refresh();
    }
  }

  /** Throws RedisFullError when new work must be refused for Redis memory now. Never waits on Redis. */
  check(): void {
    const r = this.snapshot();
    if (!r || (r.state !== 'full' && r.state !== 'watermark')) return;
    throw fullError(r, this.opts.retryAfterMs);
  }

  /** Stops the timer. Idempotent. */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async read(): Promise<void> {
    const conn = this.conn();
    if (!conn || conn.status !== 'ready') return;
    const info = await readRedisMemory(conn);
    const before = this.snapshot()?.state;
    const wm = this.opts.watermarkPercent;
    let state: RedisMemoryReading['state'] = 'ok';
    if (info.policy !== undefined && info.policy !== 'noeviction') state = 'eviction_policy';
    else if (isFull(info)) state = 'full';
    else if (wm > 0 && info.usedPercent !== null && info.usedPercent >= wm) state = 'watermark';
    this.last = { ...info, state, watermarkPercent: wm, readAt: Date.now() };
    this.changed(before, this.snapshot()!);
  }

  private changed(before: RedisMemoryReading['state'] | undefined, now: RedisMemoryReading): void {
    if (before === now.state || (before === undefined && now.state === 'ok')) return;
    const fields = {
      state: now.state,
      usedBytes: now.usedBytes,
      maxBytes: now.maxBytes,
      usedPercent: now.usedPercent,
      watermarkPercent: now.watermarkPercent,
      policy: now.policy,
    };
    if (now.state === 'ok') this.log.info(fields, 'Redis memory back under the watermark; taking new work');
    else if (now.state === 'eviction_policy')
      this.log.error(fields, 'Redis maxmemory-policy is not noeviction: queued jobs can be evicted and lost');
    else
      this.log.warn(
        fields,
        `Redis memory ${now.state === 'full' ? 'full' : 'over the watermark'}; new work is refused`,
      );
    this.emit('memory:state', now);
  }
}

/** The refusal for a reading over the watermark or full. */
export function fullError(r: RedisMemoryReading, retryAfterMs: number): RedisFullError {
  const used = r.usedPercent === null ? `${r.usedBytes} bytes` : `${r.usedPercent}% of maxmemory`;
  return r.state === 'full'
    ? new RedisFullError('oom', `the queue store (Redis) is full (${used}); retry later`, retryAfterMs)
    : new RedisFullError(
        'watermark',
        `the queue store (Redis) is at ${used}, over the ${r.watermarkPercent}% watermark (CELL0_REDIS_MEMORY_WATERMARK); retry later`,
        retryAfterMs,
      );
}

/** True when `err` is Redis refusing a write for memory (an OOM reply, possibly from inside a script). */
export function isOomError(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : typeof err === 'string' ? err : '';
  return /^OOM command not allowed|OOM command not allowed when used memory/.test(msg);
}
