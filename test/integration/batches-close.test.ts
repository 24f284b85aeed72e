import { Batches } from '../../producers/batches/batches';
import { Cell0Client } from '../../producers/cell0-client';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server';
import { until } from '../helpers/wait';

/**
 * Closing the batch runner when Redis has gone: BullMQ's closes would wait for a reconnect, and the items in
 * progress are recovered by the stalled check either way, so the close does not wait (it waited up to its
 * grace for each step: the worker's close, its forced close, the runner, the queue).
 */
describe('Batches.close with Redis gone', () => {
  let redis: PrivateRedis;
  let client: Cell0Client | undefined;
  beforeAll(async () => {
    redis = await startPrivateRedis();
  });
  afterAll(async () => {
    await redis.start(); // the client's own close is not the subject here
    await client?.close();
    await redis.destroy();
  });

  it('returns without waiting out its grace', async () => {
    client = new Cell0Client({ redisUrl: redis.url, prefix: 'batches-close' });
    const batches = new Batches({ client, concurrency: 2 });
    await batches.start();
    await redis.kill();
    // Its connections have seen the server go (a close right at the kill could still find them ready).
    const conns = batches as unknown as { conn?: { status: string }; workerConn?: { status: string } };
    await until(
      () => conns.conn?.status !== 'ready' && conns.workerConn?.status !== 'ready',
      10_000,
      'the batch connections to notice Redis is gone',
    );
    const graceMs = 6000;
    const t0 = performance.now();
    await batches.close(graceMs);
    // Before: at least one whole grace (the worker's close), 6 s; the steps now take milliseconds. The bound
    // is far from both, for a busy machine.
    expect(performance.now() - t0).toBeLessThan(graceMs / 2);
  }, 30_000);
});
