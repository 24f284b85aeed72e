import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { HttpServer } from '../../shared/http-server';
import { DiskCleanupManager } from '../../shared/resources/disk-cleanup';
import { ModelMemoryManager } from '../../shared/resources/model-memory-manager';
import { startEmbeddedRedis } from '../../shared/redis/embedded-redis';
import { InferenceRouter } from '../../workers/providers/routing';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';
import { Cell0Worker } from '../../workers/cell0-worker';
import { QueueName, queuePrefix } from '../../shared/queues/names';
import { freePort } from '../helpers/redis-server';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';

/*
 * The one lifecycle contract: start() (where there is one) and close() are idempotent — a second call
 * returns the same promise and does the work once.
 */

describe('start() and close() are idempotent', () => {
  test('HttpServer', async () => {
    const server = new HttpServer((_req, res) => res.end('ok'), { host: '127.0.0.1', port: 0 });
    const started = server.start();
    expect(server.start()).toBe(started);
    const { url } = await started;
    expect(await (await fetch(url)).text()).toBe('ok');
    const closed = server.close();
    expect(server.close()).toBe(closed);
    await closed;
  });

  test('Cell0Worker: a second start() adds no BullMQ worker', async () => {
    const prefix = uniquePrefix('life');
    const worker = new Cell0Worker({
      redisUrl: testRedisUrl(),
      prefix,
      queues: [QueueName.INFERENCE],
      inference: new NoopInferenceBackend(),
      heartbeatMs: 0,
    });
    const started = worker.start();
    expect(worker.start()).toBe(started);
    await started;
    const conn = new Redis(testRedisUrl());
    const queue = new Queue(QueueName.INFERENCE, {
      connection: conn,
      prefix: queuePrefix(prefix, QueueName.INFERENCE),
    });
    try {
      expect(await queue.getWorkersCount()).toBe(1);
    } finally {
      await queue.close();
      conn.disconnect();
    }
    const closed = worker.close();
    expect(worker.close()).toBe(closed);
    await closed;
  });

  test('DiskCleanupManager, ModelMemoryManager, InferenceRouter', async () => {
    const disk = new DiskCleanupManager({ intervalMs: 60_000 });
    disk.start();
    disk.start();
    const models = new ModelMemoryManager({ budgetBytes: 1e9 });
    const router = new InferenceRouter([{ pattern: '*', backend: new NoopInferenceBackend() }]);
    for (const o of [disk, models, router]) {
      const closed = o.close();
      expect(o.close()).toBe(closed);
      await closed;
    }
  });

  test('embedded Redis', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cell0-life-'));
    try {
      const redis = await startEmbeddedRedis({ port: await freePort(), dataDir });
      const closed = redis.close();
      expect(redis.close()).toBe(closed);
      await closed;
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
