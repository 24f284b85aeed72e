/*
 * bench:eviction — which eviction policy keeps the right models in memory?
 *
 * Builds a synthetic request trace with a seeded PRNG and replays it, request by request, through
 * ModelMemoryManager.accessModel (bookkeeping mode: no backend) under each of the five policies, plus
 * Belady's clairvoyant OPT (evict the resident model whose next use is farthest) as a reference line. The
 * trace's timestamps drive the manager's clock, so TTL keep-alives and LFU decay see real idle times.
 *
 * The trace:
 *   - M models (default 12) from a catalogue of common Ollama models, with their download sizes (q4
 *     quantisations as listed in the Ollama library) taken as the memory they hold; models larger than the
 *     budget are left out (they could never be loaded);
 *   - popularity Zipf (s = 1.1) over a shuffled ranking, which rotates by a third halfway through (the
 *     popular models change, so recency and decay matter);
 *   - Poisson arrivals at 5 requests/s; 8% of arrivals are bursts of 3–12 requests for one model ~0.3 s
 *     apart (a batch or an agent loop).
 * Assumed load time: 150 ms + 1200 ms per GB (runner start, then ~0.8 GB/s from disk into GPU memory: an
 * assumption for a mid-range host, not a measurement). Keep-alive (TTL policy): Ollama's default 5 min,
 * scaled up with load time (an expensive model is kept longer).
 *
 * The replay does not model queueing: "load time" is the total the policy makes jobs pay in loads, the cost
 * to compare between policies, not a wall-clock figure (at this arrival rate it exceeds the trace's length).
 *
 *   npm run bench:eviction -- [--seed S] [--requests N] [--models M] [--budget-gb G] [--json]
 */
import { benchArgs } from './args.js';
import { ModelMemoryManager } from '../shared/resources/model-memory-manager.js';
import { EvictionPolicy } from '../shared/resources/types.js';
import { mulberry32 } from '../workers/providers/simulator/faults.js';

const GB = 1e9;
const ZIPF_S = 1.1;
const ARRIVALS_PER_S = 5;
const BURST_PROBABILITY = 0.08;
const BURST_GAP_MS = 300;
const LOAD_BASE_MS = 150;
const LOAD_MS_PER_GB = 1200;
const KEEP_ALIVE_MS = 300_000;

/** Name and size (GB) of common Ollama models, in a mixed order so any prefix mixes sizes. */
const CATALOGUE: [string, number][] = [
  ['qwen2.5:7b', 4.7],
  ['llama3.2:3b', 2.0],
  ['llama3.1:8b', 4.9],
  ['qwen2.5:0.5b', 0.4],
  ['gemma2:9b', 5.4],
  ['phi4:14b', 9.1],
  ['qwen2.5:32b', 20],
  ['nomic-embed-text', 0.27],
  ['llama3.2:1b', 1.3],
  ['gemma2:27b', 16],
  ['mistral-nemo:12b', 7.1],
  ['llama3.3:70b', 43],
  ['qwen2.5:14b', 9.0],
  ['gemma2:2b', 1.6],
  ['mistral:7b', 4.1],
  ['qwen2.5:72b', 47],
  ['deepseek-r1:8b', 4.9],
  ['qwen2.5-coder:1.5b', 1.0],
];

interface Model {
  id: string;
  bytes: number;
  loadMs: number;
  keepAliveMs: number;
}

interface Request {
  at: number;
  model: number;
}

interface Result {
  policy: string;
  hitRate: number;
  loads: number;
  evictions: number;
  loadTimeS: number;
  vsLru: number;
}

/** The first `count` catalogue models that fit the budget (cycling with a variant suffix when short). */
function pickModels(count: number, budgetBytes: number): { models: Model[]; dropped: string[] } {
  const fitting = CATALOGUE.filter(([, gb]) => gb * GB <= budgetBytes);
  const dropped = CATALOGUE.filter(([, gb]) => gb * GB > budgetBytes).map(([n]) => n);
  if (fitting.length === 0) throw new Error('no catalogue model fits the budget');
  const models: Model[] = [];
  for (let i = 0; i < count; i++) {
    const [name, gb] = fitting[i % fitting.length]!;
    const round = Math.floor(i / fitting.length);
    const loadMs = LOAD_BASE_MS + LOAD_MS_PER_GB * gb;
    models.push({
      id: round === 0 ? name : `${name}-ft${round}`,
      bytes: Math.round(gb * GB),
      loadMs,
      keepAliveMs: Math.round(KEEP_ALIVE_MS * Math.max(1, loadMs / 5000)),
    });
  }
  return { models, dropped };
}

function buildTrace(n: number, modelCount: number, rand: () => number): Request[] {
  // A shuffled ranking (so popularity is not tied to size), rotated by a third halfway through.
  const ranking = Array.from({ length: modelCount }, (_, i) => i);
  for (let i = ranking.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [ranking[i], ranking[j]] = [ranking[j]!, ranking[i]!];
  }
  const shift = Math.max(1, Math.round(modelCount / 3));
  const cumulative: number[] = [];
  let total = 0;
  for (let r = 1; r <= modelCount; r++) cumulative.push((total += 1 / r ** ZIPF_S));
  const pick = (phase: number): number => {
    const u = rand() * total;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return ranking[(lo + phase * shift) % modelCount]!;
  };
  const exp = (meanMs: number): number => -Math.log(1 - rand()) * meanMs;
  const trace: Request[] = [];
  let t = 0;
  while (trace.length < n) {
    t += exp(1000 / ARRIVALS_PER_S);
    const model = pick(trace.length < n / 2 ? 0 : 1);
    const k = rand() < BURST_PROBABILITY ? 3 + Math.floor(rand() * 10) : 1;
    for (let i = 0; i < k && trace.length < n; i++) {
      if (i > 0) t += exp(BURST_GAP_MS);
      trace.push({ at: Math.round(t), model });
    }
  }
  return trace;
}

