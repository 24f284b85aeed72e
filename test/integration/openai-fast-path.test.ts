import { Writable } from 'node:stream';
import { type Express } from 'express';
import { pino } from 'pino';
import { createApi } from '../../producers/api/create-api';
import { AccessControl } from '../../producers/api/access-control';
import { HttpServer } from '../../shared/http-server';
import { Cell0Metrics } from '../../shared/metrics/metrics';
import { startTestFleet, type TestFleet } from '../helpers/fleet';

/** One API over a fleet's client: with the OpenAI fast path (the default) or without. */
interface Api {
  url: string;
  app: Express;
  metrics: Cell0Metrics;
  /** Requests express's router was given. */
  routed: string[];
  /** The request log's lines. */
  lines: Record<string, unknown>[];
  close(): Promise<void>;
}

interface Answer {
  status: number;
  headers: Record<string, string | null>;
  body: string;
}

const HEADERS = [
  'content-type',
  'content-length',
  'cache-control',
  'x-request-id',
  'x-cell0-job',
  'x-cell0-cache',
  'x-cell0-coalesced',
  'retry-after',
  'www-authenticate',
  'allow',
];

async function send(
  url: string,
  path: string,
  raw: string,
  headers: Record<string, string>,
): Promise<Answer> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers, body: raw });
  return {
    status: res.status,
    headers: Object.fromEntries(HEADERS.map((h) => [h, res.headers.get(h)])),
    body: await res.text(),
  };
}

/**
 * A body with what may differ between two runs of the same request masked: the creation time (seconds, either
 * side of a second), and for a stream how its text was cut into chunks (that follows the tokens' arrival):
 * consecutive text chunks are merged into one.
 */
function sameText(body: string): string {
  const masked = body.replace(/"created":\d+/g, '"created":0');
  if (!masked.startsWith('data: ')) return masked;
  const out: string[] = [];
  let text: { chunk: Record<string, unknown>; text: string; key: 'text' | 'content' } | undefined;
  const flush = () => {
    if (!text) return;
    const choice = (text.chunk.choices as Record<string, unknown>[])[0]!;
    if (text.key === 'text') choice.text = text.text;
    else choice.delta = { content: text.text };
    out.push(JSON.stringify(text.chunk));
    text = undefined;
  };
  for (const event of masked.split('\n\n')) {
    if (event === '') continue;
    const data = event.slice('data: '.length);
    const chunk = data.startsWith('{') ? (JSON.parse(data) as Record<string, unknown>) : undefined;
    const choice = (chunk?.choices as Record<string, unknown>[] | undefined)?.[0];
    const delta = choice?.delta as Record<string, unknown> | undefined;
    const piece =
      choice && choice.finish_reason === null
        ? typeof choice.text === 'string'
          ? { key: 'text' as const, value: choice.text }
          : delta && delta.role === undefined && typeof delta.content === 'string'
            ? { key: 'content' as const, value: delta.content }
            : undefined
        : undefined;
    if (chunk && piece) {
      if (text) text.text += piece.value;
      else text = { chunk, text: piece.value, key: piece.key };
      continue;
    }
    flush();
    out.push(data);
  }
  flush();
  return out.join('\n');
}

/** The route label, method and status of every counted request. */
async function counted(metrics: Cell0Metrics): Promise<string[]> {
  const text = await metrics.text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('cell0_http_requests_total{'))
    .sort();
}

