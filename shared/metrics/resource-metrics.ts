import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Model load times: a small model from page cache in 100 ms, a large one from disk in minutes. */
export const MODEL_LOAD_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300];

/** What the resource families read at each scrape (a worker's ResourceManagement). */
export interface ResourceSource {
  /** The monitor's latest sample; undefined before the first. */
  usage():
    | {
        memoryPercent: number;
        cpuPercent: number;
        diskPercent: number;
        process: { eventLoopDelayMeanMs: number; eventLoopDelayP99Ms: number };
      }
    | undefined;
  /** 0 none, 1 saturated (CPU over its limit, still taking jobs), 2 paused (not taking jobs). */
  pressure(): 0 | 1 | 2;
  /** Each managed backend's model manager figures. */
  models(): { backend: string; stats: ModelStatsSnapshot }[];
}

/** What is read of a model memory manager (see ModelManagerStats). */
export interface ModelStatsSnapshot {
  budgetBytes: number;
  usedBytes: number;
  resident: unknown[];
  hits: number;
  misses: number;
  loads: number;
  evictionsByPolicy: Partial<Record<string, number>>;
}

/**
 * Resource families of a worker process: the seed's `cell0_memory_percent`, `cell0_cpu_percent` and
 * `cell0_disk_percent` (the monitor's latest sample, the figures the limits judge), event-loop delay,
 * pressure state, and the model memory managers (loads, evictions by policy, load seconds, resident bytes
 * against the budget). Read at scrape time, except load seconds, observed as loads finish.
 */
export class ResourceMetrics {
  readonly modelLoadSeconds: Histogram<'backend'>;
  private readonly sources = new Set<ResourceSource>();

  constructor(registry: Registry) {
    const registers = [registry];
    const sources = this.sources;
    const usage = () => {
      for (const s of sources) {
        const u = s.usage();
        if (u) return u;
      }
      return undefined;
    };
    const models = () => [...sources].flatMap((s) => s.models());
    const sampleGauge = (
      name: string,
      help: string,
      value: (u: NonNullable<ReturnType<typeof usage>>) => number,
    ) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const u = usage();
          // Before the first sample: no sample rather than a false 0.
          if (u) this.set(value(u));
          else this.remove();
        },
      });
    sampleGauge(
      'cell0_memory_percent',
      'Memory in use, % of the host or cgroup limit (what CELL0_MAX_MEMORY_PERCENT judges)',
      (u) => u.memoryPercent,
    );
    sampleGauge(
      'cell0_cpu_percent',
      "cell0's CPU use, % (of the cgroup quota, or of one core; what CELL0_MAX_CPU_PERCENT judges)",
      (u) => u.cpuPercent,
    );
    sampleGauge('cell0_disk_percent', 'Disk in use on the data folder filesystem, %', (u) => u.diskPercent);
    sampleGauge(
      'cell0_event_loop_delay_p99_seconds',
      'Event-loop delay p99 over the last sampling interval',
      (u) => u.process.eventLoopDelayP99Ms / 1000,
    );
    sampleGauge(
      'cell0_event_loop_delay_mean_seconds',
      'Event-loop delay mean over the last sampling interval',
      (u) => u.process.eventLoopDelayMeanMs / 1000,
    );
    new Gauge({
      name: 'cell0_pressure_state',
      help: 'Resource pressure of this worker: 0 none, 1 saturated (CPU over its limit, still taking jobs), 2 paused (memory, disk, heap or event-loop delay over its limit: takes no jobs)',
      registers,
      collect() {
        let max = 0;
        for (const s of sources) max = Math.max(max, s.pressure());
        this.set(max);
      },
    });
    new Counter({
      name: 'cell0_model_loads_total',
      help: 'Models loaded by the model memory manager, by backend',
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        for (const m of models()) this.inc({ backend: m.backend }, m.stats.loads);
      },
    });
    new Counter({
      name: 'cell0_model_evictions_total',
      help: 'Models unloaded to make room or idle past their keep-alive, by backend and the eviction policy that chose them',
      labelNames: ['backend', 'policy'],
      registers,
      collect() {
        this.reset();
        for (const m of models())
          for (const [policy, n] of Object.entries(m.stats.evictionsByPolicy))
            this.inc({ backend: m.backend, policy }, n ?? 0);
      },
    });
    new Counter({
      name: 'cell0_model_lookups_total',
      help: 'Jobs that needed a model: result "hit" (resident) or "miss" (had to load it)',
      labelNames: ['backend', 'result'],
      registers,
      collect() {
        this.reset();
        for (const m of models()) {
          this.inc({ backend: m.backend, result: 'hit' }, m.stats.hits);
          this.inc({ backend: m.backend, result: 'miss' }, m.stats.misses);
        }
      },
    });
    const modelGauge = (name: string, help: string, value: (s: ModelStatsSnapshot) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['backend'],
        registers,
        collect() {
          this.reset();
          for (const m of models()) this.set({ backend: m.backend }, value(m.stats));
        },
      });
    modelGauge('cell0_model_resident_bytes', 'Memory of the models resident now', (s) => s.usedBytes);
    modelGauge(
      'cell0_model_budget_bytes',
      'Model memory budget (CELL0_MODEL_MEMORY_BUDGET)',
      (s) => s.budgetBytes,
    );
    modelGauge('cell0_models_resident', 'Models resident now', (s) => s.resident.length);
    this.modelLoadSeconds = new Histogram({
      name: 'cell0_model_load_seconds',
      help: 'Time a model load took',
      labelNames: ['backend'],
      buckets: MODEL_LOAD_BUCKETS,
      registers,
    });
  }

  /** Reads `source` at each scrape; returns the function that stops it. */
  addSource(source: ResourceSource): () => void {
    this.sources.add(source);
    return () => this.sources.delete(source);
  }
}
