/*
 * The worker completes an inference job once its answer's cache write has gone to Redis, without waiting
 * for Redis's reply. An identical request that arrives before the entry is stored is answered by the
 * completed job (retained, found by its job id), without a second backend call; a failed write leaves the
 * answer standing; and the next request after an answer, identical or equal once normalised, is an exact
 * hit (the write reaches Redis before the job's completion does).
 */
import { createHash } from 'node:crypto';
import { type Socket } from 'node:net';
import { Cell0Client } from '../../producers/cell0-client';
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';
import { OllamaSimulator } from '../../workers/providers/simulator/ollama-simulator';
import { SemanticCache } from '../../shared/cache/semantic';
import {
  inferenceCacheKey,
  type CachedInference,
  type InferenceCache,
} from '../../shared/cache/inference-key';
import { type SubmitResult } from '../../producers/job-submitter';
import { QueueName } from '../../shared/queues/names';
import { type InferenceResult } from '../../shared/queues/results';
import { type RedisConnection } from '../../shared/redis/cluster';
import { luaScript } from '../../shared/redis/lua-scripts';
import { RedisClient } from '../../shared/redis/redis-client';
import { waitUntilReady } from '../../shared/redis/connection';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';

type Stored = CachedInference<InferenceResult>;

/** How a completed request was answered from a cache (undefined: by a job), or 'not completed'. */
const cachedOf = (r: SubmitResult<InferenceResult>): string | undefined =>
  r.state === 'completed' ? r.cached : 'not completed';

