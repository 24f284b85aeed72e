import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnCell0, type Cell0Process } from '../helpers/cli';
import { post } from '../helpers/fleet';
import { testRedisUrl, uniquePrefix } from '../helpers/redis';
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver';
import { until } from '../helpers/wait';

const ROOT = join(__dirname, '..', '..');

describe('traces (OpenTelemetry, OTLP/HTTP to a local receiver)', () => {
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
  let proc: Cell0Process;
  let dataDir: string;
  let url: string;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    dataDir = mkdtempSync(join(tmpdir(), 'cell0-traces-'));
    // The whole fleet in one process (API, worker, simulator), traced because the standard variable is set.
    proc = spawnCell0(['start'], {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_SERVICE_NAME: 'cell0-test',
      REDIS_URL: testRedisUrl(),
      CELL0_QUEUE_PREFIX: uniquePrefix('trace'),
      CELL0_PORT: '0',
      CELL0_SIM_PORT: '0',
      CELL0_METRICS_PORT: '0',
      CELL0_DATA_DIR: dataDir,
    });
    [, url] = (await proc.waitFor(/api\s+(http:\/\/\S+)/, 60_000)) as unknown as [string, string];
    expect(proc.stderr()).toMatch(/traces\s+OpenTelemetry/);
  });

  afterAll(async () => {
    proc?.kill('SIGTERM');
    await proc?.exited;
    await receiver?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('joins the API request, cache lookup, enqueue, the job on the worker and its backend call in one trace', async () => {
    // The caller's own trace: the API continues it (W3C traceparent).
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpan = '00f067aa0ba902b7';
    const r = await post(
      `${url}/v1/inference`,
      { model: 'qwen2.5:7b', prompt: 'one trace from the API to the backend' },
      { headers: { traceparent: `00-${traceId}-${callerSpan}-01` } },
    );
    expect(r.status).toBe(200);

    const inTrace = () => receiver.spans.filter((s) => s.traceId === traceId);
    const named = (name: string): ReceivedSpan | undefined => inTrace().find((s) => s.name === name);
    const expected = [
      'POST /v1/inference',
      'cache lookup semantic',
      'add inference',
      'process inference',
      'backend inference',
    ];
    // Spans are sent in batches (every second): wait until every expected one has arrived.
    await until(
      () => expected.every((n) => named(n)),
      20_000,
      `spans ${expected.join(', ')} in trace ${traceId}`,
    );
    const http = named('POST /v1/inference')!;
    const cache = named('cache lookup semantic')!;
    const add = named('add inference')!;
    const process = named('process inference')!;
    const backend = named('backend inference')!;

    // API → (cache lookup, enqueue) → job on the worker → backend call: each the parent of the next.
    expect(http.parentSpanId).toBe(callerSpan);
    expect(cache.parentSpanId).toBe(http.spanId);
    expect(add.parentSpanId).toBe(http.spanId);
    expect(process.parentSpanId).toBe(add.spanId);
    expect(backend.parentSpanId).toBe(process.spanId);
    expect(http.attributes['http.route']).toBe('/v1/inference');
    expect(http.attributes['http.response.status_code']).toBe(200);
    expect(cache.attributes['cell0.cache.result']).toBe('miss');
    expect(backend.attributes['cell0.model']).toBe('qwen2.5:7b');
    expect(process.attributes['bullmq.job.id']).toBe(r.body.jobId);
    expect(http.service).toBe('cell0-test');
    // SpanKind: SERVER 2, CLIENT 3, PRODUCER 4, CONSUMER 5 (OTLP numbering, +1 from the API's enum).
    expect([http.kind, backend.kind, add.kind, process.kind]).toEqual([2, 3, 4, 5]);
    expect(receiver.refused).toEqual([]);
  });

  it('a streamed chat marks the stages of its first token as events, in order, on its spans', async () => {
    const traceId = 'a0f92f3577b34da6a3ce929d0e0e4737';
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-00f067aa0ba902b8-01` },
      body: JSON.stringify({
        model: 'qwen2.5:7b',
        messages: [{ role: 'user', content: 'the stages of one streamed first token' }],
        stream: true,
        max_tokens: 8,
      }),
    });
    expect(res.status).toBe(200);
    const sse = await res.text();
    expect(sse).toContain('"content":');
    expect(sse.trim().endsWith('data: [DONE]')).toBe(true);

    const named = (name: string) => receiver.spans.find((s) => s.traceId === traceId && s.name === name);
    await until(
      () => !!(named('POST /v1/chat/completions') && named('backend inference') && named('add inference')),
      20_000,
      `the streamed chat's spans in trace ${traceId}`,
    );
    const http = named('POST /v1/chat/completions')!;
    const backend = named('backend inference')!;
    const add = named('add inference')!;
    const at = (s: ReceivedSpan, n: string) => s.events.find((e) => e.name === n)?.timeMs;
    expect(http.events.map((e) => e.name)).toEqual([
      'connection accepted',
      'request arrived',
      'stream reader open',
      'first token received',
      'first token sent',
    ]);
    // Every time on one span is on that span's clock (its start from Date.now(), whole ms, plus monotonic
    // time since), so within a span the order is exact. Before the handler: the connection's accept, then the
    // parse of the request's head, both before the span's start.
    expect(at(http, 'connection accepted')!).toBeLessThanOrEqual(at(http, 'request arrived')!);
    expect(at(http, 'request arrived')!).toBeLessThanOrEqual(http.startMs);
    expect(backend.events.map((e) => e.name)).toEqual(['first token', 'first token stored']);
    // The write's acknowledgement, 'first token stored', may come after the API's read of it: Redis answers
    // the blocked XREAD first.
    expect(at(backend, 'first token stored')!).toBeGreaterThanOrEqual(at(backend, 'first token')!);
    const ordered = (times: number[]): void => {
      expect(times.every((t) => Number.isFinite(t))).toBe(true);
      expect([...times].sort((a, b) => a - b)).toEqual(times);
    };
    ordered([
      http.startMs,
      at(http, 'stream reader open')!,
      at(http, 'first token received')!,
      at(http, 'first token sent')!,
      http.endMs,
    ]);
    ordered([backend.startMs, at(backend, 'first token')!, backend.endMs]);
    // Across spans (one process): two spans' clocks differ by their starts' truncation to whole ms, under
    // 1 ms, so each step from one span to the other is compared with 1 ms of slack. The add, often under a
    // ms, ends before the backend call starts; the API opens its stream reader before the job's backend call
    // starts, and the backend's first token comes before the API receives it.
    expect(add.endMs).toBeLessThanOrEqual(backend.startMs + 1);
    expect(at(http, 'stream reader open')!).toBeLessThanOrEqual(backend.startMs + 1);
    expect(at(backend, 'first token')!).toBeLessThanOrEqual(at(http, 'first token received')! + 1);
  });

  it('a search is traced the same way, from the request to the search backend', async () => {
    const r = await post(`${url}/v1/search`, { query: 'redis streams trace', provider: 'local' });
    expect(r.status).toBe(200);
    // The backend span up its parents. Spans are sent in batches (every second) and a parent ends after its
    // child, so the parents may arrive in a later batch than the backend span: wait for the whole chain.
    const chainNow = (): string[] => {
      const backend = receiver.spans.find(
        (s) => s.name === 'backend search' && s.attributes['cell0.search_provider'] === 'local',
      );
      const chain: string[] = [];
      for (let s: ReceivedSpan | undefined = backend; s;) {
        chain.push(s.name);
        const parent: string | undefined = s.parentSpanId;
        s = receiver.spans.find((p) => p.spanId === parent && p.traceId === backend!.traceId);
      }
      return chain;
    };
    await until(() => chainNow().length >= 4, 20_000, 'the search backend span and its parents');
    expect(chainNow()).toEqual(['backend search', 'process search', 'add search', 'POST /v1/search']);
  });
});

describe('traces off (no OTEL_EXPORTER_OTLP_ENDPOINT)', () => {
  it('loads neither the OpenTelemetry SDK, nor its exporter, nor bullmq-otel', () => {
    // A fresh process that loads the API, the client, the worker and the fleet page, as the CLI does.
    const script = `
      require('./producers/index.ts');
      require('./producers/api/create-api.ts');
      require('./workers/index.ts');
      require('./dashboards/index.ts');
      require('./bin/runtime-api.ts');
      // (prom-client itself loads @opentelemetry/api, the inert API, when it is installed: for exemplars.)
      const loaded = Object.keys(require.cache).filter((k) =>
        /@opentelemetry[/](sdk|exporter|otlp|resources|core|context)|bullmq-otel/.test(k),
      );
      process.stdout.write(JSON.stringify(loaded));
    `;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(JSON.parse(out)).toEqual([]);
  });
});
