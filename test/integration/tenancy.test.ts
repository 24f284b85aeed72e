/*
 * Tenancy end to end (real Redis, real HTTP): a tenant reads only its own jobs, and another tenant's job
 * answers exactly like an unknown one; admin routes take admin keys only; tenant ids are keyed by a
 * server-side secret, one per fleet, generated once when none is configured.
 */
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { AccessControl } from '../../producers/api/access-control';
import { tenantId, tenantSecretKey } from '../../producers/api/tenant-ids';
import { RedisClient } from '../../shared/redis/redis-client';
import { waitUntilReady } from '../../shared/redis/connection';
import { QueueName } from '../../shared/queues/names';
import { startApi } from '../../bin/runtime-api';
import { loadConfig } from '../../shared/config/config';
import { createLogger } from '../../shared/logger';

const A = 'tenant-alpha-key';
const B = 'tenant-beta-key';
const ADMIN = 'admin-only-key';
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const basic = (key: string) => ({ authorization: 'Basic ' + Buffer.from(`ops:${key}`).toString('base64') });

/** Status, body text and the headers a caller could tell two answers apart by. */
async function raw(url: string, headers: Record<string, string>) {
  const res = await fetch(url, { headers });
  const text = await res.text();
  const shown: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (!['date', 'x-request-id', 'etag', 'age'].includes(k)) shown[k] = v;
  });
  return { status: res.status, text, headers: shown };
}

/** The request namespace stored in a job's data (what Bull Board shows). */
async function namespaceOf(fleet: TestFleet, jobId: string): Promise<string | undefined> {
  const job = await fleet.client.submitter.getQueue(QueueName.INFERENCE).getJob(jobId);
  return (job?.data as { cache?: { namespace?: string } } | undefined)?.cache?.namespace;
}

describe('tenants and admins', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    // caches: true also puts the HTTP response cache in front of the read routes, as in production.
    fleet = await startTestFleet({ caches: true, apiKeys: [A, B], adminKeys: [ADMIN] });
  });
  afterAll(() => fleet.close());

  it('answers another tenant’s job exactly like an unknown one (404), while its owner reads it', async () => {
    const made = await post(
      `${fleet.url}/v1/inference`,
      { model: 'qwen2.5:0.5b', prompt: 'Summarise the private board minutes of March' },
      { headers: bearer(A) },
    );
    expect(made.status).toBe(200);
    const jobId = String(made.body.jobId);
    const own = await get(`${fleet.url}/v1/jobs/inference/${jobId}`, bearer(A));
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ jobId, state: 'completed', result: made.body.result });

    const unknownId = `i-${randomBytes(16).toString('hex')}`;
    const foreign = await raw(`${fleet.url}/v1/jobs/inference/${jobId}`, bearer(B));
    const unknown = await raw(`${fleet.url}/v1/jobs/inference/${unknownId}`, bearer(B));
    expect(foreign.status).toBe(404);
    expect(foreign.text).not.toContain('simulated');
    // Same status, same headers (length included), same body but for the id the caller sent.
    expect({ ...foreign, text: foreign.text.replace(jobId, '<id>') }).toEqual({
      ...unknown,
      text: unknown.text.replace(unknownId, '<id>'),
    });
    expect(JSON.parse(foreign.text)).toMatchObject({ error: { code: 'CELL0_JOB_NOT_FOUND' } });
  });

  it('gives the 202 poll URL to the caller only: the other tenant gets 404 there', async () => {
    const r = await post(
      `${fleet.url}/v1/inference`,
      { model: 'qwen2.5:0.5b', prompt: 'A long private essay', params: { max_tokens: 2000 }, wait: 0 },
      { headers: bearer(A) },
    );
    expect(r.status).toBe(202);
    const poll = String(r.body.poll);
    expect(r.headers.get('location')).toBe(poll);
    expect((await get(`${fleet.url}${poll}`, bearer(A))).status).toBe(200);
    expect((await get(`${fleet.url}${poll}`, bearer(B))).status).toBe(404);
  });

  it('opens /v1/fleet, /v1/queues and Bull Board to admin keys only', async () => {
    for (const path of ['/v1/fleet', '/v1/queues', '/v1/FLEET', '/v1/queues/']) {
      const none = await get(`${fleet.url}${path}`);
      expect({ path, status: none.status }).toEqual({ path, status: 401 });
      const tenant = await get(`${fleet.url}${path}`, bearer(A));
      expect({ path, status: tenant.status, body: tenant.body }).toMatchObject({
        path,
        status: 403,
        body: { error: { code: 'CELL0_FORBIDDEN', message: expect.stringContaining('CELL0_ADMIN_KEYS') } },
      });
      const admin = await get(`${fleet.url}${path}`, bearer(ADMIN));
      expect({ path, status: admin.status }).toEqual({ path, status: 200 });
    }
    const boardNone = await fetch(`${fleet.url}/admin/queues`);
    expect(boardNone.status).toBe(401);
    expect(boardNone.headers.get('www-authenticate')).toMatch(/^Basic/);
    for (const headers of [basic(A), bearer(B)]) {
      const board = await fetch(`${fleet.url}/admin/queues`, { headers });
      expect(board.status).toBe(403);
      const api = await fetch(`${fleet.url}/admin/queues/api/queues`, { headers });
      expect(api.status).toBe(403);
    }
    const board = await fetch(`${fleet.url}/admin/queues`, { headers: basic(ADMIN) });
    expect(board.status).toBe(200);
    expect(await board.text()).toMatch(/<html/i);
  });

  it('does not let an admin key do tenant work', async () => {
    const r = await post(`${fleet.url}/v1/search`, { query: 'redis' }, { headers: bearer(ADMIN) });
    expect(r.status).toBe(403);
    expect(r.body).toMatchObject({ error: { code: 'CELL0_FORBIDDEN' } });
    const job = await get(`${fleet.url}/v1/jobs/inference/i-${'0'.repeat(32)}`, bearer(ADMIN));
    expect(job.status).toBe(403);
  });

  it('keeps tenant ids out of reach of a key guess: HMAC, not a hash of the key', async () => {
    const made = await post(
      `${fleet.url}/v1/inference`,
      { model: 'qwen2.5:0.5b', prompt: 'What is in the tenant namespace?' },
      { headers: bearer(A) },
    );
    const ns = await namespaceOf(fleet, String(made.body.jobId));
    expect(ns).toMatch(/^t-[0-9a-f]{24}$/);
    // The fleet's secret was generated in Redis (none configured) and the id is keyed by it.
    const secret = await fleet.client.submitter.redis.run((r) => r.get(tenantSecretKey(fleet.prefix)));
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(ns).toBe(tenantId(secret!, A));
    expect(ns).not.toContain(createHash('sha256').update(A).digest('hex').slice(0, 16));
  });
});

