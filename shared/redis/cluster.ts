import { Cluster, type Redis } from 'ioredis';

/*
 * Redis Cluster addressing. A cluster is named by one URL, so it travels wherever a Redis URL does:
 *   redis-cluster://[[user]:password@]host:port,host:port,...   (rediss-cluster:// for TLS)
 * REDIS_CLUSTER_NODES=host:port,... becomes such a URL (shared/config/sections/redis.ts); the connection
 * factory (createRedisConnection) turns it into an ioredis Cluster.
 */

/** Any connection the factory gives: one Redis, or a Cluster of them. */
export type RedisConnection = Redis | Cluster;

/** One seed node of a cluster. */
export interface ClusterNodeAddress {
  host: string;
  port: number;
}

/** A cluster URL taken apart. */
export interface ClusterTarget {
  nodes: ClusterNodeAddress[];
  username?: string;
  password?: string;
  tls: boolean;
}

const CLUSTER_URL = /^(rediss?)-cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)\/?$/;

/** True when `url` names a Redis Cluster (redis-cluster:// or rediss-cluster://). */
export function isClusterUrl(url: string): boolean {
  return /^rediss?-cluster:\/\//.test(url);
}

/** Parses "host:port,host:port" (IPv6 hosts in brackets). Throws a TypeError naming the bad entry. */
export function parseClusterNodes(list: string): ClusterNodeAddress[] {
  const nodes = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((entry) => {
      const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s]+):(\d{1,5})$/.exec(entry);
      const port = m ? Number(m[2]) : NaN;
      if (!m || !(port >= 1 && port <= 65535))
        throw new TypeError(`expected host:port, got ${JSON.stringify(entry)}`);
      return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
    });
  if (nodes.length === 0) throw new TypeError('expected at least one host:port');
  return nodes;
}

/** The cluster URL of `nodes` ("host:port,..."), with the credentials and TLS of `base` when given. */
export function clusterUrl(
  nodes: string,
  base?: { username?: string; password?: string; tls?: boolean },
): string {
  const list = parseClusterNodes(nodes)
    .map((n) => `${n.host.includes(':') ? `[${n.host}]` : n.host}:${n.port}`)
    .join(',');
  const auth =
    base?.password !== undefined || base?.username
      ? `${encodeURIComponent(base.username ?? '')}${base.password !== undefined ? `:${encodeURIComponent(base.password)}` : ''}@`
      : '';
  return `${base?.tls ? 'rediss' : 'redis'}-cluster://${auth}${list}`;
}

/** Takes a cluster URL apart. Throws a TypeError when it is not one. */
export function parseClusterUrl(url: string): ClusterTarget {
  const m = CLUSTER_URL.exec(url);
  if (!m) throw new TypeError('expected redis-cluster://[[user]:password@]host:port,host:port,...');
  return {
    nodes: parseClusterNodes(m[4]!),
    ...(m[2] ? { username: decodeURIComponent(m[2]) } : {}),
    ...(m[3] !== undefined ? { password: decodeURIComponent(m[3]) } : {}),
    tls: m[1] === 'rediss',
  };
}

/**
 * One plain redis:// URL per node the URL names: the URL itself for a single Redis, each seed node of a
 * cluster (with its credentials). For checks that ask every server (eviction policy, reachability).
 */
export function nodeUrls(url: string): string[] {
  if (!isClusterUrl(url)) return [url];
  const t = parseClusterUrl(url);
  const auth =
    t.password !== undefined || t.username
      ? `${encodeURIComponent(t.username ?? '')}${t.password !== undefined ? `:${encodeURIComponent(t.password)}` : ''}@`
      : '';
  return t.nodes.map(
    (n) =>
      `${t.tls ? 'rediss' : 'redis'}://${auth}${n.host.includes(':') ? `[${n.host}]` : n.host}:${n.port}`,
  );
}

/** True when `conn` is a Cluster. */
export function isCluster(conn: RedisConnection): conn is Cluster {
  return conn instanceof Cluster;
}

/**
 * The servers holding keys: a cluster's masters, or the one Redis. A SCAN, an INFO or a KEYS-like sweep
 * must visit each of them (on a cluster, SCAN on the Cluster object reaches one random node).
 */
export function mastersOf(conn: RedisConnection): Redis[] {
  return isCluster(conn) ? conn.nodes('master') : [conn];
}

/**
 * SCANs every server holding keys (each master of a cluster, or the one Redis) for keys matching
 * `pattern`, handing each batch to `onKeys` with the server it came from. A sweep that SCANs the Cluster
 * object instead reaches one node and misses the keys of the others.
 */
export async function scanEveryMaster(
  conn: RedisConnection,
  pattern: string,
  count: number,
  onKeys: (keys: string[], node: Redis) => unknown,
): Promise<void> {
  for (const node of mastersOf(conn)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
      cursor = next;
      if (keys.length > 0) await onKeys(keys, node);
    } while (cursor !== '0');
  }
}

/**
 * UNLINKs `keys`, all found on `node` by {@link scanEveryMaster}: one command on a single Redis; on a
 * cluster one per key (keys of different slots cannot share a command), sent together.
 */
export async function unlinkFound(conn: RedisConnection, node: Redis, keys: string[]): Promise<number> {
  if (!isCluster(conn)) return node.unlink(...keys);
  const counts = await Promise.all(keys.map((k) => node.unlink(k)));
  return counts.reduce((a, b) => a + b, 0);
}
