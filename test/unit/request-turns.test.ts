import { type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { HttpServer } from '../../shared/http-server';
import { acceptedAt, arrivedAt } from '../../shared/request-timing';
import { requestTurns } from '../../shared/request-turns';

/** A request as the listener sees it (only its socket is read). */
const fakeRequest = (id: number, destroyed = false) =>
  ({ id, socket: { destroyed } }) as unknown as IncomingMessage & { id: number };
const res = {} as ServerResponse;
/** The end of the current turn's check phase: an immediate scheduled now runs after those scheduled before. */
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

describe('requestTurns', () => {
  it('starts at most perTurn requests per turn of the event loop, in arrival order', async () => {
    const started: number[] = [];
    const listener = requestTurns((req) => started.push((req as IncomingMessage & { id: number }).id), 2);
    // Ten requests arriving in one poll phase.
    for (let i = 0; i < 10; i++) listener(fakeRequest(i), res);
    expect(started).toEqual([0, 1]);
    await nextTurn();
    expect(started).toEqual([0, 1, 2, 3]);
    await nextTurn();
    expect(started).toEqual([0, 1, 2, 3, 4, 5]);
    await nextTurn();
    await nextTurn();
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // A new turn with nothing waiting: a request starts at once again.
    await nextTurn();
    listener(fakeRequest(10), res);
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('a request arriving while others wait queues behind them', async () => {
    const started: number[] = [];
    const listener = requestTurns((req) => started.push((req as IncomingMessage & { id: number }).id), 1);
    listener(fakeRequest(0), res);
    listener(fakeRequest(1), res);
    await nextTurn();
    expect(started).toEqual([0, 1]);
    // In the next poll phase: the turn's one start is used, so 2 waits, and 3 waits behind it.
    listener(fakeRequest(2), res);
    listener(fakeRequest(3), res);
    expect(started).toEqual([0, 1]);
    await nextTurn();
    expect(started).toEqual([0, 1, 2]);
    await nextTurn();
    expect(started).toEqual([0, 1, 2, 3]);
  });

  it('drops a waiting request whose connection has closed', async () => {
    const started: number[] = [];
    const listener = requestTurns((req) => started.push((req as IncomingMessage & { id: number }).id), 1);
    listener(fakeRequest(0), res);
    listener(fakeRequest(1, true), res);
    listener(fakeRequest(2), res);
    await nextTurn();
    expect(started).toEqual([0, 2]);
  });

  it('stamps each request on arrival, so that a wait for its turn can be seen', async () => {
    const startedAt = new Map<number, number>();
    const listener = requestTurns(
      (req) => startedAt.set((req as IncomingMessage & { id: number }).id, performance.now()),
      1,
    );
    const reqs = [0, 1, 2].map((i) => fakeRequest(i));
    const before = performance.now();
    for (const r of reqs) listener(r, res);
    const after = performance.now();
    await nextTurn();
    await nextTurn();
    for (const r of reqs) {
      // Stamped when it arrived (the listener's call), not when its turn came.
      expect(arrivedAt(r)).toBeGreaterThanOrEqual(before);
      expect(arrivedAt(r)).toBeLessThanOrEqual(after);
    }
    expect(startedAt.get(2)).toBeGreaterThan(after);
  });

  it('an HttpServer stamps each connection when accepted and each request when its head is parsed', async () => {
    const seen: { accepted?: number; arrived?: number; started: number }[] = [];
    const server = new HttpServer(
      (req, r) => {
        seen.push({ accepted: acceptedAt(req), arrived: arrivedAt(req), started: performance.now() });
        r.end('ok');
      },
      { host: '127.0.0.1', port: 0, requestsPerTurn: 1 },
    );
    const { url } = await server.start();
    try {
      const t0 = performance.now();
      await Promise.all(Array.from({ length: 5 }, () => fetch(url).then((x) => x.text())));
      expect(seen).toHaveLength(5);
      for (const s of seen) {
        expect(s.accepted).toBeGreaterThanOrEqual(t0);
        expect(s.arrived).toBeGreaterThanOrEqual(s.accepted!);
        expect(s.started).toBeGreaterThanOrEqual(s.arrived!);
      }
    } finally {
      await server.close();
    }
  });

  it('0 is no limit (the handler itself); a bad value is refused', () => {
    const handler = () => undefined;
    expect(requestTurns(handler, 0)).toBe(handler);
    expect(() => requestTurns(handler, -1)).toThrow(/perTurn must be an integer >= 0/);
    expect(() => requestTurns(handler, 1.5)).toThrow(TypeError);
  });

  it('an HttpServer with requestsPerTurn answers every request of a burst', async () => {
    const server = new HttpServer(
      (req, r) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => r.end(`echo ${body}`));
      },
      { host: '127.0.0.1', port: 0, requestsPerTurn: 1 },
    );
    const { url } = await server.start();
    try {
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          fetch(url, { method: 'POST', body: String(i) }).then((x) => x.text()),
        ),
      );
      expect(answers).toEqual(Array.from({ length: 50 }, (_, i) => `echo ${i}`));
    } finally {
      await server.close();
    }
  });
});
