import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisAnswers } from '../../shared/redis/embedded-redis';
import { spawnCell0, type Cell0Process } from '../helpers/cli';
import { freePort } from '../helpers/redis-server';
import { parseSamples, series } from '../helpers/prom';

describe('cell0 start (all in one, first run)', () => {
  let dataDir: string;
  let proc: Cell0Process | undefined;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'cell0-start-'));
  });
  let startedRedisPort: number | undefined;
  afterEach(async () => {
    proc?.kill('SIGKILL');
    // A test that failed before its SIGTERM leaves the private redis-server of the killed `cell0 start`
    // running: stop it, so it does not outlive the test run.
    if (startedRedisPort !== undefined && (await redisAnswers(`redis://127.0.0.1:${startedRedisPort}`, 300)))
      spawnSync('redis-cli', ['-p', String(startedRedisPort), 'shutdown', 'nosave']);
    startedRedisPort = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('starts a private Redis when none answers, serves an inference over HTTP, and stops it all on SIGTERM', async () => {
    const redisPort = await freePort();
    startedRedisPort = redisPort;
    proc = spawnCell0(['start'], {
      CELL0_REDIS_PORT: String(redisPort),
      CELL0_PORT: '0',
      CELL0_SIM_PORT: '0',
      CELL0_DATA_DIR: dataDir,
    });
    const [, apiUrl] = await proc.waitFor(/api\s+(http:\/\/\S+)/, 30_000);
    const [, simUrl] = await proc.waitFor(/simulator\s+(http:\/\/\S+)/);
    expect(proc.stderr()).toMatch(
      new RegExp(`redis\\s+redis://127\\.0\\.0\\.1:${redisPort}\\s+\\(private redis-server`),
    );
    expect(proc.stderr()).toMatch(/dashboard\s+http:\/\/\S+\/admin\/queues/);
    expect(existsSync(join(dataDir, 'redis'))).toBe(true);

    const res = await fetch(`${apiUrl}/v1/inference`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'qwen2.5:7b', prompt: 'What is the capital of France?' }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { jobId: string; result: { text: string } };
    expect(body.result.text).toMatch(/^\[simulated qwen2\.5:7b\]/);
    const stats = (await (await fetch(`${simUrl}/_sim/stats`)).json()) as {
      requests: { byEndpoint: Record<string, number> };
      loads: number;
    };
    // One generation, after the worker's model manager preloaded the model (a generate request that names
    // only the model) and read its size (/api/tags) and resident size (/api/ps).
    expect(stats.requests.byEndpoint['/api/generate']).toBe(2);
    expect(stats.loads).toBe(1);
    expect((await fetch(`${apiUrl}/admin/queues`)).status).toBe(200);

    // One registry for the whole process, on the API port: the worker's job, the API's request, the queues.
    const metrics = parseSamples(await (await fetch(`${apiUrl}/metrics`)).text());
    expect(metrics.get(series('cell0_jobs_completed_total', { queue: 'inference' }))).toBe(1);
    expect(metrics.get(series('cell0_jobs_added_total', { queue: 'inference' }))).toBe(1);
    expect(
      metrics.get(
        series('cell0_http_requests_total', { route: '/v1/inference', method: 'POST', status: '200' }),
      ),
    ).toBe(1);
    expect(metrics.get(series('bullmq_job_count', { queue: 'inference', state: 'completed' }))).toBe(1);

    proc.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(await redisAnswers(`redis://127.0.0.1:${redisPort}`, 300)).toBe(false);
  }, 150_000);

  it('says how to get Redis when none answers and there is no redis-server', async () => {
    const redisPort = await freePort();
    proc = spawnCell0(['start'], {
      PATH: '/nonexistent',
      CELL0_REDIS_PORT: String(redisPort),
      CELL0_PORT: '0',
      CELL0_DATA_DIR: dataDir,
    });
    expect(await proc.exited).toBe(1);
    expect(proc.stderr()).toMatch(/no redis-server on PATH/);
    expect(proc.stderr()).toMatch(/apt-get install redis-server/);
    expect(proc.stderr()).toMatch(/brew install redis/);
    expect(proc.stderr()).toMatch(/docker compose up -d redis/);
  }, 90_000);

  it('does not start a private Redis when REDIS_URL is given but unreachable', async () => {
    const redisPort = await freePort();
    proc = spawnCell0(['start'], {
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      CELL0_PORT: '0',
      CELL0_DATA_DIR: dataDir,
    });
    expect(await proc.exited).toBe(1);
    expect(proc.stderr()).toMatch(/does not answer \(REDIS_URL is set/);
  }, 90_000);

  it('exits 2 naming the variable when the configuration is invalid', async () => {
    proc = spawnCell0(['api'], { CELL0_PORT: 'eighty', CELL0_INFERENCE_CONCURRENCY: '0' });
    expect(await proc.exited).toBe(2);
    expect(proc.stderr()).toMatch(/CELL0_PORT: expected an integer between 0 and 65535, got "eighty"/);
    expect(proc.stderr()).toMatch(/CELL0_INFERENCE_CONCURRENCY: expected an integer >= 1/);
  }, 90_000);

  it('prints help for every command', async () => {
    const cmds = ['start', 'api', 'worker', 'dashboard', 'simulator'];
    const procs = cmds.map((cmd) => spawnCell0([cmd, '--help'], {}));
    const codes = await Promise.all(procs.map((p) => p.exited));
    expect(codes).toEqual(cmds.map(() => 0));
    cmds.forEach((cmd, i) => expect(procs[i]!.stdout()).toMatch(new RegExp(`Usage: cell0 ${cmd}`)));
  }, 150_000);
});
