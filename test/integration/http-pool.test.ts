import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ClosedError, ModelNotFoundError, ProviderError } from '../../shared/errors';
import { httpStatusError } from '../../shared/http/errors';
import {
  getHttpPool,
  HttpPool,
  HttpPoolRegistry,
  originOf,
  parseJsonText,
  readJson,
  readLimited,
  type HttpCall,
  type HttpPoolMetrics,
  type HttpTextCall,
} from '../../shared/http/pool';
import { configErrorFields } from '../helpers/checks';
import { rejectionOf, until } from '../helpers/wait';

/** A local server that counts its sockets and the requests it is answering at once. */
interface TestServer {
  url: string;
  origin: string;
  /** Distinct sockets opened to it so far. */
  sockets: Set<Socket>;
  /** Requests being answered now, and the most at once. */
  active: number;
  maxActive: number;
  requests: number;
  close(): Promise<void>;
}

/** Shared by several servers: requests answered at once over all of them. */
interface Shared {
  active: number;
  maxActive: number;
}

/**
 * Routes: /ok → 200 "ok"; /slow?ms=N → 200 "slow" after N ms; /json → a JSON body; /text → non-JSON;
 * /status/N → status N with body "said no"; /big-error → 500 with a 200 KB body; /slow-body?ms=N → headers
 * at once, the body after N ms; /bom → a JSON body behind a UTF-8 byte order mark; /chunks → a body of
 * 3,000 non-ASCII characters in 3 writes (a character split between two of them).
 */
async function startServer(shared?: Shared): Promise<TestServer> {
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, req: IncomingMessage, res: ServerResponse, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      if (!res.destroyed) fn();
    }, ms);
    timers.add(t);
    res.on('close', () => {
      clearTimeout(t);
      timers.delete(t);
    });
  };
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    s.requests++;
    s.active++;
    s.maxActive = Math.max(s.maxActive, s.active);
    if (shared) {
      shared.active++;
      shared.maxActive = Math.max(shared.maxActive, shared.active);
    }
    let done = false;
    res.on('close', () => {
      if (done) return;
      done = true;
      s.active--;
      if (shared) shared.active--;
    });
    const url = new URL(req.url ?? '/', 'http://x');
    const ms = Number(url.searchParams.get('ms') ?? '0');
    req.resume();
    if (url.pathname === '/ok') res.end('ok');
    else if (url.pathname === '/slow') later(ms, req, res, () => res.end('slow'));
    else if (url.pathname === '/json') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ a: 1, path: url.pathname }));
    } else if (url.pathname === '/text') res.end('<html>not json</html>');
    else if (url.pathname.startsWith('/status/')) {
      res.statusCode = Number(url.pathname.slice('/status/'.length));
      res.setHeader('retry-after', '3');
      res.end('said no');
    } else if (url.pathname === '/big-error') {
      res.statusCode = 500;
      res.end('x'.repeat(200 * 1024));
    } else if (url.pathname === '/bom') {
      res.setHeader('content-type', 'application/json');
      res.end(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":"é"}')]));
    } else if (url.pathname === '/chunks') {
      const all = Buffer.from('é'.repeat(3000));
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.write(all.subarray(0, 1001)); // ends inside a character
      setImmediate(() => {
        res.write(all.subarray(1001, 4000));
        setImmediate(() => res.end(all.subarray(4000)));
      });
    } else if (url.pathname === '/slow-body') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first ');
      later(ms, req, res, () => res.end('last'));
    } else {
      res.statusCode = 404;
      res.end('no route');
    }
  };
  const server: Server = createServer(handler);
  const sockets = new Set<Socket>();
  server.on('connection', (sock: Socket) => sockets.add(sock));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const s: TestServer = {
    url: `http://127.0.0.1:${port}`,
    origin: `http://127.0.0.1:${port}`,
    sockets,
    active: 0,
    maxActive: 0,
    requests: 0,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return s;
}

