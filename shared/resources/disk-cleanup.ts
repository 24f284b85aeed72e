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
import { type Stats } from 'node:fs';
import { lstat, opendir, realpath, rmdir, statfs, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, parse, resolve, sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ClosedError } from '../errors.js';
import { withDefaults } from '../with-defaults.js';

/** How full a filesystem is. */
export interface DiskUsage {
  /** Use %, 0–100, as df computes it: used / (used + available to unprivileged users). */
  percent: number;
  /** Size of the filesystem, bytes. */
  totalBytes: number;
  /** Bytes available to unprivileged users. */
  freeBytes: number;
}

/** Options of {@link DiskCleanupManager}. */
export interface DiskCleanupOptions {
  /**
   * Disk use % of the filesystem holding a registered folder above which cleanup turns aggressive: after
   * the age-based removal it removes the oldest remaining files of the folders on that filesystem until use
   * is no longer above the threshold. 1–100 (100 = never aggressive). Default 90.
   */
  cleanupThreshold?: number;
  /** Interval of start()'s timer, ms. 0 = no timer: cleanup only runs when run() is called. Default 300000. */
  intervalMs?: number;
  /** Report what would be removed without removing anything. run() can override it. Default false. */
  dryRun?: boolean;
  /**
   * Most directory entries one pass examines, over all folders; a pass that reaches it stops walking and
   * says so in its errors. Bounds the time and memory a pathological tree can cost. Default 1000000.
   */
  maxEntries?: number;
  /** Use of the filesystem holding `path`. Default {@link statfsDiskUsage}; tests inject a fake. */
  diskUsage?: (path: string) => Promise<DiskUsage>;
  /** Clock deciding file ages, ms since epoch. Default Date.now. */
  now?: () => number;
}

/** What one pass did to one registered folder. */
export interface CleanupPathReport {
  /** The folder as registered (absolute). */
  path: string;
  maxAgeDays: number;
  /** Files removed (or, in a dry run, that would be), by age and by the oldest-first phase together. */
  removedFiles: number;
  removedBytes: number;
  /** Directories removed because they were left empty and are older than the max age. */
  removedDirs: number;
  /** Of removedFiles, those removed by the oldest-first phase (disk over the threshold). */
  aggressiveFiles: number;
  errors: number;
  /** Use % of the folder's filesystem at the start and at the end of the pass (simulated in a dry run). */
  diskPercentBefore?: number;
  diskPercentAfter?: number;
}

/** The outcome of one cleanup pass. */
export interface CleanupReport {
  dryRun: boolean;
  /** When the pass started (ISO 8601). */
  startedAt: string;
  durationMs: number;
  /** One entry per registered folder, in registration order. */
  paths: CleanupPathReport[];
  removedFiles: number;
  removedBytes: number;
  /** Up to 100 of the removed (or, in a dry run, would-be-removed) files, for the log. */
  sample: string[];
  /** Up to 20 of the problems met; the per-folder `errors` counts are complete. */
  errors: { path: string; error: string }[];
}

/** Events of {@link DiskCleanupManager}. */
export interface DiskCleanupEvents {
  /** After every pass, whoever started it. */
  'cleanup:done': [CleanupReport];
  /** A pass started by the timer failed as a whole (a single file's problem is in the report instead). */
  'cleanup:error': [Error];
}

/** Options of {@link DiskCleanupManager.run}. */
export interface CleanupRunOptions {
  /** Overrides the manager's dryRun for this pass. */
  dryRun?: boolean;
  /**
   * Go on to the oldest-first phase even if the use measured at the start of the pass was not above the
   * threshold (by default that phase is skipped then, and the remaining files are not even collected). It
   * still removes files only while the use measured after the age-based removal is above the threshold.
   */
  aggressive?: boolean;
}

const DEFAULTS = {
  cleanupThreshold: 90,
  intervalMs: 300_000,
  dryRun: false,
  maxEntries: 1_000_000,
  diskUsage: statfsDiskUsage,
  now: Date.now,
};
type Resolved = typeof DEFAULTS;

