import { Redis } from 'ioredis';
import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { startLocalCluster, type LocalCluster } from '../helpers/redis-cluster';
import { until } from '../helpers/wait';
import { clusterUrl } from '../../shared/redis/cluster';
import { shardOf, shardPrefix } from '../../shared/queues/shards';
import { keySlot } from '../../shared/redis/key-slot';
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';

/*
 * A master of a 3-master cluster with one replica each (6 nodes, `--cluster-replicas 1`) dies (SIGKILL);
 * its replica takes over, and the fleet goes on: jobs queued before the crash on the dead master's shard
 * and jobs submitted after the promotion all complete, each run once (the backend's call count is exact),
 * none lost. Redis replicates asynchronously, so the test kills the master once its replica has
 * acknowledged everything it wrote (a crash before that may lose the last writes: Redis's own limit).
 * Starts its own cluster (a short cluster-node-timeout), whatever Redis the run uses.
 */
describe('a cluster master fails over to its replica', () => {
  const model = 'qwen2.5:7b';
  const shards = 3;
  let cluster: LocalCluster;
  let fleet: TestFleet;
  let worker: Cell0Worker | undefined;
  const admins: Redis[] = [];

  beforeAll(async () => {
    cluster = await startLocalCluster(3, 60_000, { replicas: 1, nodeTimeoutMs: 1000 });
    // The fleet's API and client, no worker yet: the first jobs wait in their queues through the crash.
    fleet = await startTestFleet({ redisUrl: clusterUrl(cluster.nodes), shards, worker: false });
    await fleet.client.start();
  }, 120_000);
  afterAll(async () => {
    await worker?.close();
    await fleet?.close();
    for (const a of admins) a.disconnect();
    await cluster?.stop();
  });

  const admin = (port: number) => {
    const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
    admins.push(r);
    return r;
  };
  /** CLUSTER NODES as seen by the node on `port`: id, address, flags, master id, slot ranges. */
  const nodesSeenBy = async (port: number) =>
    ((await admin(port).cluster('NODES')) as string)
      .trim()
      .split('\n')
      .map((line) => {
        const [id, addr, flags, master, , , , , ...slots] = line.split(' ');
        return {
          id: id!,
          port: Number(/:(\d+)@/.exec(addr!)![1]),
          flags: flags!.split(','),
          master: master!,
          slots: slots.filter((s) => !s.startsWith('[')),
        };
      });
  const holds = (slots: string[], slot: number) =>
    slots.some((r) => {
      const [a, b] = r.split('-').map(Number);
      return slot >= a! && slot <= (b ?? a)!;
    });
  const generateCalls = () => fleet.sim.stats().requests.byEndpoint['/api/generate'] ?? 0;
  const idOf = (prompt: string) =>
    fleet.client.submitter.jobIdFor('inference', fleet.client.parseInference({ model, prompt }));

  it('jobs queued before the crash and submitted after the promotion all complete, once each', async () => {
    // Before: 30 jobs, queued (no worker), over all three shards.
    const before = Array.from({ length: 30 }, (_, i) => `before the failover ${i}`);
    for (const prompt of before) {
      const r = await post(`${fleet.url}/v1/inference`, { model, prompt, wait: 0 });
      expect(r).toMatchObject({ status: 202, body: { status: 'pending', jobId: idOf(prompt) } });
    }
    expect(new Set(before.map((p) => shardOf(idOf(p), shards)))).toEqual(new Set([0, 1, 2]));

    // The master of shard 1's slot, and its replica.
    const slot = keySlot(shardPrefix(fleet.prefix, 'inference', 1, shards));
    const seed = cluster.ports[0]!;
    const nodes = await nodesSeenBy(seed);
    const victim = nodes.find((n) => n.flags.includes('master') && holds(n.slots, slot))!;
    const replica = nodes.find((n) => n.master === victim.id)!;
    expect(replica).toBeDefined();
    const jobsOnVictim = before.filter((p) => shardOf(idOf(p), shards) === 1).length;
    expect(jobsOnVictim).toBeGreaterThan(0);

    // Replication is asynchronous: wait until the replica has what the master wrote (offsets equal).
    const offset = async (port: number, field: string) =>
      Number(new RegExp(`${field}:(\\d+)`).exec(await admin(port).info('replication'))![1]);
    const target = await offset(victim.port, 'master_repl_offset');
    await until(
      async () => (await offset(replica.port, 'slave_repl_offset')) >= target,
      10_000,
      'the replica to catch up',
    );

    // Crash the master.
    await cluster.servers[cluster.ports.indexOf(victim.port)]!.kill();
    // The cluster marks it failed and promotes its replica: read from a surviving node, polled.
    const survivor = cluster.ports.find((p) => p !== victim.port && p !== replica.port)!;
    await until(
      async () => {
        const now = await nodesSeenBy(survivor);
        const promoted = now.find((n) => n.id === replica.id);
        const info = (await admin(survivor).cluster('INFO')) as string;
        return (
          promoted !== undefined &&
          promoted.flags.includes('master') &&
          holds(promoted.slots, slot) &&
          /cluster_state:ok/.test(info)
        );
      },
      60_000,
      'the replica to be promoted and the cluster to be ok',
    );

    // A worker for every shard: the queued jobs run, each once, none lost.
    worker = new Cell0Worker({
      redisUrl: clusterUrl(cluster.nodes),
      prefix: fleet.prefix,
      shards,
      queues: ['inference'],
      inference: new OllamaBackend(new OllamaClient({ baseUrl: fleet.sim.url })),
      heartbeatMs: 0,
    });
    await worker.start();
    for (const prompt of before) {
      const done = await fleet.client.submitter.waitFor('inference', idOf(prompt), { waitMs: 60_000 });
      expect(done).toMatchObject({ state: 'completed', jobId: idOf(prompt) });
    }
    expect(generateCalls()).toBe(30);

    // After: 30 new requests through the API, answered; the 30 earlier ones again: no new run.
    const after = Array.from({ length: 30 }, (_, i) => `after the failover ${i}`);
    const answers = await Promise.all(
      after.map((prompt) => post(`${fleet.url}/v1/inference`, { model, prompt })),
    );
    for (const [i, a] of answers.entries())
      expect(a).toMatchObject({ status: 200, body: { status: 'completed', jobId: idOf(after[i]!) } });
    expect(generateCalls()).toBe(60);
    for (const prompt of before) {
      const again = await post(`${fleet.url}/v1/inference`, { model, prompt });
      expect(again).toMatchObject({ status: 200, body: { status: 'completed', jobId: idOf(prompt) } });
      const job = await get(`${fleet.url}/v1/jobs/inference/${idOf(prompt)}`);
      expect(job).toMatchObject({ status: 200, body: { state: 'completed' } });
    }
    expect(generateCalls()).toBe(60);
  }, 240_000);
});
