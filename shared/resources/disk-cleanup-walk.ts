import { statfs } from 'node:fs/promises';
import { parse, sep } from 'node:path';
import { type CleanupPathReport, type DiskUsage } from './disk-cleanup-types.js';

/* What one cleanup pass works with: disk-use arithmetic, the folders it must never clean, its walk state. */

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
export function capacityOf(u: DiskUsage): number {
  return u.percent < 100 ? u.freeBytes / (1 - u.percent / 100) : u.totalBytes;
}

/** `u` with `bytes` more free. */
export function afterFreeing(u: DiskUsage, bytes: number): DiskUsage {
  const cap = capacityOf(u);
  const percent = cap > 0 ? Math.max(0, u.percent - (bytes / cap) * 100) : u.percent;
  return { percent, totalBytes: u.totalBytes, freeBytes: u.freeBytes + bytes };
}

/** Why a folder must never be cleaned, or undefined when it may be. `homes` are absolute. */
export function refusal(dir: string, homes: readonly string[]): string | undefined {
  if (parse(dir).root === dir) return 'is the filesystem root';
  for (const home of homes) {
    if (dir === home) return 'is the home directory';
    if (home.startsWith(dir.endsWith(sep) ? dir : dir + sep)) return 'contains the home directory';
  }
  return undefined;
}

export function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A directory met by the walk. */
export interface DirNode {
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
export interface FileNode {
  path: string;
  size: number;
  mtimeMs: number;
  root: Root;
  dir: number;
}

/** One registered folder during a pass. */
export interface Root {
  report: CleanupPathReport;
  cutoffMs: number;
  /** Real path and device; undefined when the folder is skipped. */
  real?: string;
  dev?: number;
  /** Breadth-first, so children always come after their parent and reverse order is bottom-up. */
  dirs: DirNode[];
}

/** State of one pass. */
export interface Pass {
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
