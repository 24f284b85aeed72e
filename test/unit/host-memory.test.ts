import os from 'node:os';
import { memoryReading, readMemory } from '../../shared/resources/host-memory';

const GiB = 2 ** 30;

describe('memoryReading', () => {
  test('no cgroup limit: the host, used = total - MemAvailable', () => {
    expect(memoryReading(24 * GiB, 0, 20 * GiB)).toEqual({
      total: 24 * GiB,
      used: 4 * GiB,
      limitedBy: 'host',
    });
    // cgroup v1 without a limit reports a huge number; so does v2's "max".
    expect(memoryReading(24 * GiB, 2 ** 64, 20 * GiB).limitedBy).toBe('host');
  });

  test('a cgroup limit below the host: percent of the limit, reclaimable page cache not counted', () => {
    // A 2 GiB container on a 24 GiB host, 1.5 GiB charged to it of which 0.5 GiB inactive page cache.
    expect(memoryReading(24 * GiB, 2 * GiB, 0.5 * GiB, 0.5 * GiB)).toEqual({
      total: 2 * GiB,
      used: 1 * GiB,
      limitedBy: 'cgroup',
    });
    // The host's free memory would have said 0 % here; the limit is what the OOM killer enforces.
  });

  test('stays within 0..total when the figures race (usage briefly over the limit)', () => {
    expect(memoryReading(24 * GiB, 2 * GiB, 0).used).toBe(2 * GiB);
    expect(memoryReading(24 * GiB, 2 * GiB, 0.1 * GiB, 5 * GiB).used).toBe(0);
  });
});

test('readMemory on this machine agrees with node:os when no cgroup limit applies', async () => {
  const m = await readMemory();
  const limit = process.constrainedMemory();
  if (limit > 0 && limit < os.totalmem()) {
    expect(m).toMatchObject({ total: limit, limitedBy: 'cgroup' });
  } else {
    expect(m).toMatchObject({ total: os.totalmem(), limitedBy: 'host' });
    expect(Math.abs(m.used - (os.totalmem() - os.freemem())) / os.totalmem()).toBeLessThan(0.02);
  }
});
