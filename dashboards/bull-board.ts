import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { type Queue } from 'bullmq';
import express, { type Router } from 'express';
import { AccessControl } from '../producers/api/access-control.js';
import { type JobSubmitter } from '../producers/job-submitter.js';
import { MAINTENANCE_QUEUE, QUEUE_NAMES } from '../shared/queues/names.js';
import { BATCH_QUEUE } from '../producers/batches/batch-model.js';

/** Options of {@link createDashboard}. */
export interface DashboardOptions {
  /** Supplies the BullMQ Queue objects once it is connected. */
  submitter: JobSubmitter;
  /** Where the board is mounted; Bull Board needs it for its links. Default "/admin/queues". */
  basePath?: string;
  /** Allow retry / promote / remove / clean from the board. Default false (read-only, enforced server-side). */
  write?: boolean;
  /**
   * Tenant API keys. They never open the board (it shows every tenant's jobs): with tenant keys and no
   * admin keys the board is off (403). Ignored when `access` is given.
   */
  apiKeys?: readonly string[];
  /**
   * Admin keys: the board requires one (Bearer, or Basic auth with the key as password). With no keys at
   * all the board is open (development). Ignored when `access` is given.
   */
  adminKeys?: readonly string[];
  /** Who may call what (shared with the API). Default: built from apiKeys and adminKeys. */
  access?: AccessControl;
}

/**
 * Bull Board for the fleet's queues. The router can be mounted before Redis is reachable: the queues
 * appear on the board as soon as the submitter connects.
 */
export function createDashboard(opts: DashboardOptions): { basePath: string; router: Router } {
  const basePath = opts.basePath ?? '/admin/queues';
  const write = opts.write ?? false;
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(basePath);
  const board = createBullBoard({
    queues: [],
    serverAdapter,
    options: { uiConfig: { boardTitle: 'cell0' } },
  });
  const attach = () =>
    board.replaceQueues([
      ...QUEUE_NAMES.flatMap((q) => {
        try {
          return opts.submitter.getQueues(q);
        } catch {
          return [];
        }
      }).map((queue, _i, all) => {
        // A sharded queue is one BullMQ queue per shard, all of one name: each shard is its own board entry.
        const shard = shardOfQueue(queue, all);
        return new BullMQAdapter(queue, {
          readOnlyMode: !write,
          allowRetries: write,
          ...(shard !== undefined
            ? {
                prefix: `shard-${shard}:`,
                displayName: `${queue.name} (shard ${shard}, ${queue.opts.prefix})`,
              }
            : {}),
        });
      }),
      // Batch jobs: a parent per batch with a child per request (docs/batches.md); cancel through the API.
      new BullMQAdapter(opts.submitter.otherQueue(BATCH_QUEUE), { readOnlyMode: true }),
      // The fleet's monitor and cleanup runs (job schedulers); never writable from the board.
      new BullMQAdapter(opts.submitter.otherQueue(MAINTENANCE_QUEUE), { readOnlyMode: true }),
    ]);
  if (opts.submitter.ready) attach();
  else opts.submitter.once('ready', attach);

  const router = express.Router();
  const access =
    opts.access ?? new AccessControl({ apiKeys: opts.apiKeys ?? [], adminKeys: opts.adminKeys ?? [] });
  router.use(access.adminRoute({ basic: true }));
  router.use(serverAdapter.getRouter() as Router);
  return { basePath, router };
}

/** The shard number of `queue` when its queue name has several shards among `all`; else undefined. */
function shardOfQueue(queue: Queue, all: readonly Queue[]): number | undefined {
  const same = all.filter((q) => q.name === queue.name);
  return same.length > 1 ? same.indexOf(queue) : undefined;
}
