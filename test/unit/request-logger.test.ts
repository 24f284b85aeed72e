import { once } from 'node:events';
import { type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import express from 'express';
import { createLogger, setHotPathLogSample } from '../../shared/logger';
import { requestLogger } from '../../producers/api/request-logger';

/** An express app behind the request logger, on a real port, with its log lines. */
async function serve(level: string) {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  const log = createLogger({ destination: sink, level });
  const app = express();
  app.use(requestLogger(log));
  app.get('/ok', (_req, res) => void res.json({ ok: true }));
  app.get('/boom', (_req, res) => void res.status(500).json({}));
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { lines, base, close: () => new Promise((r) => server.close(r)) };
}

/** Waits until `n` lines are written (the line is written on the response's finish, after the reply). */
async function linesFor(lines: unknown[], n: number): Promise<void> {
  while (lines.length < n) await new Promise((r) => setImmediate(r));
}

describe('requestLogger', () => {
  it('echoes a short X-Request-Id and logs one small line per request, at debug', async () => {
    const s = await serve('debug');
    try {
      const r = await fetch(`${s.base}/ok?secret=1`, {
        headers: { 'x-request-id': 'req-1', authorization: 'Bearer sk-123' },
      });
      expect(r.headers.get('x-request-id')).toBe('req-1');
      await linesFor(s.lines, 1);
      const line = s.lines[0]!;
      expect(line).toMatchObject({
        level: 20,
        msg: 'request',
        reqId: 'req-1',
        method: 'GET',
        path: '/ok',
        status: 200,
      });
      expect(typeof line.ms).toBe('number');
      // No request or response dump: no headers, no query string.
      expect(JSON.stringify(line)).not.toMatch(/sk-123|secret|headers/);
    } finally {
      await s.close();
    }
  });

  it('replaces a missing or over-long X-Request-Id with a UUID', async () => {
    const s = await serve('debug');
    try {
      const a = await fetch(`${s.base}/ok`);
      const b = await fetch(`${s.base}/ok`, { headers: { 'x-request-id': 'x'.repeat(129) } });
      for (const r of [a, b]) expect(r.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      expect(a.headers.get('x-request-id')).not.toBe(b.headers.get('x-request-id'));
    } finally {
      await s.close();
    }
  });

  it('at info level writes nothing for a success and always an error line for a 5xx', async () => {
    const s = await serve('info');
    try {
      await fetch(`${s.base}/ok`);
      await fetch(`${s.base}/boom`, { headers: { 'x-request-id': 'req-2' } });
      await fetch(`${s.base}/ok`);
      await fetch(`${s.base}/boom`, { headers: { 'x-request-id': 'req-3' } });
      // Lines are written in request order: had either success been logged, it would be among these.
      await linesFor(s.lines, 2);
      expect(s.lines).toHaveLength(2);
      expect(s.lines[1]).toMatchObject({ level: 50, reqId: 'req-3' });
      expect(s.lines[0]).toMatchObject({
        level: 50,
        msg: 'request failed',
        reqId: 'req-2',
        method: 'GET',
        path: '/boom',
        status: 500,
      });
    } finally {
      await s.close();
    }
  });

  it('writes a CELL0_LOG_SAMPLE fraction of success lines, every 5xx line, and only the line fields', async () => {
    const s = await serve('debug');
    setHotPathLogSample(0.5);
    try {
      for (let i = 0; i < 4; i++) await fetch(`${s.base}/ok`, { headers: { 'x-request-id': `ok-${i}` } });
      setHotPathLogSample(0);
      await fetch(`${s.base}/boom`, { headers: { 'x-request-id': 'boom' } });
      await fetch(`${s.base}/ok`, { headers: { 'x-request-id': 'ok-unsampled' } });
      await fetch(`${s.base}/boom`, { headers: { 'x-request-id': 'last' } });
      // The last 5xx line is written after the unsampled success: had that been logged, it would be here.
      await linesFor(s.lines, 4);
      expect(s.lines.map((l) => l.reqId)).toEqual(['ok-1', 'ok-3', 'boom', 'last']);
      for (const l of s.lines)
        expect(Object.keys(l).sort()).toEqual(
          ['level', 'time', 'pid', 'reqId', 'method', 'path', 'status', 'ms', 'msg'].sort(),
        );
    } finally {
      setHotPathLogSample(1);
      await s.close();
    }
  });
});