const DAY_MS = 86_400_000;
const MAX_SAMPLE = 100;
const MAX_ERRORS = 20;
/** Files removed between two measurements in the oldest-first phase. */
const MAX_BATCH_FILES = 50;
/** Slack in percent comparisons: a use computed as 30.000000000000004 is at a threshold of 30, not over. */
const EPSILON = 1e-9;
/** setInterval's largest delay; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Use of the filesystem holding `path`, from statfs(2), with df's formula. */
export async function statfsDiskUsage(path: string): Promise<DiskUsage> {
  const s = await statfs(path);
  const used = (s.blocks - s.bfree) * s.bsize;
  const avail = s.bavail * s.bsize;
  return {
    percent: used + avail > 0 ? (used / (used + avail)) * 100 : 0,
    totalBytes: s.blocks * s.bsize,
    freeBytes: avail,
  };
}

/**
 * The byte count `percent` is a share of (used + available). It is derived rather than taken to be
 * totalBytes because df's formula leaves out the blocks reserved for root.
 */
function capacityOf(u: DiskUsage): number {
  return u.percent < 100 ? u.freeBytes / (1 - u.percent / 100) : u.totalBytes;
}

/** `u` with `bytes` more free. */
function afterFreeing(u: DiskUsage, bytes: number): DiskUsage {
  const cap = capacityOf(u);
  const percent = cap > 0 ? Math.max(0, u.percent - (bytes / cap) * 100) : u.percent;
  return { percent, totalBytes: u.totalBytes, freeBytes: u.freeBytes + bytes };
}

/** Why a folder must never be cleaned, or undefined when it may be. `homes` are absolute. */
function refusal(dir: string, homes: readonly string[]): string | undefined {
  if (parse(dir).root === dir) return 'is the filesystem root';
  for (const home of homes) {
    if (dir === home) return 'is the home directory';
    if (home.startsWith(dir.endsWith(sep) ? dir : dir + sep)) return 'contains the home directory';
  }
  return undefined;
}

function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A directory met by the walk. */
interface DirNode {
  path: string;
  /** Index of the parent in the same list; -1 for the registered folder. */
  parent: number;
  mtimeMs: number;
  /** Entries still in it, as far as the pass knows. */
  left: number;
  /** Listed to the end; only then can `left` reach 0 honestly. */
  complete: boolean;
}

/** A regular file kept by the age phase: a candidate of the oldest-first phase. */
interface FileNode {
  path: string;
  size: number;
  mtimeMs: number;
  root: Root;
  dir: number;
}

/** One registered folder during a pass. */
interface Root {
  report: CleanupPathReport;
  cutoffMs: number;
  /** Real path and device; undefined when the folder is skipped. */
  real?: string;
  dev?: number;
  /** Breadth-first, so children always come after their parent and reverse order is bottom-up. */
  dirs: DirNode[];
}

