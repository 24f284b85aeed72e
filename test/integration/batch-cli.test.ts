import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCell0 } from '../helpers/cli';
import { startTestFleet, type TestFleet } from '../helpers/fleet';
import { formatProgress } from '../../bin/batch-command';

describe('cell0 batch FILE.jsonl -o results.jsonl', () => {
  let fleet: TestFleet;
  let dir: string;
  beforeAll(async () => {
    fleet = await startTestFleet({ batches: { concurrency: 128 }, workerConcurrency: 16 });
    dir = mkdtempSync(join(tmpdir(), 'cell0-batch-'));
  });
  afterAll(async () => {
    await fleet.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs a file with 30% duplicate lines: one result per line, duplicates identical, one call per distinct request', async () => {
    // 2,000 lines: 1,400 distinct requests, then 600 repeats of earlier lines (verbatim).
    const distinct = Array.from({ length: 1400 }, (_, i) =>
      JSON.stringify({
        custom_id: `r-${i}`,
        queue: i % 5 === 0 ? 'search' : 'inference',
        body: i % 5 === 0 ? { query: `cli query ${i}` } : { model: 'qwen2.5:7b', prompt: `cli prompt ${i}` },
      }),
    );
    const all = [...distinct, ...Array.from({ length: 600 }, (_, i) => distinct[(i * 13) % 1400]!)];
    const input = join(dir, 'requests.jsonl');
    const output = join(dir, 'results.jsonl');
    writeFileSync(input, all.join('\n') + '\n');
    const calls0 = fleet.sim.stats().requests.byEndpoint['/api/generate'] ?? 0;
    const p = spawnCell0(['batch', input, '-o', output, '--url', fleet.url], {});
    expect(await p.exited).toBe(0);
    // Not a terminal: plain progress lines, and a summary.
    expect(p.stderr()).toMatch(/items\/s {2}ETA/);
    expect(p.stderr()).toMatch(/2000 completed, 0 failed or cancelled; results in/);
    const out = readFileSync(output, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: number; custom_id: string; status: string; result: unknown });
    expect(out).toHaveLength(2000);
    expect(out.map((l) => l.line)).toEqual(all.map((_, i) => i + 1));
    expect(out.every((l) => l.status === 'completed')).toBe(true);
    for (let i = 1400; i < 2000; i++) {
      const twin = out[((i - 1400) * 13) % 1400]!;
      expect(out[i]!.custom_id).toBe(twin.custom_id);
      expect(out[i]!.result).toEqual(twin.result);
    }
    const inferenceDistinct = distinct.filter((_, i) => i % 5 !== 0).length;
    expect((fleet.sim.stats().requests.byEndpoint['/api/generate'] ?? 0) - calls0).toBe(inferenceDistinct);
  }, 180_000);

  it('prints the bad lines and exits 2 when the batch is refused', async () => {
    const input = join(dir, 'bad.jsonl');
    writeFileSync(input, '{"custom_id":"a","queue":"search","body":{"query":"ok"}}\n{oops\n');
    const p = spawnCell0(['batch', input, '--url', fleet.url], {});
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toMatch(/400 CELL0_VALIDATION/);
    expect(p.stderr()).toMatch(/lines\[2\]: not JSON/);
    const missing = spawnCell0(['batch', join(dir, 'nope.jsonl'), '--url', fleet.url], {});
    expect(await missing.exited).toBe(2);
    expect(missing.stderr()).toMatch(/cannot read/);
  }, 60_000);

  it('draws a progress bar with rate and ETA', () => {
    expect(formatProgress(50, 200, 10_000, 10)).toBe('[###-------]  25% 50/200  5.0 items/s  ETA 30 s');
    expect(formatProgress(200, 200, 10_000, 10)).toBe('[##########] 100% 200/200  20 items/s  ETA 0 s');
    expect(formatProgress(0, 200, 0, 4)).toBe('[----]   0% 0/200  0.0 items/s  ETA ?');
  });
});
