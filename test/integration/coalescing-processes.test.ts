import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startTestFleet, type TestFleet } from '../helpers/fleet';
import { testRedisUrl } from '../helpers/redis';

const run = promisify(execFile);

async function producer(env: Record<string, string>): Promise<{ jobIds: string[]; texts: string[] }> {
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', join(__dirname, '..', 'helpers', 'producer-process.ts')],
    {
      env: { PATH: process.env.PATH ?? '', REDIS_URL: testRedisUrl(), ...env },
      timeout: 30_000,
    },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as { jobIds: string[]; texts: string[] };
}

describe('coalescing across producer processes', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    // A slow first token keeps the job running while both processes pile onto it.
    fleet = await startTestFleet({ sim: { ttftMs: 400, tokensPerSec: 500 } });
  });
  afterAll(() => fleet.close());

  it('two processes sending the same request at the same moment get one job, one backend call, one answer', async () => {
    const body = JSON.stringify({ model: 'qwen2.5:7b', prompt: 'What is the capital of France?' });
    const goAt = String(Date.now() + 2500); // both are connected by then (tsx start + Redis connect)
    const [a, b] = await Promise.all([
      producer({ PREFIX: fleet.prefix, BODY: body, COUNT: '25', GO_AT: goAt }),
      producer({ PREFIX: fleet.prefix, BODY: body, COUNT: '25', GO_AT: goAt }),
    ]);
    const ids = new Set([...a.jobIds, ...b.jobIds]);
    const texts = new Set([...a.texts, ...b.texts]);
    expect(a.jobIds).toHaveLength(25);
    expect(b.jobIds).toHaveLength(25);
    expect(ids.size).toBe(1);
    expect(texts.size).toBe(1);
    expect(fleet.sim.stats().requests.byEndpoint['/api/generate']).toBe(1);

    // A late duplicate from a third process gets the stored result, without a new run.
    const late = await producer({ PREFIX: fleet.prefix, BODY: body, COUNT: '1', GO_AT: '0' });
    expect(late.jobIds).toEqual([...ids]);
    expect(late.texts).toEqual([...texts]);
    expect(fleet.sim.stats().requests.byEndpoint['/api/generate']).toBe(1);
  }, 60_000);
});
