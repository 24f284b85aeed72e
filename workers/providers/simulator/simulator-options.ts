import { type FieldIssue } from '../../../shared/errors.js';
import { type SimModelSpec } from './catalog.js';
import { validateSimFaults, type SimFaults } from './faults.js';
import { validateGpuProfile, type GpuProfile } from './gpu-model.js';
import { keepAliveMs } from './keep-alive.js';

/** Options of {@link OllamaSimulator}. */
export interface OllamaSimulatorOptions {
  /** Interface to listen on. Default '127.0.0.1'. */
  host?: string;
  /** Port to listen on; 0 picks a free one (read it from start() or `url`). Default 0. */
  port?: number;
  /** Time from the model being ready to the first token (prompt evaluation), in ms. Default 40. */
  ttftMs?: number;
  /** Generation speed after the first token. Default 200. */
  tokensPerSec?: number;
  /** Load time per GB (1e9 bytes) of model weights, paid when a model is not resident. Default 100. */
  loadMsPerGb?: number;
  /** Most models resident at once, like OLLAMA_MAX_LOADED_MODELS; beyond it the LRU idle one is unloaded. Default 3. */
  maxLoaded?: number;
  /**
   * false: unknown models answer 404 like Ollama ("try pulling it first"). true: any name works, as a 4 GB
   * 7B-class model. Default false.
   */
  allowAnyModel?: boolean;
  /** keep_alive of requests that give none (seconds, or a duration such as "5m"). Default '5m'. */
  defaultKeepAlive?: string | number;
  /** Largest accepted request body; larger ones get 413. Default 10 MiB. */
  maxBodyBytes?: number;
  /** Models added to the default catalog; an entry with a default model's name replaces it. Default none. */
  models?: readonly SimModelSpec[];
  /**
   * Cost of an /api/embed call: `embedCallMs` per call plus `embedItemMs` per input, with at most
   * `embedParallel` calls per model computing at once (more wait their turn). Defaults 15, 0.5 and 4: a
   * backend where batching pays, as it does on a GPU. See docs/backends.md.
   */
  embedCallMs?: number;
  embedItemMs?: number;
  embedParallel?: number;
  /**
   * Faults injected into /api/generate, /api/chat, /api/embed and /api/embeddings; change them at run time
   * with setFaults() or POST /_sim/faults. Default none.
   */
  faults?: SimFaults;
  /**
   * GPU-like serving (gpu-model.ts): per-model parallel slots, throughput shared by continuous batching, a
   * bounded wait queue answering 503, prompt evaluation time. false (the default): every request gets its
   * own generator at tokensPerSec, however many run at once. `tokensPerSec` is unused when this is on.
   */
  gpu?: GpuProfile | false;
  /**
   * The wall clock (epoch ms) keep_alive counts on: when an idle model expires, and the expires_at of
   * /api/ps. Default Date.now; a test gives a clock it moves, so expiry never depends on the host's speed.
   */
  now?: () => number;
}

export const DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  ttftMs: 40,
  tokensPerSec: 200,
  loadMsPerGb: 100,
  maxLoaded: 3,
  allowAnyModel: false,
  defaultKeepAlive: '5m' as string | number,
  maxBodyBytes: 10 * 1024 * 1024,
  embedCallMs: 15,
  embedItemMs: 0.5,
  embedParallel: 4,
  models: [] as readonly SimModelSpec[],
  faults: {} as SimFaults,
  gpu: false as GpuProfile | false,
  now: Date.now as () => number,
} satisfies Required<OllamaSimulatorOptions>;

export type ResolvedOptions = Required<OllamaSimulatorOptions>;

/** Problems with the options, each naming its field. */
export function validate(o: ResolvedOptions): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const check = (ok: boolean, field: keyof ResolvedOptions, reason: string): void => {
    if (!ok)
      issues.push({
        field: `OllamaSimulator.${field}`,
        reason: `${reason}, got ${JSON.stringify(o[field])}`,
      });
  };
  check(typeof o.host === 'string' && o.host.length > 0, 'host', 'expected a host name or address');
  check(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535, 'port', 'expected an integer 0..65535');
  check(Number.isFinite(o.ttftMs) && o.ttftMs >= 0, 'ttftMs', 'expected a number of ms >= 0');
  check(Number.isFinite(o.tokensPerSec) && o.tokensPerSec > 0, 'tokensPerSec', 'expected a number > 0');
  check(Number.isFinite(o.loadMsPerGb) && o.loadMsPerGb >= 0, 'loadMsPerGb', 'expected a number of ms >= 0');
  check(Number.isInteger(o.maxLoaded) && o.maxLoaded >= 1, 'maxLoaded', 'expected an integer >= 1');
  check(Number.isInteger(o.maxBodyBytes) && o.maxBodyBytes > 0, 'maxBodyBytes', 'expected an integer > 0');
  check(Number.isFinite(o.embedCallMs) && o.embedCallMs >= 0, 'embedCallMs', 'expected a number of ms >= 0');
  check(Number.isFinite(o.embedItemMs) && o.embedItemMs >= 0, 'embedItemMs', 'expected a number of ms >= 0');
  check(
    Number.isInteger(o.embedParallel) && o.embedParallel >= 1,
    'embedParallel',
    'expected an integer >= 1',
  );
  check(typeof o.allowAnyModel === 'boolean', 'allowAnyModel', 'expected a boolean');
  check(typeof o.now === 'function', 'now', 'expected a function returning epoch ms');
  check(Array.isArray(o.models), 'models', 'expected an array of model specs');
  issues.push(...validateSimFaults(o.faults, 'OllamaSimulator.faults'));
  if (o.gpu !== false) issues.push(...validateGpuProfile(o.gpu, 'OllamaSimulator.gpu'));
  try {
    keepAliveMs(o.defaultKeepAlive);
  } catch (err) {
    check(false, 'defaultKeepAlive', err instanceof Error ? err.message : 'expected seconds or a duration');
  }
  return issues;
}
