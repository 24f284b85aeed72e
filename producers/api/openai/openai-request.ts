import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ValidationError, type FieldIssue } from '../../../shared/errors.js';
import { toFieldIssues, type InferenceRequest } from '../../../shared/queues/schemas.js';

/*
 * OpenAI request bodies (POST /v1/chat/completions, /v1/completions) → cell0 inference requests. Objects
 * are strict, as OpenAI's are ("Unrecognized request argument supplied"): a field cell0 does not know is a
 * 400 naming it. Fields that change nothing for a single greedy-or-sampled answer are accepted at their
 * neutral values (n = 1, echo false, logprobs off, penalties 0 are taken and dropped); anything cell0 cannot
 * honour (n > 1, tools, logprobs) is a 400 naming the field, never silently ignored.
 */

const nullable = <T extends z.ZodType>(t: T) => t.nullable().optional();

/** Fields both routes share. */
const common = {
  model: z.string().min(1, 'must not be empty'),
  temperature: nullable(z.number().min(0).max(2)),
  top_p: nullable(z.number().gt(0).max(1)),
  max_tokens: nullable(z.int().min(1)),
  stop: nullable(z.union([z.string().min(1), z.array(z.string().min(1)).max(8)])),
  seed: nullable(z.int().min(0)),
  n: nullable(z.literal(1, 'cell0 returns one choice per request: n must be 1')),
  stream: nullable(z.boolean()),
  stream_options: nullable(z.looseObject({ include_usage: z.boolean().optional() })),
  user: z.string().max(256).optional(),
  frequency_penalty: nullable(z.literal(0, 'is not supported (only 0)')),
  presence_penalty: nullable(z.literal(0, 'is not supported (only 0)')),
  logit_bias: nullable(
    z.record(z.string(), z.number()).refine((o) => Object.keys(o).length === 0, 'is not supported'),
  ),
};

const textPart = z.looseObject({
  type: z.literal('text', 'only text parts are supported'),
  text: z.string(),
});

const chatMessage = z.strictObject({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([z.string(), z.array(textPart)]).nullable(),
  name: z.string().optional(),
  refusal: z.string().nullable().optional(),
});

export const chatCompletionSchema = z.strictObject({
  ...common,
  messages: z.array(chatMessage).min(1, 'must hold at least one message'),
  max_completion_tokens: nullable(z.int().min(1)),
  logprobs: nullable(z.literal(false, 'is not supported')),
  parallel_tool_calls: nullable(z.boolean()),
  response_format: nullable(z.looseObject({ type: z.literal('text', 'only {"type": "text"} is supported') })),
  store: nullable(z.boolean()),
  metadata: nullable(z.record(z.string(), z.string())),
  service_tier: nullable(z.string()),
  reasoning_effort: nullable(z.string()),
});

export const completionSchema = z.strictObject({
  ...common,
  prompt: z.union([
    z.string().min(1, 'must not be empty'),
    z.array(z.string().min(1)).length(1, 'cell0 takes one prompt per request'),
  ]),
  echo: nullable(z.literal(false, 'is not supported')),
  best_of: nullable(z.literal(1, 'must be 1')),
  logprobs: nullable(z.literal(0, 'is not supported')),
  suffix: nullable(z.null()),
});

/** What a route needs besides the cell0 request. */
export interface OpenAIRequestInfo {
  /** The cell0 request (not yet validated by cell0's own schema). */
  request: InferenceRequest;
  stream: boolean;
  /** stream_options.include_usage: a last chunk carries the usage. */
  includeUsage: boolean;
  /** The model as the caller named it (echoed in answers). */
  model: string;
}

/** Cache controls of the X-Cell0-Cache request header: `no-cache`, `no-store`, `ttl=<seconds>`, comma-separated. */
export function cacheControlsOf(header: string | undefined): {
  noCache?: true;
  noStore?: true;
  ttlSeconds?: number;
} {
  const out: { noCache?: true; noStore?: true; ttlSeconds?: number } = {};
  if (header === undefined) return out;
  for (const raw of header.split(',')) {
    const d = raw.trim().toLowerCase();
    if (d === '') continue;
    if (d === 'no-cache') out.noCache = true;
    else if (d === 'no-store') out.noStore = true;
    else if (/^ttl=\d{1,8}$/.test(d) && Number(d.slice(4)) >= 1) out.ttlSeconds = Number(d.slice(4));
    else
      throw new ValidationError([
        {
          field: 'x-cell0-cache',
          reason: `unknown directive "${d.slice(0, 40)}"; use no-cache, no-store or ttl=<seconds>`,
        },
      ]);
  }
  return out;
}