/** A port nothing listens on (it was free a moment ago). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function spec<T>(path: string, read: HttpCall<T>['read'], extra: Partial<HttpCall<T>> = {}): HttpCall<T> {
  return {
    provider: 'fake',
    method: 'GET',
    path,
    timeoutMs: 10_000,
    read,
    onHttpError: (status, headers, bodyText) =>
      httpStatusError('fake', path.split('?')[0]!, status, headers['retry-after'], bodyText),
    ...extra,
  };
}
const text = (path: string, extra: Partial<HttpCall<string>> = {}) =>
  spec(path, (res) => res.body.text(), extra);
const json = (path: string) => spec(path, (res) => readJson('fake', path, res));

function sumOf(ms: HttpPoolMetrics[], k: 'queued' | 'inFlight'): number {
  return ms.reduce((a, m) => a + m[k], 0);
}

describe('HttpPool and HttpPoolRegistry (local node:http servers)', () => {
  const servers: TestServer[] = [];
  const closers: Array<{ close(): Promise<void> }> = [];
  const server = async (shared?: Shared) => {
    const s = await startServer(shared);
    servers.push(s);
    return s;
  };
  const pool = (url: string, opts?: ConstructorParameters<typeof HttpPool>[1]) => {
    const p = new HttpPool(url, opts);
    closers.push(p);
    return p;
  };
  const registry = (opts?: ConstructorParameters<typeof HttpPoolRegistry>[0]) => {
    const r = new HttpPoolRegistry(opts);
    closers.push(r);
    return r;
  };
  afterEach(async () => {
    await Promise.all(closers.splice(0).map((c) => c.close()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('never opens more than maxConnectionsPerHost sockets; extra calls queue and all complete', async () => {
    const s = await server();
    const p = pool(s.url, { maxConnectionsPerHost: 2 });
    let maxQueued = 0;
    let maxOpen = 0;
    const sampler = setInterval(() => {
      const m = p.metrics();
      maxQueued = Math.max(maxQueued, m.queued);
      maxOpen = Math.max(maxOpen, m.connections.open);
    }, 5);
    try {
      const t0 = performance.now();
      const answers = await Promise.all(Array.from({ length: 10 }, () => p.call(text('/slow?ms=100'))));
      const elapsed = performance.now() - t0;
      expect(answers).toEqual(Array(10).fill('slow'));
      expect(s.sockets.size).toBe(2);
      expect(s.maxActive).toBe(2);
      expect(s.requests).toBe(10);
      // 10 calls two at a time: five rounds of 100 ms.
      expect(elapsed).toBeGreaterThanOrEqual(5 * 100 - 10);
      expect(elapsed).toBeLessThan(5 * 100 + 3000);
    } finally {
      clearInterval(sampler);
    }
    expect(maxQueued).toBeGreaterThan(0);
    expect(maxOpen).toBeLessThanOrEqual(2);
    const m = p.metrics();
    expect(m).toMatchObject({ maxConnectionsPerHost: 2, inFlight: 0, queued: 0, requests: 10 });
    expect(m.connections.open).toBeLessThanOrEqual(2);
  });

  it('reuses a keep-alive connection for sequential calls', async () => {
    const s = await server();
    const p = pool(s.url);
    // undici frees a connection a tick after its body ends: calls a moment apart use one socket...
    const pause = () => new Promise((r) => setTimeout(r, 5));
    for (let i = 0; i < 5; i++) {
      expect(await p.call(text('/ok'))).toBe('ok');
      await pause();
    }
    expect(await p.call(json('/json'))).toEqual({
      a: 1,
      path: '/json',
    });
    await pause();
    expect(s.sockets.size).toBe(1);
    expect(s.requests).toBe(6);
    expect(p.metrics().connections).toEqual({ open: 1, free: 1 });
    // ...and strictly back-to-back calls alternate between at most two.
    for (let i = 0; i < 10; i++) expect(await p.call(text('/ok'))).toBe('ok');
    expect(s.sockets.size).toBeLessThanOrEqual(2);
    expect(s.requests).toBe(16);
  });

  it('gives one pool per origin, shared by every URL of that origin', async () => {
    const a = await server();
    const b = await server();
    const r = registry();
    const pa = r.get(`${a.url}/api/generate`);
    expect(r.get(`${a.url}/v1/chat?x=1`)).toBe(pa);
    expect(r.get(`${a.url}/`)).toBe(pa);
    expect(r.get(a.url.replace('127.0.0.1', '127.0.0.1'))).toBe(pa);
    expect(pa.origin).toBe(a.origin);
    const pb = r.get(b.url);
    expect(pb).not.toBe(pa);
    expect(pb.origin).toBe(b.origin);
    // Same host, other scheme or port: another origin.
    expect(r.get(a.url.replace('http:', 'https:'))).not.toBe(pa);
    expect(r.metrics().map((m) => m.origin)).toEqual([
      a.origin,
      b.origin,
      a.origin.replace('http:', 'https:'),
    ]);
    // Options apply when the pool is created; an existing pool keeps its own.
    expect(r.get(a.url, { maxConnectionsPerHost: 99 }).options.maxConnectionsPerHost).toBe(16);
    // Two clients of one origin share its connections.
    await pa.call(text('/ok'));
    await new Promise((resolve) => setTimeout(resolve, 5)); // see the keep-alive test
    await r.get(`${a.url}/other`).call(text('/ok'));
    expect(a.sockets.size).toBe(1);
    expect(b.sockets.size).toBe(0);
  });

  it('gives pools the registry defaults, which a call-site option overrides only when defined', async () => {
    const s = await server();
    const r = registry({ defaults: { maxConnectionsPerHost: 3, connectTimeoutMs: 1234 } });
    const p = r.get(s.url, { maxConnectionsPerHost: undefined, bodyTimeoutMs: 5000 });
    expect(p.options).toMatchObject({
      maxConnectionsPerHost: 3,
      connectTimeoutMs: 1234,
      bodyTimeoutMs: 5000,
    });
    const q = r.get('http://127.0.0.2:9', { maxConnectionsPerHost: 7 });
    expect(q.options).toMatchObject({ maxConnectionsPerHost: 7, connectTimeoutMs: 1234 });
  });

  it('caps requests in flight across all origins at maxConnections, queueing the rest', async () => {
    const shared: Shared = { active: 0, maxActive: 0 };
    const a = await server(shared);
    const b = await server(shared);
    const r = registry({ maxConnections: 3 });
    expect(r.maxConnections).toBe(3);
    let maxQueued = 0;
    let maxInFlight = 0;
    const sampler = setInterval(() => {
      const ms = r.metrics();
      maxQueued = Math.max(maxQueued, sumOf(ms, 'queued'));
      maxInFlight = Math.max(maxInFlight, sumOf(ms, 'inFlight'));
    }, 5);
    try {
      const calls = [
        ...Array.from({ length: 5 }, () => r.get(a.url).call(text('/slow?ms=120'))),
        ...Array.from({ length: 5 }, () => r.get(b.url).call(text('/slow?ms=120'))),
      ];
      // While they run: at most 3 answered at once, the others waiting in the registry's queue.
      await until(() => sumOf(r.metrics(), 'queued') > 0, 5000, 'queued calls');
      const answers = await Promise.all(calls);
      expect(answers).toEqual(Array(10).fill('slow'));
    } finally {
      clearInterval(sampler);
    }
    expect(shared.maxActive).toBe(3);
    expect(a.maxActive + b.maxActive).toBeGreaterThanOrEqual(3);
    expect(maxInFlight).toBeLessThanOrEqual(3);
    expect(maxQueued).toBeGreaterThan(0);
    expect(a.requests + b.requests).toBe(10);
    const ms = r.metrics();
    expect(sumOf(ms, 'queued')).toBe(0);
    expect(sumOf(ms, 'inFlight')).toBe(0);
    // The slots are all free again: three more run at once.
    shared.maxActive = 0;
    await Promise.all(Array.from({ length: 3 }, () => r.get(a.url).call(text('/slow?ms=50'))));
    expect(shared.maxActive).toBe(3);
  });

  it('counts requests, HTTP errors, failures, latency, and returns inFlight to 0', async () => {
    const s = await server();
    const p = pool(s.url);
    const empty = p.metrics();
    expect(empty).toMatchObject({ origin: s.origin, requests: 0, httpErrors: 0, errors: 0, inFlight: 0 });
    expect(empty.latency.count).toBe(0);
    let insideInFlight = -1;
    await p.call(
      text('/ok', {
        read: async (res) => {
          insideInFlight = p.metrics().inFlight;
          return res.body.text();
        },
      }),
    );
    expect(insideInFlight).toBe(1);
    await p.call(text('/slow?ms=30'));
    await rejectionOf(p.call(text('/status/500')));
    await rejectionOf(p.call(text('/status/404')));
    await rejectionOf(p.call(text('/slow?ms=5000', { timeoutMs: 100 })));
    const m = p.metrics();
    expect(m.requests).toBe(5);
    expect(m.httpErrors).toBe(2);
    expect(m.errors).toBe(1); // the timeout; an HTTP error answer is not a failure to get one
    expect(m.inFlight).toBe(0);
    expect(m.queued).toBe(0);
    expect(m.latency.count).toBe(4); // the timed-out call never got its headers
    expect(m.latency.meanMs).toBeGreaterThan(0);
    expect(m.latency.p99Ms).toBeGreaterThanOrEqual(25);
  });

  it('rejects with a retryable ProviderError of kind "timeout" after timeoutMs', async () => {
    const s = await server();
    const p = pool(s.url);
    const t0 = performance.now();
    const err = await rejectionOf(p.call(text('/slow?ms=5000', { timeoutMs: 200 })));
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ kind: 'timeout', retryable: true, provider: 'fake', status: undefined });
    expect((err as Error).message).toMatch(/\/slow\?ms=5000: timed out after 200 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(195);
    expect(elapsed).toBeLessThan(2000);
    // The deadline covers reading the body too.
    const err2 = await rejectionOf(p.call(text('/slow-body?ms=5000', { timeoutMs: 200 })));
    expect(err2).toMatchObject({ kind: 'timeout' });
    expect(p.metrics()).toMatchObject({ errors: 2, inFlight: 0 });
    // And the pool still works.
    expect(await p.call(text('/ok'))).toBe('ok');
  });

  it('counts the wait for a registry slot in the deadline', async () => {
    const s = await server();
    const r = registry({ maxConnections: 1 });
    const hog = r.get(s.url).call(text('/slow?ms=1000'));
    await until(() => s.active === 1, 5000, 'the first call to arrive');
    const err = await rejectionOf(r.get(s.url).call(text('/ok', { timeoutMs: 100 })));
    expect(err).toMatchObject({ kind: 'timeout' });
    expect(r.get(s.url).metrics().queued).toBe(0);
    expect(await hog).toBe('slow');
    expect(s.requests).toBe(1); // the timed-out call was never sent
  });

  it('rejects with a retryable ProviderError of kind "connection" when the server is unreachable', async () => {
    const port = await freePort();
    const p = pool(`http://127.0.0.1:${port}`, { connectTimeoutMs: 2000 });
    const err = await rejectionOf(p.call(text('/api/generate?secret=1')));
    expect(err).toBeInstanceOf(ProviderError);
    const pe = err as ProviderError;
    expect(pe).toMatchObject({ kind: 'connection', retryable: true, provider: 'fake' });
    expect(pe.backendUnavailable).toBe(true);
    expect(pe.message).toMatch(/\/api\/generate: connection failed \(ECONNREFUSED\)/);
    expect(pe.message).not.toMatch(/secret/);
    expect((pe.cause as { code?: string }).code).toBe('ECONNREFUSED');
    expect(p.metrics()).toMatchObject({ requests: 1, errors: 1, httpErrors: 0, inFlight: 0 });
  });

  it('rejects with the abort reason when the caller aborts (before, while waiting, while reading)', async () => {
    const s = await server();
    const r = registry({ maxConnections: 1 });
    const p = r.get(s.url);
    const reason = new Error('job cancelled');

    const already = new AbortController();
    already.abort(reason);
    await expect(p.call(text('/ok', { signal: already.signal }))).rejects.toBe(reason);

    const ac = new AbortController();
    const t0 = performance.now();
    const pending = p.call(text('/slow?ms=5000', { signal: ac.signal }));
    await until(() => s.active === 1, 5000, 'the call to arrive');
    // A second call waits for the registry's only slot; its own abort ends the wait.
    const ac2 = new AbortController();
    const queued = p.call(text('/ok', { signal: ac2.signal }));
    await until(() => p.metrics().queued === 1, 5000, 'the queued call');
    ac2.abort(reason);
    await expect(queued).rejects.toBe(reason);
    ac.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(performance.now() - t0).toBeLessThan(3000);

    const ac3 = new AbortController();
    const reading = p.call(text('/slow-body?ms=5000', { signal: ac3.signal }));
    await until(() => s.active === 1, 5000, 'the body to start');
    ac3.abort(reason);
    await expect(reading).rejects.toBe(reason);

    const m = p.metrics();
    expect(m.inFlight).toBe(0);
    expect(m.queued).toBe(0);
    expect(await p.call(text('/ok'))).toBe('ok'); // the slot was given back
  });

  it("throws onHttpError's error for status >= 400, with the body text limited to 64 KiB", async () => {
    const s = await server();
    const p = pool(s.url);
    const seen: Array<{ status: number; retryAfter: unknown; bodyLength: number; body: string }> = [];
    const mine = new Error('mapped');
    const call = (path: string) =>
      p.call(
        text(path, {
          onHttpError: (status, headers, bodyText) => {
            seen.push({
              status,
              retryAfter: headers['retry-after'],
              bodyLength: bodyText.length,
              body: bodyText,
            });
            return mine;
          },
        }),
      );
    expect(await rejectionOf(call('/status/503'))).toBe(mine);
    expect(await rejectionOf(call('/status/400'))).toBe(mine);
    expect(await rejectionOf(call('/big-error'))).toBe(mine);
    expect(seen.map((x) => [x.status, x.body.slice(0, 7)])).toEqual([
      [503, 'said no'],
      [400, 'said no'],
      [500, 'xxxxxxx'],
    ]);
    expect(seen[0]!.retryAfter).toBe('3');
    expect(seen[2]!.bodyLength).toBe(64 * 1024);
    // The default mapping gives a ProviderError of kind "http" with the status and Retry-After.
    const err = await rejectionOf(p.call(text('/status/429')));
    expect(err).toMatchObject({ kind: 'http', status: 429, retryable: true, retryAfterMs: 3000 });
    // A 404 a client maps to ModelNotFoundError is an answer too.
    const missing = await rejectionOf(
      p.call(text('/status/404', { onHttpError: () => new ModelNotFoundError('fake', 'nope:7b') })),
    );
    expect(missing).toBeInstanceOf(ModelNotFoundError);
    // Error answers are httpErrors, never "errors" (calls that got no answer), whatever they were mapped to.
    expect(p.metrics()).toMatchObject({ requests: 5, httpErrors: 5, errors: 0, inFlight: 0 });
    expect(p.metrics().latency.count).toBe(5);
    expect(await p.call(text('/ok'))).toBe('ok');
  });

  it('readLimited and readJson', async () => {
    const s = await server();
    const p = pool(s.url);
    // A body read up to a limit stops there (and a destroyed body does not break the pool).
    expect(
      await p.call(
        text('/slow-body?ms=10', {
          read: (res) => readLimited(res.body, 3),
        }),
      ),
    ).toBe('fir');
    expect(await p.call(json('/json'))).toEqual({ a: 1, path: '/json' });
    const err = await rejectionOf(p.call(json('/text')));
    expect(err).toMatchObject({ kind: 'protocol', retryable: false, provider: 'fake' });
    expect((err as Error).message).toMatch(/\/text: answer is not JSON: <html>not json<\/html>/);
  });

  it('refuses calls after close() with ClosedError; close() is idempotent', async () => {
    const s = await server();
    const p = pool(s.url);
    expect(await p.call(text('/ok'))).toBe('ok');
    const closing = p.close();
    expect(p.close()).toBe(closing);
    await closing;
    expect(await rejectionOf(p.call(text('/ok')))).toBeInstanceOf(ClosedError);

    const r = registry();
    const q = r.get(s.url);
    const slow = q.call(text('/slow?ms=100'));
    await until(() => s.active === 1, 5000, 'the call to arrive');
    await r.close(); // waits for the call in flight
    expect(await slow).toBe('slow');
    expect(await rejectionOf(q.call(text('/ok')))).toBeInstanceOf(ClosedError);
    expect(() => r.get(s.url)).toThrow(ClosedError);
  });

  it('refuses invalid options with a ConfigError naming the field', () => {
    expect(configErrorFields(() => new HttpPool('http://127.0.0.1:1', { maxConnectionsPerHost: 0 }))).toEqual(
      ['HttpPool.maxConnectionsPerHost'],
    );
    expect(
      configErrorFields(() => new HttpPool('http://127.0.0.1:1', { maxConnectionsPerHost: 1.5 })),
    ).toEqual(['HttpPool.maxConnectionsPerHost']);
    expect(configErrorFields(() => new HttpPool('http://127.0.0.1:1', { connectTimeoutMs: 0 }))).toEqual([
      'HttpPool.connectTimeoutMs',
    ]);
    expect(
      configErrorFields(
        () =>
          new HttpPool('http://127.0.0.1:1', {
            headersTimeoutMs: -1,
            bodyTimeoutMs: Number.NaN,
            keepAliveTimeoutMs: -5,
            keepAliveMaxTimeoutMs: -1,
          }),
      ),
    ).toEqual([
      'HttpPool.headersTimeoutMs',
      'HttpPool.bodyTimeoutMs',
      'HttpPool.keepAliveTimeoutMs',
      'HttpPool.keepAliveMaxTimeoutMs',
    ]);
    expect(configErrorFields(() => new HttpPoolRegistry({ maxConnections: 0 }))).toEqual([
      'HttpPoolRegistry.maxConnections',
    ]);
    expect(
      configErrorFields(() =>
        new HttpPoolRegistry({ defaults: { maxConnectionsPerHost: -1 } }).get('http://h:1'),
      ),
    ).toEqual(['HttpPool.maxConnectionsPerHost']);
    expect(configErrorFields(() => new HttpPool('ftp://h/x'))).toEqual(['url']);
    expect(configErrorFields(() => originOf('not a url'))).toEqual(['url']);
    expect(originOf('HTTP://Example.COM:80/a?b')).toBe('http://example.com');
  });

  it('getHttpPool gives the process-wide pool of an origin', async () => {
    const s = await server();
    const p = getHttpPool(`${s.url}/a`);
    expect(getHttpPool(`${s.url}/b`)).toBe(p);
    expect(getHttpPool('http://127.0.0.3:1')).not.toBe(p);
    expect(await p.call(text('/ok'))).toBe('ok');
    await p.close();
    await getHttpPool('http://127.0.0.3:1').close();
  });
});

/**
 * callText runs the exchange through undici's dispatcher with its own handler, not through call(): the same
 * contract (deadline, abort, slots, typed errors, metrics), checked here on the same servers.
 */
