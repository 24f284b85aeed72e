import { type ChildProcess } from 'node:child_process';
import { Queue } from 'bullmq';
import OpenAI from 'openai';
import { startTestFleet, type TestFleet } from '../helpers/fleet';
import { type JobSubmitter } from '../../producers/job-submitter';
import { QueueName } from '../../shared/queues/names';
import { type TokenStreamEntry } from '../../shared/queues/token-stream';
import { TokenStreamHub } from '../../producers/token-stream-hub';
import { shardPrefix } from '../../shared/queues/shards';
import { closeRedis } from '../../shared/redis/connection';
import { Cell0Worker } from '../../workers/cell0-worker';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';
import { type SubmitResult } from '../../producers/submit-result';
import { startInferencePair } from '../helpers/inference-pair';
import { startReadyChild } from '../helpers/ready-child';
import { chatJobId, expectAbortCancelsJob } from '../helpers/stream-abort';
import { keysMatching, testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';
import { HeldBackend } from '../helpers/held-backend';
import { until } from '../helpers/wait';
import { sleep } from '../../shared/sleep';

/*
 * `cell0 start` runs the API's producer and a worker in one process: the worker takes the jobs the producer
 * adds right behind the adds (one call on the producer's connection, BullMQ's moveToActive once per job), up
 * to its free slots, instead of fetching them one round trip at a time. The jobs so taken are ordinary
 * active jobs: coalesced as before, bounded by the worker's concurrency, and durable (a worker that dies
 * leaves them to the stalled check, and another worker runs them).
 */

async function startPair(tag: string, backend: NoopInferenceBackend, concurrency: number) {
  const pair = await startInferencePair(tag, backend, concurrency);
  pair.submitter.takeLocallyWith(pair.worker.localTaker);
  return pair;
}

const submit = (s: JobSubmitter, prompt: string): Promise<SubmitResult> =>
  s.submit(QueueName.INFERENCE, 'generate', { model: 'noop', prompt }, { waitMs: 20_000 });

describe('jobs taken by the worker of the same process behind their adds', () => {
  test('every job of a burst is taken behind its add and runs at once; identical requests are one job', async () => {
    const backend = new HeldBackend();
    const { worker, submitter, close } = await startPair('ltake', backend, 64);
    try {
      const distinct = Array.from({ length: 40 }, (_, i) => submit(submitter, `p${i}`));
      const same = Array.from({ length: 30 }, () => submit(submitter, 'the same'));
      // All 41 jobs inside the backend at once, none fetched by the worker's loop.
      await until(() => backend.running === 41, 10_000, '41 jobs running');
      expect(worker.localTakeStats().taken).toBe(41);
      backend.release();
      const results = await Promise.all([...distinct, ...same]);
      expect(results.map((r) => r.state)).toEqual(Array(70).fill('completed'));
      expect(new Set(results.slice(40).map((r) => r.jobId)).size).toBe(1);
      expect(backend.calls).toBe(41);
    } finally {
      backend.release();
      await close();
    }
  });

  test("a take never holds more jobs than the worker's concurrency; the fetch loop runs the rest", async () => {
    const backend = new HeldBackend();
    const { worker, submitter, close } = await startPair('ltake', backend, 4);
    try {
      const all = Array.from({ length: 30 }, (_, i) => submit(submitter, `q${i}`));
      await until(() => backend.running === 4, 10_000, '4 jobs running');
      expect(worker.localTakeStats().taken).toBeLessThanOrEqual(4);
      backend.release();
      const results = await Promise.all(all);
      expect(results.map((r) => r.state)).toEqual(Array(30).fill('completed'));
      expect(backend.calls).toBe(30);
      expect(backend.most).toBe(4);
    } finally {
      backend.release();
      await close();
    }
  });

  test('close() waits for the jobs a take started', async () => {
    const backend = new HeldBackend();
    const { worker, submitter, close } = await startPair('ltake', backend, 16);
    try {
      const all = Array.from({ length: 5 }, (_, i) => submit(submitter, `c${i}`));
      await until(() => backend.running === 5, 10_000, '5 jobs running');
      expect(worker.localTakeStats().taken).toBe(5);
      let closed = false;
      const closing = worker.close().then(() => (closed = true));
      await new Promise((r) => setTimeout(r, 200));
      expect(closed).toBe(false);
      backend.release();
      await closing;
      const results = await Promise.all(all);
      expect(results.map((r) => r.state)).toEqual(Array(5).fill('completed'));
    } finally {
      backend.release();
      await close();
    }
  });
});

describe('streams through an API and worker in one process (as `cell0 start`)', () => {
  let fleet: TestFleet;
  let openai: OpenAI;
  beforeAll(async () => {
    fleet = await startTestFleet({
      oneProcess: true,
      workerConcurrency: 64,
      sim: { ttftMs: 20, tokensPerSec: 400 },
    });
    openai = new OpenAI({ baseURL: `${fleet.url}/v1`, apiKey: 'none', maxRetries: 0 });
  });
  afterAll(() => fleet.close());

  const texts = async (stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>) => {
    const out: string[] = [];
    for await (const c of stream) if (c.choices[0]?.delta.content) out.push(c.choices[0].delta.content);
    return out;
  };
  const chat = (content: string, max_tokens = 24) => ({
    model: 'qwen2.5:0.5b',
    messages: [{ role: 'user' as const, content }],
    max_tokens,
    stream: true as const,
  });

  it('distinct streams are taken behind their adds with their stream marks; 100 identical ones are one generation', async () => {
    const worker = fleet.worker!;
    const before = fleet.sim.stats().requests.byEndpoint['/api/chat'] ?? 0;
    const taken0 = worker.localTakeStats().taken;
    const marks0 = worker.marksStats()!;
    const relayed0 = fleet.client.tokenStreams().deliveries();
    const distinct = await Promise.all(
      Array.from({ length: 30 }, (_, i) => openai.chat.completions.create(chat(`distinct ${i}`)).then(texts)),
    );
    for (const d of distinct) expect(d.length).toBeGreaterThan(1);
    // Every entry of those streams reached the API's readers from the worker directly, none through an
    // XREAD (they were written to Redis too): at least a start, a text and an end entry per stream.
    const relayed = fleet.client.tokenStreams().deliveries();
    expect(relayed.redis).toBe(relayed0.redis);
    expect(relayed.local - relayed0.local).toBeGreaterThanOrEqual(30 * 3);
    expect(worker.localTakeStats().taken - taken0).toBe(30);
    // Each job's marks came with its take: none was read as the job started.
    expect(worker.marksStats()!.atStart).toBe(marks0.atStart);
    const same = await Promise.all(
      Array.from({ length: 100 }, () => openai.chat.completions.create(chat('one for all')).then(texts)),
    );
    expect(fleet.sim.stats().requests.byEndpoint['/api/chat']! - before).toBe(31);
    expect(same[0]!.length).toBeGreaterThan(1);
    for (const r of same) expect(r).toEqual(same[0]);
  });

  it('a client that aborts mid-stream cancels the job it alone read', async () => {
    await expectAbortCancelsJob(fleet, openai, chat('abandon me, taken locally', 1000));
  });

  it('a reader in another process that opens a stream kept out of Redis gets it whole, from its first entry', async () => {
    const req = chat('read here first, then from elsewhere', 300);
    const jobId = chatJobId(fleet, req);
    const fromRedis0 = fleet.client.tokenStreams().deliveries().redis;
    const stream = await openai.chat.completions.create(req);
    const here: string[] = [];
    const it = stream[Symbol.asyncIterator]();
    // The first text is out: the generation runs, read by this process alone, with nothing in Redis.
    for (let c = await it.next(); !c.done; c = await it.next()) {
      const t = c.value.choices[0]?.delta.content;
      if (t) {
        here.push(t);
        break;
      }
    }
    const conn = testRedisConnection();
    const other = new TokenStreamHub({ redisUrl: testRedisUrl(), prefix: fleet.prefix, redis: conn });
    try {
      const r = await other.open(jobId);
      const rest = (async () => {
        for (let c = await it.next(); !c.done; c = await it.next()) {
          const t = c.value.choices[0]?.delta.content;
          if (t) here.push(t);
        }
      })();
      const there: TokenStreamEntry[] = [];
      // Each entry is waited for up to 10 s: one that never comes (nothing written to Redis) fails here.
      const next = () =>
        Promise.race([
          r.next(),
          sleep(10_000, { unref: true }).then(() => {
            throw new Error(`no entry from Redis after ${JSON.stringify(there)}`);
          }),
        ]);
      for (let e = await next(); e !== undefined; e = await next()) {
        there.push(e);
        if (e.kind === 'end') break;
      }
      await rest;
      await r.close({ cancel: false });
      // The other process's reader got the attempt from its start entry, every text in order, and the end.
      expect(there[0]).toEqual({ kind: 'start', attempt: 1 });
      const texts = there.flatMap((e) => (e.kind === 'text' ? [e] : []));
      expect(texts.map((e) => e.seq)).toEqual(texts.map((_, i) => i));
      expect(texts.map((e) => e.text).join('')).toBe(here.join(''));
      expect(there[there.length - 1]!.kind).toBe('end');
      // This process's reader was fed by the worker throughout, never from Redis.
      expect(fleet.client.tokenStreams().deliveries().redis).toBe(fromRedis0);
    } finally {
      await other.close();
      await closeRedis(conn);
    }
  });
});

describe('a process killed between a local take and the finish', () => {
  const redis = testRedisConnection('test:ltake');
  let child: ChildProcess | undefined;
  let rescuer: Cell0Worker | undefined;
  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rescuer?.close();
    await closeRedis(redis);
  });

  test('loses no job: its taken jobs go to stalled recovery and another worker runs each once', async () => {
    const prefix = uniquePrefix('ltakekill');
    const COUNT = 20;
    child = await startReadyChild('local-take-child.ts', {
      REDIS_URL: testRedisUrl(),
      PREFIX: prefix,
      COUNT: String(COUNT),
    });
    // Every job is active, locked with a token of the take (the worker's id, ":t" and a number).
    const locks = await keysMatching(redis, `*${prefix.slice(1, -1)}*:lock`);
    expect(locks).toHaveLength(COUNT);
    for (const key of locks) expect(await redis.get(key)).toMatch(/:t[0-9a-z]+$/);
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));

    let runs = 0;
    rescuer = new Cell0Worker({
      redisUrl: testRedisUrl(),
      prefix,
      queues: [QueueName.INFERENCE],
      inference: new (class extends NoopInferenceBackend {
        override run(job: Parameters<NoopInferenceBackend['run']>[0]) {
          runs++;
          return super.run(job);
        }
      })(),
      concurrency: { inference: 8 },
      lockDurationMs: 2000,
      stalledIntervalMs: 500,
      heartbeatMs: 0,
    });
    await rescuer.start();
    const queue = new Queue(QueueName.INFERENCE, {
      connection: redis,
      prefix: shardPrefix(prefix, QueueName.INFERENCE, 0, 1),
    });
    try {
      await until(async () => (await queue.getCompletedCount()) === COUNT, 30_000, 'every job completed');
      const counts = await queue.getJobCounts('active', 'wait', 'failed', 'completed', 'delayed');
      expect(counts).toEqual({ active: 0, wait: 0, failed: 0, completed: COUNT, delayed: 0 });
      expect(runs).toBe(COUNT);
      // Each ran a second time, after the stalled check put it back (the first run died with the process).
      const jobs = await queue.getJobs(['completed']);
      for (const job of jobs) expect(job.attemptsStarted).toBe(2);
    } finally {
      await queue.close();
    }
  });
});
