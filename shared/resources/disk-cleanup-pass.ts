/*
 * One cleanup pass of DiskCleanupManager (disk-cleanup.ts): resolves the registered folders, removes files
 * past their max age, then the oldest remaining files of a filesystem still above the threshold, then the
 * directories left empty. The manager owns the options, the registered folders and the timer; a pass owns
 * only the walk.
 */
import { type Stats } from 'node:fs';
import { lstat, opendir, realpath, rmdir, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type CleanupReport, type DiskUsage } from './disk-cleanup-types.js';
import {
  afterFreeing,
  capacityOf,
  errnoOf,
  messageOf,
  refusal,
  type DirNode,
  type FileNode,
  type Pass,
  type Root,
} from './disk-cleanup-walk.js';

const DAY_MS = 86_400_000;
const MAX_SAMPLE = 100;
const MAX_ERRORS = 20;
/** Files removed between two measurements in the oldest-first phase. */
const MAX_BATCH_FILES = 50;
/** Slack in percent comparisons: a use computed as 30.000000000000004 is at a threshold of 30, not over. */
const EPSILON = 1e-9;

/** What a pass reads from its manager. */
export interface PassSettings {
  cleanupThreshold: number;
  maxEntries: number;
  diskUsage: (path: string) => Promise<DiskUsage>;
  now: () => number;
  /** Registered folders (absolute) and their max age in days. */
  registered: ReadonlyMap<string, number>;
  /** Aborted by close(): the pass stops at the next entry instead of holding up shutdown. */
  signal: AbortSignal;
}

/** Runs passes with the given settings; each run() is one pass over every registered folder. */
export class CleanupPass {
  constructor(private readonly settings: PassSettings) {}

  async run(dryRun: boolean, forceAggressive: boolean): Promise<CleanupReport> {
    const t0 = performance.now();
    const startedMs = this.settings.now();
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
      const collect =
        forceAggressive || (u !== undefined && u.percent > this.settings.cleanupThreshold + EPSILON);
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
    return report;
  }

  /** Resolves every registered folder to its real path, skipping (with an error) those that cannot be. */
  private async resolveRoots(pass: Pass, startedMs: number): Promise<Root[]> {
    const home = resolve(homedir());
    // A home reached through a symlink is still the home.
    const homes = [home, await realpath(home).catch(() => home)];
    const roots: Root[] = [];
    for (const [path, maxAgeDays] of this.settings.registered) {
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
      const u = await this.settings.diskUsage(root.real!);
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
      if (pass.entries >= this.settings.maxEntries) return this.capped(pass, root);
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
          if (pass.entries >= this.settings.maxEntries) {
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
    while (
      u.percent > this.settings.cleanupThreshold + EPSILON &&
      next < files.length &&
      !this.halted(pass)
    ) {
      // Whole bytes, less float noise: 200.00000000000003 must not cost one more file.
      const needBytes = Math.ceil(
        ((u.percent - this.settings.cleanupThreshold) / 100) * capacityOf(u) - 1e-6,
      );
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
    if (this.settings.signal.aborted) pass.halted = true;
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
      `entry cap reached (maxEntries ${this.settings.maxEntries}): the rest of the folder was not examined`,
    );
  }

  private fail(pass: Pass, root: Root, path: string, err: unknown): void {
    root.report.errors++;
    if (pass.errors.length < MAX_ERRORS) pass.errors.push({ path, error: messageOf(err) });
  }
}
