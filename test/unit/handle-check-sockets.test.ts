import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { socketsLeft } from '../helpers/handle-check-environment';

/** The process's handles now, as the environment records them before a test file. */
function handlesNow(): Set<object> {
  return new Set((process as unknown as { _getActiveHandles(): object[] })._getActiveHandles());
}

/**
 * The test environment checks the sockets a test file opened one by one, not only by type counts (which a
 * socket of jest's closing during the file can balance). Checked with a server and a client of this file.
 */
describe('the handle check’s sockets left', () => {
  let server: Server;
  let accepted: Socket[];

  beforeEach(async () => {
    accepted = [];
    server = createServer((s) => accepted.push(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });

  afterEach(async () => {
    for (const s of accepted) s.destroy();
    await new Promise((r) => server.close(r));
  });

  async function client(): Promise<Socket> {
    const addr = server.address() as { port: number };
    const c = connect(addr.port, '127.0.0.1');
    await once(c, 'connect');
    while (accepted.length === 0) await new Promise((r) => setImmediate(r));
    return c;
  }

  it('counts a connection opened since, on both ends, and not the ones open before', async () => {
    const before = handlesNow();
    const c = await client();
    expect(socketsLeft(before).get('TCPWrap')).toBe(2);
    expect(socketsLeft(handlesNow()).size).toBe(0);
    c.destroy();
    accepted[0]!.destroy();
    expect(socketsLeft(before).size).toBe(0);
  });

  it('does not count an unref()’d socket, and counts it again once ref()’d', async () => {
    const before = handlesNow();
    const c = await client();
    c.unref();
    accepted[0]!.unref();
    expect(socketsLeft(before).size).toBe(0);
    c.ref();
    expect(socketsLeft(before).get('TCPWrap')).toBe(1);
    c.destroy();
  });
});
