import { performance } from 'node:perf_hooks';
import { type Exchange, SimHttpError, readJsonBody, sendJson } from './http-exchange.js';
import {
  optionalBoolean,
  optionalNumber,
  optionalString,
  readEmbedInput,
  readOptions,
} from './request-fields.js';
import { type Resident } from './resident-models.js';
import { nsOf, type SimContext } from './sim-context.js';
import { estimateTokens, simulatedEmbedding } from './text.js';

/** POST /api/embed: one vector per input, after the call's simulated compute time. */
export async function handleEmbed(ctx: SimContext, ex: Exchange): Promise<void> {
  const body = await readJsonBody(ex, ctx.opts.maxBodyBytes);
  const { requestedName, model } = ctx.modelOf(body, 'EmbedRequest');
  const keepAlive = ctx.keepAliveOf(body);
  const inputs = readEmbedInput(body);
  const truncate = optionalBoolean(body, 'truncate', 'EmbedRequest') ?? true;
  const dimensions = optionalNumber(body, 'dimensions', 'EmbedRequest');
  if (dimensions !== undefined && (!Number.isInteger(dimensions) || dimensions < 1)) {
    throw new SimHttpError(400, 'dimensions must be a positive integer');
  }
  const numCtx = readOptions(body).numCtx;

  const { resident, loadMs } = await ctx.residency.acquire(model, keepAlive, numCtx);
  let embeddings: number[][];
  let promptEvalCount: number;
  try {
    ({ embeddings, promptEvalCount } = embedAll(inputs ?? [], resident, truncate, dimensions));
    // The compute time of the call (a request with no input only loads the model).
    if (inputs !== undefined && inputs.length > 0)
      await ctx.embedCost.run(model.name, inputs.length, ex.signal);
  } finally {
    ctx.residency.release(resident, keepAlive);
  }
  sendJson(ex, 200, {
    model: requestedName,
    embeddings,
    total_duration: nsOf(performance.now() - ex.receivedAt),
    load_duration: nsOf(loadMs),
    prompt_eval_count: promptEvalCount,
  });
}

function embedAll(
  inputs: readonly string[],
  resident: Resident,
  truncate: boolean,
  dimensions: number | undefined,
): { embeddings: number[][]; promptEvalCount: number } {
  let promptEvalCount = 0;
  const dims = resident.model.embeddingDims;
  const embeddings = inputs.map((input) => {
    const tokens = Math.max(1, estimateTokens(input));
    if (tokens > resident.contextLength && !truncate) {
      throw new SimHttpError(400, 'input exceeds maximum context length');
    }
    promptEvalCount += Math.min(tokens, resident.contextLength);
    const full = simulatedEmbedding(input, dims);
    return dimensions !== undefined && dimensions < dims ? renormalize(full.slice(0, dimensions)) : full;
  });
  return { embeddings, promptEvalCount };
}

/** POST /api/embeddings, the API /api/embed replaced: one prompt in, `{ embedding }` out. */
export async function handleLegacyEmbeddings(ctx: SimContext, ex: Exchange): Promise<void> {
  const body = await readJsonBody(ex, ctx.opts.maxBodyBytes);
  const { model } = ctx.modelOf(body, 'EmbeddingRequest');
  const keepAlive = ctx.keepAliveOf(body);
  const prompt = optionalString(body, 'prompt', 'EmbeddingRequest') ?? '';
  const { resident } = await ctx.residency.acquire(model, keepAlive, readOptions(body).numCtx);
  try {
    if (prompt !== '') await ctx.embedCost.run(model.name, 1, ex.signal);
  } finally {
    ctx.residency.release(resident, keepAlive);
  }
  const embedding = prompt === '' ? [] : simulatedEmbedding(prompt, model.embeddingDims);
  sendJson(ex, 200, { embedding });
}

function renormalize(vector: number[]): number[] {
  const norm = Math.sqrt(vector.reduce((sum, v) => sum + v * v, 0));
  return norm === 0 ? vector : vector.map((v) => v / norm);
}
