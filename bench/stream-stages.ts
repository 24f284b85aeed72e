/*
 * bench:stream --stages: where a streamed first token's time goes, stage by stage. cell0 runs with
 * OpenTelemetry traces on (OTEL_EXPORTER_OTLP_ENDPOINT pointing at the small OTLP/HTTP JSON receiver below);
 * each stream sends its own W3C traceparent, so the request's spans (API request, semantic-cache lookup,
 * add, the worker's process and backend spans), the request span's `connection accepted` and `request
 * arrived` events, and the first-token events (stream reader open, first token
 * from the backend, first token stored in Redis, received by the API's hub, written to the SSE socket) are
 * found by trace id and laid end to end from the client's send to the client's first text.
 *
 * Tracing costs CPU of its own (span objects, their export every second), so the stages add up to more than
 * an untraced run's TTFT: they show where the time goes, the untraced pairs give the figures.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { createServer, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { percentile } from './e2e-common.js';
import { type StreamResult } from './stream-read.js';

/** One span as received: times in ms since the epoch (µs precision). */
interface Span {
  traceId: string;
  name: string;
  kind: number;
  start: number;
  end: number;
  events: Map<string, number>;
}

interface OtlpSpan {
  traceId: string;
  name: string;
  kind: number;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  events?: { name: string; timeUnixNano: string | number }[];
}

const ms = (nanos: string | number): number => Number(BigInt(nanos) / 1000n) / 1000;

/** Accepts OTLP/HTTP JSON exports at POST /v1/traces and keeps the spans by trace id. */
export async function startSpanReceiver(): Promise<{
  url: string;
  traces: Map<string, Span[]>;
  close(): Promise<void>;
}> {
  const traces = new Map<string, Span[]>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        resourceSpans?: { scopeSpans?: { spans?: OtlpSpan[] }[] }[];
      };
      for (const rs of body.resourceSpans ?? [])
        for (const ss of rs.scopeSpans ?? [])
          for (const s of ss.spans ?? []) {
            const span: Span = {
              traceId: s.traceId,
              name: s.name,
              kind: s.kind,
              start: ms(s.startTimeUnixNano),
              end: ms(s.endTimeUnixNano),
              events: new Map((s.events ?? []).map((e) => [e.name, ms(e.timeUnixNano)])),
            };
            const list = traces.get(s.traceId) ?? [];
            list.push(span);
            traces.set(s.traceId, list);
          }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    traces,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The stages, in order: each from the end of the one before. */
export const STAGES = [
  ['accept wait', 'client send → its connection accepted (0 on a reused connection)'],
  ['http read', '→ request head read and parsed by Node'],
  ['request turns', '→ API request span starts (the wait for a request turn)'],
  ['api before cache', '→ semantic-cache lookup starts (body parse, auth, validation, job id)'],
  ['cache lookup', 'semantic-cache lookup (embedding, Redis)'],
  ['reader open', '→ the token stream marks sent (not waited for: they run before the add)'],
  ['job add', '→ job added (marks and add in Redis, submit lane batch, round trip)'],
  ['worker pickup', '→ the worker starts the job (BullMQ fetch)'],
  ['worker prep', '→ backend call starts (stream marks, model lease)'],
  ['backend first token', '→ first token from the backend (the simulator TTFT is in here)'],
  [
    'redis relay',
    "→ the API's hub has it (in `cell0 start` handed over by the worker; else the worker's XADD, Redis, the hub's XREAD)",
  ],
  ['sse write', '→ written to the SSE socket'],
  ['to client', '→ the client reads the first text'],
] as const;

export type StageName = (typeof STAGES)[number][0];

/** One stream's stages (ms), or undefined when a span or event is missing. */
function stagesOf(spans: Span[], sendAt: number, firstAt: number): number[] | undefined {
  const named = (n: string) => spans.find((s) => s.name === n);
  const server = spans.find((s) => s.kind === 2 && s.name.startsWith('POST'));
  const cache = named('cache lookup semantic');
  const add = named('add inference');
  const proc = named('process inference');
  const backend = named('backend inference');
  const ev = (s: Span | undefined, n: string) => s?.events.get(n);
  // A reused connection was accepted before the send; a server without request turns stamps no arrival.
  const accepted = Math.max(sendAt, ev(server, 'connection accepted') ?? sendAt);
  const arrived = ev(server, 'request arrived') ?? server?.start;
  const t = [
    sendAt,
    accepted,
    arrived === undefined ? undefined : Math.max(accepted, arrived),
    server?.start,
    cache?.start,
    cache?.end,
    ev(server, 'stream reader open'),
    add?.end,
    proc?.start,
    backend?.start,
    ev(backend, 'first token'),
    ev(server, 'first token received'),
    ev(server, 'first token sent'),
    firstAt,
  ];
  if (t.some((x) => x === undefined)) return undefined;
  const n = t as number[];
  return n.slice(1).map((x, i) => x - n[i]!);
}

