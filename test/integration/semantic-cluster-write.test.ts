/*
 * On a Redis Cluster a semantic-cache store calls `onSent` only once Redis has answered it. A worker
 * completes a job at its answer's `onSent`, and on one Redis that may come as soon as the store is handed to
 * the connection (cache-write-after-answer.test.ts): the completion, sent later, runs after it. On a cluster
 * the entry's master is usually not the job's, and nothing orders commands to two masters (nor two
 * connections to one, one of them still being opened), so a caller that learnt of the answer could ask again
 * before the entry was stored and miss it. Starts its own cluster: the test pauses every master's writes.
 */
import { Redis } from 'ioredis';
import { SemanticCache, type SemanticScope } from '../../shared/cache/semantic';
import { clusterUrl } from '../../shared/redis/cluster';
import { waitUntilReady } from '../../shared/redis/connection';
import { RedisClient } from '../../shared/redis/redis-client';
import { startLocalCluster, type LocalCluster } from '../helpers/redis-cluster';

const SCOPE: SemanticScope = { model: 'qwen2.5:0.5b', params: {}, tenant: 'tenant-c' };

describe('a semantic-cache store on a Redis Cluster', () => {
  let cluster: LocalCluster;
  let client: RedisClient;
  const admins: Redis[] = [];

  beforeAll(async () => {
    cluster = await startLocalCluster(3);
    // a command timeout well beyond the pause below: the store waits it out, it does not fail
    client = new RedisClient({ url: clusterUrl(cluster.nodes), commandTimeoutMs: 30_000 });
    await waitUntilReady(client.connection, 10_000);
  }, 60_000);
  afterAll(async () => {
    for (const a of admins) a.disconnect();
    await client?.close();
    await cluster?.stop();
  });

  it('calls onSent once the entry is stored, not when the call is handed to the connection', async () => {
    const cache = new SemanticCache<string>({ redis: client, prefix: '{semclu}' });
    // the scope's scripts loaded and its master's connection open before the measured store
    await cache.set('Which planet is the largest?', 'Jupiter', SCOPE);
    const pauseMs = 1500;
    for (const port of cluster.ports) {
      const admin = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
      admins.push(admin);
      await admin.call('CLIENT', 'PAUSE', String(pauseMs), 'WRITE');
    }
    // Every master holds writes (the store's script among them) for pauseMs from its PAUSE, the last of
    // which ran before this reading.
    const pausedAt = Date.now();
    let sentAfterMs: number | undefined;
    await cache.set('Which mountain is the tallest?', 'Everest', SCOPE, {
      onSent: () => (sentAfterMs ??= Date.now() - pausedAt),
    });
    // Handed to the connection, the call would have been "sent" within a few ms of the pause's start.
    expect(sentAfterMs).toBeGreaterThanOrEqual(pauseMs / 2);
    expect(cache.getStats().errors).toBe(0);
    expect((await cache.get('Which mountain is the tallest?', SCOPE))?.value).toBe('Everest');
  }, 30_000);
});
