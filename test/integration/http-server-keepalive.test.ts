import { once } from 'node:events';
import { connect } from 'node:net';
import { Agent, request } from 'undici';
import { HttpServer } from '../../shared/http-server';

/*
 * Idle keep-alive connections: the client must always be the side that gives one up. A server that closes an
 * idle connection first races a client reusing it, and the request the client just wrote fails with
 * ECONNRESET (a reverse proxy answers 502). Node's default (5 s) loses that race against any proxy or load
 * balancer keeping upstream connections for 60 s, and against a client that stalls past it.
 */
describe('HttpServer keep-alive', () => {
  const servers: HttpServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  const start = (opts: { keepAliveTimeoutMs?: number } = {}) => {
    const s = new HttpServer((_req, res) => res.end('ok'), { host: '127.0.0.1', port: 0, ...opts });
    servers.push(s);
    return s.start();
  };

  it('keeps an idle connection longer than a proxy that reuses it after 7 s, and answers on it', async () => {
    const { port } = await start();
    // A raw HTTP/1.1 client with its own idle timeout (as nginx or a load balancer has): it ignores the
    // Keep-Alive hint and reuses the connection after 7 s of idle.
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    let closedAfterMs: number | undefined;
    const t0 = Date.now();
    socket.on('data', (d: Buffer) => (received += d.toString()));
    socket.on('close', () => (closedAfterMs ??= Date.now() - t0));
    const answers = () => received.match(/HTTP\/1\.1 200 OK\r\n/g)?.length ?? 0;
    const answered = async (n: number) => {
      while (answers() < n && closedAfterMs === undefined)
        await Promise.race([once(socket, 'data'), once(socket, 'close')]);
    };
    try {
      socket.write('GET /a HTTP/1.1\r\nHost: cell0\r\n\r\n');
      await answered(1);
      // The server tells the client how long it keeps the connection: over the proxies' common 60 s.
      expect(received).toMatch(/^keep-alive: timeout=65\r\n/im);
      await new Promise((r) => setTimeout(r, 7000));
      expect({ closedAfterMs }).toEqual({ closedAfterMs: undefined });
      socket.write('GET /b HTTP/1.1\r\nHost: cell0\r\n\r\n');
      await answered(2);
      expect({ answers: answers(), closedAfterMs }).toEqual({ answers: 2, closedAfterMs: undefined });
    } finally {
      socket.destroy();
    }
  }, 30_000);

  it('answers a client in the same process whose event loop stalled past 6 s between two requests', async () => {
    // What the in-process API of the tests saw on a loaded host: after a stall, fetch reused its pooled
    // connection in the same turn of the event loop as the server's idle timer fired, and got ECONNRESET.
    const { url } = await start();
    expect(await (await fetch(url)).text()).toBe('ok');
    await new Promise((r) => setTimeout(r, 1000));
    const stallUntil = Date.now() + 6000;
    while (Date.now() < stallUntil) {
      // a stalled event loop: nothing else runs in this process, the server's timers included
    }
    expect(await (await fetch(url)).text()).toBe('ok');
  }, 30_000);

  it('takes a shorter idle timeout when one is given, and refuses a bad one', async () => {
    const { url } = await start({ keepAliveTimeoutMs: 2000 });
    const agent = new Agent();
    try {
      const r = await request(url, { dispatcher: agent });
      await r.body.dump();
      expect(r.headers['keep-alive']).toBe('timeout=2');
    } finally {
      await agent.close();
    }
    for (const bad of [0, -1, 1.5, Number.NaN])
      expect(
        () => new HttpServer(() => undefined, { host: '127.0.0.1', port: 0, keepAliveTimeoutMs: bad }),
      ).toThrow(/keepAliveTimeoutMs/);
  });
});
