/*
 * The fleet's maintenance queue on a real Redis: job schedulers upserted by every worker stay one each, the
 * monitor job runs once per tick for the whole fleet and publishes the fleet summary, and the cleanup job
 * removes old jobs, expired cache records and old files.
 */
import { mkdtemp, rm, utimes, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Cell0Worker } from '../../workers/cell0-worker';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';
import {
  createMaintenanceTasks,
  fleetSummaryKey,
  upsertMaintenanceSchedulers,
  type MaintenanceTasks,
} from '../../workers/maintenance';
import { MAINTENANCE_QUEUE, queuePrefix } from '../../shared/queues/names';
import { createRedisConnection, closeRedis } from '../../shared/redis/connection';
import { DiskCleanupManager } from '../../shared/resources/disk-cleanup';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';

describe('maintenance queue', () => {
  const redis = createRedisConnection({ url: testRedisUrl(), role: 'worker', connectionName: 'test:maint' });
  afterAll(async () => {
    await closeRedis(redis);
  });

  it('upserting the schedulers twice (even with a new period) leaves one scheduler each', async () => {
    const prefix = uniquePrefix('maint');
    const queue = new Queue(MAINTENANCE_QUEUE, {
      connection: redis,
      prefix: queuePrefix(prefix, MAINTENANCE_QUEUE),
    });
    try {
      await upsertMaintenanceSchedulers(queue, { monitorEveryMs: 5000, cleanupEveryMs: 300_000 });
      await upsertMaintenanceSchedulers(queue, { monitorEveryMs: 5000, cleanupEveryMs: 300_000 });
      await upsertMaintenanceSchedulers(queue, { monitorEveryMs: 3000, cleanupEveryMs: 300_000 });
      expect(await queue.getJobSchedulersCount()).toBe(2);
      const schedulers = await queue.getJobSchedulers();
      expect(schedulers.map((s) => [s.key, s.every]).sort()).toEqual([
        ['cleanup', 300_000],
        ['monitor', 3000],
      ]);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });

  it('two workers serving it: one scheduler each, the monitor job runs once per tick for the fleet', async () => {
    const prefix = uniquePrefix('maint');
    const queues = [new Queue('inference', { connection: redis, prefix: queuePrefix(prefix, 'inference') })];
    const runs: string[] = [];
    const make = () => {
      const base = createMaintenanceTasks({
        redis,
        prefix,
        queues,
        summaryTtlMs: 10_000,
        retention: { completedMs: 3600_000, failedMs: 3600_000 },
      });
      const tasks: MaintenanceTasks = {
        monitor: async () => {
          runs.push('monitor');
          return base.monitor();
        },
        cleanup: () => base.cleanup(),
      };
      return new Cell0Worker({
        redisUrl: testRedisUrl(),
        prefix,
        queues: ['inference'],
        inference: new NoopInferenceBackend(),
        heartbeatMs: 200,
        shutdownTimeoutMs: 2000,
        maintenance: { tasks, monitorEveryMs: 1000, cleanupEveryMs: 600_000 },
      });
    };
    const a = make();
    const b = make();
    const mq = new Queue(MAINTENANCE_QUEUE, {
      connection: redis,
      prefix: queuePrefix(prefix, MAINTENANCE_QUEUE),
    });
    try {
      const t0 = Date.now();
      await Promise.all([a.start(), b.start()]);
      expect(await mq.getJobSchedulersCount()).toBe(2);
      await until(() => runs.length >= 3, 8000, 'three monitor runs');
      const elapsedTicks = (Date.now() - t0) / 1000;
      // Once per tick for the whole fleet: two workers would give about twice as many if each ran its own.
      expect(runs.length).toBeLessThanOrEqual(Math.ceil(elapsedTicks) + 1);
      const done = await mq.getJobs(['completed'], 0, 50);
      const monitorJobs = done.filter((j) => j.name === 'monitor');
      expect(new Set(monitorJobs.map((j) => j.id)).size).toBe(monitorJobs.length);
      expect(
        new Set(monitorJobs.map((j) => (j.returnvalue as { by: string }).by)).size,
      ).toBeGreaterThanOrEqual(1);
      const summary = JSON.parse((await redis.get(fleetSummaryKey(prefix))) ?? 'null') as {
        workers: number;
        queues: Record<string, unknown>;
      };
      expect(summary.workers).toBe(2);
      expect(summary.queues).toHaveProperty('inference');
    } finally {
      await Promise.all([a.close(), b.close()]);
      await mq.obliterate({ force: true });
      await mq.close();
      await queues[0]!.close();
    }
  });

  it('cleanup removes finished jobs past retention, expired cache records and old files; a failing step does not stop the rest', async () => {
    const prefix = uniquePrefix('maint');
    const q = new Queue('inference', { connection: redis, prefix: queuePrefix(prefix, 'inference') });
    const wConn = redis.duplicate();
    const w = new Worker('inference', async () => 'ok', {
      connection: wConn,
      prefix: queuePrefix(prefix, 'inference'),
    });
    const dir = await mkdtemp(join(tmpdir(), 'cell0-maint-'));
    try {
      for (let i = 0; i < 3; i++) await q.add('generate', { i }, { removeOnComplete: false });
      await until(async () => (await q.getCompletedCount()) === 3, 5000, 'three completed jobs');
      await writeFile(join(dir, 'old.log'), 'x'.repeat(100));
      await writeFile(join(dir, 'new.log'), 'y');
      const tenDaysAgo = new Date(Date.now() - 10 * 86_400_000);
      await utimes(join(dir, 'old.log'), tenDaysAgo, tenDaysAgo);
      const disk = new DiskCleanupManager({ intervalMs: 0 });
      disk.registerCleanupPath(dir, 1);
      let sweeps = 0;
      const tasks = createMaintenanceTasks({
        redis,
        prefix,
        queues: [q],
        summaryTtlMs: 10_000,
        semantic: {
          sweepExpired: async () => {
            sweeps++;
            throw new Error('cache store away');
          },
        },
        disk,
        retention: { completedMs: 0, failedMs: 0 },
      });
      const report = await tasks.cleanup();
      expect(report.disk).toMatchObject({ removedFiles: 1, removedBytes: 100 });
      expect(await readdir(dir)).toEqual(['new.log']);
      expect(sweeps).toBe(1);
      expect(report.errors).toEqual(['semanticCache: cache store away']);
      expect(report.jobs).toEqual({ inference: { completed: 3, failed: 0 } });
      expect(await q.getCompletedCount()).toBe(0);
    } finally {
      await w.close();
      await closeRedis(wConn);
      await q.obliterate({ force: true });
      await q.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
