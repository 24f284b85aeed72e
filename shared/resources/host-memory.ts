import { readFile } from 'node:fs/promises';
import os from 'node:os';

/** Memory in use against the memory this process can have. */
export interface MemoryReading {
  /** The limit: the cgroup's memory limit when one is set below the host's RAM, else the host's RAM. */
  total: number;
  /** In use: what new allocations cannot get without swapping or reclaiming the working set. */
  used: number;
  /** Where `total` comes from. */
  limitedBy: 'host' | 'cgroup';
}

/**
 * The memory reading from the raw figures (exported for tests). `constrained` is the cgroup limit (0, or
 * more than the host has, when there is none); `available` is what libuv reports as available: MemAvailable
 * on the host, limit - cgroup usage inside a limit. The cgroup's usage counts page cache the kernel
 * reclaims on demand, so its inactive file pages (`inactiveFile`) are taken off, as `docker stats` and the
 * kubelet's working set do: a container reading files fast must not look short of memory.
 */
export function memoryReading(
  hostTotal: number,
  constrained: number,
  available: number,
  inactiveFile = 0,
): MemoryReading {
  const limited = constrained > 0 && constrained < hostTotal;
  const total = limited ? constrained : hostTotal;
  const used = total - Math.max(0, available) - (limited ? Math.max(0, inactiveFile) : 0);
  return { total, used: Math.min(total, Math.max(0, used)), limitedBy: limited ? 'cgroup' : 'host' };
}

/**
 * Memory in use, cgroup-aware: inside a container with a memory limit the percentage is of that limit (the
 * OOM killer acts there, not at the host's RAM); elsewhere of the host's RAM, counting MemAvailable as free
 * (page cache is not pressure). From node's own figures (libuv reads /proc and the cgroup files), plus the
 * cgroup's memory.stat for its reclaimable page cache.
 */
export async function readMemory(): Promise<MemoryReading> {
  const hostTotal = os.totalmem();
  const constrained = process.constrainedMemory();
  const limited = constrained > 0 && constrained < hostTotal;
  return memoryReading(
    hostTotal,
    constrained,
    process.availableMemory(),
    limited ? await cgroupInactiveFile() : 0,
  );
}

/** Inactive file-backed pages of this process's memory cgroup (v2 or v1), bytes; 0 when unreadable. */
async function cgroupInactiveFile(): Promise<number> {
  try {
    const lines = (await readFile('/proc/self/cgroup', 'utf8')).split('\n');
    const v2 = lines.find((l) => l.startsWith('0::'));
    const v1 = lines.find((l) => /^\d+:[^:]*\bmemory\b[^:]*:/.test(l));
    const [file, key] = v1
      ? [`/sys/fs/cgroup/memory${v1.slice(v1.lastIndexOf(':') + 1)}/memory.stat`, 'total_inactive_file']
      : [`/sys/fs/cgroup${v2?.slice(3) ?? ''}/memory.stat`, 'inactive_file'];
    const stat = await readFile(file.replace(/\/+/g, '/'), 'utf8');
    const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(stat);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}
