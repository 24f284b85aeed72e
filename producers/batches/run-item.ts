import { ClosedError, OverloadedError, RedisFullError } from '../../shared/errors.js';
import { sleep } from '../../shared/sleep.js';
import { type SubmitResult } from '../job-submitter.js';
import { type BatchClient } from './batch-client.js';
import { type ItemJobData } from './batch-model.js';

/**
 * Submits an item's request and waits until its job has finished, however long that takes (the wait is
 * renewed; BullMQ renews the item's lock meanwhile). The shedder's refusals (queue too deep, Redis over
 * its memory watermark) are waited out and retried: in a batch, overload means later, not failed.
 */
export async function runToEnd(
  client: BatchClient,
  item: ItemJobData,
  waitMs: number,
  stop: AbortSignal,
): Promise<SubmitResult & { state: 'completed' | 'failed' }> {
  for (;;) {
    let r: SubmitResult;
    try {
      r = await client.submitTo(item.queue, item.data, { waitMs, signal: stop });
    } catch (err) {
      if (err instanceof OverloadedError || err instanceof RedisFullError) {
        await sleep(Math.max(50, err.retryAfterMs), { signal: stop });
        continue;
      }
      throw err;
    }
    while (r.state === 'pending') {
      if (stop.aborted) throw new ClosedError('Batches');
      const w = await client.submitter.waitFor(item.queue, r.jobId, {
        waitMs,
        signal: stop,
      });
      if (w.state === 'missing') break;
      r = w;
    }
    if (r.state !== 'pending') return r;
    // Its job vanished while waited for (removed): submit again.
  }
}
