/** Milliseconds per unit of a Go duration string (what Ollama's keep_alive accepts). */
const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/** keep_alive that Ollama would refuse; the message is Go's, as Ollama passes it through. */
export class KeepAliveError extends Error {}

/**
 * Parses a Go duration ("300ms", "30s", "5m", "1h30m", "-1m", "0") into milliseconds, or throws
 * KeepAliveError. Like time.ParseDuration, a bare number other than 0 is refused ("missing unit").
 */
export function parseGoDuration(text: string): number {
  let rest = text.trim();
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    if (rest.startsWith('-')) sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest.length === 0) throw new KeepAliveError(`time: invalid duration ${JSON.stringify(text)}`);
  if (/^[\d.]+$/.test(rest))
    throw new KeepAliveError(`time: missing unit in duration ${JSON.stringify(text)}`);
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < rest.length) {
    const match = PART.exec(rest);
    if (match === null) throw new KeepAliveError(`time: invalid duration ${JSON.stringify(text)}`);
    const [, amount, unit] = match;
    total += Number(amount) * (UNIT_MS[unit ?? ''] ?? Number.NaN);
  }
  if (!Number.isFinite(total)) throw new KeepAliveError(`time: invalid duration ${JSON.stringify(text)}`);
  return sign * total;
}

/**
 * How long a model stays resident after a request, in ms: Infinity for "forever" (any negative value, as
 * in Ollama), 0 for "unload now". Numbers are seconds; strings are Go durations.
 */
export function keepAliveMs(value: unknown): number {
  let ms: number;
  if (typeof value === 'number' && Number.isFinite(value)) {
    ms = value * 1000;
  } else if (typeof value === 'string') {
    ms = parseGoDuration(value);
  } else {
    throw new KeepAliveError(`Unsupported type: '${value === null ? 'null' : typeof value}'`);
  }
  return ms < 0 ? Number.POSITIVE_INFINITY : ms;
}
