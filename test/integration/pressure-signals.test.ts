/*
 * Pressure signals that mean what they say, on a real Redis with the simulator over real HTTP:
 * - CPU pressure is cell0's own (its process, or its cgroup quota), never the host's: a busy neighbour —
 *   injected host counters, or two real busy-loop processes — neither pauses a worker nor sheds a request;
 * - cell0's own CPU over its limit makes a worker "saturated" (it keeps working) and the API sheds only
 *   while the queue is behind (growing), not while it keeps up;
 * - a worker killed with SIGKILL stops counting at the next shedder refresh, not when its status expires;
 *   where Redis cannot list connections, a status older than one heartbeat and a grace stops counting.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LoadShedder } from '../../producers/load-shedder';
import {
  publishWorkerStatus,
  readWorkerStatuses,
  staleAfterMs,
  summarizeFleet,
  type WorkerStatus,
} from '../../shared/fleet/worker-status';
import { QueueName, queuePrefix } from '../../shared/queues/names';
import { closeRedis, createRedisConnection, waitUntilReady } from '../../shared/redis/connection';
import { type SystemCpuOptions } from '../../shared/resources/resource-monitor';
import { ResourceManagement } from '../../shared/resources/resource-management';
import { type ResourceSample, type ResourceViolation } from '../../shared/resources/types';
import { Cell0Worker } from '../../workers/cell0-worker';
import { OllamaBackend } from '../../workers/providers/ollama-backend';
import { OllamaClient } from '../../workers/providers/ollama/ollama-client';
import { post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { busyHost, drivenCpu, shedInference, workerStatus } from '../helpers/pressure';
import { until } from '../helpers/wait';

const ROOT = join(__dirname, '..', '..');

/** A folder with no cgroup files: cell0's CPU is then this process's (the test's children share its cgroup). */
function noCgroup(): string {
  return mkdtempSync(join(tmpdir(), 'cell0-nocgroup-'));
}

