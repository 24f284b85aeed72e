/*
 * Turns a scenario file, the shared flows and an environment's thresholds into the artillery script that
 * `npm run load` runs (and writes beside its report, so the run can be repeated with artillery alone).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

export const SCENARIOS = ['standard', 'sustained', 'burst', 'stress', 'benchmark', 'queue'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
export const ENVIRONMENTS = ['development', 'staging', 'production'] as const;
export type EnvironmentName = (typeof ENVIRONMENTS)[number];

/** One environment's limits (thresholds.yml). */
export interface Thresholds {
  chatP95Ms: number;
  chatP99Ms: number;
  searchP95Ms: number;
  errorRatePct: number;
  minThroughputRps: Partial<Record<ScenarioName, number>>;
}

/** An artillery phase (the fields the runner reads or scales). */
export interface Phase {
  name?: string;
  duration: number;
  arrivalRate?: number;
  rampTo?: number;
  arrivalCount?: number;
}

/** What a scenario file holds besides artillery's own config: the runner's part. */
export interface Cell0Section {
  /** The seed's class the scenario mirrors. */
  class: string;
  /** Flow name (in scenarios/_flows.yml) → weight. */
  flows?: Record<string, number>;
  /** Breaking thresholds is the point: checks are reported but do not fail the run. */
  stress?: boolean;
  /** Users loop until a deadline (config.variables.loopSeconds): scaled with --duration. */
  closedLoop?: boolean;
  /** Runs through Cell0Client (processors/queue.mjs), not HTTP. */
  queue?: boolean;
  /** Parallel slots of the simulator the runner starts (default 4, one Ollama GPU); --sim-slots wins. */
  simSlots?: number;
  /** Longest answer of the scenario's requests, tokens (CELL0_LOAD_MAX_TOKENS; default 64). */
  maxTokens?: number;
}

export interface ArtilleryScript {
  config: {
    target?: string;
    phases: Phase[];
    processor?: string;
    variables?: Record<string, unknown>;
    plugins?: Record<string, unknown>;
    [key: string]: unknown;
  };
  scenarios: Array<{ name?: string; weight?: number; flow: unknown[] }>;
}

export interface ResolvedScenario {
  name: ScenarioName;
  cell0: Cell0Section;
  script: ArtilleryScript;
  /** The ensure checks, as artillery prints them. */
  checks: string[];
  /** Seconds the phases (or the closed loop) last. */
  seconds: number;
}

/** Options of {@link resolveScenario}. */
export interface ResolveOptions {
  /** The artillery/ folder. */
  dir: string;
  scenario: ScenarioName;
  env: EnvironmentName;
  target: string;
  /** Scale every phase (and a closed loop) so the run lasts about this long, s. */
  durationSec?: number;
}

export function readThresholds(dir: string, env: EnvironmentName): Thresholds {
  const all = parse(readFileSync(join(dir, 'thresholds.yml'), 'utf8')) as Record<string, Thresholds>;
  const t = all[env];
  if (t === undefined) throw new Error(`thresholds.yml has no "${env}" section`);
  for (const key of ['chatP95Ms', 'chatP99Ms', 'searchP95Ms', 'errorRatePct'] as const) {
    if (typeof t[key] !== 'number' || !(t[key] > 0))
      throw new Error(`thresholds.yml: ${env}.${key} must be a number > 0, got ${JSON.stringify(t[key])}`);
  }
  return t;
}

/** Seconds the phases last. */
export function phaseSeconds(phases: readonly Phase[]): number {
  return phases.reduce((s, p) => s + p.duration, 0);
}

/** Phases stretched or shrunk to last about `seconds` in all (each at least 1 s); rates stay. */
export function scalePhases(phases: readonly Phase[], seconds: number): Phase[] {
  const total = phaseSeconds(phases);
  if (total <= 0) return phases.map((p) => ({ ...p }));
  const factor = seconds / total;
  return phases.map((p) => {
    const duration = Math.max(1, Math.round(p.duration * factor));
    const scaled: Phase = { ...p, duration };
    // A fixed number of arrivals in a phase keeps its count: it is a user count, not a rate.
    return scaled;
  });
}

