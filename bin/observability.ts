/*
 * The process's metrics: one registry per process, shared by everything `cell0 start` runs in it.
 */
import { type Config } from '../shared/config/config.js';
import { Cell0Metrics } from '../shared/metrics/metrics.js';
import { queueMetricsText } from '../shared/metrics/queue-metrics.js';
import { QUEUE_NAMES } from '../shared/queues/names.js';
import { type JobSubmitter } from '../producers/job-submitter.js';

let processWide: Cell0Metrics | undefined;

/** This process's metrics, made on first use; undefined when CELL0_METRICS=0. */
export function processMetrics(config: Config): Cell0Metrics | undefined {
  if (!config.metrics.enabled) return undefined;
  return (processWide ??= new Cell0Metrics({ tenantLabel: config.metrics.tenantLabel }));
}

/**
 * Adds BullMQ's queue metrics (job counts by state, completed and failed counters) to `metrics`, read
 * through the submitter's queues at each scrape. Returns the function that removes them.
 */
export function addQueueMetrics(metrics: Cell0Metrics, submitter: JobSubmitter): () => void {
  return metrics.addText(() =>
    submitter.ready ? queueMetricsText(QUEUE_NAMES.map((q) => submitter.getQueue(q))) : Promise.resolve(''),
  );
}
