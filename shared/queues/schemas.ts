import { z } from 'zod';
import { InputTooLargeError, ValidationError, type FieldIssue } from '../errors.js';
import { SearchProvider, SearchType } from './enums.js';
import { hasControlChar, isWellFormedText } from '../unicode.js';

/*
 * Payload schemas shared by producers (to validate and canonicalise a request before it reaches Redis)
 * and workers (to validate what they take off the queue). Objects are strict: an unknown field is an
 * error, not silently dropped, so a typo ("temprature") is caught instead of running with the default.
 */

/** Parameter defaults. They are filled in before hashing, so omitting a parameter and sending its default
 * produce the same job id. The sampling defaults are Ollama's; max_tokens is bounded so a request without
 * one cannot occupy a worker indefinitely. */
export const INFERENCE_PARAM_DEFAULTS = {
  temperature: 0.8,
  top_p: 0.9,
  top_k: 40,
  repeat_penalty: 1.1,
  max_tokens: 512,
} as const;

const LONE_SURROGATE =
  'must be valid Unicode text: it holds a lone surrogate (an unpaired \\uD800-\\uDFFF escape), which is not a character';

/**
 * Free text sent to a model: any Unicode, but well-formed. Control characters are kept (pasted terminal
 * output carries escape sequences) and never folded into another prompt (see docs/caching.md); a search
 * query refuses them, as there they can only be noise a query normaliser would fold away.
 */
const text = () => z.string().refine(isWellFormedText, LONE_SURROGATE);

/** A model name as requests give it (shared by every request kind). */
const MODEL_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/;
const MODEL_NAME_MAX = 200;
export const modelNameSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(MODEL_NAME_MAX, `must be at most ${MODEL_NAME_MAX} characters`)
  .regex(MODEL_NAME_RE, 'must be a model name such as qwen2.5:7b (letters, digits and . _ : / @ + -)');

// Fields are declared in alphabetical order, here and below: the validated output then lists its keys
// sorted, which lets the job id's canonical JSON be plain JSON.stringify (see canonicalJson).
export const inferenceParamsSchema = z.strictObject({
  max_tokens: z.int().min(1).max(131_072).default(INFERENCE_PARAM_DEFAULTS.max_tokens),
  num_ctx: z.int().min(128).max(1_048_576).optional(),
  repeat_penalty: z.number().min(0).max(2).default(INFERENCE_PARAM_DEFAULTS.repeat_penalty),
  seed: z
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .optional(),
  stop: z.array(text().min(1).max(64)).max(8).optional(),
  temperature: z.number().min(0).max(2).default(INFERENCE_PARAM_DEFAULTS.temperature),
  top_k: z.int().min(1).max(1000).default(INFERENCE_PARAM_DEFAULTS.top_k),
  top_p: z.number().gt(0).max(1).default(INFERENCE_PARAM_DEFAULTS.top_p),
});
export type InferenceParams = z.output<typeof inferenceParamsSchema>;

/** What inferenceParamsSchema makes of `{}` (keys in the schema's order), parsed once. */
const PARAMS_PARSED_DEFAULTS: Readonly<InferenceParams> = Object.freeze(inferenceParamsSchema.parse({}));

/**
 * Per-request cache controls (the `cache` field of both request kinds). `namespace` partitions every cache
 * and the job itself (it is part of the job id); the API sets it from the caller's API key, so two keys
 * never share a cached answer or a job. The other three only steer the caches and are left out of the job
 * id, so a request that asks for a fresh answer still joins an identical job that is running.
 */
export const cacheControlSchema = z.strictObject({
  namespace: z
    .string()
    .regex(/^[A-Za-z0-9._:@/-]{1,160}$/, 'must be 1-160 letters, digits or . _ : @ / -')
    .optional(),
  /** Do not answer from a cache (nor from a completed job): run it, or join a run in progress. */
  noCache: z.boolean().optional(),
  /** Do not store the answer in the caches. */
  noStore: z.boolean().optional(),
  /** Lifetime of the cache entry this request's answer makes, seconds (default: the cache's). */
  ttlSeconds: z.int().min(1).max(31_536_000).optional(),
});
export type CacheControl = z.output<typeof cacheControlSchema>;