/** The metric (a cell0.* histogram) that carries the chat latency of a scenario, if it has one. */
function chatMetric(cell0: Cell0Section): string | undefined {
  if (cell0.queue) return 'cell0.queue.enqueue_to_complete';
  const flows = Object.keys(cell0.flows ?? {});
  if (flows.includes('chat') || flows.includes('benchmarkChat')) return 'cell0.latency.chat';
  return undefined;
}

/** The ensure section for a scenario under an environment's thresholds. */
export function ensureChecks(
  scenario: ScenarioName,
  cell0: Cell0Section,
  t: Thresholds,
): { thresholds: Array<Record<string, number>>; conditions: Array<{ expression: string; strict: boolean }> } {
  const strict = cell0.stress !== true;
  const conditions: Array<{ expression: string; strict: boolean }> = [];
  const chat = chatMetric(cell0);
  if (chat !== undefined) {
    conditions.push({ expression: `${chat}.p95 < ${t.chatP95Ms}`, strict });
    conditions.push({ expression: `${chat}.p99 < ${t.chatP99Ms}`, strict });
  }
  if (Object.keys(cell0.flows ?? {}).includes('search'))
    conditions.push({ expression: `cell0.latency.search.p95 < ${t.searchP95Ms}`, strict });
  if (cell0.queue) {
    conditions.push({
      expression: `cell0.queue.errors / (cell0.queue.ran + cell0.queue.errors + 1) * 100 <= ${t.errorRatePct}`,
      strict,
    });
  } else {
    conditions.push({
      expression: `cell0.errors / (cell0.ok + cell0.errors) * 100 <= ${t.errorRatePct}`,
      strict,
    });
    conditions.push({
      expression: `(vusers.created - vusers.completed) / vusers.created * 100 <= ${t.errorRatePct}`,
      strict,
    });
  }
  const minRate = t.minThroughputRps[scenario];
  if (minRate !== undefined) {
    const rate = cell0.queue ? 'cell0.queue.jobs_completed' : 'cell0.answers_per_sec';
    conditions.push({ expression: `${rate} >= ${minRate}`, strict });
  }
  return { thresholds: [], conditions };
}

/** Reads scenarios/<name>.yml (+ _flows.yml) and builds the script to run. */
export function resolveScenario(o: ResolveOptions): ResolvedScenario {
  const file = join(o.dir, 'scenarios', `${o.scenario}.yml`);
  const raw = parse(readFileSync(file, 'utf8')) as {
    config: ArtilleryScript['config'];
    cell0: Cell0Section;
    scenarios?: ArtilleryScript['scenarios'];
  };
  const cell0 = raw.cell0;
  const config = { ...raw.config, target: o.target };
  let scenarios = raw.scenarios ?? [];
  if (cell0.flows !== undefined) {
    const flows = parse(readFileSync(join(o.dir, 'scenarios', '_flows.yml'), 'utf8')) as Record<
      string,
      unknown[]
    >;
    scenarios = Object.entries(cell0.flows).map(([name, weight]) => {
      const flow = flows[name];
      if (flow === undefined) throw new Error(`${o.scenario}.yml: flow "${name}" is not in _flows.yml`);
      return { name, weight, flow };
    });
    config.processor = join(o.dir, 'processors', 'http.mjs');
  } else if (config.processor !== undefined) {
    config.processor = join(o.dir, 'scenarios', config.processor);
  }
  if (o.durationSec !== undefined) {
    if (cell0.closedLoop) {
      // The users arrive within the first phase; the loop is what lasts.
      config.variables = { ...config.variables, loopSeconds: o.durationSec };
    } else {
      config.phases = scalePhases(config.phases, o.durationSec);
    }
  }
  const seconds =
    phaseSeconds(config.phases) + (cell0.closedLoop ? Number(config.variables?.loopSeconds ?? 0) : 0);

  const ensure = ensureChecks(o.scenario, cell0, readThresholds(o.dir, o.env));
  config.plugins = { ...config.plugins, ensure };
  const checks = ensure.conditions.map((c) => c.expression + (c.strict ? '' : ' (optional)'));
  return { name: o.scenario, cell0, script: { config, scenarios }, checks, seconds };
}
