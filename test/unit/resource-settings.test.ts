import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { loadConfig } from '../../shared/config/config';
import {
  parseBytes,
  parseCleanupPaths,
  parseModelBudget,
  parseModelPriorities,
} from '../../shared/config/resource-settings';
import {
  initializeResourceManagement,
  ResourceManagement,
  shutdownResourceManagement,
} from '../../shared/resources/resource-management';
import { EvictionPolicy, type ResourceSample } from '../../shared/resources/types';
import { configErrorFields } from '../helpers/checks';
import { resourceSample } from '../helpers/resource-sample';

const SAMPLE: ResourceSample = resourceSample({ memory: 30, cpu: 5, disk: 40 });

describe('resource settings', () => {
  it('parses sizes in decimal and binary units', () => {
    expect(parseBytes('16GB')).toBe(16e9);
    expect(parseBytes('12 GiB')).toBe(12 * 1024 ** 3);
    expect(parseBytes('800mb')).toBe(800e6);
    expect(parseBytes('4e9')).toBe(4e9);
    expect(() => parseBytes('12 parsecs')).toThrow(/size/);
    expect(() => parseBytes('-1GB')).toThrow(/size/);
  });

  it('parses the model budget: auto, off, a size', () => {
    expect(parseModelBudget('auto')).toEqual({ kind: 'auto' });
    expect(parseModelBudget('OFF')).toEqual({ kind: 'off' });
    expect(parseModelBudget('4.3GB')).toEqual({ kind: 'bytes', bytes: 4.3e9 });
    expect(() => parseModelBudget('lots')).toThrow(/auto, off, or a size/);
  });

  it('parses priorities and pins, refusing what it cannot read', () => {
    expect(parseModelPriorities('nomic-embed-text*=pin, qwen2.5:7b=10,*:70b=-5')).toEqual([
      { pattern: 'nomic-embed-text*', priority: 0, pinned: true },
      { pattern: 'qwen2.5:7b', priority: 10, pinned: false },
      { pattern: '*:70b', priority: -5, pinned: false },
    ]);
    expect(() => parseModelPriorities('qwen2.5:7b=high')).toThrow(/"qwen2.5:7b=high"/);
    expect(() => parseModelPriorities('=3')).toThrow(/pattern=priority/);
  });

  it('parses cleanup paths and refuses a filesystem root', () => {
    expect(parseCleanupPaths('/var/tmp/cell0=2, logs=0.5')).toEqual([
      { path: '/var/tmp/cell0', maxAgeDays: 2 },
      { path: 'logs', maxAgeDays: 0.5 },
    ]);
    expect(() => parseCleanupPaths('/=1')).toThrow(/root/);
    expect(() => parseCleanupPaths('logs=0')).toThrow(/days/);
  });

  it('loadConfig reads the resource variables, with defaults', () => {
    const c = loadConfig({});
    expect(c.limits).toMatchObject({ maxMemoryPercent: 85, maxCpuPercent: 90, maxDiskPercent: 95 });
    expect(c.resources).toMatchObject({
      maxQueueDepth: 10_000,
      modelBudget: { kind: 'auto' },
      evictionPolicy: EvictionPolicy.LRU,
      modelPriorities: [],
      cleanupPaths: [],
    });
    const d = loadConfig({
      CELL0_EVICTION_POLICY: 'cost_based',
      CELL0_MODEL_MEMORY_BUDGET: '24GB',
      CELL0_MODEL_PRIORITIES: 'llama*=pin',
    });
    expect(d.resources.evictionPolicy).toBe(EvictionPolicy.COST_BASED);
    expect(d.resources.modelBudget).toEqual({ kind: 'bytes', bytes: 24e9 });
    expect(d.resources.modelPriorities[0]).toMatchObject({ pattern: 'llama*', pinned: true });
  });

  it('loadConfig names each bad resource variable', () => {
    expect(
      configErrorFields(() =>
        loadConfig({
          CELL0_EVICTION_POLICY: 'random',
          CELL0_MAX_QUEUE_DEPTH: '-3',
          CELL0_CLEANUP_PATHS: '/=1',
        }),
      ).sort(),
    ).toEqual(['CELL0_CLEANUP_PATHS', 'CELL0_EVICTION_POLICY', 'CELL0_MAX_QUEUE_DEPTH']);
    // A limit the hysteresis band would swallow: pressure could never end.
    expect(() => loadConfig({ CELL0_MAX_CPU_PERCENT: '4' })).toThrow(
      /CELL0_MAX_CPU_PERCENT.*pressure could never end/s,
    );
    expect(() => loadConfig({ CELL0_MAX_CPU_PERCENT: '4', CELL0_RESOURCE_HYSTERESIS: '2' })).not.toThrow();
  });
});

describe('resource-management lifecycle', () => {
  afterEach(async () => {
    await shutdownResourceManagement();
  });

  it('initialize is idempotent, shutdown stops every part and is idempotent too', async () => {
    const rm = await initializeResourceManagement({
      sampleMs: 100,
      sampler: () => ({ ...SAMPLE, at: Date.now() }),
    });
    expect(await initializeResourceManagement()).toBe(rm);
    expect(rm.monitor.getCurrentUsage()?.memoryPercent).toBe(30);
    expect(rm.limiter.underPressure).toBe(false);
    await shutdownResourceManagement();
    await shutdownResourceManagement();
    // Closed: the monitor takes no more samples.
    await expect(rm.monitor.sampleNow()).rejects.toMatchObject({ code: 'CELL0_CLOSED' });
    const again = await initializeResourceManagement({ sampleMs: 100, sampler: () => SAMPLE });
    expect(again).not.toBe(rm);
  });

  it('awaiting the start keeps the process alive; once started, its timers do not', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(__dirname, '..', 'helpers', 'resource-exit-child.ts')],
      { cwd: join(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      new Promise<{ code: number | null }>((r) => child.on('exit', (code) => r({ code }))),
      new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), 15_000))),
    ]);
    clearTimeout(timer);
    if (outcome === 'hung') child.kill('SIGKILL');
    expect({ outcome, out: out.trim() }).toEqual({ outcome: { code: 0 }, out: 'started with a sample' });
  }, 30_000);

  it('status() reports the usage, the limits and the pressure', async () => {
    const rm = new ResourceManagement({
      sampleMs: 100,
      limits: { maxMemoryPercent: 25 },
      sampler: () => ({ ...SAMPLE, at: Date.now() }),
    });
    try {
      await rm.start();
      const s = rm.status();
      expect(s.resources).toMatchObject({
        usage: { memoryPercent: 30 },
        limits: { maxMemoryPercent: 25 },
        underPressure: true,
        violations: [{ resource: 'memory', value: 30, threshold: 25 }],
      });
      expect(s.models).toBeUndefined();
    } finally {
      await rm.close();
      await rm.close();
    }
  });
});