describe('POST /v1/chat/completions and /v1/completions without express (the OpenAI fast path) answer as express does', () => {
  // Two fleets, each on its own prefix: the same request is a new job on each side (same job id, same text).
  let fleets: [TestFleet, TestFleet];
  const apis: Api[] = [];
  const startApi = async (fleet: TestFleet, fast: boolean, apiKeys: string[] = []): Promise<Api> => {
    const metrics = new Cell0Metrics({ defaultMetrics: false });
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n'))
          if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const access = new AccessControl({
      apiKeys,
      adminKeys: [],
      tenantSecret: 'openai-fast-path-test-secret',
      redis: fleet.client.submitter.redis,
      prefix: fleet.prefix,
    });
    const app = createApi({
      client: fleet.client,
      access,
      resultWaitMs: 10_000,
      maxWaitMs: 10_000,
      maxBodyBytes: 8192,
      metrics,
      logger: pino({ level: 'debug' }, sink),
      openAIFastPath: fast,
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
    const api = { url, app, metrics, routed, lines, close: () => server.close() };
    apis.push(api);
    return api;
  };

  beforeAll(async () => {
    const opts = { maxBodyBytes: 8192, maxPromptBytes: 4096, oneProcess: true };
    fleets = await Promise.all([startTestFleet(opts), startTestFleet(opts)]);
  });
  afterEach(async () => {
    await Promise.all(apis.splice(0).map((a) => a.close()));
  });
  afterAll(() => Promise.all(fleets.map((f) => f.close())));

  const json = { 'content-type': 'application/json' };
  const CHAT = '/v1/chat/completions';
  const COMPLETIONS = '/v1/completions';
  const chat = (content: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ model: 'qwen2.5:7b', messages: [{ role: 'user', content }], max_tokens: 8, ...extra });
  const cases: Array<{ name: string; path: string; raw: string; headers?: Record<string, string> }> = [
    { name: 'chat', path: CHAT, raw: chat('fast path chat') },
    {
      name: 'chat streamed, with usage',
      path: CHAT,
      raw: chat('fast path stream', { stream: true, stream_options: { include_usage: true } }),
    },
    {
      name: 'chat streamed, its own request id, charset named, cache header',
      path: CHAT,
      raw: chat('fast path stream id', { stream: true }),
      headers: {
        'content-type': 'Application/JSON; charset=UTF-8',
        'x-request-id': 'caller-chosen-id',
        'x-cell0-cache': 'no-store',
      },
    },
    {
      name: 'completion',
      path: COMPLETIONS,
      raw: JSON.stringify({ model: 'qwen2.5:7b', prompt: 'fast path completion', max_tokens: 8 }),
    },
    {
      name: 'completion streamed',
      path: COMPLETIONS,
      raw: JSON.stringify({ model: 'qwen2.5:7b', prompt: 'fast path completion s', stream: true }),
    },
    { name: 'no messages', path: CHAT, raw: JSON.stringify({ model: 'qwen2.5:7b' }) },
    { name: 'n = 2', path: CHAT, raw: chat('n two', { n: 2 }) },
    { name: 'unknown field', path: CHAT, raw: chat('unknown', { tools: [] }) },
    {
      name: 'bad cache header',
      path: CHAT,
      raw: chat('bad header'),
      headers: { ...json, 'x-cell0-cache': 'x' },
    },
    { name: 'malformed JSON', path: CHAT, raw: '{"model": "qwen2.5:7b",' },
    { name: 'malformed JSON (completions)', path: COMPLETIONS, raw: '{"model"' },
    { name: 'not an object', path: CHAT, raw: '[1, 2]' },
    {
      name: 'prompt over the limit',
      path: COMPLETIONS,
      raw: JSON.stringify({ model: 'm', prompt: 'x'.repeat(5000) }),
    },
    {
      name: 'body over the limit (express.json)',
      path: CHAT,
      raw: chat('y'.repeat(9000)),
    },
    { name: 'wrong content type (415)', path: CHAT, raw: '{}', headers: { 'content-type': 'text/plain' } },
    {
      name: 'a vendor JSON type',
      path: CHAT,
      raw: chat('vendor'),
      headers: { 'content-type': 'application/vnd.api+json' },
    },
  ];

  /** An answer with what may differ between two runs of the same request masked. */
  const masked = (x: Answer, sent: Record<string, string>) => ({
    status: x.status,
    headers: {
      ...x.headers,
      'x-request-id':
        sent['x-request-id'] === undefined && x.headers['x-request-id'] !== null
          ? '(generated)'
          : x.headers['x-request-id'],
    },
    body: sameText(x.body),
  });
  /** A request log line with its request id and duration masked. */
  const line = (l: Record<string, unknown>) => ({
    level: l.level,
    msg: l.msg,
    method: l.method,
    path: l.path,
    status: l.status,
    err: l.err === undefined ? undefined : '(err)',
  });

  it('gives the same status, headers and body for every kind of request, and counts and logs them alike', async () => {
    const fast = await startApi(fleets[0], true);
    const slow = await startApi(fleets[1], false);
    for (const c of cases) {
      const headers: Record<string, string> = c.headers ?? json;
      const a = await send(fast.url, c.path, c.raw, headers);
      const b = await send(slow.url, c.path, c.raw, headers);
      expect({ case: c.name, ...masked(a, headers) }).toEqual({ case: c.name, ...masked(b, headers) });
    }
    // The answers carried text: the streamed ones their chunks and [DONE].
    expect(fast.routed.length).toBeLessThan(cases.length);
    expect(await counted(fast.metrics)).toEqual(await counted(slow.metrics));
    expect((await counted(fast.metrics)).join('\n')).toMatch(
      /route="\/v1\/chat\/completions",method="POST",status="200"} 4/,
    );
    const requestLines = (api: Api) => api.lines.filter((l) => 'status' in l).map(line);
    expect(requestLines(fast)).toEqual(requestLines(slow));
    expect(requestLines(fast)).toHaveLength(cases.length);
  });

  it('streams the same chunks as express does', async () => {
    const fast = await startApi(fleets[0], true);
    const slow = await startApi(fleets[1], false);
    const raw = chat('fast path stream chunks', { stream: true, max_tokens: 16 });
    const a = await send(fast.url, CHAT, raw, json);
    const b = await send(slow.url, CHAT, raw, json);
    expect(a.status).toBe(200);
    expect(a.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(a.body).toMatch(/^data: \{"id":"chatcmpl-[0-9a-f]+",.*"object":"chat\.completion\.chunk"/);
    expect(a.body).toContain('[simulated qwen2.5:7b]');
    expect(a.body.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(masked(a, json)).toEqual(masked(b, json));
    expect(fast.routed).toEqual([]);
  });

  it('answers with tenant keys as express does: refusals logged and counted alike, the tenant namespace on the job', async () => {
    const fast = await startApi(fleets[0], true, ['tenant-key-1']);
    const slow = await startApi(fleets[1], false, ['tenant-key-1']);
    const body = chat('tenant fast path');
    for (const headers of [
      json,
      { ...json, authorization: 'Bearer wrong-key' },
      { ...json, authorization: 'Bearer tenant-key-1' },
    ]) {
      const a = await send(fast.url, CHAT, body, headers);
      const b = await send(slow.url, CHAT, body, headers);
      expect(masked(a, headers)).toEqual(masked(b, headers));
    }
    expect(fast.routed).toEqual([]);
    expect(await counted(fast.metrics)).toEqual(await counted(slow.metrics));
    expect((await counted(fast.metrics)).join('\n')).toMatch(
      /route="unmatched",method="POST",status="401"} 2/,
    );
    const requestLines = (api: Api) => api.lines.filter((l) => 'status' in l).map(line);
    expect(requestLines(fast)).toEqual(requestLines(slow));
  });

  it("takes the usual request past express's router, and leaves every other one to it", async () => {
    const fast = await startApi(fleets[0], true);
    const ok = chat('router or not');
    expect((await send(fast.url, CHAT, ok, json)).status).toBe(200);
    expect((await send(fast.url, CHAT, '{"model":', json)).status).toBe(400);
    expect((await send(fast.url, COMPLETIONS, '{"model":', json)).status).toBe(400);
    expect(fast.routed).toEqual([]);
    // Not the exact path, or a body or content type the routes' lean reader does not take: express.
    const other = async (path: string, headers: Record<string, string>, raw = ok) =>
      (await send(fast.url, path, raw, headers)).status;
    expect(await other(`${CHAT}?x=1`, json)).toBe(200);
    expect(await other('/v1/Chat/Completions', json)).toBe(200);
    expect(await other(CHAT, { 'content-type': 'text/plain' })).toBe(415);
    expect(await other(CHAT, { ...json, 'content-encoding': 'identity' })).toBe(200);
    expect(fast.routed).toEqual([
      `POST ${CHAT}?x=1`,
      'POST /v1/Chat/Completions',
      `POST ${CHAT}`,
      `POST ${CHAT}`,
    ]);
    // Off: every request goes through express.
    const slow = await startApi(fleets[1], false);
    expect((await send(slow.url, CHAT, ok, json)).status).toBe(200);
    expect(slow.routed).toEqual([`POST ${CHAT}`]);
  });
});
