import { type SimModel } from './catalog.js';
import { type Exchange, SimHttpError, readJsonBody, sendJson } from './http-exchange.js';
import {
  optionalBoolean,
  optionalNumberArray,
  optionalString,
  optionalStringArray,
  readMessages,
  readOptions,
} from './request-fields.js';
import { clock, type SimContext } from './sim-context.js';
import { planText, estimateTokens } from './text.js';
import { emitTokens, type GenerationKind, type GenerationPlan } from './token-emitter.js';

/** POST /api/generate and /api/chat: validates the request, then loads, unloads or generates. */
export async function handleGeneration(ctx: SimContext, ex: Exchange, kind: GenerationKind): Promise<void> {
  const struct = kind === 'generate' ? 'GenerateRequest' : 'ChatRequest';
  const body = await readJsonBody(ex, ctx.opts.maxBodyBytes);
  const { requestedName, model } = ctx.modelOf(body, struct);
  const keepAlive = ctx.keepAliveOf(body);
  const stream = optionalBoolean(body, 'stream', struct) ?? true;
  const options = readOptions(body);

  let promptText: string;
  let seedInput: string;
  let loadOnly: boolean;
  if (kind === 'generate') {
    const prompt = optionalString(body, 'prompt', struct) ?? '';
    const system = optionalString(body, 'system', struct) ?? '';
    const suffix = optionalString(body, 'suffix', struct) ?? '';
    const images = optionalStringArray(body, 'images', struct) ?? [];
    loadOnly = prompt === '' && images.length === 0;
    promptText = [system, prompt, suffix].filter((s) => s.length > 0).join('\n');
    seedInput = JSON.stringify([system, prompt, suffix]);
  } else {
    const messages = readMessages(body);
    loadOnly = messages.length === 0;
    promptText = messages.map((m) => m.content).join('\n');
    seedInput = JSON.stringify(messages.map((m) => [m.role, m.content]));
  }

  if (loadOnly) {
    await loadOrUnload(ctx, ex, kind, requestedName, model, keepAlive, stream, options.numCtx);
    return;
  }
  if (model.kind === 'embedding') throw new SimHttpError(400, `"${requestedName}" does not support ${kind}`);

  const planned = planText(
    { model: model.name, input: seedInput, seed: options.seed, temperature: options.temperature },
    options.numPredict,
    options.stop,
  );
  await generate(ctx, ex, {
    kind,
    requestedName,
    model,
    stream,
    keepAliveMs: keepAlive,
    tokens: planned.tokens,
    doneReason: planned.doneReason,
    promptText,
    promptEvalCount: Math.max(1, estimateTokens(promptText)),
    priorContext: kind === 'generate' ? (optionalNumberArray(body, 'context', struct) ?? []) : [],
    numCtx: options.numCtx,
  });
}

/** A request with a model and nothing to do: Ollama loads it ("load") or, with keep_alive 0, unloads it. */
async function loadOrUnload(
  ctx: SimContext,
  ex: Exchange,
  kind: GenerationKind,
  requestedName: string,
  model: SimModel,
  keepAlive: number,
  stream: boolean,
  numCtx: number | undefined,
): Promise<void> {
  let doneReason: string;
  if (keepAlive === 0) {
    await ctx.residency.unload(model.name);
    doneReason = 'unload';
  } else {
    const { resident } = await ctx.residency.acquire(model, keepAlive, numCtx);
    ctx.residency.release(resident, keepAlive);
    doneReason = 'load';
  }
  const answer = {
    model: requestedName,
    created_at: new Date().toISOString(),
    ...(kind === 'generate' ? { response: '' } : { message: { role: 'assistant', content: '' } }),
    done: true,
    done_reason: doneReason,
  };
  if (!stream) {
    sendJson(ex, 200, answer);
    return;
  }
  if (ex.res.writableEnded || ex.res.destroyed) return;
  ex.res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  ex.res.end(JSON.stringify(answer) + '\n');
}

async function generate(ctx: SimContext, ex: Exchange, plan: GenerationPlan): Promise<void> {
  // With the GPU profile a request first needs one of its model's slots (or answers 503 when the queue is full).
  const slot = ctx.gpu === undefined ? undefined : await ctx.gpu.acquire(plan.model.name, ex.signal, clock);
  try {
    const { resident, loadMs } = await ctx.residency.acquire(plan.model, plan.keepAliveMs, plan.numCtx);
    try {
      if (ex.signal.aborted) return;
      await emitTokens(ctx, ex, plan, ex.receivedAt, loadMs, slot);
    } finally {
      ctx.residency.release(resident, plan.keepAliveMs);
    }
  } finally {
    slot?.release(clock());
  }
}