/** One traced stream's send time and first-text time (ms since the epoch) and its trace id. */
export interface TracedStream {
  traceId: string;
  sendAt: number;
  firstAt: number;
}

/** Sends one stream with a traceparent of its own; the times are the client's. */
export async function tracedStream(
  send: (headers: Record<string, string>) => Promise<StreamResult>,
): Promise<TracedStream | undefined> {
  const traceId = randomBytes(16).toString('hex');
  const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
  const sendAt = performance.timeOrigin + performance.now();
  const r = await send({ traceparent });
  if (r.error !== undefined || !Number.isFinite(r.ttftMs)) return undefined;
  return { traceId, sendAt, firstAt: sendAt + r.ttftMs };
}

/**
 * Waits (up to `waitMs`) for every stream's spans, then returns the p50 and p99 of each stage over the
 * streams whose spans all arrived, and how many did.
 */
export async function stageFigures(
  traces: Map<string, Span[]>,
  streams: readonly TracedStream[],
  waitMs = 20_000,
): Promise<{ complete: number; p50: number[]; p99: number[]; total: { p50: number; p99: number } }> {
  const rows = () =>
    streams
      .map((s) => stagesOf(traces.get(s.traceId) ?? [], s.sendAt, s.firstAt))
      .filter((x): x is number[] => x !== undefined);
  const until = Date.now() + waitMs;
  while (rows().length < streams.length && Date.now() < until) await new Promise((r) => setTimeout(r, 250));
  const got = rows();
  const col = (i: number) => got.map((r) => r[i]!).sort((a, b) => a - b);
  const totals = got.map((r) => r.reduce((a, b) => a + b, 0)).sort((a, b) => a - b);
  return {
    complete: got.length,
    p50: STAGES.map((_, i) => percentile(col(i), 50)),
    p99: STAGES.map((_, i) => percentile(col(i), 99)),
    total: { p50: percentile(totals, 50), p99: percentile(totals, 99) },
  };
}

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');

/** --stages: R traced runs of cell0 per concurrency, and the p50/p99 of each stage of the first token. */
export async function stageRuns(
  traces: Map<string, Span[]>,
  o: {
    /** Concurrency → waves per run. */
    levels: readonly (readonly [number, number])[];
    runs: number;
    tag: string;
    json: boolean;
    cell0: (prompt: string, headers: Record<string, string>) => Promise<StreamResult>;
    direct: (prompt: string) => Promise<StreamResult>;
  },
): Promise<void> {
  const { levels, runs, tag, json } = o;
  const out: Record<string, unknown>[] = [];
  for (const [k, waves] of levels) {
    const streams: TracedStream[] = [];
    const directTtft: number[] = [];
    for (let r = 0; r < runs; r++)
      for (let w = 0; w < waves; w++) {
        const prompt = (i: number) =>
          `Stream ${tag} stages k${k} r${r} w${w} reader ${i}: describe ${randomBytes(6).toString('hex')} in detail`;
        const got = await Promise.all(
          Array.from({ length: k }, (_, i) => tracedStream((headers) => o.cell0(prompt(i), headers))),
        );
        streams.push(...got.filter((x): x is TracedStream => x !== undefined));
        const d = await Promise.all(Array.from({ length: k }, (_, i) => o.direct(prompt(i))));
        directTtft.push(...d.map((x) => x.ttftMs).filter(Number.isFinite));
      }
    const fig = await stageFigures(traces, streams);
    directTtft.sort((a, b) => a - b);
    console.log(
      `\n${k} concurrent stream${k === 1 ? '' : 's'}, traced: ${fig.complete}/${k * waves * runs} streams with every span; ` +
        `stages p50 / p99 ms (direct TTFT of the same prompts p50 ${f(percentile(directTtft, 50))} / p99 ${f(percentile(directTtft, 99))})`,
    );
    STAGES.forEach(([name, what], i) =>
      console.log(
        `  ${name.padEnd(20)} ${f(fig.p50[i]!, 2).padStart(8)} ${f(fig.p99[i]!, 2).padStart(8)}  ${what}`,
      ),
    );
    console.log(
      `  ${'TTFT (sum)'.padEnd(20)} ${f(fig.total.p50, 2).padStart(8)} ${f(fig.total.p99, 2).padStart(8)}`,
    );
    out.push({
      concurrency: k,
      complete: fig.complete,
      stages: Object.fromEntries(STAGES.map(([n], i) => [n, { p50: fig.p50[i], p99: fig.p99[i] }])),
      ttft: fig.total,
      directTtft: { p50: percentile(directTtft, 50), p99: percentile(directTtft, 99) },
    });
  }
  console.log(
    `\nload     ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} at the end`,
  );
  if (json) console.log(JSON.stringify({ date: new Date().toISOString(), stages: out }));
}
