import { withLatestTag } from '../model-name.js';
import { matchesPattern } from '../config/provider-routes.js';
import { type CleanupPathSetting, type ModelPriorityRule } from '../config/resource-settings.js';
import { silentLogger, type Logger } from '../logger.js';
import { DiskCleanupManager } from './disk-cleanup.js';
import { ModelMemoryManager, type ModelLease } from './model-memory-manager.js';
import { ResourceLimiter } from './resource-limiter.js';
import { ResourceMonitor, type ResourceMonitorOptions, type SystemCpuOptions } from './resource-monitor.js';
import { type EvictionPolicy, type ModelDriver, type ResourceLimits } from './types.js';

/** One backend whose models are managed. */
export interface ManagedBackend {
  /** For the status (e.g. the backend's origin). */
  name: string;
  driver: ModelDriver;
  /** True for the models this backend serves. */
  serves(model: string): boolean;
}

/** Options of {@link ResourceManagement}. Every part is optional except the monitor and limiter. */
export interface ResourceManagementOptions {
  /** Limits of this worker (defaults: memory 85, cpu 90, disk 95, heap and event-loop delay off). */
  limits?: Partial<ResourceLimits>;
  /** Points under a limit before pressure ends. Default 5. */
  hysteresis?: number;
  /** Sampling interval, ms. Default 2000. */
  sampleMs?: number;
  /** A path on the filesystem whose disk use counts. Default the working folder. */
  diskPath?: string;
  /** Replaces the system sampler (tests, simulations). */
  sampler?: ResourceMonitorOptions['sampler'];
  /** cell0's CPU figure: its sliding window, and injected sources (tests). */
  cpu?: SystemCpuOptions;
  /** Model memory management: one manager per backend that can load and unload. */
  models?: {
    backends: ManagedBackend[];
    budgetBytes: number;
    policy?: EvictionPolicy;
    keepAliveMs?: number;
    /** First matching rule gives a model its priority or pin. */
    priorities?: ModelPriorityRule[];
    /** How often resident models are reconciled with the backend and idle ones swept, ms. Default 30000. */
    sweepMs?: number;
  };
  /** Disk cleanup of these folders (by the scheduled cleanup job, and at once when the disk limit is hit). */
  cleanup?: { paths: CleanupPathSetting[]; threshold?: number };
  logger?: Logger;
}

/** Something that holds a model resident for one job. */
export interface ModelLeaser {
  acquire(model: string, opts?: { signal?: AbortSignal }): Promise<ModelLease>;
  /**
   * The lease acquire would give at once when the model is resident and usable now, without a promise;
   * undefined when it is not (or the leaser cannot tell): then acquire.
   */
  tryAcquire?(model: string): ModelLease | undefined;
}

/**
 * The resource-management block of one worker process, started and stopped as one: the monitor samples on a
 * timer; the limiter follows it (hysteresis, cleanup handlers once per pressure episode); the model managers
 * keep each managed backend's resident models within the budget; the disk cleaner tidies the registered
 * folders. Wiring: a disk violation runs an aggressive disk cleanup; a memory violation unloads models idle
 * past their keep-alive. `start()` and `close()` are idempotent; every timer is unref'd.
 */
export class ResourceManagement {
  readonly monitor: ResourceMonitor;
  readonly limiter: ResourceLimiter;
  readonly disk: DiskCleanupManager;
  readonly managers: { name: string; manager: ModelMemoryManager; backend: ManagedBackend }[];
  private readonly opts: ResourceManagementOptions;
  private readonly log: Logger;
  private sweepTimer: NodeJS.Timeout | undefined;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(opts: ResourceManagementOptions = {}) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger();
    this.monitor = new ResourceMonitor({
      ...(opts.sampleMs !== undefined ? { intervalMs: opts.sampleMs } : {}),
      ...(opts.diskPath !== undefined ? { diskPath: opts.diskPath } : {}),
      ...(opts.sampler ? { sampler: opts.sampler } : {}),
      ...(opts.cpu ? { cpu: opts.cpu } : {}),
    });
    this.monitor.on('error', (err) => this.log.debug({ err }, 'resource sample failed'));
    this.limiter = new ResourceLimiter({
      source: this.monitor,
      ...(opts.limits ? { limits: opts.limits } : {}),
      ...(opts.hysteresis !== undefined ? { hysteresis: opts.hysteresis } : {}),
    });
    this.limiter.on('handler:error', ({ error, handler }) =>
      this.log.warn({ err: error, handler }, 'resource cleanup handler failed'),
    );
    this.limiter.on('pressure:start', (violations) =>
      this.log.warn({ violations }, 'resource pressure: limits exceeded'),
    );
    this.limiter.on('pressure:end', () => this.log.info('resource pressure over'));
    this.disk = new DiskCleanupManager({
      intervalMs: 0,
      ...(opts.cleanup?.threshold !== undefined ? { cleanupThreshold: opts.cleanup.threshold } : {}),
    });
    for (const p of opts.cleanup?.paths ?? []) this.disk.registerCleanupPath(p.path, p.maxAgeDays);
    const m = opts.models;
    this.managers = (m?.backends ?? []).map((backend) => {
      const manager = new ModelMemoryManager({
        budgetBytes: m!.budgetBytes,
        driver: backend.driver,
        ...(m!.policy ? { policy: m!.policy } : {}),
        ...(m!.keepAliveMs !== undefined ? { keepAliveMs: m!.keepAliveMs } : {}),
      });
      manager.on('model:evicted', (e) => this.log.info({ backend: backend.name, ...e }, 'model evicted'));
      manager.on('model:loaded', (e) => this.log.info({ backend: backend.name, ...e }, 'model loaded'));
      manager.on('model:error', ({ modelId, op, error }) =>
        this.log.warn(
          { backend: backend.name, modelId, op, err: error.message },
          'model management call failed',
        ),
      );
      return { name: backend.name, manager, backend };
    });

