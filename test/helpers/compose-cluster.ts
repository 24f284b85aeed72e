import { parseClusterUrl } from '../../shared/redis/cluster';
import { type Config } from '../../shared/config/config';

/*
 * The `cluster` profile of docker-compose.yml: three Redis Cluster nodes, a one-shot service that joins them
 * (`redis-cli --cluster create … --cluster-yes`), and cell0 services that run on the cluster through
 * REDIS_CLUSTER_NODES. checkCompose hands its services here; this file says what must hold.
 */

export const CLUSTER_PROFILE = 'cluster';
/** The one-shot service that creates the cluster; the cluster's cell0 services wait for it. */
export const CLUSTER_INIT_SERVICE = 'redis-cluster-init';
const NODE_PORT = 6379;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function profilesOf(spec: Record<string, unknown>): unknown[] {
  return Array.isArray(spec.profiles) ? spec.profiles : [];
}

function argvOf(spec: Record<string, unknown>): string {
  const c = spec.command;
  return Array.isArray(c) ? c.map(String).join(' ') : typeof c === 'string' ? c : '';
}

/** The Redis Cluster nodes: `redis-node-*` services. */
export function clusterNodeServices(services: Record<string, unknown>): string[] {
  return Object.keys(services)
    .filter((n) => /^redis-node-\d+$/.test(n))
    .sort();
}

/** Services that are Redis (not cell0) in the cluster profile: the nodes and the init service. */
export function clusterRedisServices(services: Record<string, unknown>): Set<string> {
  return new Set([...clusterNodeServices(services), CLUSTER_INIT_SERVICE]);
}

/**
 * The nodes (at least three, each a cluster-enabled noeviction redis-server with a redis-cli ping
 * healthcheck, only under the `cluster` profile), the init service (creates the cluster from every node
 * with --cluster-replicas 0 --cluster-yes once they are healthy), and `clusterUsers`: the cell0 services
 * whose config names a cluster — every node of it a node service on 6379, all of the nodes named, waiting
 * for the init service to complete, under the profile.
 */
export function checkCluster(
  services: Record<string, unknown>,
  clusterUsers: readonly { name: string; spec: Record<string, unknown>; config: Config }[],
  problems: string[],
): void {
  const nodes = clusterNodeServices(services);
  if (nodes.length < 3)
    problems.push(
      `services: expected three redis-node-N services (profile ${CLUSTER_PROFILE}), found ${nodes.length}`,
    );
  for (const name of [...nodes, CLUSTER_INIT_SERVICE]) {
    const spec = services[name];
    const where = `services.${name}`;
    if (!isRecord(spec)) {
      problems.push(`${where}: missing (profile ${CLUSTER_PROFILE})`);
      continue;
    }
    if (!profilesOf(spec).includes(CLUSTER_PROFILE))
      problems.push(`${where}.profiles: expected ["${CLUSTER_PROFILE}"] so the default stack stays small`);
    if (typeof spec.image !== 'string' || !spec.image.startsWith('redis:'))
      problems.push(`${where}.image: expected redis:<version>, got ${JSON.stringify(spec.image)}`);
  }
  for (const name of nodes) {
    const spec = services[name] as Record<string, unknown>;
    const argv = argvOf(spec);
    if (!/--cluster-enabled yes/.test(argv))
      problems.push(`services.${name}.command: expected --cluster-enabled yes`);
    if (!/--maxmemory-policy noeviction/.test(argv))
      problems.push(
        `services.${name}.command: expected --maxmemory-policy noeviction (BullMQ loses jobs otherwise)`,
      );
    const hc = isRecord(spec.healthcheck) ? JSON.stringify(spec.healthcheck.test) : '';
    if (!/redis-cli/.test(hc) || !/ping/i.test(hc))
      problems.push(`services.${name}.healthcheck: expected redis-cli ping`);
  }
  const init = services[CLUSTER_INIT_SERVICE];
  if (isRecord(init)) {
    const argv = argvOf(init);
    if (
      !/redis-cli --cluster create/.test(argv) ||
      !/--cluster-yes/.test(argv) ||
      !/--cluster-replicas 0/.test(argv)
    )
      problems.push(
        `services.${CLUSTER_INIT_SERVICE}.command: expected redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`,
      );
    for (const n of nodes)
      if (!argv.includes(n)) problems.push(`services.${CLUSTER_INIT_SERVICE}.command: does not join ${n}`);
    const deps = isRecord(init.depends_on) ? init.depends_on : {};
    for (const n of nodes) {
      const d = deps[n];
      if (!isRecord(d) || d.condition !== 'service_healthy')
        problems.push(
          `services.${CLUSTER_INIT_SERVICE}.depends_on: expected ${n} with condition service_healthy`,
        );
    }
  }
  if (clusterUsers.length === 0)
    problems.push(`services: no cell0 service runs on the cluster (REDIS_CLUSTER_NODES)`);
  for (const u of clusterUsers) {
    const where = `services.${u.name}`;
    if (!profilesOf(u.spec).includes(CLUSTER_PROFILE))
      problems.push(`${where}.profiles: expected ["${CLUSTER_PROFILE}"] (it runs on the cluster)`);
    const named = parseClusterUrl(u.config.redis.url).nodes;
    for (const n of named)
      if (!nodes.includes(n.host) || n.port !== NODE_PORT)
        problems.push(
          `${where}: REDIS_CLUSTER_NODES names ${n.host}:${n.port}, which is not a redis-node-N service on ${NODE_PORT}`,
        );
    for (const n of nodes)
      if (!named.some((x) => x.host === n)) problems.push(`${where}: REDIS_CLUSTER_NODES leaves out ${n}`);
    const deps = isRecord(u.spec.depends_on) ? u.spec.depends_on : {};
    const d = deps[CLUSTER_INIT_SERVICE];
    if (!isRecord(d) || d.condition !== 'service_completed_successfully')
      problems.push(
        `${where}.depends_on: expected ${CLUSTER_INIT_SERVICE} with condition service_completed_successfully`,
      );
  }
}
