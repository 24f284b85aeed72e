import { isDeepStrictEqual } from 'node:util';
import {
  FlowProducer,
  type Job,
  Queue,
  Worker,
  raw2NextJobData,
  type JobsOptions,
  type WorkerOptions,
} from 'bullmq';
import { closeRedis } from '../../shared/redis/connection';
import { type RedisConnection } from '../../shared/redis/cluster';
import { completedArgsOf, nextJobData } from '../../shared/queues/lean-job-codec';
import { testRedisConnection, uniquePrefix } from '../helpers/redis';

/*
 * The worker's per-job decoding and completion arguments built directly (lean-job-codec.ts) against BullMQ's
 * own (raw2NextJobData, backend.moveToCompletedArgs): the same values, keys in the same order, the same bytes.
 */

const conns: RedisConnection[] = [];
const conn = () => {
  const c = testRedisConnection('test:codec');
  conns.push(c);
  return c;
};
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await Promise.all(conns.map((c) => closeRedis(c)));
});

/** A value's own keys, in order, all the way down (isDeepStrictEqual does not compare the order). */
function keyOrder(v: unknown): unknown {
  if (Buffer.isBuffer(v) || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(keyOrder);
  return Object.entries(v).map(([k, x]) => [k, keyOrder(x)]);
}

function expectSame(direct: unknown, bullmq: unknown): void {
  // isDeepStrictEqual compares Buffers by their bytes, NaN with NaN, and undefined members as present.
  expect(isDeepStrictEqual(direct, bullmq)).toBe(true);
  expect(keyOrder(direct)).toEqual(keyOrder(bullmq));
}

/** The job options the tests add jobs with: every form BullMQ 6.7 stores. */
const OPTIONS: JobsOptions[] = [
  {},
  { delay: 5000 },
  { priority: 7 },
  { lifo: true },
  { attempts: 3 },
  { attempts: 4, backoff: { type: 'exponential', delay: 100 } },
  { attempts: 2, backoff: 250 },
  { removeOnComplete: true },
  { removeOnComplete: false },
  { removeOnComplete: 10 },
  { removeOnComplete: { age: 60, count: 100 } },
  { removeOnFail: true },
  { removeOnFail: 5 },
  { removeOnFail: { age: 30 } },
  { keepLogs: 20 },
  { sizeLimit: 10_000 },
  { stackTraceLimit: 3 },
  { failParentOnFailure: true },
  { continueParentOnFailure: true },
  { ignoreDependencyOnFailure: true },
  { removeDependencyOnFailure: true },
  { deduplication: { id: 'dedup-a' } },
  { deduplication: { id: 'dedup-b', ttl: 60_000 } },
  { telemetry: { metadata: '{"traceparent":"00-1-2-01"}' } },
  { telemetry: { metadata: 'm', omitContext: true } },
  { jobId: 'custom-id', timestamp: 1700000000000 },
  {
    attempts: 5,
    backoff: { type: 'fixed', delay: 10 },
    delay: 10,
    priority: 2,
    removeOnComplete: { count: 3 },
    removeOnFail: 1,
    keepLogs: 2,
    removeDependencyOnFailure: true,
    telemetry: { metadata: 'x', omitContext: false },
  },
];

let queue: Queue;
let prefix: string;
/** The job hashes of jobs added with each of OPTIONS, plus a flow's parent and child, as Redis gives them. */
const hashes: unknown[][] = [];

beforeAll(async () => {
  prefix = uniquePrefix('codec');
  queue = new Queue('q', { connection: conn(), prefix });
  closers.push(() => queue.close());
  const ids: string[] = [];
  for (const [i, opts] of OPTIONS.entries()) {
    const job = await queue.add(`n${i}`, { i, text: 'héllo "quoted" ✓', list: [1, 2, { a: null }] }, opts);
    ids.push(job.id!);
  }
  const flows = new FlowProducer({ connection: conn(), prefix });
  closers.push(() => flows.close());
  const tree = await flows.add({
    name: 'parent',
    queueName: 'q',
    data: { p: 1 },
    children: [{ name: 'child', queueName: 'q', data: { c: 1 }, opts: { failParentOnFailure: true } }],
  });
  ids.push(tree.job.id!, tree.children![0]!.job.id!);
  const repeated = await queue.upsertJobScheduler(
    'every',
    { every: 60_000 },
    { name: 'rep', data: { r: 1 } },
  );
  ids.push(repeated!.id!);
  const raw = queue.opts.connection as unknown as RedisConnection;
  for (const id of ids) hashes.push((await raw.call('HGETALL', `${prefix}:q:${id}`)) as unknown[]);
});

/** A job hash with `fields` set over `base` (a field given undefined is left out). */
function withFields(base: unknown[], fields: Record<string, string | undefined>): unknown[] {
  const out: unknown[] = [];
  for (let i = 0; i < base.length; i += 2)
    if (!((base[i] as string) in fields)) out.push(base[i], base[i + 1]);
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out.push(k, v);
  return out;
}

describe('nextJobData', () => {
  it('decodes every stored job the way raw2NextJobData does', () => {
    expect(hashes).toHaveLength(OPTIONS.length + 3);
    for (const h of hashes) {
      expect(h.length).toBeGreaterThan(8);
      const reply = [h, 'job-id', 0, 0];
      expectSame(nextJobData(reply), raw2NextJobData(reply));
      // As in a finish's reply that fetched the next job, with a rate limit and a delay.
      const more = [h, '17', 250, 1700000001000];
      expectSame(nextJobData(more), raw2NextJobData(more));
    }
  });

  it('decodes processed, failed, repeated and unusual hashes the way raw2NextJobData does', () => {
    const base = hashes[0]!;
    const variants: Record<string, string | undefined>[] = [
      { ats: '2', atm: '1', stc: '3', processedOn: '1700000000500', finishedOn: '1700000000900', pb: 'w:1' },
      { attemptsMade: '4', atm: '2' },
      { failedReason: 'boom', stacktrace: '["Error: boom\\n at x"]', returnvalue: '{"a":1}' },
      { rjk: 'repeat:abc:1', deid: 'd-1', defa: 'deferred' },
      { parentKey: 'bull:p:1', parent: '{"id":"1","queueKey":"bull:p"}' },
      { progress: '{"pct":50}' },
      { progress: '42' },
      { data: undefined, opts: undefined, delay: undefined, priority: undefined, timestamp: undefined },
      { data: '', opts: '' },
      // Options BullMQ decodes in its own ways: short names, telemetry parts, names Object.prototype has.
      {
        opts: '{"tm":"meta","omc":true,"kl":3,"de":{"id":"x"},"rdof":true,"toString":1,"2":"n","a":{"b":[1]}}',
      },
      { opts: '{"omc":false,"tm":"late"}' },
      { unknownField: 'x', another: '' },
    ];
    for (const fields of variants) {
      const reply = [withFields(base, fields), 'job-id', 0, 0];
      expectSame(nextJobData(reply), raw2NextJobData(reply));
    }
  });

  it('answers the replies without a job as raw2NextJobData does', () => {
    for (const reply of [
      null,
      undefined,
      [],
      [null, null, 100, 0],
      [0, 0, 0, 1700000000000],
      [[], 'x', 0, 0],
    ])
      expectSame(nextJobData(reply as unknown[]), raw2NextJobData(reply as unknown[]));
  });
});

/** The worker backend's members the comparison reads (BullMQ 6.7). */
interface Backend {
  moveToFinishedKeys: unknown[];
  closing?: unknown;
  queue: { opts: Record<string, unknown> };
  moveToCompletedArgs(
    job: Job,
    value: string,
    removeOnComplete: unknown,
    token: string,
    fetchNext: boolean,
  ): unknown[];
}

describe('completedArgsOf', () => {
  const WORKERS: Partial<WorkerOptions>[] = [
    {},
    { removeOnComplete: { count: 10 }, lockDuration: 12_345, name: 'w-name' },
    { removeOnComplete: { age: 5 }, limiter: { max: 10, duration: 1000 }, metrics: { maxDataPoints: 60 } },
  ];
  const TOKENS = ['', 'a', 'x'.repeat(31), 'x'.repeat(32), 'y'.repeat(255), 'z'.repeat(256), 'tök-ën', '✓'];
  const VALUES = ['{"ok":1}', 'null', '"✓"'];
  const REMOVES: unknown[] = [undefined, true, false, 0, 7, -1, { count: 2 }, { age: 9, count: 1 }];

  it.each(WORKERS.map((w, i) => [i, w] as const))(
    'builds what moveToCompletedArgs does (worker %d)',
    async (_i, opts) => {
      const worker = new Worker('q', null, { connection: conn(), prefix, autorun: false, ...opts });
      closers.push(() => worker.close());
      await worker.waitUntilReady();
      const backend = (worker as unknown as { backend: Backend }).backend;
      const build = completedArgsOf(backend as unknown as Parameters<typeof completedArgsOf>[0])!;
      expect(build).toBeDefined();
      const jobs = hashes.map((h) => {
        const [json, id] = raw2NextJobData([h, 'id', 0, 0]) as [unknown, string];
        return (worker as unknown as { createJob(d: unknown, id: string): Job }).createJob(json, id);
      });
      const now = jest.spyOn(Date, 'now');
      let compared = 0;
      try {
        for (const job of jobs)
          for (const token of TOKENS)
            for (const rc of [...REMOVES, job.opts.removeOnComplete])
              for (const fetchNext of [true, false]) {
                const value = VALUES[compared % VALUES.length]!;
                now.mockReturnValue(1_700_000_000_000 + compared);
                const direct = build(job, value, rc, token, fetchNext);
                const keysAfterDirect = [...backend.moveToFinishedKeys];
                const own = backend.moveToCompletedArgs(job, value, rc, token, fetchNext);
                expectSame(direct, own);
                // The backend's shared keys as BullMQ leaves them.
                expect(keysAfterDirect).toEqual(backend.moveToFinishedKeys);
                compared++;
              }
        // A closing queue's finish fetches nothing, in both.
        backend.closing = Promise.resolve();
        const closing = build(jobs[0]!, 'null', undefined, 'tok', true);
        expectSame(closing, backend.moveToCompletedArgs(jobs[0]!, 'null', undefined, 'tok', true));
      } finally {
        backend.closing = undefined;
        now.mockRestore();
      }
      expect(compared).toBe(jobs.length * TOKENS.length * (REMOVES.length + 1) * 2);
      // Built directly for every ASCII token under 256 bytes and a removeOnComplete that is not an object.
      const plain = (rc: unknown) => rc === undefined || typeof rc === 'number' || typeof rc === 'boolean';
      const directTokens = TOKENS.filter((t) => t.length < 256 && Buffer.byteLength(t) === t.length).length;
      let direct = 0;
      for (const job of jobs)
        direct += directTokens * [...REMOVES, job.opts.removeOnComplete].filter(plain).length * 2;
      expect(direct).toBeGreaterThan(0);
      expect(build.counts).toEqual({ direct: direct + 1, own: compared + 1 - direct - 1 });
    },
  );

  it('follows the worker options when they change', async () => {
    const worker = new Worker('q', null, { connection: conn(), prefix, autorun: false });
    closers.push(() => worker.close());
    await worker.waitUntilReady();
    const backend = (worker as unknown as { backend: Backend }).backend;
    const build = completedArgsOf(backend as unknown as Parameters<typeof completedArgsOf>[0])!;
    const job = (worker as unknown as { createJob(d: unknown, id: string): Job }).createJob(
      raw2NextJobData([hashes[4]!, 'id', 0, 0])[0],
      'id',
    );
    const now = jest.spyOn(Date, 'now').mockReturnValue(1_700_000_000_000);
    try {
      expectSame(
        build(job, 'null', undefined, 'tok', true),
        backend.moveToCompletedArgs(job, 'null', undefined, 'tok', true),
      );
      let before = build(job, 'null', undefined, 'tok', true);
      // Each option the packed map holds, changed on its own.
      const changes: [string, unknown][] = [
        ['removeOnComplete', { count: 1 }],
        ['lockDuration', 999],
        ['name', 'renamed'],
        ['limiter', { max: 1, duration: 10 }],
        ['metrics', { maxDataPoints: 7 }],
      ];
      for (const [name, value] of changes) {
        backend.queue.opts[name] = value;
        const after = build(job, 'null', undefined, 'tok', true);
        expectSame(after, backend.moveToCompletedArgs(job, 'null', undefined, 'tok', true));
        // The packed options did change (the comparison above is not of what was kept from before).
        expect((after[21] as Buffer).equals(before[21] as Buffer)).toBe(false);
        before = after;
      }
      // The metrics option changed in place.
      (backend.queue.opts.metrics as { maxDataPoints: number }).maxDataPoints = 8;
      const inPlace = build(job, 'null', undefined, 'tok', true);
      expectSame(inPlace, backend.moveToCompletedArgs(job, 'null', undefined, 'tok', true));
      expect((inPlace[21] as Buffer).equals(before[21] as Buffer)).toBe(false);
      expect(build.counts).toEqual({ direct: 3 + changes.length, own: 0 });
    } finally {
      now.mockRestore();
    }
  });
});
