import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCell0, type Cell0Process } from '../helpers/cli';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server';
import { until } from '../helpers/wait';

interface Line {
  level: number;
  msg: string;
  downForMs?: number;
  errorsSuppressed?: number;
}

describe('logs of `cell0 start` while its Redis is down (private redis-server, stopped and restarted)', () => {
  let redis: PrivateRedis;
  let dataDir: string;
  let proc: Cell0Process | undefined;
  beforeAll(async () => {
    redis = await startPrivateRedis();
    dataDir = mkdtempSync(join(tmpdir(), 'cell0-outage-logs-'));
  });
  afterAll(async () => {
    proc?.kill('SIGKILL');
    await redis.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('prints only JSON log lines, logs down and up once each, and a bounded number of lines however long the outage', async () => {
    proc = spawnCell0(['start'], {
      REDIS_URL: redis.url,
      CELL0_PORT: '0',
      CELL0_SIM_PORT: '0',
      CELL0_DATA_DIR: dataDir,
      CELL0_LOG_OUTAGE_SUMMARY_MS: '1000',
    });
    const p = proc;
    await p.waitFor(/dashboard\s+http:\/\/\S+\/admin\/queues/, 60_000);
    // What the CLI itself writes to stderr for people (the banner) ends here; from now on, nothing but the
    // structured log may appear until the shutdown notice.
    const bannerEnd = p.stderr().length;
    const parsed = (): Line[] =>
      p
        .stdout()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Line);
    const count = (msg: string) => parsed().filter((l) => l.msg === msg).length;

    await redis.stop();
    const downAt = Date.now();
    await until(
      () => count('Redis is unreachable; retrying in the background') === 1,
      30_000,
      'the down line',
    );
    // Several summary periods of outage: one summary line per period, never one line per error.
    await until(() => count('Redis is still unreachable') >= 4, 30_000, 'four summaries');
    await redis.start();
    await until(() => count('Redis is reachable again') === 1, 30_000, 'the up line');
    const outageMs = Date.now() - downAt;
    // Stragglers of the outage (connections reconnecting one by one) must not start a second one.
    await new Promise((r) => setTimeout(r, 3000));
    p.kill('SIGTERM');
    await p.exited;

    const lines = parsed(); // throws if any stdout line is not JSON
    expect(count('Redis is unreachable; retrying in the background')).toBe(1);
    expect(count('Redis is reachable again')).toBe(1);
    const summaries = lines.filter((l) => l.msg === 'Redis is still unreachable');
    expect(summaries.length).toBeLessThanOrEqual(Math.ceil(outageMs / 1000) + 1);
    const up = lines.find((l) => l.msg === 'Redis is reachable again')!;
    expect(up.downForMs).toBeGreaterThan(0);
    // Many errors happened, and were counted rather than printed.
    expect(up.errorsSuppressed).toBeGreaterThan(summaries.length);
    const trouble = lines.filter((l) => l.level >= 40 && /Redis|connection/i.test(l.msg));
    expect(trouble.length).toBeLessThanOrEqual(summaries.length + 3);
    // stderr: after the banner, only the CLI's shutdown notice; no stack trace, no console output.
    const after = p
      .stderr()
      .slice(bannerEnd)
      .split('\n')
      .filter(Boolean)
      .filter((l) => !/^cell0: SIGTERM received/.test(l));
    expect(after).toEqual([]);
  }, 180_000);
});
