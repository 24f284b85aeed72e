import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import express, { type ErrorRequestHandler } from 'express';
import { jsonBody } from '../../producers/api/json-body';
import { sendJson } from '../../producers/api/routes/util';

const LIMIT = 256;

/**
 * One app with the same route twice: behind express.json (as the routes had it) and behind jsonBody. Each
 * answers what it read (or the reader's error: status, type, message), so the two can be compared.
 */
async function serve() {
  const app = express();
  app.set('etag', false);
  const echo: express.RequestHandler = (req, res) => {
    res.json({ body: req.body as unknown, hasBody: 'body' in req });
  };
  app.post('/full', express.json({ limit: LIMIT, strict: true, type: () => true }), echo);
  app.post('/lean', jsonBody(LIMIT), echo);
  // The same reader behind a step that waits until the whole body has arrived (as a request handed to its
  // route a turn later usually has), with a fallback that counts the requests it was given.
  const counted = { fallbacks: 0, completeBeforeRead: 0 };
  const full = express.json({ limit: LIMIT, strict: true, type: () => true });
  const untilComplete: express.RequestHandler = (req, _res, next) => {
    const check = (): void => {
      if (!req.complete) return void setImmediate(check);
      counted.completeBeforeRead++;
      next();
    };
    check();
  };
  const countingFallback: express.RequestHandler = (req, res, next) => {
    counted.fallbacks++;
    full(req, res, next);
  };
  app.post('/lean-late', untilComplete, jsonBody(LIMIT, countingFallback), echo);
  app.post('/express-answer', (req, res) => {
    res.status(202).json({ jobId: 'j1', text: 'ünïcödé ✓', n: [1, 2.5, null] });
  });
  app.post('/send-json', (req, res) => {
    sendJson(req, res, 202, { jobId: 'j1', text: 'ünïcödé ✓', n: [1, 2.5, null] });
  });
  const onError: ErrorRequestHandler = (err, _req, res, _next) => {
    const e = err as { status?: number; type?: string; message?: string };
    res.status(e.status ?? 500).json({ type: e.type, message: e.message });
  };
  app.use(onError);
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return { port, counted, close: () => new Promise((r) => server.close(r)) };
}

interface Answer {
  status: number;
  contentType: string | undefined;
  length: string | undefined;
  text: string;
}

