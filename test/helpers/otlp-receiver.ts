import { createServer } from 'node:http';
import { listenLocal } from './listen';

/** One span as an OTLP/HTTP JSON export carries it (ids in hex). */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  service?: string;
  attributes: Record<string, unknown>;
  /** Start and end, ms since the epoch. */
  startMs: number;
  endMs: number;
  /** The span's events in order, with their times (ms since the epoch). */
  events: { name: string; timeMs: number }[];
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface OtlpKeyValue {
  key: string;
  value: OtlpValue;
}
interface OtlpExport {
  resourceSpans?: {
    resource?: { attributes?: OtlpKeyValue[] };
    scopeSpans?: {
      spans?: (Omit<ReceivedSpan, 'attributes' | 'service' | 'startMs' | 'endMs' | 'events'> & {
        attributes?: OtlpKeyValue[];
        startTimeUnixNano: string | number;
        endTimeUnixNano: string | number;
        events?: { name: string; timeUnixNano: string | number }[];
      })[];
    }[];
  }[];
}

const msOf = (nanos: string | number): number => Number(BigInt(nanos) / 1000n) / 1000;
const valueOf = (v: OtlpValue): unknown => v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue;
const attrs = (kvs: OtlpKeyValue[] | undefined): Record<string, unknown> =>
  Object.fromEntries((kvs ?? []).map((kv) => [kv.key, valueOf(kv.value)]));

/**
 * A small OpenTelemetry collector: accepts OTLP/HTTP JSON exports at POST /v1/traces (what
 * @opentelemetry/exporter-trace-otlp-http sends) and keeps the spans. Anything else is refused, so a
 * wrong path or encoding shows as a failed export.
 */
export async function startOtlpReceiver(): Promise<{
  url: string;
  spans: ReceivedSpan[];
  /** Requests refused (wrong path or content type), for the test to assert none. */
  refused: string[];
  close(): Promise<void>;
}> {
  const spans: ReceivedSpan[] = [];
  const refused: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const type = req.headers['content-type'] ?? '';
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !type.startsWith('application/json')) {
        refused.push(`${req.method} ${req.url} ${type}`);
        res.writeHead(404).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpExport;
      for (const rs of body.resourceSpans ?? []) {
        const service = attrs(rs.resource?.attributes)['service.name'] as string | undefined;
        for (const ss of rs.scopeSpans ?? [])
          for (const s of ss.spans ?? [])
            spans.push({
              traceId: s.traceId,
              spanId: s.spanId,
              ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
              name: s.name,
              kind: s.kind,
              ...(service !== undefined ? { service } : {}),
              attributes: attrs(s.attributes),
              startMs: msOf(s.startTimeUnixNano),
              endMs: msOf(s.endTimeUnixNano),
              events: (s.events ?? []).map((e) => ({ name: e.name, timeMs: msOf(e.timeUnixNano) })),
            });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  const { url, close } = await listenLocal(server);
  return { url, spans, refused, close };
}
