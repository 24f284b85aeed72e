import { type RedisConnection } from '../shared/redis/cluster.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { decodeReply, type JobReply } from '../shared/queues/job-replies.js';
import { sleep } from '../shared/sleep.js';

/** Options of {@link ReplyInbox}. */
export interface ReplyInboxOptions {
  /** A connection of its own: the inbox blocks on it. Closing it (by the owner) ends the read loop. */
  connection: RedisConnection;
  /** The inbox list ({@link inboxKey}). */
  key: string;
  /** Called for every reply, in arrival order. */
  onReply: (reply: JobReply) => void;
  /** Replies taken per read. Default 512. */
  batchSize?: number;
  /** Longest block of one read, s (bounds how long a close waits for the loop). Default 5. */
  blockSeconds?: number;
  logger?: Logger;
}

/**
 * Reads one producer's reply inbox: a blocking pop that takes every reply waiting (up to `batchSize`) in
 * one command, so under load one read serves many finished jobs. Redis >= 7 pops them with BLMPOP; older
 * servers with BLPOP followed by LPOP with a count.
 */
export class ReplyInbox {
  private readonly opts: Required<Omit<ReplyInboxOptions, 'logger'>>;
  private readonly log: Logger;
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(options: ReplyInboxOptions) {
    this.opts = { batchSize: 512, blockSeconds: 5, ...stripUndefined(options) } as typeof this.opts;
    if (!(Number.isInteger(this.opts.batchSize) && this.opts.batchSize >= 1))
      throw new TypeError('ReplyInbox: option "batchSize" must be an integer >= 1');
    if (!(this.opts.blockSeconds > 0)) throw new TypeError('ReplyInbox: option "blockSeconds" must be > 0');
    this.log = options.logger ?? silentLogger();
  }

  /** Starts the read loop (idempotent). */
  start(): void {
    this.loop ??= this.run();
  }

  /** Stops reading once the current read returns (or its connection is closed). Idempotent. */
  async close(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async run(): Promise<void> {
    const { connection: conn, key, batchSize, blockSeconds } = this.opts;
    let multiPop: boolean | undefined;
    let failures = 0;
    while (!this.stopped) {
      try {
        multiPop ??= await supportsBlmpop(conn);
        let items: string[] = [];
        if (multiPop) {
          const r = (await conn.call('BLMPOP', blockSeconds, 1, key, 'LEFT', 'COUNT', batchSize)) as
            [string, string[]] | null;
          if (r) items = r[1];
        } else {
          const r = await conn.blpop(key, blockSeconds);
          if (r) {
            items.push(r[1]);
            const more = batchSize > 1 ? await conn.lpop(key, batchSize - 1) : null;
            if (more) items.push(...more);
          }
        }
        failures = 0;
        for (const text of items) {
          const reply = decodeReply(text);
          if (!reply) {
            this.log.warn({ key }, 'reply inbox: an entry that is not a reply was dropped');
            continue;
          }
          try {
            this.opts.onReply(reply);
          } catch (err) {
            this.log.error({ err }, 'reply inbox: a reply handler threw');
          }
        }
      } catch (err) {
        if (this.stopped) break;
        // Redis away: the connection reconnects on its own; pace the retries so an outage is not a spin.
        if (failures++ % 20 === 0) this.log.debug({ err }, 'reply inbox: read failed; retrying');
        await sleep(Math.min(1000, 50 * 2 ** Math.min(failures, 5)));
      }
    }
  }
}

/** BLMPOP arrived in Redis 7.0. */
async function supportsBlmpop(conn: RedisConnection): Promise<boolean> {
  const info = await conn.info('server');
  const m = /redis_version:(\d+)/.exec(info);
  return m !== null && Number(m[1]) >= 7;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