export const chatMessageSchema = z.strictObject({
  content: text(),
  role: z.enum(['system', 'user', 'assistant']),
});
export type ChatMessage = z.output<typeof chatMessageSchema>;

/** What a caller sends to run inference (HTTP body or Cell0Client.infer). */
export const inferenceRequestSchema = z
  .strictObject({
    cache: cacheControlSchema.optional(),
    messages: z.array(chatMessageSchema).min(1, 'must hold at least one message').max(512).optional(),
    model: modelNameSchema,
    // A fresh copy of the defaults parsed once (not a parse of {} per request: this runs on every one).
    params: inferenceParamsSchema.default(() => ({ ...PARAMS_PARSED_DEFAULTS })),
    prompt: text().min(1, 'must not be empty').optional(),
    system: text().optional(),
  })
  .superRefine((v, ctx) => {
    if (v.prompt === undefined && v.messages === undefined)
      ctx.addIssue({ code: 'custom', path: ['prompt'], message: 'give either prompt or messages' });
    if (v.prompt !== undefined && v.messages !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['messages'],
        message: 'give either prompt or messages, not both',
      });
    if (v.system !== undefined && v.messages !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['system'],
        message: 'with messages, put the system prompt in a message with role "system"',
      });
  });
export type InferenceRequest = z.input<typeof inferenceRequestSchema>;
/** A validated inference request with every default filled in: exactly what goes on the queue. */
export type InferenceJobData = z.output<typeof inferenceRequestSchema>;

/** What a caller sends to search. */
export const searchRequestSchema = z.strictObject({
  cache: cacheControlSchema.optional(),
  language: z
    .string()
    .regex(/^[a-z]{2}(-[A-Z]{2})?$/, 'must be a language tag such as en or en-US')
    .optional(),
  limit: z.int().min(1).max(50).default(10),
  offset: z.int().min(0).max(1000).default(0),
  provider: z.enum(SearchProvider).default(SearchProvider.LOCAL),
  query: z
    .string()
    .refine(isWellFormedText, LONE_SURROGATE)
    .refine(
      (q) => !hasControlChar(q),
      'must not contain control characters (U+0000-U+001F other than tab and line breaks, U+007F-U+009F)',
    )
    .transform((q) => q.trim().replace(/\s+/g, ' '))
    .pipe(z.string().min(1, 'must not be empty')),
  type: z.enum(SearchType).default(SearchType.WEB),
});
export type SearchRequest = z.input<typeof searchRequestSchema>;
export type SearchJobData = z.output<typeof searchRequestSchema>;

/** Limits checked after the schema; from config (CELL0_MAX_PROMPT_BYTES, CELL0_MAX_QUERY_BYTES). */
export interface InputLimits {
  maxPromptBytes: number;
  maxQueryBytes: number;
}

/** zod issues → field/reason pairs a caller can act on. */
export function toFieldIssues(error: z.ZodError): FieldIssue[] {
  const issues: FieldIssue[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys)
        issues.push({ field: path ? `${path}.${key}` : key, reason: 'unknown field' });
    } else {
      issues.push({ field: path || '(body)', reason: issue.message });
    }
  }
  return issues;
}

/** UTF-8 size of the text an inference request sends to the model. */
export function promptBytes(req: InferenceJobData): number {
  let n = 0;
  if (req.prompt !== undefined) n += Buffer.byteLength(req.prompt, 'utf8');
  if (req.system !== undefined) n += Buffer.byteLength(req.system, 'utf8');
  for (const m of req.messages ?? []) n += Buffer.byteLength(m.content, 'utf8');
  return n;
}

