import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { spawnCell0, type Cell0Process } from '../helpers/cli';
import { startLocalCluster, type LocalCluster } from '../helpers/redis-cluster';
import { parseClusterNodes } from '../../shared/redis/cluster';
import { shardOf, shardPrefix } from '../../shared/queues/shards';

/*
 * `cell0 start` on a 3-master Redis Cluster (REDIS_CLUSTER_NODES): the whole fleet in one process answers
 * inference, search and a cached request, and the queues' keys are spread over the masters: with
 * CELL0_QUEUE_SHARDS=3 each queue is three hash tags, and the inference queue alone spans more than one
 * master (each shard one slot, so one master). Uses the run's cluster under `npm run test:cluster`, else starts its own.
 */
describe('cell0 start on a Redis Cluster', () => {
  let own: LocalCluster | undefined;
  let nodes: string;
  let dataDir: string;
  let proc: Cell0Process | undefined;
  const prefix = '{cell0}';

  beforeAll(async () => {
    if (process.env.REDIS_CLUSTER_NODES) nodes = process.env.REDIS_CLUSTER_NODES;
    else {
      own = await startLocalCluster(3);
      nodes = own.nodes;
    }
    dataDir = mkdtempSync(join(tmpdir(), 'cell0-cluster-start-'));
  }, 60_000);
  afterAll(async () => {
    proc?.kill('SIGKILL');
    await own?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers inference, search and a cached request; the shards of one queue sit on more than one master', async () => {
    proc = spawnCell0(['start'], {
      REDIS_CLUSTER_NODES: nodes,
      CELL0_QUEUE_PREFIX: prefix,
      CELL0_QUEUE_SHARDS: '3',
      CELL0_PORT: '0',
      CELL0_SIM_PORT: '0',
      CELL0_DATA_DIR: dataDir,
    });
    const [, apiUrl] = await proc.waitFor(/api\s+(http:\/\/\S+)/, 60_000);
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${apiUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const ask = { model: 'qwen2.5:7b', prompt: 'What is the capital of France?' };
    const first = await post('/v1/inference', ask);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ status: 'completed', cached: false });
    expect((first.body.result as { text: string }).text).toMatch(/^\[simulated qwen2\.5:7b\]/);
    const again = await post('/v1/inference', ask);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ status: 'completed', cached: 'exact', jobId: first.body.jobId });
    const search = await post('/v1/search', { query: 'redis cluster hash tags' });
    expect(search.status).toBe(200);
    expect(search.body).toMatchObject({ status: 'completed', queue: 'search' });
    // The job reads back through GET /v1/jobs/:queue/:id as on one Redis.
    const job = await fetch(`${apiUrl}/v1/jobs/inference/${String(first.body.jobId)}`);
    expect(job.status).toBe(200);
    // Bull Board reads the queues on the cluster too, a board entry per shard.
    const board = await fetch(`${apiUrl}/admin/queues/api/queues`);
    expect(board.status).toBe(200);
    const names = ((await board.json()) as { queues: { name: string }[] }).queues.map((q) => q.name);
    expect(names).toEqual(
      expect.arrayContaining(['shard-0:inference', 'shard-1:inference', 'shard-2:inference']),
    );
    // Distinct requests spread over the inference shards (a job's shard follows from its id).
    const spread = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        post('/v1/inference', { model: ask.model, prompt: `Spread ${i}` }),
      ),
    );
    for (const r of spread) expect(r.status).toBe(200);
    // These prompts' jobs (ids are hashes of the requests: the same in every run) fall on all three shards.
    expect(new Set(spread.map((r) => shardOf(String(r.body.jobId), 3)))).toEqual(new Set([0, 1, 2]));
    for (const r of spread) {
      const back = await fetch(`${apiUrl}/v1/jobs/inference/${String(r.body.jobId)}`);
      expect(back.status).toBe(200);
    }

    // Where each shard's keys live: every master is scanned (SCAN on one node sees only its keys).
    const mastersOf = new Map<string, Set<number>>();
    const masters = new Set<number>();
    const clients = parseClusterNodes(nodes).map((n) => new Redis({ host: n.host, port: n.port }));
    try {
      for (const [i, c] of clients.entries()) {
        const role = (await c.role()) as unknown[];
        if (role[0] !== 'master') continue;
        masters.add(i);
        let cursor = '0';
        do {
          const [next, keys] = await c.scan(cursor, 'MATCH', `${prefix.slice(0, -1)}:*`, 'COUNT', 1000);
          cursor = next;
          for (const k of keys) {
            // The shard's tag: "inference:2.1054" for shard 2 of 3 (the number places it, see shards.ts).
            const queue = /^\{[^:}]+:([a-z]+(?::\d+\.\d+)?)\}/.exec(k)?.[1];
            if (!queue) continue;
            if (!mastersOf.has(queue)) mastersOf.set(queue, new Set());
            mastersOf.get(queue)!.add(i);
          }
        } while (cursor !== '0');
      }
    } finally {
      for (const c of clients) c.disconnect();
    }
    const tags = (queue: string) =>
      [0, 1, 2].map((k) => shardPrefix(prefix, queue, k, 3).slice(prefix.length, -1));
    expect([...mastersOf.keys()]).toEqual(expect.arrayContaining([...tags('inference'), ...tags('search')]));
    // One shard, one slot, so one master each; the three inference shards on the three masters, one each
    // (each tag's slot is the middle of a third of the slot space, and the cluster splits it in thirds).
    for (const [, on] of mastersOf) expect(on.size).toBe(1);
    expect(masters.size).toBe(3);
    for (const queue of ['inference', 'search']) {
      const on = tags(queue).map((tag) => [...mastersOf.get(tag)!][0]);
      expect(new Set(on)).toEqual(masters);
    }

    proc.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 180_000);
});
