/*
 * Keeps the folders cell0 writes to (downloaded models, caches, logs, job scratch space) from filling the
 * disk: files older than each folder's max age go, and when the filesystem is still fuller than the
 * threshold the oldest remaining files go until it is not.
 *
 * It deletes things, so it errs on the side of keeping them: symlinks are never followed nor removed (they
 * point at things the cleaner does not own), only regular files and directories are touched, the walk never
 * leaves the registered folder's filesystem, and the registered folder itself is never removed.
 */
import { EventEmitter } from 'node:events';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { ClosedError } from '../errors.js';
import { withDefaults } from '../with-defaults.js';
import { CleanupPass } from './disk-cleanup-pass.js';
import {
  type CleanupReport,
  type CleanupRunOptions,
  type DiskCleanupEvents,
  type DiskCleanupOptions,
} from './disk-cleanup-types.js';
import { refusal, statfsDiskUsage } from './disk-cleanup-walk.js';

export type {
  CleanupPathReport,
  CleanupReport,
  CleanupRunOptions,
  DiskCleanupEvents,
  DiskCleanupOptions,
  DiskUsage,
} from './disk-cleanup-types.js';
export { statfsDiskUsage } from './disk-cleanup-walk.js';

const DEFAULTS = {
  cleanupThreshold: 90,
  intervalMs: 300_000,
  dryRun: false,
  maxEntries: 1_000_000,
  diskUsage: statfsDiskUsage,
  now: Date.now,
};
type Resolved = typeof DEFAULTS;

/** setInterval's largest delay; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Removes old files from registered folders, on a timer (start()) or on demand (run()). Names follow the
 * seed (register_cleanup_path, start, cleanup_threshold).
 */
export class DiskCleanupManager extends EventEmitter<DiskCleanupEvents> {
  readonly cleanupThreshold: number;
  private readonly opts: Resolved;
  private readonly registered = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<CleanupReport> | undefined;
  private last: CleanupReport | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Aborted by close(): a pass in progress stops at the next entry instead of holding up shutdown. */
  private readonly abort = new AbortController();
  private readonly pass: CleanupPass;

  constructor(options: DiskCleanupOptions = {}) {
    super();
    const opts = withDefaults<Resolved>(DEFAULTS, options);
    const bad = (option: string, expected: string, got: unknown): TypeError =>
      new TypeError(`DiskCleanupManager: option "${option}" must be ${expected}, got ${String(got)}`);
    const t = opts.cleanupThreshold;
    if (!(typeof t === 'number' && t >= 1 && t <= 100))
      throw bad('cleanupThreshold', 'a percentage from 1 to 100', t);
    if (!(Number.isInteger(opts.intervalMs) && opts.intervalMs >= 0 && opts.intervalMs <= MAX_TIMER_MS))
      throw bad('intervalMs', `an integer from 0 to ${MAX_TIMER_MS} (ms)`, opts.intervalMs);
    if (typeof opts.dryRun !== 'boolean') throw bad('dryRun', 'a boolean', opts.dryRun);
    if (!(Number.isInteger(opts.maxEntries) && opts.maxEntries >= 1))
      throw bad('maxEntries', 'an integer >= 1', opts.maxEntries);
    if (typeof opts.diskUsage !== 'function') throw bad('diskUsage', 'a function', opts.diskUsage);
    if (typeof opts.now !== 'function') throw bad('now', 'a function', opts.now);
    this.opts = opts;
    this.cleanupThreshold = t;
    this.pass = new CleanupPass({
      cleanupThreshold: t,
      maxEntries: opts.maxEntries,
      diskUsage: opts.diskUsage,
      now: opts.now,
      registered: this.registered,
      signal: this.abort.signal,
    });
  }

  /**
   * Registers a folder: regular files under it whose mtime is older than `maxAgeDays` are removed
   * (fractions allowed: 0.5 = 12 h). Registering it again updates its max age. A relative path is resolved
   * now; symlinks in it are resolved at each pass, and a folder missing then is reported, not fatal. A
   * folder registered inside another one is left out of the outer one's walk and keeps its own max age.
   * Refuses (TypeError) an empty path, a filesystem root, the home directory and any folder holding it.
   */
  registerCleanupPath(path: string, maxAgeDays: number): void {
    if (typeof path !== 'string' || path.trim() === '')
      throw new TypeError('DiskCleanupManager: path must be a non-empty string');
    if (!(typeof maxAgeDays === 'number' && Number.isFinite(maxAgeDays) && maxAgeDays > 0))
      throw new TypeError(`DiskCleanupManager: maxAgeDays must be a number > 0, got ${String(maxAgeDays)}`);
    const abs = resolve(path);
    const why = refusal(abs, [resolve(homedir())]);
    if (why) throw new TypeError(`DiskCleanupManager: refusing to clean "${abs}": it ${why}`);
    this.registered.set(abs, maxAgeDays);
  }

  /** Forgets a folder; true when it was registered. A pass in progress still finishes it. */
  unregisterCleanupPath(path: string): boolean {
    return this.registered.delete(resolve(path));
  }

  /** The registered folders (absolute), in registration order. */
  paths(): { path: string; maxAgeDays: number }[] {
    return [...this.registered].map(([path, maxAgeDays]) => ({ path, maxAgeDays }));
  }

  /** The report of the last finished pass, if any. */
  lastReport(): CleanupReport | undefined {
    return this.last;
  }

  /**
   * One cleanup pass over every registered folder. A call made while a pass is in progress gets that pass's
   * report (its options are those of the pass in progress). Problems with single files or folders are in
   * the report, not thrown; it rejects with ClosedError after close().
   */
  run(opts: CleanupRunOptions = {}): Promise<CleanupReport> {
    if (this.closed) return Promise.reject(new ClosedError('DiskCleanupManager'));
    this.running ??= this.pass
      .run(opts.dryRun ?? this.opts.dryRun, opts.aggressive ?? false)
      .then((report) => {
        this.last = report;
        this.emit('cleanup:done', report);
        return report;
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /**
   * Runs a pass every intervalMs (the first one an interval from now, not at once, so starting a worker
   * does not start with a disk scan). A failed pass is emitted as 'cleanup:error'. No-op when intervalMs is
   * 0 or when already started.
   */
  start(): void {
    if (this.closed) throw new ClosedError('DiskCleanupManager');
    if (this.timer || this.opts.intervalMs === 0) return;
    this.timer = setInterval(() => {
      this.run().catch((err: unknown) => {
        if (!this.closed) this.emit('cleanup:error', err instanceof Error ? err : new Error(String(err)));
      });
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  /**
   * Stops the timer and waits for a pass in progress, which stops at its next entry (its report says so).
   * Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      if (this.timer) clearInterval(this.timer);
      this.timer = undefined;
      this.abort.abort();
      await this.running?.catch(() => undefined);
    })();
    return this.closing;
  }
}
