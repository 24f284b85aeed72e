import { type Express } from 'express';
import { createApi } from '../../producers/api/create-api';
import { AccessControl } from '../../producers/api/access-control';
import { HttpServer } from '../../shared/http-server';
import { Cell0Metrics } from '../../shared/metrics/metrics';
import { startTestFleet, type TestFleet } from '../helpers/fleet';

/** One API over the fleet's client: with the inference fast path (the default) or without. */
interface Api {
  url: string;
  app: Express;
  metrics: Cell0Metrics;
  /** Requests express's router was given. */
  routed: string[];
  close(): Promise<void>;
}

interface Answer {
  status: number;
  headers: Record<string, string | null>;
  body: Record<string, unknown>;
}

const HEADERS = [
  'content-type',
  'content-length',
  'x-request-id',
  'location',
  'retry-after',
  'www-authenticate',
];

async function send(url: string, raw: string, headers: Record<string, string>): Promise<Answer> {
  const res = await fetch(`${url}/v1/inference`, { method: 'POST', headers, body: raw });
  const text = await res.text();
  return {
    status: res.status,
    headers: Object.fromEntries(HEADERS.map((h) => [h, res.headers.get(h)])),
    body: JSON.parse(text) as Record<string, unknown>,
  };
}

/** The route label, method and status of every counted request. */
async function counted(metrics: Cell0Metrics): Promise<string[]> {
  const text = await metrics.text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('cell0_http_requests_total{'))
    .sort();
}

