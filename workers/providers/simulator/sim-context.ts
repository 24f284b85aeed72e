import { performance } from 'node:perf_hooks';
import { type SimModel } from './catalog.js';
import { type EmbedCost } from './embed-cost.js';
import { type GpuModel } from './gpu-model.js';
import { type ResidentModels } from './resident-models.js';
import { type SimulatorCounters } from './simulator-stats.js';
import { type ResolvedOptions } from './simulator-options.js';

/** What the simulator's request handlers share: its options, counters, models and timers. */
export interface SimContext {
  readonly opts: ResolvedOptions;
  readonly counters: SimulatorCounters;
  readonly residency: ResidentModels;
  readonly embedCost: EmbedCost;
  /** The GPU model when the GPU profile is on. */
  readonly gpu: GpuModel | undefined;
  /** A timer the simulator clears on close; returns its cancel. */
  setTimer(fn: () => void, ms: number): () => void;
  /** Reads `model`, counts it, and resolves it in the catalog (404 when unknown). */
  modelOf(body: Record<string, unknown>, struct: string): { requestedName: string; model: SimModel };
  /** The request's keep_alive in ms (400 when malformed), or the default. */
  keepAliveOf(body: Record<string, unknown>): number;
}

/** Milliseconds as the nanoseconds Ollama reports durations in. */
export const nsOf = (ms: number): number => Math.max(0, Math.round(ms * 1e6));

export const clock = (): number => performance.now();
