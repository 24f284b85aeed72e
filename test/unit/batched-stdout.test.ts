import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { batchedStdout } from '../../shared/logger';

/** Lets real I/O callbacks run (fs.write completions) a few times over. */
async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

/** Waits until the file holds `text` (an event, polled on real I/O turns, not a sleep). */
async function until(file: string, text: string): Promise<string> {
  for (;;) {
    const got = readFileSync(file, 'utf8');
    if (got.includes(text)) return got;
    await new Promise((r) => setImmediate(r));
  }
}

describe('batchedStdout (the async log destination)', () => {
  let dir: string;
  let file: string;
  let fd: number;
  beforeEach(() => {
    // The batch timer is faked (advanced by hand); setImmediate and the file writes stay real.
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    dir = mkdtempSync(join(tmpdir(), 'cell0-log-'));
    file = join(dir, 'out.log');
    fd = openSync(file, 'w');
  });
  afterEach(() => {
    jest.useRealTimers();
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });

  it('holds info lines until the batch timer, then writes them in order', async () => {
    const log = pino({ base: null }, batchedStdout(fd));
    log.info('one');
    log.info('two');
    await turns();
    expect(readFileSync(file, 'utf8')).toBe('');
    jest.advanceTimersByTime(100);
    const got = await until(file, '"two"');
    expect(
      got
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { msg: string }).msg),
    ).toEqual(['one', 'two']);
  });

  it('writes an error line at once, with the lines buffered before it', async () => {
    const log = pino({ base: null }, batchedStdout(fd));
    log.info('before');
    log.error('broken');
    // No timer advanced: only the error line's own flush can have written these.
    const got = await until(file, '"broken"');
    expect(got.indexOf('"before"')).toBeGreaterThanOrEqual(0);
    expect(got.indexOf('"before"')).toBeLessThan(got.indexOf('"broken"'));
  });

  it('flush(cb) writes what waits and calls back; flushSync writes before it returns', async () => {
    const dest = batchedStdout(fd);
    const log = pino({ base: null }, dest);
    log.info('flushed');
    await new Promise<void>((resolve, reject) => log.flush((err) => (err ? reject(err) : resolve())));
    expect(readFileSync(file, 'utf8')).toContain('"flushed"');
    log.info('synced');
    dest.flushSync();
    expect(readFileSync(file, 'utf8')).toContain('"synced"');
  });

  it('measures what it buffers once per batch, not the whole buffer again for each line', async () => {
    // sonic-boom's own batching took Buffer.byteLength of the whole buffered string on every write (~580 ns
    // per line); here the batch is measured when it leaves.
    const log = pino({ base: null }, batchedStdout(fd));
    const byteLength = jest.spyOn(Buffer, 'byteLength');
    try {
      for (let i = 0; i < 200; i++) log.info({ i }, 'line');
      jest.advanceTimersByTime(100);
      expect(byteLength.mock.calls.length).toBeLessThan(20);
    } finally {
      byteLength.mockRestore();
    }
    const got = await until(file, '"i":199');
    expect(got.split('\n').filter(Boolean)).toHaveLength(200);
  });

  it('writes once ~4 KB are buffered, without the timer', async () => {
    const log = pino({ base: null }, batchedStdout(fd));
    for (let i = 0; i < 60; i++) log.info({ i, pad: 'x'.repeat(80) }, 'line');
    const got = await until(file, '"i":40');
    expect(got.length).toBeGreaterThan(4096);
  });
});

describe('batchedStdout on exit', () => {
  it('writes what is buffered when the process exits', () => {
    const script = `
      const { pino } = require('pino');
      const { batchedStdout } = require(${JSON.stringify(join(__dirname, '../../shared/logger'))});
      const log = pino({ base: null }, batchedStdout());
      log.info('last words');
      process.exit(0);`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('"last words"');
  });
});
