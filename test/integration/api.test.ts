import { request } from 'node:http';
import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';

describe('HTTP API', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    fleet = await startTestFleet({ maxBodyBytes: 8192, maxPromptBytes: 4096 });
  });
  afterAll(() => fleet.close());

  it('answers an inference request with the result and its job id', async () => {
    const r = await post(`${fleet.url}/v1/inference`, {
      model: 'qwen2.5:7b',
      prompt: 'What is the capital of France?',
    });
    expect(r.status).toBe(200);
    expect(r.body.jobId).toMatch(/^i-[0-9a-f]{32}$/);
    expect(r.body.status).toBe('completed');
    const result = r.body.result as Record<string, unknown>;
    expect(result.text).toMatch(/^\[simulated qwen2\.5:7b\] \S+/);
    expect(result).toMatchObject({ model: 'qwen2.5:7b', provider: 'ollama', doneReason: expect.any(String) });
    expect((result.usage as { completionTokens: number }).completionTokens).toBeGreaterThan(0);
  });

  it('runs chat requests through /api/chat', async () => {
    const r = await post(`${fleet.url}/v1/inference`, {
      model: 'llama3.2:3b',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello there' },
      ],
      params: { max_tokens: 16 },
    });
    expect(r.status).toBe(200);
    expect((r.body.result as { text: string }).text).toMatch(/^\[simulated llama3\.2:3b\]/);
    expect(fleet.sim.stats().requests.byEndpoint['/api/chat']).toBeGreaterThanOrEqual(1);
  });

  it('answers a search with ranked hits from the local corpus', async () => {
    const r = await post(`${fleet.url}/v1/search`, { query: 'capital of France', limit: 3 });
    expect(r.status).toBe(200);
    const result = r.body.result as {
      hits: { title: string; rank: number; snippet: string }[];
      total: number;
    };
    expect(result.hits).toHaveLength(3);
    expect(result.hits[0]).toMatchObject({ title: 'France', rank: 1 });
    expect(result.hits[0]!.snippet).toMatch(/Paris/);
    expect(result.total).toBeGreaterThanOrEqual(3);
  });

  it('answers 202 with the job id when the result takes longer than `wait`, and the job can be polled', async () => {
    const body = { model: 'qwen2.5:7b', prompt: 'a slow one', params: { max_tokens: 400 }, wait: 0 };
    const r = await post(`${fleet.url}/v1/inference`, body);
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({
      status: 'pending',
      queue: 'inference',
      jobId: expect.stringMatching(/^i-/),
    });
    expect(r.headers.get('location')).toBe(`/v1/jobs/inference/${String(r.body.jobId)}`);
    let view: Record<string, unknown> = {};
    for (let i = 0; i < 100; i++) {
      view = (await get(`${fleet.url}${r.headers.get('location')}`)).body;
      if (view.state === 'completed') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(view).toMatchObject({
      state: 'completed',
      jobId: r.body.jobId,
      queue: 'inference',
      attemptsMade: expect.any(Number),
    });
    expect((view.result as { text: string }).text).toMatch(/^\[simulated/);
  });

  it('lists the live workers at GET /v1/fleet', async () => {
    const r = await get(`${fleet.url}/v1/fleet`);
    expect(r.status).toBe(200);
    const workers = r.body.workers as Array<Record<string, unknown>>;
    expect(r.body.count).toBe(1);
    expect(workers[0]).toMatchObject({
      id: fleet.worker!.id,
      pid: process.pid,
      queues: ['inference', 'search', 'embedding'],
      state: 'running',
    });
    expect(typeof workers[0]!.updatedAt).toBe('string');
  });

  it('answers 404 for unknown jobs and queues', async () => {
    const a = await get(`${fleet.url}/v1/jobs/inference/i-00000000000000000000000000000000`);
    expect(a.status).toBe(404);
    expect(a.body).toMatchObject({ error: { code: 'CELL0_JOB_NOT_FOUND' } });
    const b = await get(`${fleet.url}/v1/jobs/nope/x`);
    expect(b.status).toBe(404);
    expect(b.body).toMatchObject({ error: { code: 'CELL0_JOB_NOT_FOUND' } });
  });

  it('fails a job for a model the backend does not have with 422 and the error code', async () => {
    const r = await post(`${fleet.url}/v1/inference`, { model: 'no-such-model:1b', prompt: 'hi' });
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({ status: 'failed', error: { code: 'CELL0_MODEL_NOT_FOUND' } });
    const view = await get(`${fleet.url}/v1/jobs/inference/${String(r.body.jobId)}`);
    expect(view.body).toMatchObject({ state: 'failed', error: { code: 'CELL0_MODEL_NOT_FOUND' } });
  });

  describe('bad input', () => {
    const cases: [
      string,
      { raw?: string; body?: unknown; headers?: Record<string, string> },
      number,
      string,
    ][] = [
      ['malformed JSON', { raw: '{"model": "x", "prompt": ' }, 400, '(body)'],
      ['a JSON array', { body: [1, 2] }, 400, '(body)'],
      ['a JSON string', { raw: '"hello"' }, 400, '(body)'],
      ['a missing model', { body: { prompt: 'hi' } }, 400, 'model'],
      ['a wrong type', { body: { model: 'm', prompt: 42 } }, 400, 'prompt'],
      [
        'a nested wrong type',
        { body: { model: 'm', prompt: 'x', params: { temperature: 'hot' } } },
        400,
        'params.temperature',
      ],
      [
        'an out-of-range number',
        { body: { model: 'm', prompt: 'x', params: { temperature: 5 } } },
        400,
        'params.temperature',
      ],
      ['an unknown field', { body: { model: 'm', prompt: 'x', temprature: 0.1 } }, 400, 'temprature'],
      ['a bad wait', { body: { model: 'm', prompt: 'x', wait: -1 } }, 400, 'wait'],
      ['a prompt over the limit', { body: { model: 'm', prompt: 'x'.repeat(5000) } }, 413, 'prompt'],
      ['a body over the limit', { body: { model: 'm', prompt: 'x'.repeat(9000) } }, 413, '(body)'],
    ];
    it.each(cases)('refuses %s', async (_name, c, status, field) => {
      const r = await post(`${fleet.url}/v1/inference`, c.body, {
        ...(c.raw !== undefined ? { raw: c.raw } : {}),
        ...(c.headers ? { headers: c.headers } : {}),
      });
      expect(r.status).toBe(status);
      const error = r.body.error as {
        code: string;
        message: string;
        issues: { field: string; reason: string }[];
      };
      expect(error.code).toMatch(/^CELL0_/);
      expect(error.issues.map((i) => i.field)).toContain(field);
      expect(error.issues.every((i) => i.reason.length > 0)).toBe(true);
    });

    it('refuses a wrong content type with 415', async () => {
      const r = await post(`${fleet.url}/v1/search`, null, {
        raw: 'query=paris',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      expect(r.status).toBe(415);
      expect(r.body).toMatchObject({ error: { code: 'CELL0_UNSUPPORTED_MEDIA_TYPE' } });
    });

    it('answers unknown routes and methods with JSON', async () => {
      const a = await get(`${fleet.url}/v2/nothing`);
      expect(a.status).toBe(404);
      expect(a.body).toMatchObject({ error: { code: 'CELL0_ROUTE_NOT_FOUND' } });
      const b = await get(`${fleet.url}/v1/inference`);
      expect(b.status).toBe(405);
      expect(b.headers.get('allow')).toBe('POST');
    });

    it('survives 1,000 malformed requests with only 4xx answers', async () => {
      const bodies: { raw: string; type: string }[] = [];
      for (let i = 0; i < 1000; i++) {
        switch (i % 8) {
          case 0:
            bodies.push({ raw: '{"model":', type: 'application/json' });
            break;
          case 1:
            bodies.push({ raw: JSON.stringify({ model: i, prompt: [i] }), type: 'application/json' });
            break;
          case 2:
            bodies.push({
              raw: JSON.stringify({ model: 'm', prompt: 'x'.repeat(9000 + i) }),
              type: 'application/json',
            });
            break;
          case 3:
            bodies.push({
              raw: JSON.stringify({ model: 'm', prompt: 'p', ['extra' + i]: true }),
              type: 'application/json',
            });
            break;
          case 4:
            bodies.push({ raw: 'model=m&prompt=p', type: 'text/plain' });
            break;
          case 5:
            bodies.push({ raw: '\u0000\u0001\u0002' + String(i), type: 'application/json' });
            break;
          case 6:
            bodies.push({ raw: JSON.stringify({ query: null, limit: 'ten' }), type: 'application/json' });
            break;
          default:
            bodies.push({ raw: 'null', type: 'application/json' });
        }
      }
      const statuses: number[] = [];
      for (let i = 0; i < bodies.length; i += 50) {
        const batch = bodies.slice(i, i + 50).map(async (b, j) => {
          const path = (i + j) % 2 === 0 ? '/v1/inference' : '/v1/search';
          const res = await fetch(fleet.url + path, {
            method: 'POST',
            headers: { 'content-type': b.type },
            body: b.raw,
          });
          await res.arrayBuffer();
          return res.status;
        });
        statuses.push(...(await Promise.all(batch)));
      }
      expect(statuses).toHaveLength(1000);
      expect(statuses.filter((s) => s < 400 || s >= 500)).toEqual([]);
      expect((await get(`${fleet.url}/healthz`)).status).toBe(200);
    });

    it('does not hang when the client sends a truncated body and goes away', async () => {
      await new Promise<void>((resolve) => {
        const u = new URL(`${fleet.url}/v1/inference`);
        const req = request({
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': '1000' },
        });
        req.on('error', () => resolve());
        req.write('{"model":"m"');
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 50);
      });
      expect((await get(`${fleet.url}/healthz`)).status).toBe(200);
    });
  });

  it('coalesces 200 concurrent identical requests into one job and one backend call', async () => {
    fleet.sim.reset();
    const body = {
      model: 'qwen2.5:7b',
      prompt: 'Coalesce me: what is the capital of France?',
      params: { max_tokens: 64 },
    };
    const answers = await Promise.all(
      Array.from({ length: 200 }, () => post(`${fleet.url}/v1/inference`, body)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(200).fill(200));
    expect(new Set(answers.map((a) => a.body.jobId)).size).toBe(1);
    expect(new Set(answers.map((a) => JSON.stringify(a.body.result))).size).toBe(1);
    expect(fleet.sim.stats().requests.byEndpoint['/api/generate']).toBe(1);
  });

  it('serves health and readiness without auth', async () => {
    expect((await get(`${fleet.url}/healthz`)).body).toMatchObject({ status: 'ok' });
    const ready = await get(`${fleet.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ status: 'ready', redis: { healthy: true, circuitState: 'closed' } });
  });

  it('routes paths as express mounts match them: any case, trailing slash, query; lookalikes are 404', async () => {
    expect((await get(`${fleet.url}/HEALTHZ/?x=1`)).body).toMatchObject({ status: 'ok' });
    const models = await get(`${fleet.url}/V1/Models/?x=1`);
    expect(models.status).toBe(200);
    expect(models.body).toMatchObject({ object: 'list' });
    // A path that only starts like a probe or an OpenAI route reaches the native 404.
    for (const path of ['/healthzz', '/v1/modelsx', '/v1/chat/completionsx']) {
      const r = await get(`${fleet.url}${path}`);
      expect(r.status).toBe(404);
      expect(r.body).toMatchObject({ error: { code: 'CELL0_ROUTE_NOT_FOUND' } });
    }
    // Under an OpenAI path, the OpenAI router's error shape applies even where no route answers.
    const under = await get(`${fleet.url}/v1/models/extra`);
    expect(under.status).toBe(404);
    expect(under.body).toMatchObject({ error: { type: expect.any(String), message: expect.any(String) } });
    // A native route after the OpenAI router still answers, and a wrong method on an OpenAI route is 405.
    expect((await post(`${fleet.url}/V1/Search/`, { query: 'capital of France', limit: 1 })).status).toBe(
      200,
    );
    expect((await get(`${fleet.url}/v1/chat/completions/`)).status).toBe(405);
  });
});

describe('HTTP API with API keys', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    fleet = await startTestFleet({ apiKeys: ['key-one', 'key-two'], adminKeys: ['admin-key'] });
  });
  afterAll(() => fleet.close());

  it('requires a Bearer key on /v1 and an admin key on the dashboard, not on health probes', async () => {
    const none = await post(`${fleet.url}/v1/search`, { query: 'redis' });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(none.body).toMatchObject({ error: { code: 'CELL0_UNAUTHORIZED' } });
    const wrong = await post(
      `${fleet.url}/v1/search`,
      { query: 'redis' },
      { headers: { authorization: 'Bearer key-three' } },
    );
    expect(wrong.status).toBe(401);
    const basicOnApi = await post(
      `${fleet.url}/v1/search`,
      { query: 'redis' },
      { headers: { authorization: 'Basic ' + Buffer.from('x:key-one').toString('base64') } },
    );
    expect(basicOnApi.status).toBe(401);
    const ok = await post(
      `${fleet.url}/v1/search`,
      { query: 'redis' },
      { headers: { authorization: 'Bearer key-two' } },
    );
    expect(ok.status).toBe(200);
    const job = await get(`${fleet.url}/v1/jobs/search/${String(ok.body.jobId)}`);
    expect(job.status).toBe(401);
    expect((await get(`${fleet.url}/healthz`)).status).toBe(200);
    const board = await get(`${fleet.url}/admin/queues`);
    expect(board.status).toBe(401);
    expect(board.headers.get('www-authenticate')).toMatch(/^Basic/);
    const boardOk = await fetch(`${fleet.url}/admin/queues`, {
      headers: { authorization: 'Basic ' + Buffer.from('ops:admin-key').toString('base64') },
    });
    expect(boardOk.status).toBe(200);
    expect(await boardOk.text()).toMatch(/<html/i);
  });
});
