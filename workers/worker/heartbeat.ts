import { isCluster, type RedisConnection } from '../../shared/redis/cluster.js';
import {
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
 */
export class Heartbeat {
  /**
   * Redis CLIENT ID of the status connection. Undefined until read (and again after a reconnect, which gives
   * the connection a new one); null where the server refuses CLIENT ID (readers then go by the status's age).
   */
  private id: number | null | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: HeartbeatOptions) {}

  /** The status connection's CLIENT ID, when known. */
  get clientId(): number | undefined {
    return typeof this.id === 'number' ? this.id : undefined;
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
      // On a cluster a client id is one node's, and CLIENT ID / CLIENT LIST reach whichever node: readers
      // go by the status's age there.
      this.id ??= isCluster(conn)
        ? null
        : await conn.client('ID').then(
            (id) => Number(id),
            () => null,
          );
      await publishWorkerStatus(conn, this.opts.prefix, this.opts.snapshot(), this.opts.intervalMs * 3);
    } catch (err) {
      this.opts.log.debug({ err }, 'could not publish worker status');
    }
  }

  /** Stops publishing and removes the status (when the connection is still up). Idempotent. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    const conn = this.opts.connection();
    if (this.opts.intervalMs > 0 && conn?.status === 'ready')
      await settledWithin(removeWorkerStatus(conn, this.opts.prefix, this.opts.workerId), 1000);
  }
}