describe('CPU pressure is cell0’s own, and sheds only while the queue is behind', () => {
  let fleet: TestFleet;
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
    await fleet?.close();
  });

  /**
   * A fleet whose one worker runs one inference job at a time on a simulator that takes a minute to answer,
   * so jobs added after the first stay waiting; its resource block samples the real system sampler with
   * `cpu` options. The shedder refreshes only when the test says (refreshMs is long).
   */
  async function setup(cpu: SystemCpuOptions) {
    fleet = await startTestFleet({ worker: false, sim: { ttftMs: 60_000 } });
    const rm = new ResourceManagement({ sampleMs: 100, cpu });
    const worker = new Cell0Worker({
      redisUrl: testRedisUrl(),
      prefix: fleet.prefix,
      queues: [QueueName.INFERENCE],
      inference: new OllamaBackend(new OllamaClient({ baseUrl: fleet.sim.url })),
      concurrency: { inference: 1 },
      shutdownTimeoutMs: 500,
      heartbeatMs: 100,
      limiter: rm.limiter,
      status: () => rm.status(),
    });
    const pressureStarts: ResourceViolation[][] = [];
    rm.limiter.on('pressure:start', (v) => pressureStarts.push(v));
    closers.push(
      () => rm.close(),
      () => worker.close(),
    );
    await rm.start();
    await worker.start();
    const shedder = shedInference(fleet, { maxQueueDepth: 0, refreshMs: 3_600_000 });
    const ask = (prompt: string) =>
      post(`${fleet.url}/v1/inference`, { model: 'qwen2.5:0.5b', prompt, wait: 0 });
    return { rm, worker, shedder, ask, pressureStarts };
  }

  it('a busy neighbour (host at 100%) with cell0 idle: no pressure, and a growing queue is not shed', async () => {
    const own = drivenCpu(2);
    const { rm, worker, shedder, ask, pressureStarts } = await setup({
      source: own.source,
      hostTimes: busyHost(),
      windowMs: 5000,
    });
    for (let i = 0; i < 5; i++) await once(rm.monitor, 'sample');
    const usage = rm.monitor.getCurrentUsage()!;
    expect(usage.hostCpuPercent).toBe(100);
    expect(usage.cpuPercent).toBeCloseTo(2, 6);
    expect(rm.limiter.underPressure).toBe(false);

    await shedder.refresh();
    // Four jobs: one runs (for a minute), three wait; the queue grows between two readings.
    for (let i = 0; i < 4; i++) expect((await ask(`neighbour ${i}`)).status).toBe(202);
    await until(() => worker.active === 1, 10_000, 'the first job to be running');
    await shedder.refresh();
    expect(shedder.snapshot().inference).toMatchObject({
      workers: 1,
      paused: 0,
      saturated: 0,
      waiting: 3,
      behind: true,
    });
    // Behind, but no worker is under pressure: nothing to shed.
    expect((await ask('still taken')).status).toBe(202);
    expect(shedder.refused.fleet_pressure).toBe(0);
    expect(pressureStarts).toEqual([]);
  });

  it("cell0's own CPU high: the worker keeps working (saturated, not paused); no shedding while the queue keeps up, shedding once it grows", async () => {
    const own = drivenCpu(97);
    const { worker, shedder, ask, pressureStarts } = await setup({
      source: own.source,
      hostTimes: busyHost(),
      windowMs: 3000,
    });
    await until(() => pressureStarts.length > 0, 10_000, 'CPU pressure to start');
    expect(pressureStarts[0]).toEqual([expect.objectContaining({ resource: 'cpu', threshold: 90 })]);
    await until(
      async () => {
        await shedder.refresh();
        return shedder.snapshot().inference?.saturated === 1;
      },
      10_000,
      'the worker to publish that it is saturated',
    );
    expect(worker.paused).toBe(false);
    const [status] = await fleet.client.fleet();
    expect(status?.state).toBe('running');
    expect(status?.pressure).toMatchObject({ saturated: true, violations: [{ resource: 'cpu' }] });
    expect(summarizeFleet(await fleet.client.fleet())).toMatchObject({ running: 1, paused: 0, saturated: 1 });

    // Saturated and keeping up (nothing waits, nothing grew): work is taken — and the worker runs it.
    const first = await ask('busy but keeping up');
    expect(first.status).toBe(202);
    await until(() => worker.active === 1, 10_000, 'the job to be running on the saturated worker');
    await shedder.refresh();
    expect(shedder.snapshot().inference).toMatchObject({ saturated: 1, waiting: 0, behind: false });
    expect((await ask('still keeping up')).status).toBe(202);

    // The queue grows while the only worker is saturated: the fleet is behind, new work is refused.
    expect((await ask('one more')).status).toBe(202);
    await shedder.refresh();
    expect(shedder.snapshot().inference).toMatchObject({ saturated: 1, waiting: 2, behind: true });
    const refused = await ask('behind');
    expect(refused.status).toBe(503);
    expect(refused.body.error).toMatchObject({ code: 'CELL0_OVERLOADED', reason: 'fleet_pressure' });
    expect(String((refused.body.error as { message: string }).message)).toMatch(/CPU limit.*behind/);
    expect(shedder.refused.fleet_pressure).toBe(1);
  });

  it('two busy-loop processes on the host (the real sampler) cause no pressure and no shedding', async () => {
    const cgroupRoot = noCgroup();
    closers.push(async () => rmSync(cgroupRoot, { recursive: true, force: true }));
    const loops: ChildProcess[] = [0, 1].map(() =>
      spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }),
    );
    closers.push(async () => {
      for (const c of loops)
        if (c.exitCode === null && c.signalCode === null) {
          const exited = once(c, 'exit');
          process.kill(c.pid!, 'SIGKILL');
          await exited;
        }
    });
    await Promise.all(loops.map((c) => once(c, 'spawn')));
    const { rm, worker, shedder, ask, pressureStarts } = await setup({ cgroupRoot, windowMs: 1000 });
    const samples: ResourceSample[] = [];
    for (let i = 0; i < 10; i++) samples.push((await once(rm.monitor, 'sample'))[0] as ResourceSample);
    // The neighbours are there: the host is busy (two spinning processes on this machine's cores) ...
    expect(Math.max(...samples.map((s) => s.hostCpuPercent ?? 0))).toBeGreaterThanOrEqual(50);
    // ... but none of it is cell0's.
    expect(samples.every((s) => s.cpuScope === 'process')).toBe(true);
    expect(Math.max(...samples.map((s) => s.cpuPercent))).toBeLessThan(90);
    await shedder.refresh();
    for (let i = 0; i < 4; i++) expect((await ask(`busy host ${i}`)).status).toBe(202);
    await until(() => worker.active === 1, 10_000, 'the first job to be running');
    await shedder.refresh();
    expect(shedder.snapshot().inference).toMatchObject({ paused: 0, saturated: 0, behind: true });
    expect((await ask('busy host, still taken')).status).toBe(202);
    expect(pressureStarts).toEqual([]);
    expect(shedder.refused.fleet_pressure).toBe(0);
    // Killed by PID, as they were started.
    for (const c of loops) {
      const exited = once(c, 'exit');
      process.kill(c.pid!, 'SIGKILL');
      expect(await exited).toEqual([null, 'SIGKILL']);
    }
  });
});

