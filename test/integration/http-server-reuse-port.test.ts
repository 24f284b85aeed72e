import { request } from 'undici';
import { HttpServer } from '../../shared/http-server';

describe('HttpServer reusePort', () => {
  const servers: HttpServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  const make = (name: string, port: number, reusePort: boolean) => {
    const s = new HttpServer((_req, res) => res.end(name), { host: '127.0.0.1', port, reusePort });
    servers.push(s);
    return s;
  };

  it('lets two servers share a port with reusePort, and both answer on it', async () => {
    const { port, url } = await make('a', 0, true).start();
    await make('b', port, true).start();
    // The kernel spreads new connections over both listeners; fresh connections reach each sooner or later.
    const seen = new Set<string>();
    for (let i = 0; i < 200 && seen.size < 2; i++) {
      const res = await request(url, { headers: { connection: 'close' }, reset: true });
      seen.add(await res.body.text());
    }
    expect([...seen].sort()).toEqual(['a', 'b']);
  });

  it('refuses a second server on a taken port without it', async () => {
    const { port } = await make('a', 0, false).start();
    await expect(make('b', port, false).start()).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});
