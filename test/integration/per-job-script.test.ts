import { Job, Queue } from 'bullmq';
import { pack } from 'msgpackr';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { integerArgsAsStrings } from '../../shared/redis/lua-integer-args';
import { argsUnpackedOnce } from '../../shared/queues/add-batch';
import { bullmqScript } from '../../shared/queues/bullmq-internals';
import { perJobFunction, splitOpening } from '../../shared/queues/per-job-script';
import {
  optsShared,
  sendTake,
  takeJobsLua,
  takenJobs,
  type TakeKeys,
  type TakeRequest,
} from '../../shared/queues/take-jobs';
import { testRedisConnection, uniquePrefix } from '../helpers/redis';

/*
 * A BullMQ script run once per job inside a cell0 script (the batched adds, the take) makes its helpers once
 * per call (shared/queues/per-job-script.ts): each job must see what it saw with the whole text wrapped, and
 * BullMQ 6.7's addStandardJob and moveToActive must be taken that way (else the saving is gone).
 */

/** A script in BullMQ's shape: opening locals, helpers (one of them reads an opening local), the rest. */
const SAMPLE = `--[[
  A sample in BullMQ's shape.
]]
local first = KEYS[1]
local n = tonumber(ARGV[1])
local seen
local rcall = redis.call
-- Includes
--[[
  Doubles, plus the opening n.
]]
local function twice(x)
  return x * 2 + n
end
local label = function()
  return first .. ":" .. tostring(seen)
end
local before = tostring(seen)
seen = n
return { before, label(), twice(n), tostring(twice) }`;

/** Runs `f` twice in one script call; the last value tells whether both runs had the same helper. */
const driver = (fn: string) => `${fn}
local a = f({ "k1" }, { "3" })
local b = f({ "k2" }, { "4" })
return { a[1], a[2], a[3], b[1], b[2], b[3], a[4] == b[4] and 1 or 0 }`;