describe('a worker pauses for memory, not for CPU', () => {
  it('paused by memory and CPU, it resumes when only CPU stays over its limit, and pauses again when memory returns', async () => {
    const fleet = await startTestFleet({ worker: false });
    // A limiter the test drives by hand, with the limiter's events.
    const limiter = Object.assign(new EventEmitter(), {
      underPressure: false,
      violations: [] as ResourceViolation[],
      episodes: 0,
    });
    const set = (event: 'pressure:start' | 'pressure:change' | 'pressure:end', v: ResourceViolation[]) => {
      limiter.underPressure = v.length > 0;
      limiter.violations = v;
      limiter.emit(event, v);
    };
    const cpu = { resource: 'cpu', value: 97, threshold: 90 } as const;
    const memory = { resource: 'memory', value: 96, threshold: 85 } as const;
    const w = new Cell0Worker({
      redisUrl: testRedisUrl(),
      prefix: fleet.prefix,
      queues: [QueueName.INFERENCE],
      inference: new OllamaBackend(new OllamaClient({ baseUrl: fleet.sim.url })),
      shutdownTimeoutMs: 1000,
      limiter,
    });
    try {
      await w.start();
      const paused = once(w, 'worker:paused');
      set('pressure:start', [memory, cpu]);
      await paused;
      expect(w.statusSnapshot()).toMatchObject({ state: 'paused', pressure: { saturated: true } });
      // Memory is fine again, CPU is not: the worker takes jobs (and says it is saturated).
      const resumed = once(w, 'worker:resumed');
      set('pressure:change', [cpu]);
      await resumed;
      expect(w.paused).toBe(false);
      expect(w.statusSnapshot()).toMatchObject({ state: 'running', pressure: { saturated: true } });
      const r = await post(`${fleet.url}/v1/inference`, {
        model: 'qwen2.5:0.5b',
        prompt: 'cpu only',
        wait: 20_000,
      });
      expect(r.status).toBe(200);
      expect((r.body.result as { servedBy: string }).servedBy).toBe(w.id);
      // Memory pressure again, while CPU stays: paused again.
      const pausedAgain = once(w, 'worker:paused');
      set('pressure:change', [cpu, memory]);
      expect((await pausedAgain)[0]).toEqual({ violations: [memory] });
    } finally {
      await w.close();
      await fleet.close();
    }
  });
});

describe('latency counts as being behind', () => {
  it('a steady queue whose oldest job has waited longer than behindWaitAgeMs is behind (injected clock)', async () => {
    const fleet = await startTestFleet({ worker: false });
    const redis = createRedisConnection({ url: testRedisUrl(), role: 'client' });
    try {
      await waitUntilReady(redis, 5000);
      // One worker that reports its CPU over the limit (saturated), and two jobs waiting.
      await publishWorkerStatus(
        redis,
        fleet.prefix,
        workerStatus('busy', {
          active: 4,
          pressure: {
            underPressure: true,
            saturated: true,
            violations: [{ resource: 'cpu', value: 97, threshold: 90 }],
          },
        }),
        60_000,
      );
      const queue = fleet.client.submitter.getQueue(QueueName.INFERENCE);
      const add = async (prompt: string) => {
        const r = await post(`${fleet.url}/v1/inference`, { model: 'qwen2.5:0.5b', prompt, wait: 0 });
        expect(r.status).toBe(202);
        return (await queue.getJob(r.body.jobId as string))!.timestamp;
      };
      const firstAt = await add('first');
      // The second job is created at a later millisecond, so the oldest one is told apart by its age.
      await until(() => Date.now() > firstAt + 1, 5000, 'the clock to move on');
      const secondAt = await add('second');
      expect(secondAt).toBeGreaterThan(firstAt);
      // The shedder's clock, set by the test.
      let now = secondAt + 1000;
      const shedder = new LoadShedder({
        queues: () => ({ [QueueName.INFERENCE]: queue }),
        fleet: () => fleet.client.fleet(),
        maxQueueDepth: 0,
        refreshMs: 3_600_000,
        behindWaitAgeMs: 30_000,
        now: () => now,
      });
      await shedder.refresh();
      now += 1000;
      await shedder.refresh();
      expect(shedder.snapshot().inference).toMatchObject({
        saturated: 1,
        waiting: 2,
        growth: 0,
        oldestWaitMs: now - firstAt,
        behind: false,
      });
      expect(() => shedder.check(QueueName.INFERENCE)).not.toThrow();
      // 31 s after the first job nothing moved: the oldest job has waited past the bound (and the window
      // saw no growth). Its age is the first job's, not the second's.
      now = firstAt + 31_000;
      await shedder.refresh();
      expect(shedder.snapshot().inference).toMatchObject({
        waiting: 2,
        growth: 0,
        oldestWaitMs: 31_000,
        behind: true,
      });
      expect(() => shedder.check(QueueName.INFERENCE)).toThrow(
        /CPU limit and the queue is behind.*oldest waiting 3\d s/,
      );
    } finally {
      await closeRedis(redis);
      await fleet.close();
    }
  });
});

