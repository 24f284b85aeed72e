/*
 * Parsers of the provider settings written as one-line lists in the environment (CELL0_MODEL_ROUTES,
 * CELL0_RATE_LIMITS). Pure functions: they return the parsed value or throw an Error whose message says
 * which entry is wrong and why (loadConfig turns it into a ConfigError naming the variable).
 */

/** Kinds of inference backend a model can be routed to. */
export type InferenceKind = 'ollama' | 'openai';
/** Every backend kind a rate limit can name. */
export const PROVIDER_KINDS = ['ollama', 'openai', 'brave', 'searxng'] as const;
export type ProviderKind = (typeof PROVIDER_KINDS)[number];

/** One entry of CELL0_MODEL_ROUTES: models matching `pattern` go to a backend of `kind`. */
export interface ModelRoute {
  /** Glob over model names: `*` matches any run of characters (e.g. `qwen2.5:*`, `*`). */
  pattern: string;
  kind: InferenceKind;
  /** Base URL; undefined = the kind's configured URL (CELL0_OLLAMA_URL / CELL0_OPENAI_URL). */
  url?: string;
}

/** One entry of CELL0_RATE_LIMITS. */
export interface RateLimitSpec {
  /** A provider kind (every origin of that kind gets its own bucket) or one origin (scheme://host:port). */
  target: ProviderKind | string;
  /** Requests per second. */
  rate: number;
  /** Largest burst. Default max(1, rate). */
  capacity: number;
  /** Most calls in flight at once, fleet-wide; 0 = no bound. */
  maxInFlight: number;
}

function checkUrl(text: string, entry: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new Error(`"${entry}": "${text}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new Error(`"${entry}": expected an http(s) URL`);
  return text.replace(/\/+$/, '');
}

function entries(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Parses `pattern=kind[@url], …` (first match wins; order is kept). */
export function parseModelRoutes(value: string): ModelRoute[] {
  return entries(value).map((entry) => {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new Error(`"${entry}": expected pattern=ollama|openai[@url]`);
    const pattern = entry.slice(0, eq).trim();
    const target = entry.slice(eq + 1).trim();
    const at = target.indexOf('@');
    const kind = (at < 0 ? target : target.slice(0, at)).trim();
    if (kind !== 'ollama' && kind !== 'openai')
      throw new Error(`"${entry}": backend must be ollama or openai, got "${kind}"`);
    if (pattern.length === 0 || !/^[\w.:/*+-]+$/.test(pattern))
      throw new Error(`"${entry}": pattern may hold letters, digits, . : / _ - + and *`);
    const route: ModelRoute = { pattern, kind };
    if (at >= 0) route.url = checkUrl(target.slice(at + 1).trim(), entry);
    return route;
  });
}

/** True when `model` matches the glob `pattern` (`*` = any run of characters, the rest literal). */
export function matchesPattern(pattern: string, model: string): boolean {
  return matcherOf(pattern)(model);
}

type Matcher = (model: string) => boolean;

/**
 * Each pattern's matcher, made once: the load shedder and the inference router match every request's model,
 * and building the RegExp (split, escape, join, compile) each time was ~1% of a busy API+worker process's CPU.
 * The patterns come from configuration (this process's routes and priorities, the fleet's status reports), so
 * there are few; the map is emptied should it ever hold more than MAX_MATCHERS.
 */
const matchers = new Map<string, Matcher>();
const MAX_MATCHERS = 256;

function matcherOf(pattern: string): Matcher {
  let m = matchers.get(pattern);
  if (m === undefined) {
    if (pattern === '*') m = () => true;
    else if (!pattern.includes('*')) m = (model) => model === pattern;
    else {
      const re = new RegExp('^' + pattern.split('*').map(escapeRegExp).join('.*') + '$');
      m = (model) => re.test(model);
    }
    if (matchers.size >= MAX_MATCHERS) matchers.clear();
    matchers.set(pattern, m);
  }
  return m;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Parses `target=rate[/capacity[/maxInFlight]], …`. */
export function parseRateLimits(value: string): RateLimitSpec[] {
  return entries(value).map((entry) => {
    const eq = entry.lastIndexOf('=');
    if (eq <= 0) throw new Error(`"${entry}": expected target=rate[/capacity[/maxInFlight]]`);
    let target = entry.slice(0, eq).trim();
    const parts = entry
      .slice(eq + 1)
      .trim()
      .split('/')
      .map((p) => p.trim());
    if (!(PROVIDER_KINDS as readonly string[]).includes(target)) {
      // A misspelt kind ("olama") must not be reported as a bad URL.
      if (!target.includes('://'))
        throw new Error(
          `"${entry}": target must be ${PROVIDER_KINDS.join(', ')} or an http(s) origin, got "${target}"`,
        );
      target = new URL(checkUrl(target, entry)).origin;
    }
    const [rateText, capText, inflightText] = parts;
    const rate = Number(rateText);
    if (!rateText || !Number.isFinite(rate) || rate <= 0)
      throw new Error(`"${entry}": rate must be a number of requests per second > 0`);
    const capacity = capText === undefined || capText === '' ? Math.max(1, rate) : Number(capText);
    if (!Number.isFinite(capacity) || capacity < 1)
      throw new Error(`"${entry}": capacity must be a number >= 1`);
    const maxInFlight = inflightText === undefined || inflightText === '' ? 0 : Number(inflightText);
    if (!Number.isInteger(maxInFlight) || maxInFlight < 0)
      throw new Error(`"${entry}": maxInFlight must be an integer >= 0`);
    if (parts.length > 3) throw new Error(`"${entry}": at most rate/capacity/maxInFlight`);
    return { target, rate, capacity, maxInFlight };
  });
}

/** The limit for a backend: an entry naming its origin wins over one naming its kind. */
export function rateLimitFor(
  specs: readonly RateLimitSpec[],
  kind: ProviderKind,
  origin: string,
): RateLimitSpec | undefined {
  return specs.find((s) => s.target === origin) ?? specs.find((s) => s.target === kind);
}
