import type * as OtelApi from '@opentelemetry/api';
import type * as Exporter from '@opentelemetry/exporter-trace-otlp-http';
import type * as Resources from '@opentelemetry/resources';
import type * as SdkNode from '@opentelemetry/sdk-trace-node';
import type * as BullMQOtelModule from 'bullmq-otel';
import { type Telemetry } from 'bullmq';
import { type RequestHandler } from 'express';
import { acceptedAt, arrivedAt } from '../request-timing.js';

/*
 * OpenTelemetry traces, off by default. Nothing here imports OpenTelemetry until startTracing() is called
 * (the CLI calls it only when OTEL_EXPORTER_OTLP_ENDPOINT is set): while tracing is off, a span helper is
 * one check of a module variable, BullMQ gets no `telemetry` option and the API no tracing middleware.
 */

/** Options of {@link startTracing}. */
export interface TracingOptions {
  /**
   * The OTLP/HTTP collector's base URL (OTEL_EXPORTER_OTLP_ENDPOINT); spans are posted as JSON to
   * `<endpoint>/v1/traces`.
   */
  endpoint: string;
  /** `service.name` of the spans (OTEL_SERVICE_NAME). */
  serviceName: string;
  /** Most spans kept in memory waiting to be sent; more are dropped. Default 2048 (the SDK's). */
  maxQueueSize?: number;
}

/** A started tracer; `shutdown` sends what is left and stops. */
export interface Tracing {
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

interface Active {
  api: typeof OtelApi;
  tracer: OtelApi.Tracer;
  telemetry: Telemetry<OtelApi.Context>;
}

let active: Active | undefined;

/** Kinds of span, as OpenTelemetry's SpanKind. */
export type SpanKindName = 'internal' | 'server' | 'client' | 'producer' | 'consumer';

type Attributes = Record<string, string | number | boolean | undefined>;

/** True once startTracing() has run in this process (and until its shutdown). */
export function tracingOn(): boolean {
  return active !== undefined;
}

/**
 * BullMQ's `telemetry` option (bullmq-otel) for Queue, Worker and FlowProducer while tracing is on, else
 * undefined (spread it: `...telemetryOption()`).
 */
export function telemetryOption(): { telemetry: Telemetry } | Record<string, never> {
  return active ? { telemetry: active.telemetry as Telemetry } : {};
}

/**
 * The current trace context serialized the way bullmq-otel reads it from a job's `opts.telemetry.metadata`
 * (W3C traceparent), or undefined when tracing is off. A job added with it is processed in a span whose
 * parent is the current span.
 */
export function traceMetadata(): string | undefined {
  const a = active;
  if (!a) return undefined;
  return a.telemetry.contextManager.getMetadata(a.api.context.active());
}

/**
 * Runs `fn` in a span named `name` (child of the current one) when tracing is on; exactly `fn()` when off.
 * A thrown error is recorded on the span and rethrown.
 */
export function withSpan<T>(
  name: string,
  kind: SpanKindName,
  attributes: Attributes | undefined,
  fn: () => Promise<T>,
): Promise<T> {
  const a = active;
  if (!a) return fn();
  const { SpanKind, SpanStatusCode } = a.api;
  return a.tracer.startActiveSpan(
    name,
    { kind: SpanKind[kind.toUpperCase() as keyof typeof SpanKind], attributes: defined(attributes) },
    async (span) => {
      try {
        return await fn();
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message });
        throw err;
      } finally {
        span.end();
      }
    },
  );
}

/**
 * A recorder of timed events on the current span (OpenTelemetry span events), or undefined when tracing is
 * off or no span is active. Taken while the span is current, it can be called later from callbacks that
 * run outside the span's context. `time` is a `performance.now()` reading (default: now).
 */
export function spanEvents(): ((name: string, time?: number) => void) | undefined {
  const span = active?.api.trace.getActiveSpan();
  if (!span) return undefined;
  // Always an explicit time, and as a performance.now() reading, never an epoch one: OpenTelemetry puts such
  // a reading on the span's own clock (its start from Date.now() plus the monotonic time since), so a span's
  // events keep their order against its start and end. An epoch time from performance.timeOrigin is on
  // another clock, which drifts from Date.now() over a process's life (by over a ms minutes after a boot).
  return (name, time = performance.now()) => {
    span.addEvent(name, time);
  };
}

