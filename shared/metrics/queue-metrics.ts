/** BullMQ gauges whose names promtool's linter refuses for their declared type. */
const UNTYPED = new Set(['bullmq_job_count']);

/** What queue metrics read of a BullMQ Queue. */
export interface PrometheusQueue {
  exportPrometheusMetrics(globalVariables?: Record<string, string>): Promise<string>;
}

/**
 * BullMQ's own queue metrics (`bullmq_job_count{queue,state}`, `bullmq_job_completed_total`,
 * `bullmq_job_failed_total`; the counters are kept by workers started with `metrics: { maxDataPoints }`) for
 * several queues as one exposition: BullMQ writes a HELP/TYPE header per queue, which Prometheus refuses
 * to see twice, so the samples are regrouped under one header per family.
 *
 * `bullmq_job_count` is BullMQ's name for a gauge; promtool's linter keeps the `_count` suffix for histograms
 * and summaries, so the family is declared `untyped` (queried exactly the same way).
 *
 * These describe the queues, not a process: serve them from one place per fleet (the API), or every worker
 * would report the same counts.
 */
export async function queueMetricsText(queues: readonly PrometheusQueue[]): Promise<string> {
  const texts = await Promise.all(queues.map((q) => q.exportPrometheusMetrics()));
  const headers = new Map<string, string[]>();
  const samples = new Map<string, string[]>();
  for (const text of texts) {
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line.length === 0) continue;
      const header = /^# (HELP|TYPE) (\S+)/.exec(line);
      const family = header ? header[2]! : /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
      if (!family) continue;
      if (header) {
        const h = headers.get(family) ?? [];
        const kept = UNTYPED.has(family) && header[1] === 'TYPE' ? `# TYPE ${family} untyped` : line;
        if (!h.some((l) => l.startsWith(`# ${header[1]} `))) h.push(kept);
        headers.set(family, h);
      } else {
        const list = samples.get(family) ?? [];
        list.push(line);
        samples.set(family, list);
        if (!headers.has(family)) headers.set(family, []);
      }
    }
  }
  const out: string[] = [];
  for (const [family, h] of headers) out.push(...h, ...(samples.get(family) ?? []));
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}
