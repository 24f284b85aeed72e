export * from './types.js';
export {
  ResourceMonitor,
  getResourceMonitor,
  resetResourceMonitor,
  createSystemSampler,
} from './resource-monitor.js';
export type { ResourceMonitorOptions, ResourceMonitorEvents, SystemCpuOptions } from './resource-monitor.js';
export { CpuWindow, cgroupCpuSource, detectCpuSource, processCpuSource, hostCpuTimes } from './cpu-usage.js';
export type { CpuReading, CpuScope, CpuUsageSource, CgroupCpuOptions } from './cpu-usage.js';
export { ResourceLimiter } from './resource-limiter.js';
export type { ResourceLimiterOptions, ResourceLimiterEvents, CleanupHandler } from './resource-limiter.js';
export { ModelMemoryManager } from './model-memory-manager.js';
export type {
  ModelMemoryManagerOptions,
  ModelMemoryManagerEvents,
  ModelLease,
} from './model-memory-manager.js';
export { DiskCleanupManager } from './disk-cleanup.js';
export type { DiskCleanupOptions, CleanupReport, DiskUsage } from './disk-cleanup.js';
export {
  ResourceManagement,
  initializeResourceManagement,
  shutdownResourceManagement,
} from './resource-management.js';
export type { ResourceManagementOptions, ManagedBackend, ModelLeaser } from './resource-management.js';
export { IdleScavenger, exposedGc } from './idle-scavenge.js';
export type { IdleScavengerOptions, GcFunction } from './idle-scavenge.js';
