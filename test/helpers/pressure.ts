import { LoadShedder, type LoadShedderOptions } from '../../producers/load-shedder';
import { type WorkerStatus } from '../../shared/fleet/worker-status';
import { QueueName } from '../../shared/queues/names';
import { type CpuUsageSource } from '../../shared/resources/cpu-usage';
import { type TestFleet } from './fleet';

/* Pressure the tests drive: CPU counters, a busy host, a load shedder over a test fleet's inference queue. */

/** A CPU counter the test drives: `percent` of one core per (fake) second, one second per read. */
export function drivenCpu(percent = 0): { source: CpuUsageSource; set(p: number): void } {
  let at = 0;
  let used = 0;
  return {
    source: {
      read: () => {
        at += 1000;
        used += percent * 10_000;
        return { at, usedMicros: used, capacityCores: 1, scope: 'process' };
      },
    },
    set: (p) => (percent = p),
  };
}

/** Host counters that say every core is fully busy: a neighbour spinning on the whole machine. */
export function busyHost(): () => { busy: number; total: number } {
  let t = 0;
  return () => ((t += 1000), { busy: t, total: t });
}

/**
 * A LoadShedder over the fleet's inference queue and its workers' statuses, with `options` on top, set as
 * the fleet client's shedder.
 */
export function shedInference(
  fleet: TestFleet,
  options: Omit<LoadShedderOptions, 'queues' | 'fleet'>,
): LoadShedder {
  const shedder = new LoadShedder({
    queues: () => ({ [QueueName.INFERENCE]: fleet.client.submitter.getQueue(QueueName.INFERENCE) }),
    fleet: () => fleet.client.fleet(),
    ...options,
  });
  fleet.client.shedder = shedder;
  return shedder;
}

/** A worker's status record as a worker of the inference queue publishes it, running and idle, with `extra` on top. */
export function workerStatus(id: string, extra: Partial<WorkerStatus> = {}): WorkerStatus {
  return {
    id,
    host: 'h',
    pid: 1,
    queues: ['inference'],
    startedAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    active: 0,
    state: 'running',
    ...extra,
  };
}
