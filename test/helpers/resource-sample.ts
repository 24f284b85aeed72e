import { type ResourceSample } from '../../shared/resources/types';

/** Values of a test sample; unset ones are low (within every default limit). */
export interface SampleValues {
  memory?: number;
  /** cell0's own CPU (the limited figure). */
  cpu?: number;
  /** The host's CPU (informational). */
  hostCpu?: number;
  disk?: number;
  heap?: number;
  /** Event-loop delay p99, ms. */
  eld?: number;
}

/** A new sample object each call (the limiter counts a sample object once). */
export function resourceSample(v: SampleValues = {}): ResourceSample {
  return {
    at: Date.now(),
    memoryPercent: v.memory ?? 10,
    cpuPercent: v.cpu ?? 10,
    cpuScope: 'process',
    cpuCores: 1,
    hostCpuPercent: v.hostCpu ?? v.cpu ?? 10,
    diskPercent: v.disk ?? 10,
    memoryTotalBytes: 1e10,
    memoryUsedBytes: ((v.memory ?? 10) / 100) * 1e10,
    process: {
      rssBytes: 1e8,
      heapUsedBytes: 1e7,
      heapLimitBytes: 4e9,
      heapPercent: v.heap ?? 1,
      eventLoopDelayMeanMs: 0,
      eventLoopDelayP99Ms: v.eld ?? 0,
    },
  };
}
