import { type IncomingMessage, type ServerResponse } from 'node:http';
import { HttpServer } from '../../shared/http-server';
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
