import { Queue } from 'bullmq';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { bullmqScript } from '../../shared/queues/bullmq-internals';
import { eventLua, withoutEventWrites } from '../../shared/queues/event-writes';
import { testRedisConnection, uniquePrefix } from '../helpers/redis';

/*
 * cell0's queue scripts leave out BullMQ's event stream entries of the jobs cell0's producers add
 * (shared/queues/event-writes.ts): pinned here to the texts of the installed BullMQ, so that an upgrade that
 * changes what the transform relies on fails this test instead of leaving a write or a read in place.
 */
describe("BullMQ's event writes in cell0's queue scripts", () => {
  let redis: RedisConnection;
  let queue: Queue;
  beforeAll(async () => {
    redis = testRedisConnection('test:event-writes');
    queue = new Queue('q', { connection: redis, prefix: uniquePrefix('ew') });
    await queue.waitUntilReady();
  });
  afterAll(async () => {
    await queue.close();
    await closeRedis(redis);
  });

  test.each([
    ['addStandardJob', 9],
    ['moveToActive', 11],
    ['moveToFinished', 14],
  ] as const)('%s: every XADD goes through cell0Event, and the text compiles', async (script, keys) => {
    const lua = bullmqScript(redis, script, keys)!.lua;
    expect(lua).toMatch(/rcall\("XADD"/);
    const out = withoutEventWrites(lua);
    expect(out).not.toMatch(/XADD"/);
    expect(out.match(/cell0Event\(/g)!.length).toBe(lua.match(/rcall\("XADD",/g)!.length);
    expect(await redis.script('LOAD', `${eventLua(false)}\n${out}`)).toMatch(/^[0-9a-f]{40}$/);
  });

  test("moveToFinished reads the queue's lengths for `drained` only while events are written", () => {
    const lua = bullmqScript(redis, 'moveToFinished', 14)!.lua;
    const out = withoutEventWrites(lua);
    const at = out.indexOf('local waitLen = rcall("LLEN", KEYS[1])');
    expect(at).toBeGreaterThan(0);
    expect(out.slice(0, at).trimEnd().endsWith('if cell0Events then')).toBe(true);
  });

  test("addStandardJob reads the stream's length limit only while events are written", () => {
    const out = withoutEventWrites(bullmqScript(redis, 'addStandardJob', 9)!.lua);
    expect(out).toContain('local maxEvents = cell0Events and getOrSetMaxEvents(metaKey) or "10000"');
  });

  test('cell0Event appends while cell0Events is true, and does nothing while it is false', async () => {
    const key = `${uniquePrefix('ew')}:events`;
    const driver = (on: boolean) =>
      `${eventLua(on)}\nlocal id = cell0Event(KEYS[1], "*", "event", "x")\nreturn { tostring(id ~= false), redis.call("XLEN", KEYS[1]) }`;
    expect(await redis.eval(driver(false), 1, key)).toEqual(['false', 0]);
    expect(await redis.eval(driver(true), 1, key)).toEqual(['true', 1]);
  });
});
