import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { testRedisUrl } from '../helpers/redis';
import { until } from '../helpers/wait';
import { Batches } from '../../producers/batches/batches';
import { batchKeys, type BatchResultLine } from '../../producers/batches/batch-model';

/** Starts a batch runner in its own process and resolves once it takes jobs. */
function startRunner(prefix: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(__dirname, '..', 'helpers', 'batch-runner-process.ts')],
    {
      env: { ...process.env, REDIS_URL: testRedisUrl(), PREFIX: prefix, CONCURRENCY: '16' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`runner exited (${code}): ${err}`)));
  });
}

describe('a batch runner killed with SIGKILL mid-batch', () => {
  let fleet: TestFleet;
  let child: ChildProcess | undefined;
  let rescuer: Batches | undefined;
  beforeAll(async () => {
    // The API here creates batches but runs no item: the child process does, until it is killed.
    fleet = await startTestFleet({
      batches: { runner: false },
      sim: { ttftMs: 20, tokensPerSec: 2000 },
      workerConcurrency: 16,
    });
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await rescuer?.close();
    await fleet.close();
  });

  it('loses no item and completes none twice: another runner takes the stalled ones over', async () => {
    child = await startRunner(fleet.prefix);
    const lines = Array.from({ length: 400 }, (_, i) => ({
      custom_id: `k-${i}`,
      queue: 'inference',
      body: { model: 'qwen2.5:7b', prompt: `killed runner ${i % 250}`, params: { max_tokens: 16 } },
    }));
    const r = await post(`${fleet.url}/v1/batches`, undefined, {
      raw: lines.map((l) => JSON.stringify(l)).join('\n'),
      headers: { 'content-type': 'application/jsonl' },
    });
    expect(r.status).toBe(202);
    const id = r.body.id as string;
    const done = async () => {
      const v = await get(`${fleet.url}/v1/batches/${id}`);
      const c = v.body.request_counts as { completed: number; failed: number };
      return c.completed + c.failed;
    };
    await until(async () => (await done()) >= 60, 60_000, 'the child runner to finish 60 items');
    child.kill('SIGKILL');
    await new Promise((resolve) => child!.once('exit', resolve));
    const atKill = await done();
    expect(atKill).toBeLessThan(400);
    // A second runner; its stalled check gives it the items whose runner died (their locks run out).
    rescuer = new Batches({
      client: fleet.client,
      concurrency: 16,
      lockDurationMs: 2000,
      stalledIntervalMs: 500,
    });
    await rescuer.start();
    const res = await fetch(`${fleet.url}/v1/batches/${id}/results`);
    const out = (await res.text())
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as BatchResultLine);
    expect(out).toHaveLength(400);
    expect(new Set(out.map((l) => l.line)).size).toBe(400);
    expect(out.every((l) => l.status === 'completed')).toBe(true);
    const view = await get(`${fleet.url}/v1/batches/${id}`);
    expect(view.body).toMatchObject({
      status: 'completed',
      request_counts: { total: 400, completed: 400, failed: 0, cancelled: 0 },
    });
    const doneHash = await fleet.client.submitter.redis.connection.hlen(batchKeys(fleet.prefix, id).done);
    expect(doneHash).toBe(400);
    // Items re-run after the kill joined their finished jobs: one generation per distinct prompt.
    expect(fleet.sim.stats().requests.byEndpoint['/api/generate']).toBe(250);
  }, 120_000);
});
