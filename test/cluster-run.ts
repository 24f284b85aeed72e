/*
 * npm run test:cluster — the Redis-touching integration tests against a local 3-master Redis Cluster.
 *
 * Starts the cluster from redis-server (--cluster-enabled yes) and redis-cli --cluster create on free ports
 * (no Docker), runs jest on the files below with REDIS_CLUSTER_NODES pointing at it (the global setup hands
 * the tests a redis-cluster:// URL, which cell0's connection factory turns into an ioredis Cluster), then
 * stops the cluster. Exits with jest's code. `--serve` only starts the cluster, prints its nodes and keeps
 * it up until SIGINT/SIGTERM (for trying cell0 on a cluster by hand). Test files given as arguments run
 * instead of the list; options go to jest.
 */
import { spawn } from 'node:child_process';
import { startLocalCluster } from './helpers/redis-cluster';

/** Integration tests that touch Redis through cell0's own code and run on a cluster as on one Redis. */
export const CLUSTER_TESTS = [
  'test/integration/cluster.test.ts',
  'test/integration/sharded-queues.test.ts',
  'test/integration/sharded-many.test.ts',
  'test/integration/fleet-liveness.test.ts',
  'test/integration/job-submitter.test.ts',
  'test/integration/worker-jobs.test.ts',
  'test/integration/api.test.ts',
  'test/integration/batches.test.ts',
  'test/integration/openai-batches.test.ts',
  'test/integration/embeddings.test.ts',
  'test/integration/maintenance.test.ts',
  'test/integration/stream-abort.test.ts',
  'test/integration/token-stream-writer.test.ts',
  'test/integration/token-stream-hub.test.ts',
  'test/integration/redis-token-bucket.test.ts',
  'test/integration/search-cache.test.ts',
  'test/integration/semantic-cache.test.ts',
  'test/integration/semantic-mirror.test.ts',
  'test/integration/semantic-lookup-batch.test.ts',
  'test/integration/caching.test.ts',
  'test/integration/bullmq-internals.test.ts',
  'test/integration/reply-behind-finish.test.ts',
  'test/integration/lean-job-path.test.ts',
];

/*
 * Not run on the cluster, and why:
 * - redis-outage, redis-slow, redis-memory, outage-logs, worker-exit, worker-shutdown: stop, pause or
 *   reconfigure (CONFIG SET maxmemory) a private single Redis of their own; they never use the run's Redis.
 * - cli-start, lifecycle, coalescing-processes, batch-cli, batch-sigkill, docs-curl, tenancy, metrics,
 *   prometheus-scrape, fleet-page, dashboard, tracing: whole CLI processes or their own Redis; the cluster
 *   path of `cell0 start` is covered by cluster.test.ts.
 * - cluster-failover: starts its own 6-node cluster with replicas (and kills a master), in `npm test`.
 * - Tests without Redis (compose-file, package-surface, simulator-*, http-*, search-providers, ...).
 */

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const serve = args[0] === '--serve';
  const files = args.filter((a) => !a.startsWith('-'));
  const options = args.filter((a) => a.startsWith('-'));
  const t0 = Date.now();
  const cluster = await startLocalCluster(3);
  console.log(`cluster up in ${Date.now() - t0} ms: REDIS_CLUSTER_NODES=${cluster.nodes}`);
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  try {
    if (serve) {
      // The servers are unref'd children: hold the process open until a signal.
      const hold = setInterval(() => undefined, 60_000);
      await stopped;
      clearInterval(hold);
      return 0;
    }
    const child = spawn(
      process.execPath,
      // Test files given on the command line replace the list; options go to jest.
      [require.resolve('jest/bin/jest'), '--ci', ...(files.length > 0 ? files : CLUSTER_TESTS), ...options],
      {
        stdio: 'inherit',
        env: { ...process.env, REDIS_CLUSTER_NODES: cluster.nodes, REDIS_URL: '' },
      },
    );
    const code = await Promise.race([
      new Promise<number>((resolve) => child.once('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)))),
      stopped.then(() => {
        child.kill('SIGTERM');
        return 130;
      }),
    ]);
    return code;
  } finally {
    await cluster.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