describe('the cache write after the answer', () => {
  let sim: OllamaSimulator;
  let cacheRedis: RedisClient;
  let real: SemanticCache<Stored>;
  let worker: Cell0Worker;
  let client: Cell0Client;
  /** What the worker's cache does with a write; by default, the real cache's set. */
  let onSet: (
    prompt: string,
    value: Stored,
    scope: Parameters<InferenceCache<InferenceResult>['set']>[2],
    opts: { ttlSeconds?: number; onSent?: () => void; connection?: RedisConnection },
  ) => Promise<void>;
  const generateCalls = () => sim.stats().requests.byEndpoint['/api/generate'] ?? 0;
  const ask = (prompt: string) =>
    client.submitInference(client.parseInference({ model: 'qwen2.5:0.5b', prompt }), { waitMs: 5000 });

  beforeAll(async () => {
    const prefix = uniquePrefix('cwa');
    sim = new OllamaSimulator({ ttftMs: 2, tokensPerSec: 5000 });
    await sim.start();
    cacheRedis = new RedisClient({ url: testRedisUrl() });
    await waitUntilReady(cacheRedis.connection, 5000);
    real = new SemanticCache<Stored>({ redis: cacheRedis, prefix });
    // The worker writes through this cache; the client reads the real one.
    const workerCache: InferenceCache<InferenceResult> = {
      get: (prompt, scope) => real.get(prompt, scope),
      set: (prompt, value, scope, opts = {}) => onSet(prompt, value, scope, opts),
    };
    worker = new Cell0Worker({
      redisUrl: testRedisUrl(),
      prefix,
      queues: [QueueName.INFERENCE],
      inference: new OllamaBackend(new OllamaClient({ baseUrl: sim.url })),
      caches: { inference: workerCache },
      shutdownTimeoutMs: 5000,
    });
    await worker.start();
    client = new Cell0Client({
      redisUrl: testRedisUrl(),
      prefix,
      waitMs: 5000,
      policy: { attempts: 1 },
      caches: { inference: real },
    });
    await client.start();
  });
  beforeEach(() => {
    onSet = (prompt, value, scope, opts) => real.set(prompt, value, scope, opts);
  });
  afterAll(async () => {
    await worker.close();
    await client.close();
    await cacheRedis.close();
    await sim.close();
  });

  it('answers before the write is acknowledged, and an identical request meanwhile from the job', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let write: Promise<void> | undefined;
    onSet = (prompt, value, scope, opts) => {
      // Handed to Redis at once, acknowledged only when the test opens the gate.
      opts.onSent?.();
      write = gate.then(() => real.set(prompt, value, scope, { ttlSeconds: opts.ttlSeconds ?? 300 }));
      return write;
    };
    const prompt = 'Which river is the longest in Africa?';
    const first = await ask(prompt);
    expect(first.state).toBe('completed'); // with the write awaited, the job would still be running
    expect(cachedOf(first)).toBeUndefined();
    expect(write).toBeDefined();
    const key = inferenceCacheKey(client.parseInference({ model: 'qwen2.5:0.5b', prompt }))!;
    expect(await real.get(key.prompt, key.scope)).toBeUndefined(); // not stored yet
    const calls = generateCalls();

    const second = await ask(prompt);
    expect(second.state).toBe('completed');
    expect(second.jobId).toBe(first.jobId);
    expect(cachedOf(second)).toBeUndefined();
    if (second.state === 'completed' && first.state === 'completed')
      expect(second.result).toEqual(first.result);
    expect(generateCalls()).toBe(calls);

    release();
    await write;
    const third = await ask('which river is the longest in africa');
    expect(cachedOf(third)).toBe('exact');
    expect(third.jobId).toBe(first.jobId);
    expect(generateCalls()).toBe(calls);
  });

  it("sends the write on the connection that completes the job, in one socket write with the job's completion", async () => {
    // What each socket write of the connection the worker gives the write carried (latin1 text).
    const flushes: string[] = [];
    let given: RedisConnection | undefined;
    let status: string | undefined;
    onSet = (prompt, value, scope, opts) => {
      given = opts.connection;
      status = given?.status;
      const stream = (given as unknown as { stream?: Socket } | undefined)?.stream;
      if (stream && !Object.prototype.hasOwnProperty.call(stream, '_writev')) {
        const text = (chunk: unknown) => (Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk));
        const proto = Object.getPrototypeOf(stream) as Socket & {
          _writev: (chunks: { chunk: unknown }[], cb: () => void) => void;
          _write: (chunk: unknown, enc: BufferEncoding, cb: () => void) => void;
        };
        Object.assign(stream, {
          _writev(this: Socket, chunks: { chunk: unknown }[], cb: () => void) {
            flushes.push(chunks.map((c) => text(c.chunk)).join(''));
            proto._writev.call(this, chunks, cb);
          },
          _write(this: Socket, chunk: unknown, enc: BufferEncoding, cb: () => void) {
            flushes.push(text(chunk));
            proto._write.call(this, chunk, enc, cb);
          },
        });
      }
      return real.set(prompt, value, scope, opts);
    };
    const prompt = `Which ocean has the deepest trench ${Date.now()}?`;
    const a = await ask(prompt);
    expect(a.state).toBe('completed');
    expect(status).toBe('ready'); // the job's worker connection, ready
    const b = await ask(prompt);
    expect(cachedOf(b)).toBe('exact'); // the entry is in Redis for the next request
    expect(b.jobId).toBe(a.jobId);
    // the entry's script call (EVALSHA by its SHA, or EVAL on a connection that has not loaded it) and the
    // job's completion (BullMQ's moveToFinished, which names the queue's completed set) in the same write
    const lua = luaScript('semantic-set').lua;
    const sha = createHash('sha1').update(lua).digest('hex');
    const withStore = flushes.filter((f) => f.includes(sha) || f.includes(lua.slice(0, 200)));
    expect(withStore.length).toBeGreaterThan(0);
    expect(withStore.some((f) => f.includes(':inference:completed'))).toBe(true);
  });

  it('keeps the answer when the cache write fails', async () => {
    let failed = 0;
    onSet = () => {
      failed++;
      return Promise.reject(new Error('cache write refused'));
    };
    const r = await ask('Name the largest moon of Saturn');
    expect(r.state).toBe('completed');
    expect(failed).toBe(1);
  });

  it('makes the next request after an answer an exact hit, every time', async () => {
    const calls = generateCalls();
    for (let i = 0; i < 25; i++) {
      const a = await ask(`What is the boiling point of liquid number ${i} at sea level?`);
      expect(a.state).toBe('completed');
      expect(cachedOf(a)).toBeUndefined();
      const b = await ask(`what is the boiling point of liquid number ${i} at sea level`);
      expect(cachedOf(b)).toBe('exact');
      expect(b.jobId).toBe(a.jobId);
    }
    expect(generateCalls()).toBe(calls + 25);
  });
});