/** Adds attributes to the current span (no-op when tracing is off or no span is active). */
export function spanAttributes(attributes: Attributes): void {
  active?.api.trace.getActiveSpan()?.setAttributes(defined(attributes));
}

/**
 * A server span per HTTP request, continuing the caller's trace when it sends a W3C `traceparent`, named
 * after the matched route pattern (never the raw path). Everything the request does (cache lookups, the
 * job's enqueue) happens in its context. Mount it only while tracing is on (it passes through otherwise).
 */
export function httpTracing(): RequestHandler {
  return (req, res, next) => {
    const a = active;
    if (!a) return next();
    const { context, propagation, trace, SpanKind, SpanStatusCode } = a.api;
    const parent = propagation.extract(context.active(), req.headers);
    const span = a.tracer.startSpan(
      req.method,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': req.method } },
      parent,
    );
    // What came before the handler (see request-timing.ts): the connection's accept (long before, on a
    // reused connection) and the parse of the request's head, before its wait for a request turn.
    const accepted = acceptedAt(req);
    // performance.now() readings, on the span's clock (see spanEvents).
    if (accepted !== undefined) span.addEvent('connection accepted', accepted);
    const arrived = arrivedAt(req);
    if (arrived !== undefined) span.addEvent('request arrived', arrived);
    res.once('finish', () => {
      const route = (req.route as { path?: unknown } | undefined)?.path;
      const pattern = typeof route === 'string' ? `${req.baseUrl}${route}` : 'unmatched';
      span.updateName(`${req.method} ${pattern}`);
      span.setAttributes({ 'http.route': pattern, 'http.response.status_code': res.statusCode });
      if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    });
    const ctx = trace.setSpan(parent, span);
    // The body arrives in stream events, outside this call: bind them to the request's context.
    context.bind(ctx, req);
    context.bind(ctx, res);
    context.with(ctx, next);
  };
}

/**
 * Starts tracing for this process: loads the OpenTelemetry SDK, the OTLP/HTTP exporter (JSON) and
 * bullmq-otel, registers a tracer provider with W3C trace-context propagation, and makes the span helpers
 * above live. Call it before creating queues and workers. Calling it again returns the running one.
 */
export function startTracing(opts: TracingOptions): Promise<Tracing> {
  return Promise.resolve(start(opts));
}

function start(opts: TracingOptions): Tracing {
  if (running) return running;
  const api = load<typeof OtelApi>('@opentelemetry/api');
  const { NodeTracerProvider, BatchSpanProcessor } = load<typeof SdkNode>('@opentelemetry/sdk-trace-node');
  const { OTLPTraceExporter } = load<typeof Exporter>('@opentelemetry/exporter-trace-otlp-http');
  const { resourceFromAttributes } = load<typeof Resources>('@opentelemetry/resources');
  const { BullMQOtel } = load<typeof BullMQOtelModule>('bullmq-otel');
  const exporter = new OTLPTraceExporter({ url: `${opts.endpoint.replace(/\/+$/, '')}/v1/traces` });
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': opts.serviceName }),
    spanProcessors: [
      new BatchSpanProcessor(exporter, {
        maxQueueSize: opts.maxQueueSize ?? 2048,
        scheduledDelayMillis: 1000,
      }),
    ],
  });
  provider.register();
  active = {
    api,
    tracer: api.trace.getTracer('cell0'),
    telemetry: new BullMQOtel({ tracerName: 'cell0-bullmq' }) as unknown as Telemetry<OtelApi.Context>,
  };
  const started: Tracing = {
    forceFlush: () => provider.forceFlush(),
    shutdown: async () => {
      if (running !== started) return;
      running = undefined;
      active = undefined;
      await provider.shutdown();
      api.trace.disable();
      api.context.disable();
      api.propagation.disable();
    },
  };
  running = started;
  return started;
}

let running: Tracing | undefined;

/** Loads a module on first use (CommonJS): the OpenTelemetry SDK is never loaded while tracing is off. */
function load<T>(id: string): T {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(id) as T;
}

function defined(attributes: Attributes | undefined): OtelApi.Attributes {
  const out: OtelApi.Attributes = {};
  for (const [k, v] of Object.entries(attributes ?? {})) if (v !== undefined) out[k] = v;
  return out;
}