describe('POST /v1/inference without express (the fast path) answers as express does', () => {
  let fleet: TestFleet;
  const apis: Api[] = [];
  const startApi = async (fast: boolean, apiKeys: string[] = []): Promise<Api> => {
    const metrics = new Cell0Metrics({ defaultMetrics: false });
    const access = new AccessControl({
      apiKeys,
      adminKeys: [],
      tenantSecret: 'fast-path-test-secret',
      redis: fleet.client.submitter.redis,
      prefix: fleet.prefix,
    });
    const app = createApi({
      client: fleet.client,
      access,
      resultWaitMs: 10_000,
      maxBodyBytes: 8192,
      metrics,
      inferenceFastPath: fast,
    });
    const routed: string[] = [];
    const router = (app as unknown as { router: { handle: (...a: unknown[]) => unknown } }).router;
    const handle = router.handle.bind(router);
    router.handle = (...a: unknown[]) => {
      const req = a[0] as { method: string; url: string };
      routed.push(`${req.method} ${req.url}`);
      return handle(...a);
    };
    const server = new HttpServer(app, { host: '127.0.0.1', port: 0, requestsPerTurn: 4 });
    const { url } = await server.start();
    const api = { url, app, metrics, routed, close: () => server.close() };
    apis.push(api);
    return api;
  };

  beforeAll(async () => {
    fleet = await startTestFleet({ maxBodyBytes: 8192, maxPromptBytes: 4096 });
  });
  afterEach(async () => {
    await Promise.all(apis.splice(0).map((a) => a.close()));
  });
  afterAll(() => fleet.close());

  const json = { 'content-type': 'application/json' };
  /** Requests and whether the fast path takes them (the rest go to express as before). */
  const cases: Array<{ name: string; raw: (tag: string) => string; headers?: Record<string, string> }> = [
    { name: 'valid', raw: (t) => JSON.stringify({ model: 'qwen2.5:7b', prompt: `fast path ${t}` }) },
    {
      name: 'valid, its own request id, charset named',
      raw: (t) =>
        JSON.stringify({ model: 'qwen2.5:7b', prompt: `fast path id ${t}`, params: { max_tokens: 4 } }),
      headers: { 'content-type': 'Application/JSON; charset=UTF-8', 'x-request-id': 'caller-chosen-id' },
    },
    { name: 'no prompt', raw: () => JSON.stringify({ model: 'qwen2.5:7b' }) },
    { name: 'malformed JSON', raw: () => '{"model": "qwen2.5:7b",' },
    { name: 'not an object', raw: () => '[1, 2]' },
    { name: 'bad wait', raw: () => JSON.stringify({ model: 'm', prompt: 'p', wait: -1 }) },
    {
      name: 'bad params',
      raw: () => JSON.stringify({ model: 'm', prompt: 'p', params: { max_tokens: 'x' } }),
    },
    { name: 'prompt over the limit', raw: () => JSON.stringify({ model: 'm', prompt: 'x'.repeat(5000) }) },
    {
      name: 'body over the limit (express.json)',
      raw: () => JSON.stringify({ model: 'm', prompt: 'y'.repeat(9000) }),
    },
    {
      name: 'not found later: 202 with where to poll',
      raw: (t) =>
        JSON.stringify({ model: 'qwen2.5:7b', prompt: `slow ${t}`, params: { max_tokens: 400 }, wait: 0 }),
    },
    { name: 'wrong content type (415)', raw: () => '{}', headers: { 'content-type': 'text/plain' } },
    {
      name: 'a vendor JSON type',
      raw: () => JSON.stringify({ model: 'm' }),
      headers: { 'content-type': 'application/vnd.api+json' },
    },
  ];

  it('gives the same status, headers and body for every kind of request, and counts them alike', async () => {
    const fast = await startApi(true);
    const slow = await startApi(false);
    for (const c of cases) {
      const headers: Record<string, string> = c.headers ?? json;
      const a = await send(fast.url, c.raw('a'), headers);
      const b = await send(slow.url, c.raw('b'), headers);
      // Answers differ only where the requests did: the job id (a hash of the prompt), the text, the
      // generated request id, the body's length with them.
      const same = (x: Answer) => ({
        status: x.status,
        headers: {
          ...x.headers,
          'content-length': x.status === 200 || x.status === 202 ? '(varies)' : x.headers['content-length'],
          'x-request-id':
            headers['x-request-id'] === undefined && x.headers['x-request-id'] !== null
              ? '(generated)'
              : x.headers['x-request-id'],
          location: x.headers.location?.replace(/i-[0-9a-f]{32}/, 'i-(id)') ?? null,
        },
        body:
          x.status === 200
            ? { ...x.body, jobId: '(id)', result: Object.keys(x.body.result as object).sort() }
            : x.status === 202
              ? {
                  ...x.body,
                  jobId: '(id)',
                  poll: String(x.body.poll).replace(/i-[0-9a-f]{32}/, 'i-(id)'),
                  // The fleet's worker may or may not have taken the job by the time its state is read:
                  // either is a right answer for a job added a moment ago; anything else is not.
                  state: ['waiting', 'active'].includes(String(x.body.state))
                    ? '(waiting or active)'
                    : x.body.state,
                }
              : x.body,
      });
      expect({ case: c.name, ...same(a) }).toEqual({ case: c.name, ...same(b) });
    }
    expect(await counted(fast.metrics)).toEqual(await counted(slow.metrics));
    expect((await counted(fast.metrics)).join('\n')).toMatch(
      /route="\/v1\/inference",method="POST",status="200"} 2/,
    );
  });

  it('answers with tenant keys as express does: refusals, and the tenant namespace on the job', async () => {
    const fast = await startApi(true, ['tenant-key-1']);
    const slow = await startApi(false, ['tenant-key-1']);
    const body = JSON.stringify({ model: 'qwen2.5:7b', prompt: 'tenant fast path' });
    for (const headers of [
      json,
      { ...json, authorization: 'Bearer wrong-key' },
      { ...json, authorization: 'Bearer tenant-key-1' },
    ]) {
      const a = await send(fast.url, body, headers);
      const b = await send(slow.url, body, headers);
      expect([a.status, a.headers['www-authenticate'], a.body.error]).toEqual([
        b.status,
        b.headers['www-authenticate'],
        b.body.error,
      ]);
      // The same request of the same tenant is the same job (the tenant id is part of its id).
      if (a.status === 200) expect(a.body.jobId).toBe(b.body.jobId);
    }
  });

  it("takes the usual request past express's router, and leaves every other one to it", async () => {
    const fast = await startApi(true);
    const ok = JSON.stringify({ model: 'qwen2.5:7b', prompt: 'router or not' });
    expect((await send(fast.url, ok, json)).status).toBe(200);
    expect((await send(fast.url, '{"model":', json)).status).toBe(400);
    expect(fast.routed).toEqual([]);
    // Not the exact path, or a body or content type the route's lean reader does not take: express.
    const other = async (path: string, headers: Record<string, string>, raw = ok) =>
      (await fetch(`${fast.url}${path}`, { method: 'POST', headers, body: raw })).status;
    expect(await other('/v1/inference?x=1', json)).toBe(200);
    expect(await other('/v1/Inference', json)).toBe(200);
    expect(await other('/v1/inference', { 'content-type': 'text/plain' })).toBe(415);
    expect(await other('/v1/inference', { ...json, 'content-encoding': 'identity' })).toBe(200);
    expect(fast.routed).toEqual([
      'POST /v1/inference?x=1',
      'POST /v1/Inference',
      'POST /v1/inference',
      'POST /v1/inference',
    ]);
    // Off: every request goes through express.
    const slow = await startApi(false);
    expect((await send(slow.url, ok, json)).status).toBe(200);
    expect(slow.routed).toEqual(['POST /v1/inference']);
  });
});
