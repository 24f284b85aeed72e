import { jobIdFor } from '../../shared/queues/job-id';
import { parseInferenceRequest } from '../../shared/queues/schemas';
import {
  checkShardCount,
  servedShards,
  shardKey,
  shardOf,
  shardPrefix,
  shareOf,
} from '../../shared/queues/shards';
import { loadConfig } from '../../shared/config/config';
import { ConfigError } from '../../shared/errors';

const limits = { maxPromptBytes: 32 * 1024, maxQueryBytes: 2048 };
const inferenceId = (body: unknown) => jobIdFor('inference', parseInferenceRequest(body, limits));

describe('queue shards', () => {
  it('routes a job by the first 32 bits of its id, the same in every process and release', () => {
    // Pinned: a change here moves every queued job of a sharded fleet to another shard.
    expect(shardOf('i-00000000ffffffffffffffffffffffff', 3)).toBe(0);
    expect(shardOf('i-00000001ffffffffffffffffffffffff', 3)).toBe(1);
    expect(shardOf('i-0000000500000000000000000000000f', 3)).toBe(2);
    expect(shardOf('s-ffffffff000000000000000000000000', 7)).toBe(0xffffffff % 7);
    const id = inferenceId({ model: 'm', prompt: 'What is the capital of France?' });
    expect(shardOf(id, 3)).toBe(Number.parseInt(id.slice(2, 10), 16) % 3);
    // One shard: everything on shard 0.
    expect(shardOf(id, 1)).toBe(0);
  });

  it('sends identical requests (any key order) to one shard', () => {
    const a = inferenceId({ model: 'm', prompt: 'p', params: { temperature: 0.2, max_tokens: 50 } });
    const b = inferenceId({ params: { max_tokens: 50, temperature: 0.2 }, prompt: 'p', model: 'm' });
    expect(b).toBe(a);
    for (const shards of [2, 3, 5, 16]) expect(shardOf(b, shards)).toBe(shardOf(a, shards));
  });

  it('spreads distinct requests evenly over the shards', () => {
    const n = 3000;
    const per = [0, 0, 0];
    for (let i = 0; i < n; i++) per[shardOf(inferenceId({ model: 'm', prompt: `question ${i}` }), 3)]!++;
    // Binomial(3000, 1/3): a shard outside 1000 ± 100 is a 5-sigma event.
    for (const c of per) expect(Math.abs(c - n / 3)).toBeLessThan(100);
  });

  it('gives each shard its own hash tag; shard 0 keeps the unsharded one', () => {
    expect(shardPrefix('{cell0}', 'inference', 0)).toBe('{cell0:inference}');
    expect(shardPrefix('{cell0}', 'inference', 2)).toBe('{cell0:inference:2}');
    expect(shardKey('{cell0}', 'search', 1)).toBe('{cell0:search:1}:search');
    expect(shardKey('{cell0}', 'search', 0)).toBe('{cell0:search}:search');
    // A prefix that is not a hash tag.
    expect(shardPrefix('plain', 'inference', 0)).toBe('plain');
    expect(shardPrefix('plain', 'inference', 3)).toBe('plain:3');
  });

  it('checks shard counts and the shards a worker serves', () => {
    expect(checkShardCount(3, 'x')).toBe(3);
    expect(() => checkShardCount(0, 'option "shards"')).toThrow(
      /option "shards" must be an integer from 1 to 64/,
    );
    expect(() => checkShardCount(1.5, 'x')).toThrow(TypeError);
    expect(servedShards(3, undefined, 'x')).toEqual([0, 1, 2]);
    expect(servedShards(4, [3, 1, 3], 'x')).toEqual([1, 3]);
    expect(() => servedShards(3, [3], 'servedShards')).toThrow(/servedShards: shard 3 is not one of 0\.\.2/);
    expect(() => servedShards(3, [], 'servedShards')).toThrow(/at least one shard/);
  });

  it("splits a queue's concurrency over the shards served, at least 1 each", () => {
    expect([0, 1, 2].map((i) => shareOf(64, i, 3))).toEqual([22, 21, 21]);
    expect([0, 1, 2].map((i) => shareOf(1, i, 3))).toEqual([1, 1, 1]);
    expect(shareOf(8, 0, 1)).toBe(8);
  });
});

describe('shard settings', () => {
  const issues = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (err) {
      if (err instanceof ConfigError) return err.issues;
      throw err;
    }
    return [];
  };

  it('reads CELL0_QUEUE_SHARDS (default 1) and CELL0_WORKER_SHARDS (default all)', () => {
    const d = loadConfig({});
    expect(d.redis.queueShards).toBe(1);
    expect(d.workers.shards).toBeUndefined();
    const c = loadConfig({ CELL0_QUEUE_SHARDS: '4', CELL0_WORKER_SHARDS: '0, 2' });
    expect(c.redis.queueShards).toBe(4);
    expect(c.workers.shards).toEqual([0, 2]);
  });

  it('refuses bad values with the variable and the reason', () => {
    expect(issues({ CELL0_QUEUE_SHARDS: '0' })).toEqual([
      { field: 'CELL0_QUEUE_SHARDS', reason: expect.stringMatching(/>= 1/) },
    ]);
    expect(issues({ CELL0_WORKER_SHARDS: 'a,b' })).toEqual([
      { field: 'CELL0_WORKER_SHARDS', reason: expect.stringMatching(/shard numbers/) },
    ]);
    expect(issues({ CELL0_QUEUE_SHARDS: '3', CELL0_WORKER_SHARDS: '1,3' })).toEqual([
      {
        field: 'CELL0_WORKER_SHARDS',
        reason: expect.stringMatching(/shard 3 does not exist: CELL0_QUEUE_SHARDS is 3/),
      },
    ]);
  });
});