/** Validates and canonicalises an inference request; throws ValidationError or InputTooLargeError. */
export function parseInferenceRequest(input: unknown, limits: InputLimits): InferenceJobData {
  let data = plainPromptRequest(input);
  if (data === undefined) {
    const r = inferenceRequestSchema.safeParse(input);
    if (!r.success) throw new ValidationError(toFieldIssues(r.error));
    data = r.data;
  }
  const size = promptBytes(data);
  if (size > limits.maxPromptBytes) {
    throw new InputTooLargeError(data.messages ? 'messages' : 'prompt', limits.maxPromptBytes, size);
  }
  return data;
}

/**
 * The most common requests, `{ model, prompt }` with an optional `system`, or `{ model, messages }` (the
 * OpenAI routes' shape: messages of plain strings with a known role), either with optional numeric `params`
 * and optional `cache` controls, canonicalised without running the schema: the result is exactly what
 * inferenceRequestSchema makes of it, keys in the same order (test/unit/schemas.test.ts holds the two to
 * each other). Anything else — another field, `params.stop`, a value the schema would refuse or alter — is
 * undefined here and goes through the schema, which fills the defaults of the other fields and names what
 * is wrong. The schema run is the largest part of a producer's CPU per request after BullMQ's add.
 */
function plainPromptRequest(input: unknown): InferenceJobData | undefined {
  if (!isPlainRecord(input)) return undefined;
  for (const k in input) if (!PLAIN_REQUEST_KEYS.has(k) || input[k] === undefined) return undefined;
  const { model, prompt, system } = input;
  if (typeof model !== 'string' || model.length > MODEL_NAME_MAX || !MODEL_NAME_RE.test(model))
    return undefined;
  let messages: ChatMessage[] | undefined;
  if ('messages' in input) {
    // The schema's refinements: not with a prompt, and the system prompt goes in a message.
    if ('prompt' in input || 'system' in input) return undefined;
    messages = plainMessages(input.messages);
    if (messages === undefined) return undefined;
  } else if (typeof prompt !== 'string' || prompt.length === 0 || !isWellFormedText(prompt)) return undefined;
  const params = 'params' in input ? plainParams(input.params) : { ...PARAMS_PARSED_DEFAULTS };
  if (params === undefined) return undefined;
  const cache = 'cache' in input ? plainCache(input.cache) : undefined;
  if ('cache' in input && cache === undefined) return undefined;
  if ('system' in input && (typeof system !== 'string' || !isWellFormedText(system))) return undefined;
  // The schema's output order (alphabetical; an optional key only when given).
  return {
    ...(cache !== undefined ? { cache } : {}),
    ...(messages !== undefined ? { messages } : {}),
    model,
    params,
    ...(messages === undefined ? { prompt: prompt as string } : {}),
    ...('system' in input ? { system: system as string } : {}),
  };
}

/** The top-level keys of the fast path (each is checked below). */
const PLAIN_REQUEST_KEYS: ReadonlySet<string> = new Set([
  'cache',
  'messages',
  'model',
  'params',
  'prompt',
  'system',
]);
const MESSAGE_ROLES: ReadonlySet<unknown> = new Set(['system', 'user', 'assistant']);
const NAMESPACE_RE = /^[A-Za-z0-9._:@/-]{1,160}$/;

/** `messages` as the schema outputs them (`{ content, role }` each), or undefined for anything it would not take as it is. */
function plainMessages(m: unknown): ChatMessage[] | undefined {
  if (!Array.isArray(m) || m.length < 1 || m.length > 512) return undefined;
  const out: ChatMessage[] = new Array<ChatMessage>(m.length);
  for (let i = 0; i < m.length; i++) {
    const x: unknown = m[i];
    if (!isPlainRecord(x)) return undefined;
    let n = 0;
    for (const k in x) {
      if (k !== 'content' && k !== 'role') return undefined;
      n++;
    }
    const { content, role } = x;
    if (n !== 2 || typeof content !== 'string' || !MESSAGE_ROLES.has(role) || !isWellFormedText(content))
      return undefined;
    out[i] = { content, role: role as ChatMessage['role'] };
  }
  return out;
}

