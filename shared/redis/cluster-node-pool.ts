import { type Cluster, type Redis, type RedisOptions } from 'ioredis';

/*
 * A fix of ioredis 5's cluster connection pool (ConnectionPool.findOrCreate), as ioredis 6.0.0 has it
 * (redis/ioredis#2135; the race itself: redis/ioredis#1864).
 *
 * The pool keeps one node connection per "host:port". When it drops a node (Cluster#disconnect, or a slot
 * map without it) it disconnects it at once, but the node's "end" comes later, once its socket has closed;
 * its "end" handler then removed whatever connection the pool held under that key. A cluster that
 * connects again before the old sockets have closed — BullMQ does Cluster#disconnect() then #connect() on
 * a Worker's blocking connection (RedisConnection.connectClusterWithTimeout, when its node pool is empty,
 * as while the Worker closes) — has new node connections under the same keys by then, and the old "end"
 * took them out of the pool. Such an orphan is no longer the cluster's: when it had connected (the ready
 * check, a command), Cluster#quit and #disconnect never reach it and its socket stays open for the life of
 * the process (the test suite's open-handle check named it: a TCPSocketWrap to a cluster node after a
 * fleet on a cluster had closed).
 *
 * Here the "end" of a node connection removes it only while it is still the pool's connection for its
 * key; an end of a replaced connection changes nothing. Everything else is ioredis 5.11's findOrCreate.
 */

/** What findOrCreate uses of ioredis's ConnectionPool (private API of ioredis 5). */
interface NodePool {
  nodes: { all: Record<string, Redis>; master: Record<string, Redis>; slave: Record<string, Redis> };
  specifiedOptions: Record<string, RedisOptions>;
  createRedisFromOptions(node: RedisOptions, readOnly: boolean): Redis;
  removeNode(key: string): void;
  emit(event: string, ...args: unknown[]): boolean;
  findOrCreate(node: RedisOptions, readOnly?: boolean): Redis;
}

const GUARDED = Symbol.for('cell0.clusterNodePoolGuarded');

/** ioredis's node key (cluster/util getNodeKey): fills the defaults in `node`, as ioredis does. */
function nodeKey(node: RedisOptions): string {
  node.port = node.port || 6379;
  node.host = node.host || '127.0.0.1';
  return `${node.host}:${node.port}`;
}

function findOrCreate(this: NodePool, node: RedisOptions, readOnlyArg = false): Redis {
  const key = nodeKey(node);
  const readOnly = Boolean(readOnlyArg);
  if (this.specifiedOptions[key]) Object.assign(node, this.specifiedOptions[key]);
  else this.specifiedOptions[key] = node;
  const existing = this.nodes.all[key];
  if (existing) {
    if (existing.options.readOnly !== readOnly) {
      existing.options.readOnly = readOnly;
      existing[readOnly ? 'readonly' : 'readwrite']().catch(() => undefined);
      if (readOnly) {
        delete this.nodes.master[key];
        this.nodes.slave[key] = existing;
      } else {
        delete this.nodes.slave[key];
        this.nodes.master[key] = existing;
      }
    }
    return existing;
  }
  const redis = this.createRedisFromOptions(node, readOnly);
  this.nodes.all[key] = redis;
  this.nodes[readOnly ? 'slave' : 'master'][key] = redis;
  redis.once('end', () => {
    // Replaced while it was closing: the pool's connection for this key is another one, leave it.
    const current = this.nodes.all[key];
    if (current !== undefined && current !== redis) return;
    this.removeNode(key);
    this.emit('-node', redis, key);
    if (Object.keys(this.nodes.all).length === 0) this.emit('drain');
  });
  this.emit('+node', redis, key);
  redis.on('error', (error: unknown) => this.emit('nodeError', error, key));
  return redis;
}

/**
 * Installs the fix above on ioredis's cluster connection pool (once per process: every Cluster shares the
 * pool's class, BullMQ's duplicates included). A pool that already checks it (ioredis 6) or is not the
 * shape this fixes is left as it is.
 */
export function guardClusterNodePool(cluster: Cluster): void {
  const pool = (cluster as unknown as { connectionPool?: NodePool }).connectionPool;
  const proto = pool ? (Object.getPrototypeOf(pool) as NodePool & { [GUARDED]?: true }) : undefined;
  if (!proto || proto[GUARDED]) return;
  proto[GUARDED] = true;
  const original = proto.findOrCreate;
  if (
    typeof original !== 'function' ||
    typeof proto.createRedisFromOptions !== 'function' ||
    typeof proto.removeNode !== 'function' ||
    /nodes\.all\[key\] !== redis/.test(String(original))
  )
    return;
  proto.findOrCreate = findOrCreate;
}
