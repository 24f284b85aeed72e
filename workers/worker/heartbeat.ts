import { type Cluster, type Redis } from 'ioredis';
import { isCluster, type RedisConnection } from '../../shared/redis/cluster.js';
import { masterFor } from '../../shared/redis/key-slot.js';
import {
  fleetKeys,
  publishWorkerStatus,
  removeWorkerStatus,
  type WorkerStatus,
} from '../../shared/fleet/worker-status.js';
import { type Logger } from '../../shared/logger.js';
import { settledWithin } from '../../shared/sleep.js';

/** What the heartbeat needs of the worker. */
export interface HeartbeatOptions {
  /** How often the status is published; 0 = never. It expires after 3 intervals. */
  intervalMs: number;
  prefix: string;
  workerId: string;
  /** The connection the status is published on. */
  connection: () => RedisConnection | undefined;
  /** The status to publish, without `clientId` (the heartbeat adds it). */
  snapshot: () => WorkerStatus;
  log: Logger;
}

/**
 * The worker's status in Redis for `GET /v1/fleet`: published every interval and on demand, with the
 * CLIENT ID of the connection it is published on (readers check it is still connected), removed at close.
 * On a cluster a client id is one node's: the id is that of the cluster's connection to the master holding
 * the registry's slot (the one the status is written on), named with that master's address, and read
 * again when the slot moves to another master or that connection reconnects.
 */
export class Heartbeat {
  /**
   * Redis CLIENT ID of the status connection. Undefined until read (and again after a reconnect, which gives
   * the connection a new one); null where the server refuses CLIENT ID (readers then go by the status's age).
   */
  private id: number | null | undefined;
  /** On a cluster: the node connection `id` is of, and its master's address. */
  private node: { conn: Redis; address: string } | undefined;
  /** Node connections whose reconnects are watched. */
  private readonly watched = new WeakSet<Redis>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: HeartbeatOptions) {}

  /** The status connection's CLIENT ID, when known. */
  get clientId(): number | undefined {
    return typeof this.id === 'number' ? this.id : undefined;
  }

  /** On a cluster, the address ("host:port") of the master whose connection `clientId` is of. */
  get clientNode(): string | undefined {
    return typeof this.id === 'number' ? this.node?.address : undefined;
  }

  /** The status connection reconnected: its CLIENT ID is read again. */
  reconnected(): void {
    this.id = undefined;
  }

  /** Publishes now and then every interval (nothing when the interval is 0). Idempotent. */
  async start(): Promise<void> {
    if (this.opts.intervalMs === 0 || this.timer) return;
    this.timer = setInterval(() => void this.publish(), this.opts.intervalMs);
    this.timer.unref();
    await this.publish();
  }

  /** Publishes the status now. Never throws; a no-op without a heartbeat or a ready connection. */
  async publish(): Promise<void> {
    if (this.opts.intervalMs === 0) return;
    const conn = this.opts.connection();
    if (!conn || conn.status !== 'ready') return;
    try {
      const on = isCluster(conn) ? this.registryNode(conn) : conn;
      this.id ??=
        on === undefined
          ? undefined
          : await on.client('ID').then(
              (id) => Number(id),
              () => null,
            );
      await publishWorkerStatus(conn, this.opts.prefix, this.opts.snapshot(), this.opts.intervalMs * 3);
    } catch (err) {
      this.opts.log.debug({ err }, 'could not publish worker status');
    }
  }

  /**
   * The cluster's connection to the master holding the registry's slot; a change of it (the slot moved, or
   * the cluster made a new connection) forgets the id read on the old one.
   */
  private registryNode(conn: Cluster): Redis | undefined {
    const master = masterFor(conn, fleetKeys(this.opts.prefix).index);
    if (master?.node !== this.node?.conn || master?.address !== this.node?.address) {
      this.node = master && { conn: master.node, address: master.address };
      this.id = undefined;
    }
    if (master && !this.watched.has(master.node)) {
      this.watched.add(master.node);
      master.node.on('ready', () => {
        if (this.node?.conn === master.node) this.id = undefined;
      });
    }
    return master?.node;
  }

  /** Stops publishing and removes the status (when the connection is still up). Idempotent. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    const conn = this.opts.connection();
    if (this.opts.intervalMs > 0 && conn?.status === 'ready')
      await settledWithin(removeWorkerStatus(conn, this.opts.prefix, this.opts.workerId), 1000);
  }
}
