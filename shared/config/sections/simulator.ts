import { z } from 'zod';
import { type FieldIssue } from '../../errors.js';
import { issue, type EnvVar, type ParsedEnv } from '../env-var.js';
import { int, bool, rate } from '../schemas.js';

/*
 * The bundled Ollama-compatible simulator.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const SIMULATOR_ENV = {
  CELL0_SIM_HOST: {
    section: 'simulator',
    default: '127.0.0.1',
    schema: z.string().trim().min(1, 'expected an address'),
    doc: 'Address the simulator listens on',
  },
  CELL0_SIM_PORT: {
    section: 'simulator',
    default: '11435',
    schema: int(0, 65535),
    doc: 'Port of the Ollama-compatible simulator',
  },
  CELL0_SIM_TTFT_MS: {
    section: 'simulator',
    default: '40',
    schema: int(0, 600_000),
    doc: 'Simulator: time to first token once the model is loaded',
  },
  CELL0_SIM_TOKENS_PER_SEC: {
    section: 'simulator',
    default: '200',
    schema: int(1, 1_000_000),
    doc: 'Simulator: generation speed',
  },
  CELL0_SIM_LOAD_MS_PER_GB: {
    section: 'simulator',
    default: '100',
    schema: int(0, 600_000),
    doc: 'Simulator: model load time per GB of model size',
  },
  CELL0_SIM_EMBED_CALL_MS: {
    section: 'simulator',
    default: '15',
    schema: rate(0, 600_000),
    doc: 'Simulator: fixed cost of one /api/embed call, ms (per call, whatever the number of inputs)',
  },
  CELL0_SIM_EMBED_ITEM_MS: {
    section: 'simulator',
    default: '0.5',
    schema: rate(0, 600_000),
    doc: 'Simulator: cost of each input of an /api/embed call, ms',
  },
  CELL0_SIM_EMBED_PARALLEL: {
    section: 'simulator',
    default: '4',
    schema: int(1, 1000),
    doc: 'Simulator: /api/embed calls one model computes at once; more wait their turn (like OLLAMA_NUM_PARALLEL)',
  },
  CELL0_SIM_MAX_LOADED: {
    section: 'simulator',
    default: '3',
    schema: int(1, 1000),
    doc: 'Simulator: models resident at once (least recently used is unloaded)',
  },
  CELL0_SIM_ALLOW_ANY_MODEL: {
    section: 'simulator',
    default: '0',
    schema: bool,
    doc: 'Simulator: serve model names outside its catalog instead of answering 404',
  },
  CELL0_SIM_FAULT_RATE_429: {
    section: 'simulator',
    default: '0',
    schema: rate(0, 1),
    doc: 'Simulator fault injection: fraction of model calls answered 429 with Retry-After',
  },
  CELL0_SIM_FAULT_RETRY_AFTER_SEC: {
    section: 'simulator',
    default: '1',
    schema: int(0, 3600),
    doc: 'Simulator: Retry-After of injected 429s, seconds',
  },
  CELL0_SIM_FAULT_RATE_500: {
    section: 'simulator',
    default: '0',
    schema: rate(0, 1),
    doc: 'Simulator: fraction of model calls answered 500',
  },
  CELL0_SIM_FAULT_SLOW_RATE: {
    section: 'simulator',
    default: '0',
    schema: rate(0, 1),
    doc: 'Simulator: fraction of model calls delayed by CELL0_SIM_FAULT_SLOW_MS',
  },
  CELL0_SIM_FAULT_SLOW_MS: {
    section: 'simulator',
    default: '2000',
    schema: int(0, 3_600_000),
    doc: 'Simulator: delay of slowed calls',
  },
  CELL0_SIM_FAULT_DROP_RATE: {
    section: 'simulator',
    default: '0',
    schema: rate(0, 1),
    doc: 'Simulator: fraction of model calls whose connection is dropped without an answer',
  },
  CELL0_SIM_FAULT_SEED: {
    section: 'simulator',
    schema: int(0, 2 ** 31 - 1),
    doc: 'Simulator: seed of the fault draws (default random)',
  },
  CELL0_SIM_RATE_LIMIT_RPS: {
    section: 'simulator',
    schema: rate(0.001, 1_000_000),
    doc: 'Simulator: its own token-bucket limit on model calls (answers 429 beyond it), requests per second',
  },
  CELL0_SIM_RATE_LIMIT_BURST: {
    section: 'simulator',
    schema: int(1, 1_000_000),
    doc: 'Simulator: burst of its own limit (default: the rate, at least 1)',
  },
  CELL0_SIM_GPU: {
    section: 'simulator',
    default: '0',
    schema: bool,
    doc: 'Simulator: serve like one GPU (parallel slots per model, shared throughput, a bounded queue answering 503); off: every request runs at CELL0_SIM_TOKENS_PER_SEC however many run at once',
  },
  CELL0_SIM_NUM_PARALLEL: {
    section: 'simulator',
    default: '4',
    schema: int(1, 4096),
    doc: 'Simulator with CELL0_SIM_GPU: requests one model runs at once (like OLLAMA_NUM_PARALLEL)',
  },
  CELL0_SIM_MAX_QUEUE: {
    section: 'simulator',
    default: '512',
    schema: int(0, 1_000_000),
    doc: 'Simulator with CELL0_SIM_GPU: requests waiting for a slot per model before 503 (like OLLAMA_MAX_QUEUE)',
  },
  CELL0_SIM_GPU_TOKENS_PER_SEC: {
    section: 'simulator',
    default: '100',
    schema: int(1, 1_000_000),
    doc: 'Simulator with CELL0_SIM_GPU: decode speed of one request alone',
  },
  CELL0_SIM_GPU_MAX_TOKENS_PER_SEC: {
    section: 'simulator',
    default: '1500',
    schema: int(1, 10_000_000),
    doc: 'Simulator with CELL0_SIM_GPU: aggregate decode speed approached with many requests at once (batching ceiling)',
  },
  CELL0_SIM_PREFILL_TOKENS_PER_SEC: {
    section: 'simulator',
    default: '3000',
    schema: int(1, 10_000_000),
    doc: 'Simulator with CELL0_SIM_GPU: prompt evaluation speed (adds to the time to first token)',
  },
} satisfies Record<string, EnvVar>;

export interface SimulatorConfig {
  host: string;
  port: number;
  ttftMs: number;
  tokensPerSec: number;
  loadMsPerGb: number;
  maxLoaded: number;
  allowAnyModel: boolean;
  embedCallMs: number;
  embedItemMs: number;
  embedParallel: number;
  /** GPU-like serving (see the simulator's gpu-model.ts); false when CELL0_SIM_GPU is off. */
  gpu:
    | false
    | {
        numParallel: number;
        maxQueue: number;
        singleStreamTokensPerSec: number;
        maxAggregateTokensPerSec: number;
        prefillTokensPerSec: number;
      };
  faults: {
    rate429: number;
    retryAfterSec: number;
    rate500: number;
    slowRate: number;
    slowMs: number;
    dropRate: number;
    seed?: number;
    rateLimit?: { rate: number; capacity: number };
  };
}