describe('BullMQ scripts run per job with their helpers made once per call', () => {
  test('a script in that shape splits into its opening locals, its helpers and the rest', () => {
    const parts = splitOpening(SAMPLE)!;
    expect(parts.opening).toEqual([
      { name: 'first', value: 'KEYS[1]' },
      { name: 'n', value: 'tonumber(ARGV[1])' },
      { name: 'seen', value: 'nil' },
      { name: 'rcall', value: 'redis.call' },
    ]);
    expect(parts.helpers.startsWith('local function twice(x)')).toBe(true);
    expect(parts.helpers.trimEnd().endsWith('end')).toBe(true);
    expect(parts.rest.trimStart().startsWith('local before = tostring(seen)')).toBe(true);
  });

  test.each([
    ['a helper reads KEYS', SAMPLE.replace('return x * 2 + n', 'return x * 2 + #KEYS')],
    ['an opening statement that is not a local', SAMPLE.replace('local seen\n', 'seen = 1\n')],
    ['an opening local of two names', SAMPLE.replace('local seen\n', 'local seen, other\n')],
    [
      'an opening local on two lines',
      SAMPLE.replace('local n = tonumber(ARGV[1])', 'local n =\n  tonumber(ARGV[1])'),
    ],
    [
      'an opening local whose value goes on',
      SAMPLE.replace('local n = tonumber(ARGV[1])', 'local n = 1 +\n2'),
    ],
    ['an opening local with a string', SAMPLE.replace('local seen\n', 'local seen = "x"\n')],
    [
      'a helper on one line',
      SAMPLE.replace('local function twice(x)', 'local function one() return 1 end\nlocal function twice(x)'),
    ],
    ['code at the left margin inside a helper', SAMPLE.replace('  return x * 2 + n', 'return x * 2 + n')],
    ['no helper', 'local a = KEYS[1]\nreturn a'],
  ])('not taken when %s: the whole text runs per call', (_what, lua) => {
    expect(splitOpening(lua)).toBeUndefined();
    expect(perJobFunction('f', lua)).toBe(`local function f(KEYS, ARGV)\n${lua}\nend`);
  });

  describe('in Redis', () => {
    let redis: RedisConnection;
    beforeAll(() => {
      redis = testRedisConnection('test:per-job-script');
    });
    afterAll(async () => {
      await closeRedis(redis);
    });

    test('each call sees what the wrapped text saw (fresh opening locals), one helper for all calls', async () => {
      const plain = `local function f(KEYS, ARGV)\n${SAMPLE}\nend`;
      const hoisted = perJobFunction('f', SAMPLE);
      expect(hoisted).not.toBe(plain);
      const run = (lua: string) => redis.eval(driver(lua), 0) as Promise<unknown[]>;
      const [a, b] = [await run(plain), await run(hoisted)];
      // `seen` is nil again at the start of the second call; the helper reads that call's n and KEYS.
      expect(a.slice(0, 6)).toEqual(['nil', 'k1:3', 9, 'nil', 'k2:4', 12]);
      expect(b.slice(0, 6)).toEqual(a.slice(0, 6));
      // Wrapped whole, each call makes its helper again; split, both calls share one.
      expect(a[6]).toBe(0);
      expect(b[6]).toBe(1);
    });

    test("BullMQ 6.7's addStandardJob and moveToActive are taken, and their scripts compile", async () => {
      const queue = new Queue('q', { connection: redis, prefix: uniquePrefix('pj') });
      await queue.waitUntilReady();
      const add = argsUnpackedOnce(integerArgsAsStrings(bullmqScript(redis, 'addStandardJob', 9)!.lua));
      const fetch = integerArgsAsStrings(optsShared(bullmqScript(redis, 'moveToActive', 11)!.lua));
      expect(add).toContain('local args = ARGV.cell0Args or cmsgpack.unpack(ARGV[1])');
      expect(fetch).toContain('local opts = ARGV.cell0Opts or cmsgpack.unpack(ARGV[3])');
      expect(fetch).toContain('rcall("HINCRBY", jobKey, "ats", "1")');
      const helpers = (lua: string) => (splitOpening(lua)?.helpers.match(/^local function /gm) ?? []).length;
      expect(helpers(add)).toBe(25);
      expect(helpers(fetch)).toBe(10);
      expect(await redis.script('LOAD', `${perJobFunction('a', add)}\nreturn 0`)).toMatch(/^[0-9a-f]{40}$/);
      expect(await redis.script('LOAD', takeJobsLua(bullmqScript(redis, 'moveToActive', 11)!.lua))).toMatch(
        /^[0-9a-f]{40}$/,
      );
      await queue.close();
    });

    test("a take leaves each job as BullMQ's own moveToActive with the worker's packed options does", async () => {
      const [pa, pb] = [uniquePrefix('pj'), uniquePrefix('pj')];
      const [qa, qb] = [pa, pb].map((prefix) => new Queue('q', { connection: redis, prefix }));
      await Promise.all([qa!.waitUntilReady(), qb!.waitUntilReady()]);
      const client = await qa!.getBackend().client;
      for (const q of [qa!, qb!])
        for (const id of ['a', 'b', 'c']) await new Job(q, 'j', { id }, { jobId: id }, id).addJob(client);
      // B: BullMQ's own fetch, one call per job, with the options packed as its worker packs them.
      const moveToActive = bullmqScript(redis, 'moveToActive', 11)!.name;
      const kb = qb!.keys as unknown as TakeKeys;
      const keysOf = (k: TakeKeys) => [
        k.wait,
        k.active,
        k.prioritized,
        k.events,
        k.stalled,
        k.limiter,
        k.delayed,
        k.paused,
        k.meta,
        k.pc,
        k.marker,
      ];
      const now = Date.now();
      const own: unknown[] = [];
      for (const token of ['w:t0', 'w:t1', 'w:t2'])
        own.push(
          await (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[moveToActive]!(
            ...keysOf(kb),
            kb[''],
            now,
            pack({ token, lockDuration: 30_000, name: 'w1' }),
          ),
        );
      // A: the take, in one call.
      const req: TakeRequest = {
        keys: qa!.keys as unknown as TakeKeys,
        marksGate: undefined,
        tokens: ['w:t0', 'w:t1', 'w:t2'],
        lockDuration: 30_000,
        name: 'w1',
      };
      let answer: Promise<unknown[]> | undefined;
      sendTake(redis, { request: req, answered: (r) => (answer = r) });
      const taken = takenJobs(req, await answer!);
      expect(taken.map((t) => t.raw[1])).toEqual(['a', 'b', 'c']);
      expect(own.map((r) => (r as unknown[])[1])).toEqual(['a', 'b', 'c']);
      const withoutTimes = (h: Record<string, string>) => {
        const { timestamp: _t, processedOn: _p, ...rest } = h;
        return rest;
      };
      for (const id of ['a', 'b', 'c']) {
        const [ha, hb] = await Promise.all([redis.hgetall(`${pa}:q:${id}`), redis.hgetall(`${pb}:q:${id}`)]);
        expect(withoutTimes(ha)).toEqual(withoutTimes(hb));
        expect(ha.pb).toBe('w1');
        expect(await redis.get(`${pa}:q:${id}:lock`)).toBe(await redis.get(`${pb}:q:${id}:lock`));
        expect(await redis.pttl(`${pa}:q:${id}:lock`)).toBeGreaterThan(29_000);
      }
      for (const list of ['wait', 'active'])
        expect(await redis.lrange(`${pa}:q:${list}`, 0, -1)).toEqual(
          await redis.lrange(`${pb}:q:${list}`, 0, -1),
        );
      const events = async (p: string) =>
        (await redis.xrange(`${p}:q:events`, '-', '+')).map(([, fields]) => fields);
      // BullMQ's own fetch writes an `active` entry per job; the take writes none (event-writes.ts): its
      // connection does not keep the queue's events.
      const own3 = await events(pb);
      expect(own3.filter((f) => f[1] === 'active').map((f) => f[3])).toEqual(['a', 'b', 'c']);
      expect(await events(pa)).toEqual(own3.filter((f) => f[1] !== 'active'));
      await Promise.all([qa!.close(), qb!.close()]);
    });
  });
});
