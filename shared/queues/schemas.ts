import { z } from 'zod';
import { InputTooLargeError, ValidationError, type FieldIssue } from '../errors.js';
import { SearchProvider, SearchType } from './enums.js';

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

const modelName = z
  .string()
  .min(1, 'must not be empty')
  .max(200, 'must be at most 200 characters')
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/,
    'must be a model name such as qwen2.5:7b (letters, digits and . _ : / @ + -)',
  );

export const inferenceParamsSchema = z.strictObject({
  temperature: z.number().min(0).max(2).default(INFERENCE_PARAM_DEFAULTS.temperature),
  top_p: z.number().gt(0).max(1).default(INFERENCE_PARAM_DEFAULTS.top_p),
  top_k: z.int().min(1).max(1000).default(INFERENCE_PARAM_DEFAULTS.top_k),
  repeat_penalty: z.number().min(0).max(2).default(INFERENCE_PARAM_DEFAULTS.repeat_penalty),
  max_tokens: z.int().min(1).max(131_072).default(INFERENCE_PARAM_DEFAULTS.max_tokens),
  seed: z
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .optional(),
  stop: z.array(z.string().min(1).max(64)).max(8).optional(),
  num_ctx: z.int().min(128).max(1_048_576).optional(),
});
export type InferenceParams = z.output<typeof inferenceParamsSchema>;

export const chatMessageSchema = z.strictObject({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.string(),
});
export type ChatMessage = z.output<typeof chatMessageSchema>;

/** What a caller sends to run inference (HTTP body or Cell0Client.infer). */
export const inferenceRequestSchema = z
  .strictObject({
    model: modelName,
    prompt: z.string().min(1, 'must not be empty').optional(),
    system: z.string().optional(),
    messages: z.array(chatMessageSchema).min(1, 'must hold at least one message').max(512).optional(),
    params: inferenceParamsSchema.default(() => inferenceParamsSchema.parse({})),
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
  query: z
    .string()
    .transform((q) => q.trim().replace(/\s+/g, ' '))
    .pipe(z.string().min(1, 'must not be empty')),
  provider: z.enum(SearchProvider).default(SearchProvider.LOCAL),
  type: z.enum(SearchType).default(SearchType.WEB),
  limit: z.int().min(1).max(50).default(10),
  offset: z.int().min(0).max(1000).default(0),
  language: z
    .string()
    .regex(/^[a-z]{2}(-[A-Z]{2})?$/, 'must be a language tag such as en or en-US')
    .optional(),
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
  const r = inferenceRequestSchema.safeParse(input);
  if (!r.success) throw new ValidationError(toFieldIssues(r.error));
  const size = promptBytes(r.data);
  if (size > limits.maxPromptBytes) {
    throw new InputTooLargeError(r.data.messages ? 'messages' : 'prompt', limits.maxPromptBytes, size);
  }
  return r.data;
}

/** Validates and canonicalises a search request; throws ValidationError or InputTooLargeError. */
export function parseSearchRequest(input: unknown, limits: InputLimits): SearchJobData {
  const r = searchRequestSchema.safeParse(input);
  if (!r.success) throw new ValidationError(toFieldIssues(r.error));
  const size = Buffer.byteLength(r.data.query, 'utf8');
  if (size > limits.maxQueryBytes) throw new InputTooLargeError('query', limits.maxQueryBytes, size);
  return r.data;
}