/** State of one pass. */
interface Pass {
  dryRun: boolean;
  entries: number;
  sample: string[];
  errors: { path: string; error: string }[];
  /** Real paths of all registered folders: each is walked on its own, with its own max age. */
  realRoots: Set<string>;
  /** Folders whose walk the entry budget cut short. */
  capped: Set<Root>;
  /** Work was left undone because close() was called. */
  halted: boolean;
}

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
    this.running ??= this.pass(opts.dryRun ?? this.opts.dryRun, opts.aggressive ?? false).finally(() => {
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

  private async pass(dryRun: boolean, forceAggressive: boolean): Promise<CleanupReport> {
    const t0 = performance.now();
    const startedMs = this.opts.now();
    const pass: Pass = {
      dryRun,
      entries: 0,
      sample: [],
      errors: [],
      realRoots: new Set(),
      capped: new Set(),
      halted: false,
    };
    const roots = await this.resolveRoots(pass, startedMs);

    // Folders on one filesystem share its space: the oldest-first phase ranks their files together.
    const groups = new Map<number, Root[]>();
    for (const r of roots) if (r.real !== undefined) groups.set(r.dev!, [...(groups.get(r.dev!) ?? []), r]);

    const before = new Map<number, DiskUsage>();
    for (const [dev, group] of groups) {
      const u = await this.measure(pass, group[0]!);
      if (!u) continue;
      before.set(dev, u);
      for (const r of group) r.report.diskPercentBefore = u.percent;
    }

    const candidates = new Map<number, FileNode[]>();
    for (const [dev, group] of groups) {
      const u = before.get(dev);
      // A filesystem that was under the threshold stays under it by removing files: no need to keep the
      // (possibly huge) list of remaining files.
      const collect = forceAggressive || (u !== undefined && u.percent > this.cleanupThreshold + EPSILON);
      const files = collect ? [] : undefined;
      if (files) candidates.set(dev, files);
      for (const r of group) await this.walk(pass, r, files);
    }

    for (const [dev, files] of candidates)
      if (!this.halted(pass)) await this.removeOldestFirst(pass, groups.get(dev)!, files, before.get(dev));

    for (const r of roots) if (r.dirs.length > 1 && !this.halted(pass)) await this.removeEmptyDirs(pass, r);

    for (const [dev, group] of groups) {
      let u: DiskUsage | undefined;
      if (dryRun) {
        const b = before.get(dev);
        u =
          b &&
          afterFreeing(
            b,
            group.reduce((sum, r) => sum + r.report.removedBytes, 0),
          );
      } else {
        u = await this.measure(pass, group[0]!);
      }
      if (u) for (const r of group) r.report.diskPercentAfter = u.percent;
    }

    if (pass.halted)
      for (const r of roots)
        if (r.real !== undefined) this.fail(pass, r, r.report.path, 'stopped early: the cleaner was closed');

    const report: CleanupReport = {
      dryRun,
      startedAt: new Date(startedMs).toISOString(),
      durationMs: Math.round(performance.now() - t0),
      paths: roots.map((r) => r.report),
      removedFiles: roots.reduce((n, r) => n + r.report.removedFiles, 0),
      removedBytes: roots.reduce((n, r) => n + r.report.removedBytes, 0),
      sample: pass.sample,
      errors: pass.errors,
    };
    this.last = report;
    this.emit('cleanup:done', report);
    return report;
  }

  /** Resolves every registered folder to its real path, skipping (with an error) those that cannot be. */
  private async resolveRoots(pass: Pass, startedMs: number): Promise<Root[]> {
    const home = resolve(homedir());
    // A home reached through a symlink is still the home.
    const homes = [home, await realpath(home).catch(() => home)];
    const roots: Root[] = [];
    for (const [path, maxAgeDays] of this.registered) {
      const root: Root = {
        report: {
          path,
          maxAgeDays,
          removedFiles: 0,
          removedBytes: 0,
          removedDirs: 0,
          aggressiveFiles: 0,
          errors: 0,
        },
        cutoffMs: startedMs - maxAgeDays * DAY_MS,
        dirs: [],
      };
      roots.push(root);
      try {
        const real = await realpath(path);
        const st = await lstat(real);
        if (!st.isDirectory()) throw new Error(`${path} is not a directory`);
        const why = refusal(real, homes);
        if (why) throw new Error(`${path} resolves to ${real}, which ${why}: not cleaned`);
        const same = roots.find((r) => r.real === real);
        if (same) throw new Error(`${path} is the same folder as ${same.report.path}: cleaned once, as that`);
        root.real = real;
        root.dev = st.dev;
        pass.realRoots.add(real);
      } catch (err) {
        this.fail(pass, root, path, errnoOf(err) === 'ENOENT' ? `${path} does not exist` : err);
      }
    }
    return roots;
  }

  private async measure(pass: Pass, root: Root): Promise<DiskUsage | undefined> {
    try {
      const u = await this.opts.diskUsage(root.real!);
      if (!(Number.isFinite(u.percent) && Number.isFinite(u.freeBytes) && Number.isFinite(u.totalBytes)))
        throw new Error(`disk usage of ${root.real!} is not a number: ${JSON.stringify(u)}`);
      return u;
    } catch (err) {
      this.fail(pass, root, root.real!, err);
      return undefined;
    }
  }

  /**
   * Walks one folder breadth-first without recursion, removing regular files older than its max age and
   * adding the others to `keep` when given.
   */
  private async walk(pass: Pass, root: Root, keep: FileNode[] | undefined): Promise<void> {
    if (root.real === undefined) return;
    const dirs = root.dirs;
    dirs.push({ path: root.real, parent: -1, mtimeMs: Infinity, left: 0, complete: false });
    for (let i = 0; i < dirs.length && !this.halted(pass); i++) {
      if (pass.entries >= this.opts.maxEntries) return this.capped(pass, root);
      const dir = dirs[i]!;
      const names = await this.list(pass, root, dir, i);
      for (const name of names) {
        if (this.halted(pass)) return;
        const path = join(dir.path, name);
        let st: Stats;
        try {
          st = await lstat(path);
        } catch (err) {
          if (errnoOf(err) === 'ENOENT') dir.left--;
          else this.fail(pass, root, path, err);
          continue;
        }
        if (st.isDirectory()) {
          // Another filesystem mounted here is not ours to clean, and its space is not what we measure; a
          // folder registered on its own is cleaned by its own walk, with its own max age.
          if (st.dev !== root.dev || pass.realRoots.has(path)) continue;
          dirs.push({ path, parent: i, mtimeMs: st.mtimeMs, left: 0, complete: false });
        } else if (st.isFile()) {
          const file: FileNode = { path, size: st.size, mtimeMs: st.mtimeMs, root, dir: i };
          if (st.mtimeMs < root.cutoffMs) await this.removeFile(pass, file, false);
          else keep?.push(file);
        }
        // Symlinks, sockets, fifos and devices are left alone, and keep their folder from being removed.
      }
    }
  }

  /** The names in `dir`, up to what is left of the pass's entry budget. */
  private async list(pass: Pass, root: Root, dir: DirNode, index: number): Promise<string[]> {
    const names: string[] = [];
    try {
      // Listed in full before anything in it is removed: removing entries while a directory is being read
      // may make some filesystems skip others.
      const handle = await opendir(dir.path);
      try {
        for await (const entry of handle) {
          if (pass.entries >= this.opts.maxEntries) {
            this.capped(pass, root);
            return names; // left incomplete: never removed as empty
          }
          pass.entries++;
          names.push(entry.name);
        }
      } finally {
        // The async iterator closes the handle when it ends; closing again is harmless but rejects.
        await handle.close().catch(() => undefined);
      }
    } catch (err) {
      // Gone since its parent was listed: one entry less there, and nothing to do here.
      if (errnoOf(err) === 'ENOENT' && index > 0) root.dirs[root.dirs[index]!.parent]!.left--;
      else this.fail(pass, root, dir.path, err);
      return [];
    }
    dir.left = names.length;
    dir.complete = true;
    return names;
  }

  /** Removes (or, in a dry run, counts) one file; true when it went. */
  private async removeFile(pass: Pass, file: FileNode, aggressive: boolean): Promise<boolean> {
    const dir = file.root.dirs[file.dir]!;
    if (!pass.dryRun) {
      try {
        await unlink(file.path);
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') dir.left--;
        else this.fail(pass, file.root, file.path, err);
        return false;
      }
    }
    dir.left--;
    const r = file.root.report;
    r.removedFiles++;
    r.removedBytes += file.size;
    if (aggressive) r.aggressiveFiles++;
    if (pass.sample.length < MAX_SAMPLE) pass.sample.push(file.path);
    return true;
  }

  /**
   * Removes the oldest files of one filesystem's folders, a batch at a time, while its use is above the
   * threshold. A batch holds the oldest files whose sizes add up to what is needed to get under it.
   */
  private async removeOldestFirst(
    pass: Pass,
    group: Root[],
    files: FileNode[],
    before: DiskUsage | undefined,
  ): Promise<void> {
    const root = group[0]!;
    let u: DiskUsage | undefined;
    if (pass.dryRun) {
      // Nothing was removed: what the measurement would say is what it said, less what would have gone.
      u =
        before &&
        afterFreeing(
          before,
          group.reduce((sum, r) => sum + r.report.removedBytes, 0),
        );
    } else {
      u = await this.measure(pass, root);
    }
    if (!u) return; // without a measurement there is no telling when to stop: remove nothing
    files.sort((a, b) => a.mtimeMs - b.mtimeMs || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    let next = 0;
    while (u.percent > this.cleanupThreshold + EPSILON && next < files.length && !this.halted(pass)) {
      // Whole bytes, less float noise: 200.00000000000003 must not cost one more file.
      const needBytes = Math.ceil(((u.percent - this.cleanupThreshold) / 100) * capacityOf(u) - 1e-6);
      let freed = 0;
      for (let n = 0; n < MAX_BATCH_FILES && freed < needBytes && next < files.length; n++) {
        const file = files[next++]!;
        if (!pass.dryRun && !(await this.unchanged(pass, file))) continue;
        if (await this.removeFile(pass, file, true)) freed += file.size;
      }
      const expected = afterFreeing(u, freed);
      if (pass.dryRun) {
        u = expected;
        continue;
      }
      const measured = await this.measure(pass, root);
      if (!measured) return;
      // Space held by open files or freed lazily (copy-on-write filesystems) may not show yet: trusting
      // the measurement alone could then remove every file. Never go further than our own accounting says.
      u = measured.percent < expected.percent ? measured : expected;
    }
  }

  /** True when `file` is still the regular file the walk saw (it may have been rewritten since). */
  private async unchanged(pass: Pass, file: FileNode): Promise<boolean> {
    try {
      const st = await lstat(file.path);
      return st.isFile() && st.mtimeMs === file.mtimeMs;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') file.root.dirs[file.dir]!.left--;
      else this.fail(pass, file.root, file.path, err);
      return false;
    }
  }

  /**
   * Removes, bottom-up, the directories left empty that are older than the max age (by their mtime before
   * this pass touched them): an empty directory changed recently is likely about to be written to.
   */
  private async removeEmptyDirs(pass: Pass, root: Root): Promise<void> {
    const dirs = root.dirs;
    for (let i = dirs.length - 1; i > 0; i--) {
      const dir = dirs[i]!;
      if (!dir.complete || dir.left > 0 || dir.mtimeMs >= root.cutoffMs) continue;
      if (!pass.dryRun) {
        try {
          // rmdir only ever removes an empty directory, and never through a symlink.
          await rmdir(dir.path);
        } catch (err) {
          const code = errnoOf(err);
          if (code === 'ENOENT') dirs[dir.parent]!.left--;
          else if (code !== 'ENOTEMPTY' && code !== 'EEXIST') this.fail(pass, root, dir.path, err);
          continue; // not empty any more: something was written meanwhile
        }
      }
      root.report.removedDirs++;
      dirs[dir.parent]!.left--;
    }
  }

  /** True once close() has been called; notes that the pass then left work undone. */
  private halted(pass: Pass): boolean {
    if (this.abort.signal.aborted) pass.halted = true;
    return pass.halted;
  }

  /** Notes once per folder that the entry budget ran out before its walk ended. */
  private capped(pass: Pass, root: Root): void {
    if (pass.capped.has(root)) return;
    pass.capped.add(root);
    this.fail(
      pass,
      root,
      root.real!,
      `entry cap reached (maxEntries ${this.opts.maxEntries}): the rest of the folder was not examined`,
    );
  }

  private fail(pass: Pass, root: Root, path: string, err: unknown): void {
    root.report.errors++;
    if (pass.errors.length < MAX_ERRORS) pass.errors.push({ path, error: messageOf(err) });
  }
}
