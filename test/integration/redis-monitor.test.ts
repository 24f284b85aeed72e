/*
 * The tests' MONITOR helper (test/helpers/redis-monitor.ts): the lines that come in the same read as
 * MONITOR's +OK are monitor lines (ioredis's monitor() failed on them on a busy Redis), and arguments come
 * back unescaped, byte for byte.
 */
import { createServer, type Server, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { closeRedis } from '../../shared/redis/connection';
import { monitorRedis, parseMonitorLine, type MonitoredCommand } from '../helpers/redis-monitor';
import { testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';
import { until } from '../helpers/wait';

describe('monitorRedis', () => {
  it('takes the lines of the read that carries the +OK as monitor lines', async () => {
    // A server that answers MONITOR with its +OK and two monitor lines in one write, as a busy Redis does.
    const server: Server = createServer((s) => {
      s.once('data', () =>
        s.write(
          '+OK\r\n+1796487534.928117 [0 127.0.0.1:33298] "info"\r\n+1796487534.93 [0 lua] "get" "k"\r\n',
        ),
      );
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const seen: MonitoredCommand[] = [];
    const monitor = await monitorRedis(`redis://127.0.0.1:${(server.address() as AddressInfo).port}`, (c) =>
      seen.push(c),
    );
    await until(async () => seen.length === 2, 10_000, 'two monitor lines');
    expect(seen).toEqual([
      { args: ['info'], source: '127.0.0.1:33298', db: '0' },
      { args: ['get', 'k'], source: 'lua', db: '0' },
    ]);
    await monitor.close();
    server.close();
    await once(server, 'close');
  });

  it('rejects when the server answers MONITOR with an error', async () => {
    const server = createServer((s) => s.once('data', () => s.write('-ERR no monitor here\r\n')));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    await expect(
      monitorRedis(`redis://127.0.0.1:${(server.address() as AddressInfo).port}`, () => undefined),
    ).rejects.toThrow('answered -ERR no monitor here');
    server.close();
    await once(server, 'close');
  });

  it("gives a real Redis's commands back with their arguments unescaped", async () => {
    const conn = testRedisConnection('test:redis-monitor');
    const key = `${uniquePrefix('mon')}:k`;
    const value = 'a "quoted" \\ back\nslash\r\t\x07\b \x01\x7f é ✓';
    const sets: string[][] = [];
    const monitor = await monitorRedis(testRedisUrl(), ({ args }) => {
      if (args[0]?.toLowerCase() === 'set' && args[1] === key) sets.push(args);
    });
    await conn.set(key, value);
    await until(async () => sets.length === 1, 10_000, 'the SET to be monitored');
    expect(sets[0]).toEqual(['set', key, value]);
    await monitor.close();
    await conn.del(key);
    await closeRedis(conn);
  });

  it('parses the lines Redis prints', () => {
    expect(parseMonitorLine('+1.5 [3 10.0.0.1:6000] "evalsha" "ab" "1" "x\\"y"')).toEqual({
      args: ['evalsha', 'ab', '1', 'x"y'],
      source: '10.0.0.1:6000',
      db: '3',
    });
    expect(parseMonitorLine('+OK')).toBeUndefined();
  });
});
