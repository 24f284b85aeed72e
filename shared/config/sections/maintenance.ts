import { parseCleanupPaths, type CleanupPathSetting } from '../resource-settings.js';
import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { int, parsedList } from '../schemas.js';

/*
 * Maintenance: the fleet's scheduled monitor and cleanup jobs, and disk cleanup.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const MAINTENANCE_ENV = {
  CELL0_MONITOR_EVERY_MS: {
    section: 'maintenance',
    default: '5000',
    schema: int(1000, 3_600_000),
    doc: "Period of the fleet's scheduled monitor job (fleet summary, dead workers), ms",
  },
  CELL0_CLEANUP_EVERY_MS: {
    section: 'maintenance',
    default: '300000',
    schema: int(10_000, 86_400_000),
    doc: "Period of the fleet's scheduled cleanup job (disk, expired cache records, old jobs), ms",
  },
  CELL0_CLEANUP_PATHS: {
    section: 'maintenance',
    schema: parsedList(parseCleanupPaths),
    doc: 'Folders the cleanup job keeps tidy: folder=days (files older than that are removed), e.g. /var/tmp/cell0=2,logs=7',
  },
  CELL0_DISK_CLEANUP_THRESHOLD: {
    section: 'maintenance',
    default: '90',
    schema: int(1, 100),
    doc: 'Disk use (%) above which cleanup also removes the oldest files of CELL0_CLEANUP_PATHS until under it',
  },
} satisfies Record<string, EnvVar>;

/** The maintenance settings of Config.resources. */
export interface MaintenanceConfig {
  monitorEveryMs: number;
  cleanupEveryMs: number;
  cleanupPaths: CleanupPathSetting[];
  diskCleanupThreshold: number;
}

export function loadMaintenance(p: ParsedEnv<typeof MAINTENANCE_ENV>): MaintenanceConfig {
  return {
    monitorEveryMs: p.CELL0_MONITOR_EVERY_MS,
    cleanupEveryMs: p.CELL0_CLEANUP_EVERY_MS,
    cleanupPaths: p.CELL0_CLEANUP_PATHS ?? [],
    diskCleanupThreshold: p.CELL0_DISK_CLEANUP_THRESHOLD,
  };
}