describe('admin routes with tenant keys and no admin keys', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    fleet = await startTestFleet({ worker: false, apiKeys: [A] });
  });
  afterAll(() => fleet.close());

  it('are off (403 saying how to turn them on), whatever key is sent', async () => {
    for (const headers of [{}, bearer(A), bearer('anything')]) {
      const r = await get(`${fleet.url}/v1/fleet`, headers);
      expect(r.status).toBe(403);
      expect(r.body).toMatchObject({
        error: { code: 'CELL0_FORBIDDEN', message: expect.stringContaining('set CELL0_ADMIN_KEYS') },
      });
      expect((await fetch(`${fleet.url}/admin/queues`, { headers })).status).toBe(403);
    }
  });
});

describe('tenant ids and the tenant secret', () => {
  it('differ with different secrets: a fleet keyed otherwise cannot read the tenant’s jobs', async () => {
    const prefix = uniquePrefix('tenancy');
    const one = await startTestFleet({ prefix, apiKeys: [A], tenantSecret: 'the-first-secret-of-this-test' });
    const two = await startTestFleet({
      prefix,
      worker: false,
      apiKeys: [A],
      tenantSecret: 'a-second-secret-of-this-test',
    });
    try {
      const body = { model: 'qwen2.5:0.5b', prompt: 'Which secret keys my id?' };
      const made = await post(`${one.url}/v1/inference`, body, { headers: bearer(A) });
      expect(made.status).toBe(200);
      const jobId = String(made.body.jobId);
      expect((await get(`${one.url}/v1/jobs/inference/${jobId}`, bearer(A))).status).toBe(200);
      expect((await get(`${two.url}/v1/jobs/inference/${jobId}`, bearer(A))).status).toBe(404);
      expect(await namespaceOf(one, jobId)).toBe(tenantId('the-first-secret-of-this-test', A));
      expect(tenantId('the-first-secret-of-this-test', A)).not.toBe(
        tenantId('a-second-secret-of-this-test', A),
      );
      // With a configured secret nothing is written to Redis.
      const stored = await one.client.submitter.redis.run((r) => r.exists(tenantSecretKey(prefix)));
      expect(stored).toBe(0);
    } finally {
      await two.close();
      await one.close();
    }
  });

  it('are the same in every process of a fleet with no secret set: one secret, generated once', async () => {
    const prefix = uniquePrefix('tenancy');
    const redisUrl = testRedisUrl();
    // Three API processes start at the same moment and race for the fleet's secret (SET NX).
    const children = [0, 1, 2].map(() =>
      spawn(process.execPath, ['--import', 'tsx', join(__dirname, '..', 'helpers', 'tenant-id-process.ts')], {
        env: { PATH: process.env.PATH ?? '', REDIS_URL: redisUrl, PREFIX: prefix, KEY: A },
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    try {
      const outputs = children.map((child) => {
        const lines = createInterface({ input: child.stdout });
        const exited = new Promise<never>((_, reject) =>
          child.on('exit', (code) => reject(new Error(`tenant-id process exited with ${code}`))),
        );
        exited.catch(() => undefined);
        const isReady = new Promise<void>((resolve) =>
          lines.on('line', (line) => line === 'ready' && resolve()),
        );
        const result = new Promise<string>((resolve) =>
          lines.on('line', (line) => {
            if (line.startsWith('{')) resolve((JSON.parse(line) as { tenantId: string }).tenantId);
          }),
        );
        return { isReady: Promise.race([isReady, exited]), result: Promise.race([result, exited]) };
      });
      await Promise.all(outputs.map((o) => o.isReady));
      for (const child of children) child.stdin.write('go\n');
      const ids = await Promise.all(outputs.map((o) => o.result));
      expect(new Set(ids).size).toBe(1);
      expect(ids[0]).toMatch(/^t-[0-9a-f]{24}$/);

      // This process, and an API on the same fleet, agree with them; the secret is the one stored.
      const redis = new RedisClient({ url: redisUrl });
      await waitUntilReady(redis.connection, 5000);
      const here = await Promise.all(
        Array.from({ length: 10 }, () => new AccessControl({ apiKeys: [A], redis, prefix }).tenantIdOf(A)),
      );
      expect(new Set(here)).toEqual(new Set(ids));
      const secret = await redis.run((r) => r.get(tenantSecretKey(prefix)));
      expect(tenantId(secret!, A)).toBe(ids[0]);
      await redis.close();

      const fleet = await startTestFleet({ prefix, apiKeys: [A] });
      try {
        const made = await post(
          `${fleet.url}/v1/inference`,
          { model: 'qwen2.5:0.5b', prompt: 'Same tenant everywhere?' },
          { headers: bearer(A) },
        );
        expect(await namespaceOf(fleet, String(made.body.jobId))).toBe(ids[0]);
      } finally {
        await fleet.close();
      }
    } finally {
      for (const child of children) if (child.exitCode === null) child.kill();
    }
  }, 180_000); // a deadline for a hang: three tsx processes and a fleet starting on a loaded host

  it('is never overwritten once stored', async () => {
    const prefix = uniquePrefix('tenancy');
    const conn = new Redis(testRedisUrl());
    try {
      await conn.set(tenantSecretKey(prefix), 'a-secret-another-process-stored');
      const redis = new RedisClient({ url: testRedisUrl() });
      await waitUntilReady(redis.connection, 5000);
      const id = await new AccessControl({ apiKeys: [A], redis, prefix }).tenantIdOf(A);
      await redis.close();
      expect(id).toBe(tenantId('a-secret-another-process-stored', A));
      expect(await conn.get(tenantSecretKey(prefix))).toBe('a-secret-another-process-stored');
    } finally {
      await conn.del(tenantSecretKey(prefix));
      conn.disconnect();
    }
  });
});

describe('cell0 api at start', () => {
  /** A logger whose lines are kept, at debug level (the most it could ever say). */
  const capture = () => {
    const lines: string[] = [];
    const log = createLogger({
      level: 'debug',
      destination: new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      }),
    });
    return { lines, log };
  };
  const env = (extra: Record<string, string>) =>
    loadConfig({
      REDIS_URL: testRedisUrl(),
      CELL0_QUEUE_PREFIX: uniquePrefix('tenancy'),
      CELL0_CACHE_ENABLED: '0',
      CELL0_HTTP_CACHE: '0',
      ...extra,
    });

  it('warns when it listens beyond this host with no keys, and says so in its banner', async () => {
    const { lines, log } = capture();
    const api = await startApi(env({ CELL0_HOST: '0.0.0.0' }), log, { port: 0 });
    await api.close();
    expect(api.banner.join('\n')).toMatch(/auth\s+none: open, single tenant/);
    const warning = lines
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .find((l) => l.level === 40);
    expect(warning?.msg).toMatch(/no API keys: anyone who reaches this address can read every job/);
  });

  it('with tenant keys and no admin keys, says how to open the admin routes; never logs keys or the secret', async () => {
    const { lines, log } = capture();
    const config = env({ CELL0_API_KEYS: A });
    const api = await startApi(config, log, { port: 0 });
    try {
      expect(api.banner.join('\n')).toMatch(/admin routes \(.*\) are off: set CELL0_ADMIN_KEYS/);
      // No worker here: the job waits, the answer is a 202.
      const made = await post(
        `${api.url}/v1/search`,
        { query: 'redis streams', wait: 0 },
        { headers: bearer(A) },
      );
      expect(made.status).toBe(202);
      expect(lines.some((l) => /\bwarn/.test(l) && l.includes('no API keys'))).toBe(false);
      const secret = await api.client.submitter.redis.run((r) => r.get(tenantSecretKey(config.redis.prefix)));
      // The generated secret (32 random bytes, base64url) is there, so the checks below are about something.
      expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const all = lines.join('') + api.banner.join('\n');
      expect(all).not.toContain(secret!);
      expect(all).not.toContain(A);
    } finally {
      await api.close();
    }
  });
});