/** `cache` controls as the schema outputs them, or undefined for anything it would not take as they are. */
function plainCache(c: unknown): CacheControl | undefined {
  if (!isPlainRecord(c)) return undefined;
  for (const k in c)
    if ((k !== 'namespace' && k !== 'noCache' && k !== 'noStore' && k !== 'ttlSeconds') || c[k] === undefined)
      return undefined;
  const { namespace, noCache, noStore, ttlSeconds } = c;
  if (
    ('namespace' in c && (typeof namespace !== 'string' || !NAMESPACE_RE.test(namespace))) ||
    ('noCache' in c && typeof noCache !== 'boolean') ||
    ('noStore' in c && typeof noStore !== 'boolean') ||
    ('ttlSeconds' in c && !inRange(ttlSeconds, 1, 31_536_000, true))
  )
    return undefined;
  return {
    ...('namespace' in c ? { namespace: namespace as string } : {}),
    ...('noCache' in c ? { noCache: noCache as boolean } : {}),
    ...('noStore' in c ? { noStore: noStore as boolean } : {}),
    ...('ttlSeconds' in c ? { ttlSeconds: ttlSeconds as number } : {}),
  };
}

function isPlainRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

/** Is `v` a number the schema's `z.int().min(lo).max(hi)` (`int`) or `z.number().min(lo).max(hi)` takes? */
const inRange = (v: unknown, lo: number, hi: number, int: boolean): v is number =>
  typeof v === 'number' && (int ? Number.isInteger(v) : Number.isFinite(v)) && v >= lo && v <= hi;

/** The params keys of the fast path: every one but `stop` (an array of texts, left to the schema). */
const PLAIN_PARAM_KEYS: ReadonlySet<string> = new Set([
  'max_tokens',
  'num_ctx',
  'repeat_penalty',
  'seed',
  'temperature',
  'top_k',
  'top_p',
]);

/**
 * `params` made only of numbers inferenceParamsSchema takes as they are, as the schema outputs it (its keys
 * in the schema's order, the defaults filled in); undefined for anything else (`stop`, an unknown key, a
 * value out of range or of another type), which the schema then refuses or canonicalises itself.
 */
function plainParams(p: unknown): InferenceParams | undefined {
  if (!isPlainRecord(p)) return undefined;
  let n = 0;
  for (const k in p) {
    if (!PLAIN_PARAM_KEYS.has(k) || p[k] === undefined) return undefined;
    n++;
  }
  if (n === 0) return { ...PARAMS_PARSED_DEFAULTS };
  const d = PARAMS_PARSED_DEFAULTS;
  const { max_tokens = d.max_tokens, num_ctx, repeat_penalty = d.repeat_penalty, seed } = p;
  const { temperature = d.temperature, top_k = d.top_k, top_p = d.top_p } = p;
  if (
    !inRange(max_tokens, 1, 131_072, true) ||
    !inRange(repeat_penalty, 0, 2, false) ||
    !inRange(temperature, 0, 2, false) ||
    !inRange(top_k, 1, 1000, true) ||
    !inRange(top_p, 0, 1, false) ||
    top_p === 0 ||
    (num_ctx !== undefined && !inRange(num_ctx, 128, 1_048_576, true)) ||
    (seed !== undefined && !inRange(seed, 0, 2 ** 31 - 1, true))
  )
    return undefined;
  // The schema's output order (alphabetical; an optional key only when given).
  return {
    max_tokens,
    ...(num_ctx !== undefined ? { num_ctx } : {}),
    repeat_penalty,
    ...(seed !== undefined ? { seed } : {}),
    temperature,
    top_k,
    top_p,
  };
}

/** Validates and canonicalises a search request; throws ValidationError or InputTooLargeError. */
export function parseSearchRequest(input: unknown, limits: InputLimits): SearchJobData {
  const r = searchRequestSchema.safeParse(input);
  if (!r.success) throw new ValidationError(toFieldIssues(r.error));
  const size = Buffer.byteLength(r.data.query, 'utf8');
  if (size > limits.maxQueryBytes) throw new InputTooLargeError('query', limits.maxQueryBytes, size);
  return r.data;
}