    this.limiter.registerCleanupHandler(async (violations) => {
      if (!violations.some((v) => v.resource === 'disk') || this.disk.paths().length === 0) return;
      const r = await this.disk.run({ aggressive: true });
      this.log.warn(
        { removedFiles: r.removedFiles, removedBytes: r.removedBytes },
        'disk pressure: cleaned up',
      );
    }, 'disk-cleanup');
    this.limiter.registerCleanupHandler(async (violations) => {
      if (!violations.some((v) => v.resource === 'memory')) return;
      for (const { manager } of this.managers) {
        const gone = await manager.sweepExpired();
        if (gone.length > 0) this.log.warn({ models: gone }, 'memory pressure: idle models unloaded');
      }
    }, 'unload-idle-models');
  }

  /** Starts sampling (the first sample is taken before it resolves) and the model sweep. Idempotent. */
  start(): Promise<void> {
    this.starting ??= (async () => {
      await this.monitor.start();
      this.limiter.start();
      if (this.managers.length > 0) {
        const every = this.opts.models?.sweepMs ?? 30_000;
        this.sweepTimer = setInterval(() => void this.sweepModels(), every);
        this.sweepTimer.unref();
      }
    })();
    return this.starting;
  }

  /** Reconciles each manager with its backend and unloads models idle past their keep-alive. */
  async sweepModels(): Promise<void> {
    for (const { manager } of this.managers) {
      try {
        await manager.reconcile();
        await manager.sweepExpired();
      } catch (err) {
        this.log.debug({ err }, 'model sweep failed');
      }
    }
  }

  /**
   * The manager of the backend serving `model`, wrapped so that a model is registered with its size (from
   * the backend) and its priority or pin (CELL0_MODEL_PRIORITIES) before its first use; undefined when the
   * model's backend is not managed.
   */
  modelsFor(model: string): ModelLeaser | undefined {
    for (let i = 0; i < this.managers.length; i++)
      if (this.managers[i]!.backend.serves(model)) return (this.leasers[i] ??= this.leaserOf(i));
    return undefined;
  }

  /** The leasers of the managers (by index), made on first use: one per manager, not one per job. */
  private readonly leasers: ModelLeaser[] = [];

  private leaserOf(i: number): ModelLeaser {
    const entry = this.managers[i]!;
    return {
      acquire: async (name, opts) => {
        const id = withLatestTag(name);
        if (!entry.manager.getModel(id)) {
          const rule = (this.opts.models?.priorities ?? []).find(
            (r) => matchesPattern(r.pattern, name) || matchesPattern(r.pattern, id),
          );
          const size = await entry.backend.driver.sizeOf?.(id, opts?.signal).catch(() => undefined);
          if (rule || size !== undefined)
            entry.manager.registerModel(id, id, size ?? DEFAULT_MODEL_BYTES, rule?.priority ?? 0, {
              pinned: rule?.pinned ?? false,
            });
        }
        return entry.manager.acquire(id, opts);
      },
      // A model resident now is registered already: nothing to register first.
      tryAcquire: (name) => entry.manager.tryAcquire(withLatestTag(name)),
    };
  }

  /** The sections this block adds to the worker's published status. */
  status(): { resources: Record<string, unknown>; models?: Record<string, unknown> } {
    return {
      resources: {
        usage: this.monitor.getCurrentUsage() ?? null,
        limits: this.limiter.limits,
        underPressure: this.limiter.underPressure,
        violations: this.limiter.violations,
      },
      ...(this.managers.length > 0
        ? {
            models: {
              managers: this.managers.map(({ name, manager }) => ({ backend: name, ...manager.getStats() })),
            },
          }
        : {}),
    };
  }

  /** Stops every part; idempotent. Models stay loaded (another worker process may be using the backend). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.sweepTimer);
      await Promise.allSettled([
        this.limiter.close(),
        this.monitor.close(),
        this.disk.close(),
        ...this.managers.map(({ manager }) => manager.close()),
      ]);
    })();
    return this.closing;
  }
}

/** Size charged for a model whose backend cannot say, bytes (a 7B model at 4-bit). */
const DEFAULT_MODEL_BYTES = 4e9;

let processWide: ResourceManagement | undefined;

/**
 * Seed `initialize_resource_management(limits)`: starts the process-wide block (monitor, limiter, model
 * managers, disk cleanup) with these options. Idempotent: while one is running, later calls return it
 * unchanged.
 */
export async function initializeResourceManagement(
  opts: ResourceManagementOptions = {},
): Promise<ResourceManagement> {
  processWide ??= new ResourceManagement(opts);
  await processWide.start();
  return processWide;
}

/** Seed `shutdown_resource_management()`: stops the process-wide block. Idempotent. */
export async function shutdownResourceManagement(): Promise<void> {
  const rm = processWide;
  processWide = undefined;
  await rm?.close();
}
