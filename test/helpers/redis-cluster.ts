import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { sleep } from '../../shared/sleep';
import { freePort, startPrivateRedis, type PrivateRedis } from './redis-server';

/** A local Redis Cluster, started from redis-server and redis-cli (no Docker). */
export interface LocalCluster {
  ports: number[];
  /** Each node's server, in the order of `ports`. */
  servers: PrivateRedis[];
  /** "127.0.0.1:P1,127.0.0.1:P2,..." (the form of REDIS_CLUSTER_NODES). */
  nodes: string;
  /** Stops every node and removes their folder. */
  stop(): Promise<void>;
}

/** Options of startLocalCluster beyond the number of masters. */
export interface LocalClusterOptions {
  /** Replicas per master (`--cluster-replicas`). Default 0. */
  replicas?: number;
  /** `cluster-node-timeout`, ms: how long a master may be unreachable before a replica takes over. */
  nodeTimeoutMs?: number;
}

/**
 * Starts `masters` × (1 + replicas) redis-servers with cluster mode on free ports in a temporary folder,
 * joins them with `redis-cli --cluster create … --cluster-replicas R --cluster-yes` and waits until every
 * node reports cluster_state:ok and, with replicas, until every replica's link to its master is up.
 */
export async function startLocalCluster(
  masters = 3,
  timeoutMs = 30_000,
  opts: LocalClusterOptions = {},
): Promise<LocalCluster> {
  const replicas = opts.replicas ?? 0;
  const dir = mkdtempSync(join(tmpdir(), 'cell0-cluster-'));
  const servers: PrivateRedis[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.destroy()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await freePort();
      servers.push(
        await startPrivateRedis({
          port,
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            ...(opts.nodeTimeoutMs !== undefined
              ? ['--cluster-node-timeout', String(opts.nodeTimeoutMs)]
              : []),
          ],
        }),
      );
    }
    const addrs = servers.map((s) => `127.0.0.1:${s.port}`);
    const create = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...addrs, '--cluster-replicas', String(replicas), '--cluster-yes'],
      { encoding: 'utf8', timeout: timeoutMs },
    );
    if (create.status !== 0)
      throw new Error(
        `redis-cli --cluster create failed (${create.status}): ${create.stderr || create.stdout}`,
      );
    await waitForClusterOk(
      servers.map((s) => s.port),
      timeoutMs,
    );
    return { ports: servers.map((s) => s.port), servers, nodes: addrs.join(','), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Resolves once every node answers CLUSTER INFO with cluster_state:ok and knows every other node. */
async function waitForClusterOk(ports: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const clients = ports.map((port) => new Redis({ port, host: '127.0.0.1', lazyConnect: true }));
  try {
    for (const c of clients) await c.connect();
    for (;;) {
      const infos = await Promise.all(clients.map((c) => c.cluster('INFO') as Promise<string>));
      const ok = infos.every(
        (i) => /cluster_state:ok/.test(i) && new RegExp(`cluster_known_nodes:${ports.length}\\b`).test(i),
      );
      // Replicas: each one's link to its master is up (its first sync is done).
      const links = ok ? await Promise.all(clients.map((c) => c.info('replication'))) : [];
      if (ok && links.every((r) => !/role:slave/.test(r) || /master_link_status:up/.test(r))) return;
      if (Date.now() > deadline)
        throw new Error(`cluster not ok within ${timeoutMs} ms:\n${infos.join('\n')}`);
      await sleep(100);
    }
  } finally {
    for (const c of clients) c.disconnect();
  }
}
