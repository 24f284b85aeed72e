import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createRedisConnection, closeRedis, waitUntilReady } from '../../shared/redis/connection';
import { isCluster } from '../../shared/redis/cluster';
import { masterFor } from '../../shared/redis/key-slot';
import { publishWorkerStatus, readWorkerStatuses, staleAfterMs } from '../../shared/fleet/worker-status';
import { workerStatus } from '../helpers/pressure';
import { onCluster, testRedisUrl, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';

const ROOT = join(__dirname, '..', '..');

/*
 * A worker killed with SIGKILL leaves the fleet registry as soon as Redis sees its connection close, long
 * before its status would expire or go stale by age: on one Redis, and on a Redis Cluster (under
 * `npm run test:cluster`), where the worker's CLIENT ID is that of its connection to the master holding the
 * registry's slot and readers ask that master.
 */
describe('fleet liveness by connection', () => {
  it('a worker killed with SIGKILL leaves the registry at once, its status still far from stale', async () => {
    const prefix = uniquePrefix('live');
    const redisUrl = testRedisUrl();
    const heartbeatMs = 10_000;
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(ROOT, 'test', 'helpers', 'heartbeat-worker-child.ts'),
        redisUrl,
        prefix,
        String(heartbeatMs),
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = once(child, 'exit');
    const reader = createRedisConnection({ url: redisUrl, role: 'client' });
    try {
      await waitUntilReady(reader, 10_000);
      const id = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /ready (\S+)\n/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.on('exit', () => reject(new Error(`the child exited before starting: ${err}`)));
      });
      const statuses = await readWorkerStatuses(reader, prefix);
      expect(statuses.map((w) => w.id)).toEqual([id]);
      const status = statuses[0]!;
      expect(Number.isInteger(status.clientId)).toBe(true);
      if (isCluster(reader)) {
        // The id is of the connection to the master that holds the registry's slot, and says so.
        expect(onCluster()).toBe(true);
        expect(status.clientNode).toBe(masterFor(reader, `${prefix}:fleet:workers`)!.address);
      } else expect(status.clientNode).toBeUndefined();

      const killedAt = Date.now();
      child.kill('SIGKILL');
      await exited;
      await until(
        async () => (await readWorkerStatuses(reader, prefix)).length === 0,
        5_000,
        'the killed worker to leave the registry',
      );
      // Gone within seconds, while its status lives on (TTL 3 heartbeats) and is not stale by age
      // (one heartbeat and a grace: 15 s).
      expect(Date.now() - killedAt).toBeLessThan(staleAfterMs(heartbeatMs));
      expect(await reader.pttl(`${prefix}:fleet:worker:${id}`)).toBeGreaterThan(20_000);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await closeRedis(reader);
    }
  }, 60_000);

  it('an id read on another node (the registry slot moved) is not checked there: the status ages out', async () => {
    const prefix = uniquePrefix('moved');
    const redis = createRedisConnection({ url: testRedisUrl(), role: 'client' });
    try {
      await waitUntilReady(redis, 10_000);
      const status = workerStatus('moved', {
        heartbeatMs: 200,
        // An id no connection has, of a node that is not the registry's master.
        clientId: 2 ** 40,
        clientNode: '192.0.2.1:7000',
      });
      await publishWorkerStatus(redis, prefix, status, 60_000);
      const ids = async () => (await readWorkerStatuses(redis, prefix)).map((w) => w.id);
      // Not dropped for its id (that node was not asked) ...
      expect(await ids()).toEqual(['moved']);
      // ... but once older than a heartbeat and the grace.
      await until(async () => (await ids()).length === 0, 10_000, 'the status to go stale');
    } finally {
      await closeRedis(redis);
    }
  });
});
