/*
 * How the fleet's published statuses are read for decisions: whether a request's backend is down on every
 * worker that could run it, the backends as /readyz?backends=1 shows them, and how resource pressure weighs
 * on a worker (paused, CPU-saturated, none).
 */
import {
  summarizeBackendHealth,
  unavailableBackend,
  type BackendHealth,
  type BackendHealthReport,
} from '../../shared/fleet/backend-health';
import { summarizeFleet, workerPressure, type WorkerStatus } from '../../shared/fleet/worker-status';

const OLLAMA = 'ollama@http://gpu1:11434';
const OPENAI = 'openai@http://gpu2:8000';
const SEARX = 'searxng@http://search:8080';

function backend(
  name: string,
  state: BackendHealth['state'],
  extra: Partial<BackendHealth> = {},
): BackendHealth {
  return {
    name,
    state,
    since: '2030-01-01T00:00:00.000Z',
    retryAfterMs: state === 'open' ? 4000 : 0,
    ...extra,
  };
}

/** A worker serving both queues: qwen* and * on Ollama, gpt-* on OpenAI; SearXNG guarded, local in-process. */
function worker(
  id: string,
  states: Record<string, BackendHealth['state']>,
  extra: Partial<WorkerStatus> = {},
) {
  const report: BackendHealthReport = {
    backends: Object.entries(states).map(([name, state]) => backend(name, state)),
    inference: [
      { pattern: 'gpt-*', backend: OPENAI },
      { pattern: '*', backend: OLLAMA },
    ],
    search: { local: null, searxng: SEARX },
  };
  const w: WorkerStatus = {
    id,
    host: 'h',
    pid: 1,
    queues: ['inference', 'search'],
    startedAt: '',
    updatedAt: '',
    active: 0,
    state: 'running',
    backendHealth: report,
    ...extra,
  };
  return w;
}

const qwen = { queue: 'inference', model: 'qwen2.5:7b' } as const;

describe('unavailableBackend', () => {
  it("is the model's route's backend, open on every worker (the earliest trial call is the Retry-After)", () => {
    const a = worker('a', { [OLLAMA]: 'open', [OPENAI]: 'closed' });
    const b = worker('b', { [OLLAMA]: 'open', [OPENAI]: 'closed' });
    (b.backendHealth as BackendHealthReport).backends[0]!.retryAfterMs = 2500;
    expect(unavailableBackend([a, b], qwen)).toEqual({ backends: [OLLAMA], retryAfterMs: 2500, workers: 2 });
    // gpt-4o goes to OpenAI, which is up.
    expect(unavailableBackend([a, b], { queue: 'inference', model: 'gpt-4o' })).toBeUndefined();
  });

  it('half-open counts as down (one trial call is allowed, and has not succeeded yet); Retry-After is at least 1 s', () => {
    const a = worker('a', { [OLLAMA]: 'half-open', [OPENAI]: 'closed' });
    const b = worker('b', { [OLLAMA]: 'open', [OPENAI]: 'closed' });
    expect(unavailableBackend([a, b], qwen)).toEqual({ backends: [OLLAMA], retryAfterMs: 1000, workers: 2 });
  });

  it('workers that disagree: one closed breaker is enough to go the normal way', () => {
    const a = worker('a', { [OLLAMA]: 'open', [OPENAI]: 'closed' });
    const b = worker('b', { [OLLAMA]: 'closed', [OPENAI]: 'closed' });
    expect(unavailableBackend([a, b], qwen)).toBeUndefined();
  });

  it('a worker that cannot say (no backend health published) or runs the target in-process keeps the normal way', () => {
    const a = worker('a', { [OLLAMA]: 'open', [SEARX]: 'open' });
    const silent = worker('s', {}, { backendHealth: undefined });
    expect(unavailableBackend([a, silent], qwen)).toBeUndefined();
    expect(unavailableBackend([a], { queue: 'search', provider: 'searxng' })).toEqual({
      backends: [SEARX],
      retryAfterMs: 4000,
      workers: 1,
    });
    expect(unavailableBackend([a], { queue: 'search', provider: 'local' })).toBeUndefined();
  });

  it('counts only live workers that could run the target; none at all → the normal way', () => {
    const down = worker('a', { [OLLAMA]: 'open' });
    const closing = worker('c', { [OLLAMA]: 'closed' }, { state: 'closing' });
    const searchOnly = worker('s', { [OLLAMA]: 'closed' }, { queues: ['search'] });
    // A worker whose routes do not cover the model cannot run it: it does not outvote the others.
    const noRoute = worker(
      'n',
      {},
      { backendHealth: { backends: [], inference: [{ pattern: 'gpt-*', backend: OPENAI }] } },
    );
    expect(unavailableBackend([down, closing, searchOnly, noRoute], qwen)).toMatchObject({ workers: 1 });
    expect(unavailableBackend([closing, searchOnly], qwen)).toBeUndefined();
    expect(unavailableBackend([], qwen)).toBeUndefined();
  });

  it('different backends for the same model on different workers, all down: both are named', () => {
    const a = worker('a', { [OLLAMA]: 'open' });
    const b = worker(
      'b',
      { 'ollama@http://gpu3:11434': 'open' },
      {
        backendHealth: {
          backends: [backend('ollama@http://gpu3:11434', 'open')],
          inference: [{ pattern: '*', backend: 'ollama@http://gpu3:11434' }],
        },
      },
    );
    expect(unavailableBackend([a, b], qwen)?.backends).toEqual([
      'ollama@http://gpu1:11434',
      'ollama@http://gpu3:11434',
    ]);
  });
});

