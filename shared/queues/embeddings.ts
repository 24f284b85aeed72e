import { z } from 'zod';
import { InputTooLargeError, ValidationError, type FieldIssue } from '../errors.js';
import { isWellFormedText } from '../unicode.js';
import { cacheControlSchema, modelNameSchema, toFieldIssues } from './schemas.js';

/*
 * Embeddings: the OpenAI-shaped request of POST /v1/embeddings (and Cell0Client.embed), and the job each
 * distinct input text becomes on the `embedding` queue. One job per text, not per request: identical texts
 * of any requests (of one tenant) share one job, and a worker embeds the jobs that are ready together, in
 * one backend call per model.
 */

/** Inputs one request may carry at most, unless configured otherwise (OpenAI's own limit). */
export const DEFAULT_MAX_EMBEDDING_INPUTS = 2048;

const LONE_SURROGATE = 'must be valid Unicode text: it holds a lone surrogate, which is not a character';

const inputText = z.string().min(1, 'must not be empty').refine(isWellFormedText, LONE_SURROGATE);

/** What a caller sends (OpenAI's CreateEmbeddingRequest, text inputs only), plus cell0's `cache` controls. */
export const embeddingsRequestSchema = z.strictObject({
  cache: cacheControlSchema.optional(),
  /** OpenAI's `dimensions`: refused with a clear reason (cell0 returns the model's own length). */
  dimensions: z.unknown().optional(),
  /** `float` (default): arrays of numbers; `base64`: little-endian float32, base64 (what OpenAI SDKs ask). */
  encoding_format: z.enum(['float', 'base64']).optional(),
  input: z.union([inputText, z.array(inputText).min(1, 'must hold at least one text')]),
  model: modelNameSchema,
  /** OpenAI's end-user id: accepted and ignored (it identifies nothing in cell0). */
  user: z.string().max(256).optional(),
});
export type EmbeddingsRequest = z.input<typeof embeddingsRequestSchema>;

/** A validated embeddings request: the texts as a list, in request order. */
export interface EmbeddingsRequestData {
  model: string;
  input: string[];
  encodingFormat: 'float' | 'base64';
  cache?: z.output<typeof cacheControlSchema>;
}

/** What goes on the `embedding` queue: one text. Keys in alphabetical order (see canonicalJson). */
export interface EmbeddingJobData {
  cache?: { namespace?: string; noCache?: boolean; noStore?: boolean; ttlSeconds?: number };
  input: string;
  model: string;
}

/** What an embedding job returns. */
export interface EmbeddingResult {
  model: string;
  embedding: number[];
  /** Tokens of this input (the backend's count for the batch, shared out by length when it gives one total). */
  promptTokens: number;
  /** Inputs in the backend call that embedded this one. */
  batchSize: number;
  /** Which backend served it ("ollama", "openai"). */
  provider: string;
  servedBy: string;
}

/** Limits of an embeddings request. */
export interface EmbeddingLimits {
  /** Most inputs per request. */
  maxInputs: number;
  /** Largest single input, UTF-8 bytes (CELL0_MAX_PROMPT_BYTES). */
  maxInputBytes: number;
}

/**
 * Validates an embeddings request; throws ValidationError (naming `input.<i>` for a bad text) or
 * InputTooLargeError (an input over the byte limit).
 */
export function parseEmbeddingsRequest(body: unknown, limits: EmbeddingLimits): EmbeddingsRequestData {
  const tokenArrays = tokenArrayIssue(body);
  if (tokenArrays) throw new ValidationError([tokenArrays]);
  const r = embeddingsRequestSchema.safeParse(body);
  if (!r.success) throw new ValidationError(toFieldIssues(r.error));
  if (r.data.dimensions !== undefined)
    throw new ValidationError([
      {
        field: 'dimensions',
        reason: 'not supported: cell0 returns vectors of the length the model gives; leave it out',
      },
    ]);
  const input = typeof r.data.input === 'string' ? [r.data.input] : r.data.input;
  if (input.length > limits.maxInputs)
    throw new ValidationError([
      { field: 'input', reason: `at most ${limits.maxInputs} inputs per request, got ${input.length}` },
    ]);
  for (let i = 0; i < input.length; i++) {
    const bytes = Buffer.byteLength(input[i]!, 'utf8');
    if (bytes > limits.maxInputBytes) throw new InputTooLargeError(`input.${i}`, limits.maxInputBytes, bytes);
  }
  return {
    model: r.data.model,
    input,
    encodingFormat: r.data.encoding_format ?? 'float',
    ...(r.data.cache ? { cache: r.data.cache } : {}),
  };
}

/** OpenAI also takes token ids (arrays of integers) as input; cell0 embeds text only: say so plainly. */
function tokenArrayIssue(body: unknown): FieldIssue | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const input = (body as { input?: unknown }).input;
  if (!Array.isArray(input) || input.length === 0) return undefined;
  const first: unknown = input[0];
  if (typeof first === 'number' || Array.isArray(first))
    return { field: 'input', reason: 'token arrays are not supported: send the text (a string or strings)' };
  return undefined;
}

/** The job of one input text of a request (the request's namespace and cache controls go with it). */
export function embeddingJobData(req: EmbeddingsRequestData, input: string): EmbeddingJobData {
  return req.cache ? { cache: req.cache, input, model: req.model } : { input, model: req.model };
}

const JOB_KEYS = new Set(['cache', 'input', 'model']);

/** True when `d` has the shape of an embedding job (the worker's fast check; the schema says what is wrong). */
export function isEmbeddingJobData(d: unknown): d is EmbeddingJobData {
  if (typeof d !== 'object' || d === null || Array.isArray(d)) return false;
  const o = d as Record<string, unknown>;
  for (const k in o) if (!JOB_KEYS.has(k)) return false;
  return (
    typeof o.model === 'string' &&
    o.model.length > 0 &&
    typeof o.input === 'string' &&
    o.input.length > 0 &&
    isWellFormedText(o.input) &&
    (o.cache === undefined || cacheControlSchema.safeParse(o.cache).success)
  );
}

/** The full schema of an embedding job, for reporting what is wrong with one that failed the fast check. */
export const embeddingJobSchema = z.strictObject({
  cache: cacheControlSchema.optional(),
  input: inputText,
  model: modelNameSchema,
});

/** A vector as OpenAI's `encoding_format: "base64"` carries it: little-endian float32, base64. */
export function vectorToBase64(v: readonly number[]): string {
  const buf = Buffer.allocUnsafe(v.length * 4);
  for (let i = 0; i < v.length; i++) buf.writeFloatLE(v[i]!, i * 4);
  return buf.toString('base64');
}
