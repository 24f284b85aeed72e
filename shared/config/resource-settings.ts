/*
 * Parsers of the resource-management variables that are more than a number: memory sizes, model
 * priorities and pins, and cleanup paths. Each throws an Error whose message becomes the variable's reason.
 */

const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** Parses a byte size such as `12GB`, `800 MiB`, `4e9` (bytes). GB = 1e9 bytes, GiB = 2^30. */
export function parseBytes(value: string): number {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = UNITS[(m?.[2] ?? '').toLowerCase() || 'b'];
  if (!m || unit === undefined)
    throw new Error('expected a size such as 16GB, 800MB, 12GiB or a number of bytes');
  const n = Math.round(Number(m[1]) * unit);
  if (!Number.isFinite(n) || n <= 0) throw new Error('expected a size > 0');
  return n;
}

/** CELL0_MODEL_MEMORY_BUDGET: `auto` (half of the host's memory), `off`, or a size. */
export type ModelBudgetSetting = { kind: 'auto' } | { kind: 'off' } | { kind: 'bytes'; bytes: number };

export function parseModelBudget(value: string): ModelBudgetSetting {
  const v = value.trim().toLowerCase();
  if (v === 'auto') return { kind: 'auto' };
  if (v === 'off' || v === '0') return { kind: 'off' };
  try {
    return { kind: 'bytes', bytes: parseBytes(v) };
  } catch {
    throw new Error('expected auto, off, or a size such as 16GB or 12GiB');
  }
}

/** One entry of CELL0_MODEL_PRIORITIES. */
export interface ModelPriorityRule {
  /** Glob over model names (`*` = any run of characters). */
  pattern: string;
  priority: number;
  pinned: boolean;
}

/**
 * Parses CELL0_MODEL_PRIORITIES: `pattern=priority` or `pattern=pin` (never evicted), comma-separated;
 * e.g. `nomic-embed-text*=pin,qwen2.5:7b=10,*:70b=-5`. The first matching rule applies.
 */
export function parseModelPriorities(value: string): ModelPriorityRule[] {
  return splitEntries(value).map((entry) => {
    const eq = entry.lastIndexOf('=');
    const pattern = entry.slice(0, eq).trim();
    const what = entry.slice(eq + 1).trim();
    if (eq <= 0 || pattern === '' || what === '')
      throw new Error(`"${entry}": expected pattern=priority or pattern=pin`);
    if (what.toLowerCase() === 'pin') return { pattern, priority: 0, pinned: true };
    const n = Number(what);
    if (!/^-?\d+$/.test(what) || !Number.isSafeInteger(n))
      throw new Error(`"${entry}": the priority must be an integer (or "pin")`);
    return { pattern, priority: n, pinned: false };
  });
}

/** One entry of CELL0_CLEANUP_PATHS. */
export interface CleanupPathSetting {
  path: string;
  maxAgeDays: number;
}

/** Parses CELL0_CLEANUP_PATHS: `folder=days`, comma-separated; days may be a fraction (0.5 = 12 h). */
export function parseCleanupPaths(value: string): CleanupPathSetting[] {
  return splitEntries(value).map((entry) => {
    const eq = entry.lastIndexOf('=');
    const path = entry.slice(0, eq).trim();
    const days = Number(entry.slice(eq + 1).trim());
    if (eq <= 0 || path === '') throw new Error(`"${entry}": expected folder=days`);
    if (!Number.isFinite(days) || days <= 0) throw new Error(`"${entry}": days must be a number > 0`);
    if (path === '/' || /^[A-Za-z]:[\\/]?$/.test(path))
      throw new Error(`"${entry}": refusing to clean a filesystem root`);
    return { path, maxAgeDays: days };
  });
}

function splitEntries(value: string): string[] {
  return value
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e.length > 0);
}
