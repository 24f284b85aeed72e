import { type Router } from 'express';
import { ErrorCode } from '../../../shared/errors.js';
import { summarizeFleet } from '../../../shared/fleet/worker-status.js';
import { isJobId, jobIdLetter } from '../../../shared/queues/job-id.js';
import { isQueueName, QueueName } from '../../../shared/queues/names.js';
import { type Cell0Client } from '../../cell0-client.js';
import { sumShardCounts } from '../../queue-counts.js';
import { tenantOf } from '../access-control.js';
import { sendError } from '../error-mapper.js';
import { clip } from './util.js';

/**
 * A job id from outside becomes a Redis key: anything not shaped like one of its queue's ids is no job,
 * answered before any key is built (not even the response cache's). Registered before the response cache.
 */
export function addJobIdGuard(v1: Router): void {
  v1.get('/jobs/:queue/:id', (req, res, next) => {
    const queue = req.params.queue as string;
    const id = req.params.id as string;
    if (!isQueueName(queue)) {
      sendError(
        res,
        ErrorCode.JOB_NOT_FOUND,
        `no queue "${clip(queue)}"; queues are ${Object.values(QueueName).join(', ')}`,
      );
      return;
    }
    if (!isJobId(queue, id)) {
      sendError(
        res,
        ErrorCode.JOB_NOT_FOUND,
        `no job "${clip(id)}" in queue ${queue}: its job ids are ${jobIdLetter(queue)}- and 32 hex digits`,
      );
      return;
    }
    next();
  });
}

/** The read routes of /v1: GET /fleet, /jobs/:queue/:id and /queues. */
export function addReadRoutes(v1: Router, client: Cell0Client): void {
  v1.get('/fleet', async (_req, res) => {
    const workers = await client.fleet();
    res.json({ workers, count: workers.length, summary: summarizeFleet(workers) });
  });

  v1.get('/jobs/:queue/:id', async (req, res) => {
    const queue = req.params.queue as QueueName;
    const id = req.params.id as string;
    // With tenant keys a caller reads only its own jobs; another tenant's job is answered exactly as an
    // unknown one (same status, body and number of Redis reads).
    const tenant = tenantOf(res);
    const view = await client.getJob(queue, id, tenant !== undefined ? { owner: tenant } : {});
    if (!view) {
      sendError(
        res,
        ErrorCode.JOB_NOT_FOUND,
        `no job ${id} in queue ${queue} (never added, or its retention ended)`,
      );
      return;
    }
    // Only a finished job's view may be cached (and only briefly: a later identical request can re-run it).
    res.setHeader(
      'Cache-Control',
      view.state === 'completed' || view.state === 'failed' ? 'max-age=5' : 'no-store',
    );
    res.json(view);
  });

  v1.get('/queues', async (_req, res) => {
    // A sharded fleet also shows each shard (its number, hash tag and counts); the totals stay per queue.
    const submitter = client.submitter;
    if (submitter.shards === 1) {
      res.json({ queues: await submitter.getCounts() });
      return;
    }
    const shards = await submitter.getShardCounts();
    res.json({ queues: sumShardCounts(shards), shards });
  });
}