describe('dead workers leave pressure decisions at once', () => {
  it('a paused worker killed with SIGKILL no longer counts at the next shedder refresh', async () => {
    const prefix = uniquePrefix('dead');
    const redisUrl = testRedisUrl();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'test', 'helpers', 'paused-worker-child.ts'), redisUrl, prefix],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = once(child, 'exit');
    const reader = createRedisConnection({ url: redisUrl, role: 'client' });
    const { Queue } = await import('bullmq');
    const queue = new Queue(QueueName.INFERENCE, {
      connection: reader,
      prefix: queuePrefix(prefix, QueueName.INFERENCE),
    });
    try {
      await waitUntilReady(reader, 5000);
      const id = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /paused (\S+)\n/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.on('exit', () => reject(new Error(`the child exited before pausing: ${err}`)));
      });
      const shedder = new LoadShedder({
        queues: () => ({ [QueueName.INFERENCE]: queue }),
        fleet: () => readWorkerStatuses(reader, prefix),
        maxQueueDepth: 0,
        refreshMs: 3_600_000,
      });
      await shedder.refresh();
      expect(shedder.snapshot().inference).toMatchObject({ workers: 1, paused: 1 });
      // Every worker serving the queue is paused: new work is refused.
      expect(() => shedder.check(QueueName.INFERENCE)).toThrow(/paused by resource pressure/);

      child.kill('SIGKILL');
      await exited;
      // Its status has not expired (3 s TTL, published within the last second) ...
      expect(await reader.pttl(`${prefix}:fleet:worker:${id}`)).toBeGreaterThan(0);
      // ... but the next refresh no longer counts it: its Redis connection is gone.
      await shedder.refresh();
      expect(shedder.snapshot().inference).toMatchObject({ workers: 0, paused: 0 });
      expect(() => shedder.check(QueueName.INFERENCE)).not.toThrow();
      expect(summarizeFleet(await readWorkerStatuses(reader, prefix))).toMatchObject({
        workers: 0,
        paused: 0,
      });
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await queue.close();
      await closeRedis(reader);
    }
  }, 60_000);

  it('where connections cannot be checked, a status older than one heartbeat and a grace stops counting', async () => {
    const prefix = uniquePrefix('stale');
    const redis = createRedisConnection({ url: testRedisUrl(), role: 'client' });
    const other = createRedisConnection({ url: testRedisUrl(), role: 'client' });
    try {
      await Promise.all([waitUntilReady(redis, 5000), waitUntilReady(other, 5000)]);
      const status = (id: string, extra: Partial<WorkerStatus>) =>
        workerStatus(id, { state: 'paused', ...extra });
      const liveId = Number(await other.client('ID'));
      // Connected (its CLIENT ID is listed): counts. A CLIENT ID nobody holds: dead at once.
      await publishWorkerStatus(
        redis,
        prefix,
        status('alive', { heartbeatMs: 200, clientId: liveId }),
        60_000,
      );
      await publishWorkerStatus(
        redis,
        prefix,
        status('gone', { heartbeatMs: 200, clientId: 2 ** 40 }),
        60_000,
      );
      // No connection to check: only its age (on Redis's clock, from the key's PTTL) can tell.
      await publishWorkerStatus(redis, prefix, status('silent', { heartbeatMs: 200 }), 60_000);
      // From an older worker that says nothing of its heartbeat: counted until its key expires, as before.
      await publishWorkerStatus(redis, prefix, status('legacy', {}), 60_000);
      const ids = async () => (await readWorkerStatuses(redis, prefix)).map((w) => w.id).sort();
      expect(await ids()).toEqual(['alive', 'legacy', 'silent']);

      await until(async () => (await ids()).length === 2, 10_000, 'the silent worker to go stale');
      expect(await ids()).toEqual(['alive', 'legacy']);
      // Stale after 200 ms + a 1 s grace, while its key still lives for most of a minute.
      expect(staleAfterMs(200)).toBe(1200);
      expect(await redis.pttl(`${prefix}:fleet:worker:silent`)).toBeGreaterThan(50_000);

      // A connection that closes takes its worker out at once.
      await closeRedis(other);
      expect(await ids()).toEqual(['legacy']);
    } finally {
      await closeRedis(redis);
      await closeRedis(other);
    }
  });
});