function replay(policy: EvictionPolicy, models: Model[], trace: Request[], budgetBytes: number) {
  let now = 0;
  const m = new ModelMemoryManager({ budgetBytes, policy, now: () => now });
  for (const mod of models)
    m.registerModel(mod.id, mod.id, mod.bytes, 0, { loadMs: mod.loadMs, keepAliveMs: mod.keepAliveMs });
  for (const r of trace) {
    now = r.at;
    m.accessModel(models[r.model]!.id);
  }
  const s = m.getStats();
  return { hits: s.hits, loads: s.loads, evictions: s.evictions, loadTimeMs: s.loadTimeSpentMs };
}

/**
 * Belady's OPT: on a miss, evict the resident model used farthest in the future until the new one fits.
 * Optimal for equal sizes; with mixed sizes it is a strong clairvoyant reference, not a strict bound.
 */
function belady(models: Model[], trace: Request[], budgetBytes: number) {
  const next = new Array<number>(trace.length);
  const seen = new Map<number, number>();
  for (let i = trace.length - 1; i >= 0; i--) {
    const id = trace[i]!.model;
    next[i] = seen.get(id) ?? Infinity;
    seen.set(id, i);
  }
  const resident = new Map<number, number>(); // model → its next use
  let used = 0;
  let hits = 0;
  let loads = 0;
  let evictions = 0;
  let loadTimeMs = 0;
  trace.forEach((r, i) => {
    const model = models[r.model]!;
    if (resident.has(r.model)) hits++;
    else {
      while (used + model.bytes > budgetBytes) {
        let victim = -1;
        let farthest = -1;
        for (const [id, nextUse] of resident)
          if (nextUse > farthest || (nextUse === farthest && id < victim)) [victim, farthest] = [id, nextUse];
        resident.delete(victim);
        used -= models[victim]!.bytes;
        evictions++;
      }
      used += model.bytes;
      loads++;
      loadTimeMs += model.loadMs;
    }
    resident.set(r.model, next[i]!);
  });
  return { hits, loads, evictions, loadTimeMs };
}

function main(): void {
  const o = benchArgs(
    process.argv.slice(2),
    { seed: 42, requests: 20_000, models: 12, 'budget-gb': 24 },
    'npm run bench:eviction -- [--seed S] [--requests N] [--models M] [--budget-gb G] [--json]',
  );
  const seed = Math.floor(o.seed);
  const budgetBytes = o['budget-gb'] * GB;
  const rand = mulberry32(seed);
  const { models, dropped } = pickModels(Math.floor(o.models), budgetBytes);
  const trace = buildTrace(Math.floor(o.requests), models.length, rand);

  const runs: { policy: string; hits: number; loads: number; evictions: number; loadTimeMs: number }[] = [];
  for (const policy of Object.values(EvictionPolicy))
    runs.push({ policy, ...replay(policy, models, trace, budgetBytes) });
  runs.push({ policy: 'OPT (Belady)', ...belady(models, trace, budgetBytes) });
  const lru = runs.find((r) => r.policy === EvictionPolicy.LRU)!;
  const results: Result[] = runs.map((r) => ({
    policy: r.policy,
    hitRate: r.hits / trace.length,
    loads: r.loads,
    evictions: r.evictions,
    loadTimeS: r.loadTimeMs / 1000,
    vsLru: lru.loadTimeMs > 0 ? r.loadTimeMs / lru.loadTimeMs : 1,
  }));

  const durationMin = (trace.at(-1)?.at ?? 0) / 60_000;
  const totalGb = models.reduce((s, m) => s + m.bytes, 0) / GB;
  if (o.json) {
    console.log(
      JSON.stringify(
        {
          seed,
          requests: trace.length,
          budgetGb: o['budget-gb'],
          traceMinutes: Math.round(durationMin * 10) / 10,
          models: models.map((m) => ({ id: m.id, gb: m.bytes / GB, loadMs: m.loadMs })),
          dropped,
          results,
        },
        null,
        2,
      ),
    );
    return;
  }
  console.log(
    `seed ${seed}: ${trace.length} requests over ${durationMin.toFixed(1)} min, ${models.length} models ` +
      `(${totalGb.toFixed(1)} GB in all) in a ${o['budget-gb']} GB budget`,
  );
  if (dropped.length > 0) console.log(`left out (larger than the budget): ${dropped.join(', ')}`);
  console.log(
    `popularity Zipf s=${ZIPF_S}, rotated halfway; ${ARRIVALS_PER_S} req/s Poisson; ` +
      `${BURST_PROBABILITY * 100}% bursts of 3-12; load ${LOAD_BASE_MS} ms + ${LOAD_MS_PER_GB} ms/GB (assumed)\n`,
  );
  const header = ['policy', 'hit rate', 'loads', 'evictions', 'load time (s)', 'vs LRU'];
  const rows = results.map((r) => [
    r.policy,
    `${(r.hitRate * 100).toFixed(2)}%`,
    String(r.loads),
    String(r.evictions),
    r.loadTimeS.toFixed(1),
    r.vsLru.toFixed(3),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

main();