describe('summarizeBackendHealth (what /readyz?backends=1 shows)', () => {
  it('one entry per backend: common state or mixed, the latest since and error, workers by state, what it serves', () => {
    const a = worker('a', { [OLLAMA]: 'open', [OPENAI]: 'closed', [SEARX]: 'closed' });
    const b = worker('b', { [OLLAMA]: 'closed', [OPENAI]: 'closed', [SEARX]: 'closed' });
    const ra = a.backendHealth as BackendHealthReport;
    ra.backends[0] = backend(OLLAMA, 'open', {
      since: '2030-01-01T00:00:05.000Z',
      lastError: {
        code: 'CELL0_PROVIDER_ERROR',
        kind: 'connection',
        cause: 'ECONNREFUSED',
        at: '2030-01-01T00:00:05.000Z',
      },
    });
    const closing = worker('c', { [OLLAMA]: 'open' }, { state: 'closing' });
    const summary = summarizeBackendHealth([a, b, closing]);
    expect(summary.map((x) => x.name)).toEqual([OLLAMA, OPENAI, SEARX]);
    expect(summary[0]).toEqual({
      name: OLLAMA,
      state: 'mixed',
      since: '2030-01-01T00:00:05.000Z',
      lastError: {
        code: 'CELL0_PROVIDER_ERROR',
        kind: 'connection',
        cause: 'ECONNREFUSED',
        at: '2030-01-01T00:00:05.000Z',
      },
      workers: { open: 1, closed: 1 },
      models: ['*'],
    });
    expect(summary[1]).toMatchObject({ state: 'closed', workers: { closed: 2 }, models: ['gpt-*'] });
    expect(summary[2]).toMatchObject({ state: 'closed', providers: ['searxng'] });
    expect(summarizeBackendHealth([worker('s', {}, { backendHealth: undefined })])).toEqual([]);
  });
});

describe('workerPressure', () => {
  const w = (state: WorkerStatus['state'], pressure?: unknown): WorkerStatus =>
    worker('x', {}, { state, ...(pressure !== undefined ? { pressure } : {}) });

  it('paused by memory, disk, heap or event loop (or without saying why) is paused; CPU alone is saturated', () => {
    expect(workerPressure(w('running'))).toBe('none');
    expect(workerPressure(w('running', { underPressure: false, violations: [] }))).toBe('none');
    expect(
      workerPressure(
        w('running', { underPressure: true, saturated: true, violations: [{ resource: 'cpu' }] }),
      ),
    ).toBe('saturated');
    expect(workerPressure(w('paused', { underPressure: true, violations: [{ resource: 'memory' }] }))).toBe(
      'paused',
    );
    expect(
      workerPressure(
        w('paused', { underPressure: true, violations: [{ resource: 'cpu' }, { resource: 'heap' }] }),
      ),
    ).toBe('paused');
    // A worker of an earlier version that paused for CPU alone: it counts as saturated, as CPU now does.
    expect(workerPressure(w('paused', { underPressure: true, violations: [{ resource: 'cpu' }] }))).toBe(
      'saturated',
    );
    expect(workerPressure(w('paused'))).toBe('paused');
    expect(workerPressure(w('closing'))).toBe('none');
  });

  it('summarizeFleet counts saturated workers beside paused ones', () => {
    expect(
      summarizeFleet([
        w('running', { underPressure: true, saturated: true, violations: [{ resource: 'cpu' }] }),
        w('paused', { underPressure: true, violations: [{ resource: 'disk' }] }),
        w('running'),
      ]),
    ).toMatchObject({ workers: 3, running: 2, paused: 1, saturated: 1 });
  });
});
