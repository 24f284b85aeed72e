import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { settledWithin, sleep } from '../../shared/sleep';

const ROOT = join(__dirname, '..', '..');

function pendingTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

describe('sleep', () => {
  test('resolves after the time; at once for 0 or less', async () => {
    const t0 = performance.now();
    await sleep(20);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(15);
    await expect(sleep(0)).resolves.toBeUndefined();
    await expect(sleep(-5)).resolves.toBeUndefined();
  });

  test('an abort rejects with the signal reason and clears the timer', async () => {
    const before = pendingTimers();
    const ac = new AbortController();
    const p = sleep(60_000, { signal: ac.signal });
    expect(pendingTimers()).toBe(before + 1);
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
    expect(pendingTimers()).toBe(before);
  });

  test('an already aborted signal rejects without a timer', async () => {
    const ac = new AbortController();
    ac.abort(new Error('early'));
    await expect(sleep(10, { signal: ac.signal })).rejects.toThrow('early');
  });

  test('unref: a pending sleep does not hold the process open; a plain one does', async () => {
    const run = (ms: number, unref: boolean) =>
      new Promise<{ code: number | null; ms: number; stderr: string }>((resolve, reject) => {
        const t0 = Date.now();
        const code = `import('./shared/sleep.ts').then((m) => m.sleep(${ms}, { unref: ${unref} }))`;
        let stderr = '';
        const child = execFile(process.execPath, ['--import', 'tsx', '-e', code], { cwd: ROOT });
        child.stderr?.on('data', (d: Buffer | string) => (stderr += String(d)));
        child.once('error', reject);
        child.once('close', (c) => resolve({ code: c, ms: Date.now() - t0, stderr }));
      });
    // Were the unref'd 60 s sleep holding its process, the test would time out.
    const [unrefd, held] = await Promise.all([run(60_000, true), run(1500, false)]);
    expect({ code: unrefd.code, stderr: unrefd.stderr }).toEqual({ code: 0, stderr: '' });
    expect({ code: held.code, stderr: held.stderr }).toEqual({ code: 0, stderr: '' });
    expect(unrefd.ms).toBeLessThan(25_000);
    expect(held.ms).toBeGreaterThanOrEqual(1500);
  }, 30_000);
});

describe('settledWithin', () => {
  test('true when the promise settles in time (fulfilled or rejected), and no timer is left', async () => {
    const before = pendingTimers();
    await expect(settledWithin(Promise.resolve(1), 60_000)).resolves.toBe(true);
    await expect(settledWithin(Promise.reject(new Error('x')), 60_000)).resolves.toBe(true);
    expect(pendingTimers()).toBe(before);
  });

  test('false when it does not', async () => {
    await expect(settledWithin(new Promise(() => undefined), 10)).resolves.toBe(false);
  });
});