/*
 * Fast structural checks for workers. A job written by cell0's producers was validated there already; a
 * worker still refuses foreign or corrupted data, but need not pay a full schema parse for every job. When
 * a check fails the worker runs the zod schema to report which field is wrong.
 */

const INFERENCE_KEYS = new Set(['cache', 'model', 'prompt', 'system', 'messages', 'params']);
const PARAM_KEYS = new Set([
  'temperature',
  'top_p',
  'top_k',
  'repeat_penalty',
  'max_tokens',
  'seed',
  'stop',
  'num_ctx',
]);
const SEARCH_KEYS = new Set(['cache', 'query', 'provider', 'type', 'limit', 'offset', 'language']);
const CACHE_KEYS = new Set(['namespace', 'noCache', 'noStore', 'ttlSeconds']);

/** `cache` of job data: absent, or an object of the known controls with the right types. */
function isCacheControl(c: unknown): boolean {
  if (c === undefined) return true;
  return (
    isObj(c) &&
    onlyKeys(c, CACHE_KEYS) &&
    (c.namespace === undefined || typeof c.namespace === 'string') &&
    (c.noCache === undefined || typeof c.noCache === 'boolean') &&
    (c.noStore === undefined || typeof c.noStore === 'boolean') &&
    (c.ttlSeconds === undefined || Number.isInteger(c.ttlSeconds))
  );
}
const PROVIDERS = new Set<string>(Object.values(SearchProvider));
const TYPES = new Set<string>(Object.values(SearchType));

function onlyKeys(o: object, allowed: Set<string>): boolean {
  for (const k in o) if (!allowed.has(k)) return false;
  return true;
}
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isText = (v: unknown): v is string => typeof v === 'string' && isWellFormedText(v);

/** True when `d` has the shape of a canonical inference job (defaults filled in). */
export function isInferenceJobData(d: unknown): d is InferenceJobData {
  if (!isObj(d) || !onlyKeys(d, INFERENCE_KEYS) || typeof d.model !== 'string' || d.model.length === 0)
    return false;
  if (d.system !== undefined && !isText(d.system)) return false;
  if (!isCacheControl(d.cache)) return false;
  if (d.prompt !== undefined) {
    if (!isText(d.prompt) || d.messages !== undefined) return false;
  } else {
    if (!Array.isArray(d.messages) || d.messages.length === 0 || d.system !== undefined) return false;
    for (const m of d.messages as unknown[]) {
      if (
        !isObj(m) ||
        !isText(m.content) ||
        (m.role !== 'system' && m.role !== 'user' && m.role !== 'assistant')
      )
        return false;
    }
  }
  const p = d.params;
  if (!isObj(p) || !onlyKeys(p, PARAM_KEYS)) return false;
  if (
    !isNum(p.temperature) ||
    !isNum(p.top_p) ||
    !isNum(p.top_k) ||
    !isNum(p.repeat_penalty) ||
    !isNum(p.max_tokens)
  )
    return false;
  if (p.seed !== undefined && !isNum(p.seed)) return false;
  if (p.num_ctx !== undefined && !isNum(p.num_ctx)) return false;
  if (p.stop !== undefined && !(Array.isArray(p.stop) && p.stop.every(isText))) return false;
  return true;
}

/** True when `d` has the shape of a canonical search job (defaults filled in). */
export function isSearchJobData(d: unknown): d is SearchJobData {
  return (
    isObj(d) &&
    onlyKeys(d, SEARCH_KEYS) &&
    isText(d.query) &&
    d.query.length > 0 &&
    !hasControlChar(d.query) &&
    typeof d.provider === 'string' &&
    PROVIDERS.has(d.provider) &&
    typeof d.type === 'string' &&
    TYPES.has(d.type) &&
    Number.isInteger(d.limit) &&
    Number.isInteger(d.offset) &&
    (d.language === undefined || typeof d.language === 'string') &&
    isCacheControl(d.cache)
  );
}
