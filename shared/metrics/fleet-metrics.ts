import { Counter, Gauge, type Registry } from 'prom-client';

/** What the fleet families read at each scrape (the API's client, shedder and Redis memory watch). */
export interface FleetSource {
  /** Live workers' states (their published heartbeats). Read at scrape time (one Redis round trip). */
  workerStates(): Promise<string[]>;
  /** Redis INFO memory as last read: used and maxmemory bytes (0 = no limit); undefined before a reading. */
  redisMemory(): { usedBytes: number; maxBytes: number } | undefined;
  /** Requests refused by the load shedder since start, by reason. */
  shed(): Record<string, number>;
}

const WORKER_STATES = ['running', 'paused', 'closing'] as const;

/**
 * Fleet families served by the API (like the queue metrics, once per fleet): live workers by state (from
 * their heartbeats), Redis used and max memory (for the 90 %-of-maxmemory alert without a Redis exporter),
 * and requests the load shedder refused, by reason.
 */
export class FleetMetrics {
  private readonly sources = new Set<FleetSource>();

  constructor(registry: Registry) {
    const registers = [registry];
    const sources = this.sources;
    new Gauge({
      name: 'cell0_fleet_workers',
      help: 'Live workers by state (running, paused by resource pressure, closing), from their heartbeats',
      labelNames: ['state'],
      registers,
      async collect() {
        if (sources.size === 0) return;
        const counts: Record<string, number> = { running: 0, paused: 0, closing: 0 };
        for (const s of sources) {
          const states = await s.workerStates().catch(() => undefined);
          if (!states) {
            this.reset(); // Redis away: no figure rather than a stale or false one
            return;
          }
          for (const st of states) if (st in counts) counts[st]!++;
        }
        for (const st of WORKER_STATES) this.set({ state: st }, counts[st]!);
      },
    });
    const memoryGauge = (name: string, help: string, pick: 'usedBytes' | 'maxBytes') =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          for (const s of sources) {
            const m = s.redisMemory();
            if (m) {
              this.set(m[pick]);
              return;
            }
          }
          // Not read yet (Redis away since start): no sample rather than a false 0.
          this.remove();
        },
      });
    memoryGauge(
      'cell0_redis_memory_used_bytes',
      "Redis used_memory (INFO memory), as the API's watch last read it",
      'usedBytes',
    );
    memoryGauge('cell0_redis_memory_max_bytes', 'Redis maxmemory (0 = no limit)', 'maxBytes');
    new Counter({
      name: 'cell0_requests_shed_total',
      help: 'Requests refused with 503 by the load shedder, by reason (queue_depth, fleet_pressure, redis_memory)',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const s of sources) for (const [reason, n] of Object.entries(s.shed())) this.inc({ reason }, n);
      },
    });
  }

  /** Reads `source` at each scrape; returns the function that stops it. */
  addSource(source: FleetSource): () => void {
    this.sources.add(source);
    return () => this.sources.delete(source);
  }
}
