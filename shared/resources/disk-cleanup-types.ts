/* The options, reports and events of DiskCleanupManager (disk-cleanup.ts re-exports them). */

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
