import { spawn } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');

describe('a worker closed while Redis is coming back', () => {
  it('lets its process exit on its own (no BullMQ timer keeps re-arming)', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'test', 'helpers', 'worker-exit-child.ts')],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // Before the fix the process never exited (the lock-extender timer re-armed every 7.5 s forever); now
    // the last BullMQ timer (its 6 s job wait) runs out shortly after close.
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      exited.then((code) => ({ code })),
      new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), 25_000))),
    ]);
    clearTimeout(timer);
    if (outcome === 'hung') child.kill('SIGKILL');
    expect({ outcome, out }).toEqual({ outcome: { code: 0 }, out: expect.stringContaining('closed') });
  }, 40_000);
});