describe('HttpPool.callText (the whole body as text, no response stream)', () => {
  const servers: TestServer[] = [];
  const closers: Array<{ close(): Promise<void> }> = [];
  const server = async () => {
    const s = await startServer();
    servers.push(s);
    return s;
  };
  const registry = (opts?: ConstructorParameters<typeof HttpPoolRegistry>[0]) => {
    const r = new HttpPoolRegistry(opts);
    closers.push(r);
    return r;
  };
  const pool = (url: string, opts?: ConstructorParameters<typeof HttpPool>[1]) => {
    const p = new HttpPool(url, opts);
    closers.push(p);
    return p;
  };
  const call = (path: string, extra: Partial<HttpTextCall> = {}): HttpTextCall => ({
    provider: 'fake',
    method: 'GET',
    path,
    timeoutMs: 10_000,
    onHttpError: (status, headers, bodyText) =>
      httpStatusError('fake', path.split('?')[0]!, status, headers['retry-after'], bodyText),
    ...extra,
  });
  afterEach(async () => {
    await Promise.all(closers.splice(0).map((c) => c.close()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('answers the body as UTF-8 text (whole characters across chunks, no byte order mark), POST bodies sent', async () => {
    const s = await server();
    const p = pool(s.url);
    expect(await p.callText(call('/ok'))).toBe('ok');
    // A call made as the first one settles can find the new connection not yet free again and open a second
    // one; from then on, sequential calls reuse what is open.
    expect(await p.callText(call('/ok'))).toBe('ok');
    const opened = s.sockets.size;
    expect(opened).toBeLessThanOrEqual(2);
    expect(await p.callText(call('/chunks'))).toBe('é'.repeat(3000));
    expect(await p.callText(call('/bom'))).toBe('{"a":"é"}');
    // The same as call() with undici's body.text().
    expect(await p.call({ ...call('/bom'), read: (res) => res.body.text() })).toBe('{"a":"é"}');
    const posted = await p.callText(
      call('/json', { method: 'POST', body: '{"x":1}', headers: { 'content-type': 'application/json' } }),
    );
    expect(JSON.parse(posted)).toEqual({ a: 1, path: '/json' });
    expect(s.sockets.size).toBe(opened); // kept alive and reused
    expect(p.metrics()).toMatchObject({ requests: 6, httpErrors: 0, errors: 0, inFlight: 0, queued: 0 });
    expect(p.metrics().latency.count).toBe(6);
  });

  it("throws onHttpError's error for status >= 400 with the headers and at most 64 KiB of the body", async () => {
    const s = await server();
    const p = pool(s.url);
    const seen: Array<{ status: number; retryAfter: unknown; body: string }> = [];
    const mine = new Error('mapped');
    const mapped = (path: string) =>
      p.callText(
        call(path, {
          onHttpError: (status, headers, bodyText) => {
            seen.push({ status, retryAfter: headers['retry-after'], body: bodyText });
            return mine;
          },
        }),
      );
    expect(await rejectionOf(mapped('/status/503'))).toBe(mine);
    expect(await rejectionOf(mapped('/big-error'))).toBe(mine);
    expect(seen.map((x) => [x.status, x.retryAfter, x.body.length, x.body.slice(0, 7)])).toEqual([
      [503, '3', 7, 'said no'],
      [500, undefined, 64 * 1024, 'xxxxxxx'],
    ]);
    const err = await rejectionOf(p.callText(call('/status/429')));
    expect(err).toMatchObject({ kind: 'http', status: 429, retryable: true, retryAfterMs: 3000 });
    const missing = await rejectionOf(
      p.callText(call('/status/404', { onHttpError: () => new ModelNotFoundError('fake', 'nope:7b') })),
    );
    expect(missing).toBeInstanceOf(ModelNotFoundError);
    // An onHttpError that throws rejects the call with what it threw.
    const thrown = new Error('mapper broke');
    const broke = await rejectionOf(
      p.callText(
        call('/status/400', {
          onHttpError: () => {
            throw thrown;
          },
        }),
      ),
    );
    expect(broke).toBe(thrown);
    // As with call(): the broken mapping counts as a failure too (errors), the answer as an HTTP error.
    expect(p.metrics()).toMatchObject({ requests: 5, httpErrors: 5, errors: 1, inFlight: 0 });
    expect(await p.callText(call('/ok'))).toBe('ok');
  });

  it('rejects with a ProviderError of kind "timeout" after timeoutMs, waiting for headers or for the body', async () => {
    const s = await server();
    const p = pool(s.url);
    const t0 = performance.now();
    const err = await rejectionOf(p.callText(call('/slow?ms=5000', { timeoutMs: 200 })));
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ kind: 'timeout', retryable: true, provider: 'fake', status: undefined });
    expect((err as Error).message).toMatch(/\/slow\?ms=5000: timed out after 200 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(195);
    expect(elapsed).toBeLessThan(2000);
    expect(await rejectionOf(p.callText(call('/slow-body?ms=5000', { timeoutMs: 200 })))).toMatchObject({
      kind: 'timeout',
    });
    expect(p.metrics()).toMatchObject({ errors: 2, inFlight: 0, requests: 2 });
    expect(p.metrics().latency.count).toBe(1); // the body's headers came; the first call's never did
    await until(() => s.active === 0, 5000, 'the cut calls to close on the server');
    expect(await p.callText(call('/ok'))).toBe('ok');
  });

  it('counts the wait for a registry slot in the deadline, and gives the slot back', async () => {
    const s = await server();
    const r = registry({ maxConnections: 1 });
    const hog = r.get(s.url).callText(call('/slow?ms=1000'));
    await until(() => s.active === 1, 5000, 'the first call to arrive');
    const waiting = r.get(s.url).callText(call('/ok', { timeoutMs: 100 }));
    await until(() => r.get(s.url).metrics().queued === 1, 5000, 'the second call to wait for the slot');
    expect(await rejectionOf(waiting)).toMatchObject({ kind: 'timeout' });
    expect(r.get(s.url).metrics().queued).toBe(0);
    expect(await hog).toBe('slow');
    expect(s.requests).toBe(1); // the timed-out call was never sent
    // The only slot is free again: calls run one after another.
    expect(
      await Promise.all([r.get(s.url).callText(call('/ok')), r.get(s.url).callText(call('/ok'))]),
    ).toEqual(['ok', 'ok']);
  });

  it('rejects with a ProviderError of kind "connection" when the server is unreachable', async () => {
    const port = await freePort();
    const p = pool(`http://127.0.0.1:${port}`, { connectTimeoutMs: 2000 });
    const err = await rejectionOf(p.callText(call('/api/generate?secret=1')));
    expect(err).toBeInstanceOf(ProviderError);
    const pe = err as ProviderError;
    expect(pe).toMatchObject({ kind: 'connection', retryable: true, provider: 'fake' });
    expect(pe.message).toMatch(/\/api\/generate: connection failed \(ECONNREFUSED\)/);
    expect(pe.message).not.toMatch(/secret/);
    expect(p.metrics()).toMatchObject({ requests: 1, errors: 1, httpErrors: 0, inFlight: 0 });
  });

  it('rejects with the abort reason (before, while waiting for a slot, for the answer, while reading)', async () => {
    const s = await server();
    const r = registry({ maxConnections: 1 });
    const p = r.get(s.url);
    const reason = new Error('job cancelled');

    const already = new AbortController();
    already.abort(reason);
    await expect(p.callText(call('/ok', { signal: already.signal }))).rejects.toBe(reason);
    expect(s.requests).toBe(0);

    const ac = new AbortController();
    const pending = p.callText(call('/slow?ms=5000', { signal: ac.signal }));
    await until(() => s.active === 1, 5000, 'the call to arrive');
    const ac2 = new AbortController();
    const queued = p.callText(call('/ok', { signal: ac2.signal }));
    await until(() => p.metrics().queued === 1, 5000, 'the queued call');
    ac2.abort(reason);
    await expect(queued).rejects.toBe(reason);
    ac.abort(reason);
    await expect(pending).rejects.toBe(reason);
    await until(() => s.active === 0, 5000, 'the aborted call to close on the server');

    const ac3 = new AbortController();
    const reading = p.callText(call('/slow-body?ms=5000', { signal: ac3.signal }));
    await until(() => s.active === 1, 5000, 'the body to start');
    ac3.abort(reason);
    await expect(reading).rejects.toBe(reason);

    expect(p.metrics()).toMatchObject({ inFlight: 0, queued: 0, errors: 0 });
    expect(await p.callText(call('/ok'))).toBe('ok'); // the slot was given back
  });

  it('a call cut while undici still queues it for a connection settles at once and is never sent', async () => {
    const s = await server();
    const p = pool(s.url, { maxConnectionsPerHost: 1 });
    const hog = p.callText(call('/slow?ms=600'));
    await until(() => s.active === 1, 5000, 'the first call to arrive');
    const t0 = performance.now();
    const err = await rejectionOf(p.callText(call('/ok', { timeoutMs: 100 })));
    expect(err).toMatchObject({ kind: 'timeout' });
    expect(performance.now() - t0).toBeLessThan(500); // not when the connection frees at ~600 ms
    expect(p.metrics().inFlight).toBe(1);
    expect(await hog).toBe('slow');
    expect(await p.callText(call('/ok'))).toBe('ok');
    expect(s.requests).toBe(2); // the cut call never reached the server
  });

  it("parses the answer with `parse`; what it throws rejects the call and counts as call()'s read does", async () => {
    const s = await server();
    const p = pool(s.url);
    const json = (path: string) =>
      p.callText({
        ...call(path),
        parse: (text) => parseJsonText('fake', path, text) as Record<string, unknown>,
      });
    expect(await json('/json')).toEqual({ a: 1, path: '/json' });
    const err = await rejectionOf(json('/text'));
    expect(err).toMatchObject({ kind: 'protocol', retryable: false, provider: 'fake' });
    expect((err as Error).message).toMatch(/\/text: answer is not JSON: <html>not json<\/html>/);
    // The same counts as call() with readJson.
    const q = pool(s.url);
    await rejectionOf(q.call({ ...call('/text'), read: (res) => readJson('fake', '/text', res) }));
    expect(p.metrics()).toMatchObject({ requests: 2, errors: 1, httpErrors: 0, inFlight: 0 });
    expect(q.metrics()).toMatchObject({ requests: 1, errors: 1, httpErrors: 0, inFlight: 0 });
  });

  it('refuses calls after close() with ClosedError', async () => {
    const s = await server();
    const p = pool(s.url);
    expect(await p.callText(call('/ok'))).toBe('ok');
    await p.close();
    expect(await rejectionOf(p.callText(call('/ok')))).toBeInstanceOf(ClosedError);
  });
});

/**
 * callChunks hands a successful body to onChunk as it arrives, through the same dispatcher handler as
 * callText (which is built on it): what is special to it is checked here.
 */
describe('HttpPool.callChunks (the body chunk by chunk as it arrives, no response stream)', () => {
  const servers: TestServer[] = [];
  const pools: HttpPool[] = [];
  const pool = async () => {
    const s = await startServer();
    servers.push(s);
    const p = new HttpPool(s.url);
    pools.push(p);
    return { s, p };
  };
  const call = (path: string, extra: Partial<HttpTextCall> = {}) => ({
    provider: 'fake',
    method: 'GET' as const,
    path,
    timeoutMs: 10_000,
    onHttpError: (status: number, headers: Record<string, unknown>, bodyText: string) =>
      httpStatusError('fake', path.split('?')[0]!, status, headers['retry-after'] as string, bodyText),
    ...extra,
  });
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('hands on every chunk in order, then makes the result with onEnd', async () => {
    const { p } = await pool();
    const got: Buffer[] = [];
    const events: string[] = [];
    const result = await p.callChunks({
      ...call('/chunks'),
      onChunk: (c) => {
        got.push(c);
        events.push('chunk');
      },
      onEnd: () => {
        events.push('end');
        return Buffer.concat(got).toString('utf8');
      },
    });
    expect(result).toBe('é'.repeat(3000));
    expect(events.at(-1)).toBe('end');
    expect(events.filter((e) => e === 'end')).toHaveLength(1);
    expect(p.metrics()).toMatchObject({ requests: 1, errors: 0, inFlight: 0 });
  });

  it('hands a chunk on before the body ends; after an abort no chunk is handed on', async () => {
    const { s, p } = await pool();
    const ac = new AbortController();
    const reason = new Error('job cancelled');
    const got: string[] = [];
    let first: () => void = () => undefined;
    const firstSeen = new Promise<void>((r) => (first = r));
    const reading = p.callChunks({
      ...call('/slow-body?ms=5000'),
      signal: ac.signal,
      onChunk: (c) => {
        got.push(c.toString());
        first();
      },
      onEnd: () => got.join(''),
    });
    await firstSeen;
    expect(got).toEqual(['first ']);
    ac.abort(reason);
    await expect(reading).rejects.toBe(reason);
    await until(() => s.active === 0, 5000, 'the aborted call to close on the server');
    expect(got).toEqual(['first ']);
    expect(p.metrics()).toMatchObject({ inFlight: 0, errors: 0 });
  });

  it('what onChunk or onEnd throws rejects the call; the connection is dropped when the body was not over', async () => {
    const { s, p } = await pool();
    const refused = new Error('not a line');
    const calls: string[] = [];
    const cut = p.callChunks({
      ...call('/slow-body?ms=5000'),
      onChunk: (c) => {
        calls.push(c.toString());
        throw refused;
      },
      onEnd: () => 'never',
    });
    expect(await rejectionOf(cut)).toBe(refused);
    // The rest of the body (5 s away) is not waited for: the socket is closed.
    await until(() => s.active === 0, 3000, 'the refused call to close on the server');
    expect(calls).toEqual(['first ']);
    const late = new Error('no final line');
    expect(
      await rejectionOf(
        p.callChunks({
          ...call('/ok'),
          onChunk: () => undefined,
          onEnd: () => {
            throw late;
          },
        }),
      ),
    ).toBe(late);
    expect(p.metrics()).toMatchObject({ requests: 2, errors: 2, inFlight: 0 });
    expect(await p.callText(call('/ok'))).toBe('ok');
  });

  it("onHeaders sees a successful answer's headers before its first chunk; what it throws rejects the call", async () => {
    const { s, p } = await pool();
    const seen: string[] = [];
    const result = await p.callChunks({
      ...call('/json'),
      onHeaders: (h) => seen.push(`headers ${String(h['content-type'])}`),
      onChunk: (c) => seen.push(`chunk ${c.length}`),
      onEnd: () => seen.length,
    });
    expect(seen[0]).toBe('headers application/json');
    expect(seen.length).toBeGreaterThan(1);
    expect(result).toBe(seen.length);
    const refused = new Error('not an event stream');
    let chunks = 0;
    const cut = p.callChunks({
      ...call('/slow-body?ms=5000'),
      onHeaders: () => {
        throw refused;
      },
      onChunk: () => chunks++,
      onEnd: () => 'never',
    });
    expect(await rejectionOf(cut)).toBe(refused);
    await until(() => s.active === 0, 3000, 'the refused call to close on the server');
    expect(chunks).toBe(0);
  });

  it('an error answer goes to onHttpError, never to onChunk', async () => {
    const { p } = await pool();
    let chunks = 0;
    const err = await rejectionOf(
      p.callChunks({ ...call('/status/429'), onChunk: () => chunks++, onEnd: () => 'never' }),
    );
    expect(err).toMatchObject({ kind: 'http', status: 429, retryAfterMs: 3000 });
    expect(chunks).toBe(0);
  });
});
