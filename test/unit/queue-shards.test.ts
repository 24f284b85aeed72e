import { jobIdFor } from '../../shared/queues/job-id';
import { parseInferenceRequest } from '../../shared/queues/schemas';
import {
  checkShardCount,
  servedShards,
  shardKey,
  shardOf,
  shardPrefix,
  shardSlot,
  shareOf,
} from '../../shared/queues/shards';
import { crc16, keySlot } from '../../shared/redis/key-slot';
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

  it('keeps the unsharded tag for one shard and gives each of several its own tag', () => {
    expect(shardPrefix('{cell0}', 'inference', 0, 1)).toBe('{cell0:inference}');
    expect(shardKey('{cell0}', 'search', 0, 1)).toBe('{cell0:search}:search');
    // Pinned: a change here moves every queued job of a sharded fleet to other keys.
    expect([0, 1, 2].map((k) => shardPrefix('{cell0}', 'inference', k, 3))).toEqual([
      '{cell0:inference:0.7835}',
      '{cell0:inference:1.13734}',
      '{cell0:inference:2.1054}',
    ]);
    expect(shardKey('{cell0}', 'search', 1, 3)).toBe('{cell0:search:1.6936}:search');
    // A prefix that is not a hash tag.
    expect(shardPrefix('plain', 'inference', 0, 4)).toBe('plain');
    expect(shardPrefix('plain', 'inference', 3, 4)).toBe('plain:3');
  });

  it('computes slots as Redis Cluster does', () => {
    // The example of the Redis Cluster specification: CRC16 of "123456789" is 0x31C3.
    expect(crc16(Buffer.from('123456789'))).toBe(0x31c3);
    expect(keySlot('123456789')).toBe(0x31c3 % 16384);
    // Only the hash tag counts; an empty tag does not.
    expect(keySlot('{cell0:inference}:inference:wait')).toBe(keySlot('cell0:inference'));
    expect(keySlot('{}x')).toBe(crc16(Buffer.from('{}x')) % 16384);
    expect(keySlot('{cell0}')).toBe(1159);
    expect(keySlot('{cell0:inference}')).toBe(1974);
  });

  it('puts shard k of N on the middle slot of the k-th of N equal slot ranges, for any prefix', () => {
    for (const prefix of ['{cell0}', '{acme:prod}', '{x}'])
      for (const queue of ['inference', 'search', 'embedding'])
        for (const n of [2, 3, 4, 7, 16])
          for (let k = 0; k < n; k++) {
            expect(keySlot(shardPrefix(prefix, queue, k, n))).toBe(shardSlot(k, n));
            expect(shardSlot(k, n)).toBe(Math.floor(((k + 0.5) * 16384) / n));
          }
  });

  it('spreads N shards within one of even over M evenly split masters (M ≤ 12, N ≤ 64)', () => {
    /** The slot ranges `redis-cli --cluster create` gives M masters (its even split, rounded as it does). */
    const split = (m: number): [number, number][] => {
      const out: [number, number][] = [];
      const per = 16384 / m;
      let first = 0;
      for (let i = 0; i < m; i++) {
        let last = Math.round(per * (i + 1) - 1);
        if (last > 16383 || i === m - 1) last = 16383;
        out.push([first, last]);
        first = last + 1;
      }
      return out;
    };
    expect(split(3)).toEqual([
      [0, 5460],
      [5461, 10922],
      [10923, 16383],
    ]);
    for (let m = 1; m <= 12; m++) {
      const ranges = split(m);
      for (let n = 1; n <= 64; n++) {
        const per = ranges.map(() => 0);
        for (let k = 0; k < n; k++) {
          const slot = n === 1 ? keySlot('{cell0:inference}') : shardSlot(k, n);
          per[ranges.findIndex(([a, b]) => slot >= a && slot <= b)]!++;
        }
        if (n === 1) continue;
        // N ≥ M: every master N/M rounded down or up; N < M: no master has two.
        for (const c of per) {
          expect(c).toBeGreaterThanOrEqual(n >= m ? Math.floor(n / m) : 0);
          expect(c).toBeLessThanOrEqual(Math.ceil(n / m));
        }
      }
    }
    // The issue's case: 3 shards on 3 masters, one each (the tags' real slots).
    expect([0, 1, 2].map((k) => keySlot(shardPrefix('{cell0}', 'inference', k, 3)))).toEqual([
      2730, 8192, 13653,
    ]);
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
