import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';

/** The services of the `observability` profile: upstream images, not cell0 commands. */
export const OBSERVABILITY_SERVICES = new Set(['prometheus', 'grafana']);
export const OBSERVABILITY_PROFILE = 'observability';

const ROOT = join(__dirname, '..', '..');

/** A cell0 service as checkCompose read it: its command, and where it listens for Prometheus. */
export interface ScrapeTarget {
  name: string;
  command: string;
  /** Host the API (api/start) or the metrics listener (worker) binds. */
  host: string;
  /** Port of GET /metrics: the API port, or CELL0_METRICS_PORT for a worker. */
  metricsPort: number;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Bind mounts `./host/path:/container[:ro]` of a service, as [host path, container path]. */
function bindMounts(spec: Record<string, unknown>): [string, string][] {
  const out: [string, string][] = [];
  for (const v of Array.isArray(spec.volumes) ? spec.volumes : []) {
    if (isRecord(v) && v.type === 'bind') out.push([String(v.source), String(v.target)]);
    else if (typeof v === 'string' && (v.startsWith('./') || v.startsWith('/'))) {
      const [source, target] = v.split(':');
      out.push([source!, target!]);
    }
  }
  return out;
}

/**
 * The `observability` profile of docker-compose.yml: prometheus and grafana exist, only under that profile
 * (the default stack stays small), every file they mount exists in the repository, Prometheus gets its
 * config and rules from dashboards/prometheus and scrapes every cell0 service that serves metrics (API on
 * its port, each worker on CELL0_METRICS_PORT), bound to all interfaces; Grafana gets the datasource and
 * dashboard provisioning and the dashboard JSON.
 */
export function checkObservability(
  services: Record<string, unknown>,
  targets: readonly ScrapeTarget[],
  problems: string[],
  root = ROOT,
): void {
  for (const name of OBSERVABILITY_SERVICES) {
    const spec = services[name];
    const where = `services.${name}`;
    if (!isRecord(spec)) {
      problems.push(`${where}: missing (profile ${OBSERVABILITY_PROFILE})`);
      continue;
    }
    const profiles = Array.isArray(spec.profiles) ? spec.profiles : [];
    if (!profiles.includes(OBSERVABILITY_PROFILE))
      problems.push(
        `${where}.profiles: expected ["${OBSERVABILITY_PROFILE}"] so the default stack stays small`,
      );
    for (const [source] of bindMounts(spec))
      if (!existsSync(resolve(root, source))) problems.push(`${where}.volumes: ${source} does not exist`);
  }

  const prom = services.prometheus;
  if (isRecord(prom)) {
    const mounts = bindMounts(prom);
    const configMount = mounts.find(([, target]) => target === '/etc/prometheus/prometheus.yml');
    if (!configMount)
      problems.push('services.prometheus.volumes: dashboards/prometheus/prometheus.yml is not mounted');
    if (!mounts.some(([, target]) => target === '/etc/prometheus/alerts.yml'))
      problems.push('services.prometheus.volumes: dashboards/prometheus/alerts.yml is not mounted');
    if (configMount && existsSync(resolve(root, configMount[0]))) {
      const scraped = scrapedTargets(readFileSync(resolve(root, configMount[0]), 'utf8'));
      for (const t of targets) {
        const want = `${t.name}:${t.metricsPort}`;
        if (!scraped.has(want))
          problems.push(`prometheus.yml: does not scrape ${want} (the ${t.command} service ${t.name})`);
        if (t.host !== '0.0.0.0' && t.host !== '::')
          problems.push(
            `services.${t.name}: serves metrics on ${t.host} (CELL0_HOST); Prometheus in another container needs 0.0.0.0`,
          );
      }
      for (const s of scraped) {
        const [host] = s.split(':');
        if (!targets.some((t) => t.name === host))
          problems.push(`prometheus.yml: scrapes ${s}, which is not a cell0 service serving metrics`);
      }
    }
  }

  const grafana = services.grafana;
  if (isRecord(grafana)) {
    const targetsMounted = bindMounts(grafana).map(([, target]) => target);
    for (const needed of [
      '/etc/grafana/provisioning/datasources',
      '/etc/grafana/provisioning/dashboards',
      '/var/lib/grafana/dashboards/cell0-fleet.json',
    ])
      if (!targetsMounted.includes(needed))
        problems.push(`services.grafana.volumes: nothing mounted at ${needed}`);
  }
}

/** host:port of every static target in a Prometheus config. */
export function scrapedTargets(yamlText: string): Set<string> {
  const doc = parse(yamlText) as { scrape_configs?: { static_configs?: { targets?: string[] }[] }[] };
  const out = new Set<string>();
  for (const job of doc.scrape_configs ?? [])
    for (const sc of job.static_configs ?? []) for (const t of sc.targets ?? []) out.add(t);
  return out;
}