/**
 * The namespace of a request: the caller's tenant (with API keys) and `user`, OpenAI's end-user id, as a
 * tenant hint: requests of different users never share a cached answer or a job. A user id that is not a
 * namespace segment (spaces, other characters, too long) is replaced by a hash of it.
 */
export function namespaceOf(tenant: string | undefined, user: string | undefined): string | undefined {
  const u =
    user === undefined || user === ''
      ? undefined
      : /^[A-Za-z0-9._@-]{1,64}$/.test(user)
        ? user
        : `u-${createHash('sha256').update(user).digest('hex').slice(0, 32)}`;
  if (tenant === undefined) return u;
  return u === undefined ? tenant : `${tenant}:${u}`;
}

function parse<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new ValidationError([{ field: '(body)', reason: 'expected a JSON object' }]);
  const r = schema.safeParse(body);
  if (!r.success) throw new ValidationError(toFieldIssues(r.error));
  return r.data;
}

function paramsOf(
  b: z.output<typeof chatCompletionSchema> | z.output<typeof completionSchema>,
  maxTokens: number | null | undefined,
): InferenceRequest['params'] {
  const params: NonNullable<InferenceRequest['params']> = {};
  if (b.temperature != null) params.temperature = b.temperature;
  if (b.top_p != null) params.top_p = b.top_p;
  if (maxTokens != null) params.max_tokens = maxTokens;
  if (b.seed != null) params.seed = b.seed;
  if (b.stop != null) params.stop = typeof b.stop === 'string' ? [b.stop] : b.stop;
  return params;
}

/** A chat completion request as a cell0 request. Throws ValidationError naming the OpenAI field. */
export function parseChatCompletion(
  body: unknown,
  ctx: { tenant: string | undefined; cacheHeader: string | undefined },
): OpenAIRequestInfo {
  const b = parse(chatCompletionSchema, body);
  const messages = b.messages.map((m) => ({
    // A developer message is OpenAI's newer name for the system prompt.
    role: m.role === 'developer' ? ('system' as const) : m.role,
    content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join(''),
  }));
  return {
    request: {
      model: b.model,
      messages,
      params: paramsOf(b, b.max_completion_tokens ?? b.max_tokens),
      ...cacheOf(ctx, b.user),
    },
    stream: b.stream === true,
    includeUsage: b.stream_options?.include_usage === true,
    model: b.model,
  };
}

/** A legacy completion request as a cell0 request. Throws ValidationError naming the OpenAI field. */
export function parseCompletion(
  body: unknown,
  ctx: { tenant: string | undefined; cacheHeader: string | undefined },
): OpenAIRequestInfo {
  const b = parse(completionSchema, body);
  return {
    request: {
      model: b.model,
      prompt: typeof b.prompt === 'string' ? b.prompt : b.prompt[0]!,
      params: paramsOf(b, b.max_tokens),
      ...cacheOf(ctx, b.user),
    },
    stream: b.stream === true,
    includeUsage: b.stream_options?.include_usage === true,
    model: b.model,
  };
}

function cacheOf(
  ctx: { tenant: string | undefined; cacheHeader: string | undefined },
  user: string | undefined,
): { cache?: NonNullable<InferenceRequest['cache']> } {
  const controls = cacheControlsOf(ctx.cacheHeader);
  const namespace = namespaceOf(ctx.tenant, user);
  const cache = { ...controls, ...(namespace !== undefined ? { namespace } : {}) };
  return Object.keys(cache).length > 0 ? { cache } : {};
}

/**
 * A cell0 field path → the OpenAI request field it came from (params.max_tokens → max_tokens, messages.0.
 * content → messages.0.content): what the `param` of an OpenAI error names.
 */
export function openAIParam(issue: FieldIssue | undefined): string | null {
  if (!issue) return null;
  const f = issue.field;
  if (f === '(body)') return null;
  if (f.startsWith('params.')) return f.slice('params.'.length);
  if (f.startsWith('cache.namespace')) return 'user';
  if (f.startsWith('cache.')) return 'x-cell0-cache';
  return f;
}