function post(port: number, path: string, headers: Record<string, string>, body: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          contentType: res.headers['content-type'],
          length: res.headers['content-length'],
          text: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A raw request (for bodies that do not match their Content-Length); resolves with the status line's code. */
async function raw(port: number, path: string, head: string, body: string): Promise<Answer> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${head}\r\n${body}`);
  socket.end();
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await once(socket, 'close');
  const text = Buffer.concat(chunks).toString('utf8');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  return {
    status,
    contentType: undefined,
    length: undefined,
    text: text.slice(text.indexOf('\r\n\r\n') + 4),
  };
}

const JSON_TYPE = { 'content-type': 'application/json' };

describe('jsonBody', () => {
  let s: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    s = await serve();
  });
  afterAll(async () => {
    await s.close();
  });

  const cases: [string, Record<string, string>, Buffer][] = [
    ['an object', JSON_TYPE, Buffer.from('{"model":"m","prompt":"héllo ✓","params":{"max_tokens":8}}')],
    ['an array', JSON_TYPE, Buffer.from('[1,2,3]')],
    ['leading whitespace', JSON_TYPE, Buffer.from(' \n\t {"a":1}')],
    ['a byte-order mark', JSON_TYPE, Buffer.from('\ufeff{"a":1}')],
    ['a string at the top (strict)', JSON_TYPE, Buffer.from('"text"')],
    ['a number after whitespace (strict)', JSON_TYPE, Buffer.from('  42')],
    ['only whitespace', JSON_TYPE, Buffer.from('   ')],
    ['malformed JSON', JSON_TYPE, Buffer.from('{"a":1,}')],
    ['truncated JSON', JSON_TYPE, Buffer.from('{"a":')],
    ['invalid UTF-8', JSON_TYPE, Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
    ['an empty body', JSON_TYPE, Buffer.alloc(0)],
    ['a body over the limit', JSON_TYPE, Buffer.from(`{"a":"${'x'.repeat(LIMIT)}"}`)],
    ['a body at the limit', JSON_TYPE, Buffer.from(`{"a":"${'x'.repeat(LIMIT - 8)}"}`)],
    ['charset=utf-8', { 'content-type': 'application/json; charset=UTF-8' }, Buffer.from('{"a":"é"}')],
    ['charset=latin1', { 'content-type': 'application/json; charset=latin1' }, Buffer.from('{"a":1}')],
    [
      'charset=utf-16le',
      { 'content-type': 'application/json; charset=utf-16le' },
      Buffer.from('{"a":1}', 'utf16le'),
    ],
    ['gzip', { ...JSON_TYPE, 'content-encoding': 'gzip' }, gzipSync(Buffer.from('{"a":"zipped"}'))],
    ['an unknown encoding', { ...JSON_TYPE, 'content-encoding': 'snappy' }, Buffer.from('{"a":1}')],
    ['chunked', { ...JSON_TYPE, 'transfer-encoding': 'chunked' }, Buffer.from('{"a":"chunked"}')],
    ['no content type', {}, Buffer.from('{"a":1}')],
  ];

  it.each(cases)('answers %s exactly as express.json', async (_name, headers, body) => {
    const h = headers['transfer-encoding'] ? headers : { ...headers, 'content-length': String(body.length) };
    const full = await post(s.port, '/full', h, body);
    const lean = await post(s.port, '/lean', h, body);
    expect(lean).toEqual(full);
  });

  it('takes the lean path for the usual body and parses what express.json parses', async () => {
    const body = Buffer.from('{"model":"m","prompt":"p","params":{"max_tokens":8}}');
    const lean = await post(s.port, '/lean', { ...JSON_TYPE, 'content-length': String(body.length) }, body);
    expect(lean.status).toBe(200);
    expect(JSON.parse(lean.text)).toEqual({
      body: { model: 'm', prompt: 'p', params: { max_tokens: 8 } },
      hasBody: true,
    });
  });

  it('reads a body that arrived whole before the reader ran on the lean path, as express.json would', async () => {
    const before = { ...s.counted };
    const body = Buffer.from('{"model":"m","prompt":"p","params":{"max_tokens":8}}');
    const h = { ...JSON_TYPE, 'content-length': String(body.length) };
    const late = await post(s.port, '/lean-late', h, body);
    expect(late).toEqual(await post(s.port, '/full', h, body));
    expect(s.counted.completeBeforeRead).toBe(before.completeBeforeRead + 1);
    expect(s.counted.fallbacks).toBe(before.fallbacks);
    // What the lean path does not take still goes to the fallback.
    const gz = gzipSync(Buffer.from('{"a":"zipped"}'));
    const gh = { ...JSON_TYPE, 'content-encoding': 'gzip', 'content-length': String(gz.length) };
    expect(await post(s.port, '/lean-late', gh, gz)).toEqual(await post(s.port, '/full', gh, gz));
    expect(s.counted.fallbacks).toBe(before.fallbacks + 1);
  });

  it('refuses a body shorter than its Content-Length as express.json does', async () => {
    // The server sees the end of the request (the client closed) before the declared length.
    const full = await raw(
      s.port,
      '/full',
      'Content-Type: application/json\r\nContent-Length: 20\r\n',
      '{"a":1}',
    );
    const lean = await raw(
      s.port,
      '/lean',
      'Content-Type: application/json\r\nContent-Length: 20\r\n',
      '{"a":1}',
    );
    expect(lean.status).toBe(full.status);
    expect(lean.text).toBe(full.text);
  });
});

describe('sendJson', () => {
  let s: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    s = await serve();
  });
  afterAll(async () => {
    await s.close();
  });

  it("answers a POST with the status, headers and bytes of express's res.status().json()", async () => {
    const viaExpress = await post(s.port, '/express-answer', {}, Buffer.alloc(0));
    const direct = await post(s.port, '/send-json', {}, Buffer.alloc(0));
    expect(direct).toEqual(viaExpress);
    expect(direct).toMatchObject({ status: 202, contentType: 'application/json; charset=utf-8' });
    expect(Number(direct.length)).toBe(Buffer.byteLength(direct.text));
  });
});