/** Checks across the section's variables (run once each is valid on its own). */
export function checkSimulator(p: ParsedEnv<typeof SIMULATOR_ENV>): FieldIssue[] {
  const faultSum =
    p.CELL0_SIM_FAULT_RATE_429 +
    p.CELL0_SIM_FAULT_RATE_500 +
    p.CELL0_SIM_FAULT_SLOW_RATE +
    p.CELL0_SIM_FAULT_DROP_RATE;
  return faultSum > 1 + 1e-9
    ? issue(
        'CELL0_SIM_FAULT_RATE_429',
        `the simulator's fault fractions (429 + 500 + slow + drop) add up to ${faultSum}, more than 1`,
      )
    : [];
}

export function loadSimulator(p: ParsedEnv<typeof SIMULATOR_ENV>): SimulatorConfig {
  return {
    host: p.CELL0_SIM_HOST,
    port: p.CELL0_SIM_PORT,
    ttftMs: p.CELL0_SIM_TTFT_MS,
    tokensPerSec: p.CELL0_SIM_TOKENS_PER_SEC,
    loadMsPerGb: p.CELL0_SIM_LOAD_MS_PER_GB,
    maxLoaded: p.CELL0_SIM_MAX_LOADED,
    allowAnyModel: p.CELL0_SIM_ALLOW_ANY_MODEL,
    embedCallMs: p.CELL0_SIM_EMBED_CALL_MS,
    embedItemMs: p.CELL0_SIM_EMBED_ITEM_MS,
    embedParallel: p.CELL0_SIM_EMBED_PARALLEL,
    gpu: p.CELL0_SIM_GPU
      ? {
          numParallel: p.CELL0_SIM_NUM_PARALLEL,
          maxQueue: p.CELL0_SIM_MAX_QUEUE,
          singleStreamTokensPerSec: p.CELL0_SIM_GPU_TOKENS_PER_SEC,
          maxAggregateTokensPerSec: p.CELL0_SIM_GPU_MAX_TOKENS_PER_SEC,
          prefillTokensPerSec: p.CELL0_SIM_PREFILL_TOKENS_PER_SEC,
        }
      : false,
    faults: {
      rate429: p.CELL0_SIM_FAULT_RATE_429,
      retryAfterSec: p.CELL0_SIM_FAULT_RETRY_AFTER_SEC,
      rate500: p.CELL0_SIM_FAULT_RATE_500,
      slowRate: p.CELL0_SIM_FAULT_SLOW_RATE,
      slowMs: p.CELL0_SIM_FAULT_SLOW_MS,
      dropRate: p.CELL0_SIM_FAULT_DROP_RATE,
      ...(p.CELL0_SIM_FAULT_SEED !== undefined ? { seed: p.CELL0_SIM_FAULT_SEED } : {}),
      ...(p.CELL0_SIM_RATE_LIMIT_RPS !== undefined
        ? {
            rateLimit: {
              rate: p.CELL0_SIM_RATE_LIMIT_RPS,
              capacity: p.CELL0_SIM_RATE_LIMIT_BURST ?? Math.max(1, Math.floor(p.CELL0_SIM_RATE_LIMIT_RPS)),
            },
          }
        : {}),
    },
  };
}
