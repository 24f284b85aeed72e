export {
  httpTracing,
  spanAttributes,
  startTracing,
  telemetryOption,
  traceMetadata,
  tracingOn,
  withSpan,
  type SpanKindName,
  type Tracing,
  type TracingOptions,
} from './tracing.js';
