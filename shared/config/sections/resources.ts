import { type FieldIssue } from '../../errors.js';
import { type ResourceLimits } from '../../resources/types.js';
import { issue, type EnvVar, type ParsedEnv } from '../env-var.js';
import { int } from '../schemas.js';

/*
 * Resource limits and load shedding: when a worker stops taking jobs, and when the API refuses new work.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const RESOURCES_ENV = {
  CELL0_MAX_MEMORY_PERCENT: {
    section: 'resources',
    default: '85',
    schema: int(0, 100),
    doc: "Memory use (% of host RAM, or of the container's memory limit) above which a worker stops taking jobs (0 = no limit)",
  },
  CELL0_MAX_CPU_PERCENT: {
    section: 'resources',
    default: '90',
    schema: int(0, 100),
    doc: "cell0's own CPU (% of its cgroup quota, else % of one core for the worker process) above which a worker counts as saturated; the API sheds only while every worker is and the queue is behind (0 = no limit)",
  },
  CELL0_CPU_WINDOW_MS: {
    section: 'resources',
    default: '10000',
    schema: int(0, 600_000),
    doc: "Sliding window of a worker's CPU figure, ms (0 = each sample interval alone)",
  },
  CELL0_MAX_DISK_PERCENT: {
    section: 'resources',
    default: '95',
    schema: int(0, 100),
    doc: 'Disk use (% of the filesystem holding CELL0_DATA_DIR) above which a worker stops taking jobs (0 = no limit)',
  },
  CELL0_MAX_HEAP_PERCENT: {
    section: 'resources',
    default: '0',
    schema: int(0, 100),
    doc: "A worker's V8 heap use (% of its limit) above which it stops taking jobs (0 = no limit)",
  },
  CELL0_MAX_EVENT_LOOP_DELAY_MS: {
    section: 'resources',
    default: '0',
    schema: int(0, 600_000),
    doc: "A worker's event-loop delay (p99 over a sample interval, ms) above which it stops taking jobs (0 = no limit)",
  },
  CELL0_RESOURCE_SAMPLE_MS: {
    section: 'resources',
    default: '2000',
    schema: int(100, 600_000),
    doc: 'How often each worker samples memory, CPU, disk and its own heap and event loop, ms',
  },
  CELL0_IDLE_SCAVENGE_MS: {
    section: 'resources',
    default: '30',
    schema: int(0, 60_000),
    doc: "Scavenge V8's young generation once a process's event loop has been idle this long after work, ms, so that a burst of requests does not meet a scavenge of the burst before it (0 = off)",
  },
  CELL0_RESOURCE_HYSTERESIS: {
    section: 'resources',
    default: '5',
    schema: int(0, 50),
    doc: 'Points a value must fall below its limit before a worker under pressure takes jobs again',
  },
  CELL0_MAX_QUEUE_DEPTH: {
    section: 'resources',
    default: '10000',
    schema: int(0, 100_000_000),
    doc: 'Jobs waiting in a queue above which POST /v1/* answers 503 with Retry-After (0 = no bound)',
  },
  CELL0_BEHIND_WINDOW_MS: {
    section: 'resources',
    default: '10000',
    schema: int(1000, 3_600_000),
    doc: 'How far back the API looks to tell whether a queue is growing (behind), ms',
  },
  CELL0_BEHIND_WAIT_AGE_MS: {
    section: 'resources',
    default: '30000',
    schema: int(0, 86_400_000),
    doc: 'A queue whose oldest waiting job has waited longer than this counts as behind, ms (0 = only growth counts)',
  },
  CELL0_OVERLOAD_RETRY_AFTER_SEC: {
    section: 'resources',
    default: '5',
    schema: int(1, 3600),
    doc: 'Retry-After of the 503 answered while the fleet is overloaded, seconds',
  },
} satisfies Record<string, EnvVar>;

/** Sampling and shedding settings of Config.resources (models.ts and maintenance.ts add theirs). */
export interface PressureConfig {
  sampleMs: number;
  hysteresis: number;
  cpuWindowMs: number;
  behindWindowMs: number;
  behindWaitAgeMs: number;
  maxQueueDepth: number;
  overloadRetryAfterSec: number;
  /** Idle time after which the young generation is scavenged, ms (0 = off; see IdleScavenger). */
  idleScavengeMs: number;
}

/** Checks across the section's variables (run once each is valid on its own). */
export function checkResources(p: ParsedEnv<typeof RESOURCES_ENV>): FieldIssue[] {
  const issues: FieldIssue[] = [];
  for (const name of [
    'CELL0_MAX_MEMORY_PERCENT',
    'CELL0_MAX_CPU_PERCENT',
    'CELL0_MAX_DISK_PERCENT',
    'CELL0_MAX_HEAP_PERCENT',
  ] as const) {
    const v = p[name];
    if (v !== 0 && v <= p.CELL0_RESOURCE_HYSTERESIS)
      issues.push(
        ...issue(
          name,
          `expected more than CELL0_RESOURCE_HYSTERESIS (${p.CELL0_RESOURCE_HYSTERESIS}) points, or 0 for no limit, got ${v}: pressure could never end`,
        ),
      );
  }
  return issues;
}

/** The resource limits of Config.limits (the input limits are in limits.ts). */
export function loadResourceLimits(p: ParsedEnv<typeof RESOURCES_ENV>): ResourceLimits {
  return {
    maxMemoryPercent: p.CELL0_MAX_MEMORY_PERCENT,
    maxCpuPercent: p.CELL0_MAX_CPU_PERCENT,
    maxDiskPercent: p.CELL0_MAX_DISK_PERCENT,
    maxHeapPercent: p.CELL0_MAX_HEAP_PERCENT,
    maxEventLoopDelayMs: p.CELL0_MAX_EVENT_LOOP_DELAY_MS,
  };
}

export function loadPressure(p: ParsedEnv<typeof RESOURCES_ENV>): PressureConfig {
  return {
    sampleMs: p.CELL0_RESOURCE_SAMPLE_MS,
    hysteresis: p.CELL0_RESOURCE_HYSTERESIS,
    cpuWindowMs: p.CELL0_CPU_WINDOW_MS,
    behindWindowMs: p.CELL0_BEHIND_WINDOW_MS,
    behindWaitAgeMs: p.CELL0_BEHIND_WAIT_AGE_MS,
    maxQueueDepth: p.CELL0_MAX_QUEUE_DEPTH,
    overloadRetryAfterSec: p.CELL0_OVERLOAD_RETRY_AFTER_SEC,
    idleScavengeMs: p.CELL0_IDLE_SCAVENGE_MS,
  };
}
