import { type InferenceJobData } from '../../shared/queues/schemas.js';
import { type InferenceResult } from '../../shared/queues/results.js';
import { type OllamaClient } from './ollama/ollama-client.js';
import { timingsFromOllama } from './ollama/timings.js';
import { type GenerationStats } from './ollama/types.js';
import { type CallContext, type EmbedResult, type InferenceBackend, type LoadedModel } from './provider.js';

/**
 * Runs inference jobs on an Ollama (or Ollama-compatible) server: streamed when the job's tokens are
 * wanted (a caller streams it: `ctx.onToken`), which also measures the time to first token; otherwise one
 * unstreamed answer (`stream: false`: one JSON body to read instead of an NDJSON line per token), whose
 * time to first token is the call's time less the backend's generation time (its `eval_duration`).
 * Embeds with /api/embed, loads (a request with only `model`), unloads (`keep_alive: 0`), lists the loaded
 * models (/api/ps) and the local ones (/api/tags).
 */
export class OllamaBackend implements InferenceBackend {
  readonly name = 'ollama';
  constructor(readonly client: OllamaClient) {}

  get origin(): string {
    return this.client.origin;
  }

  async embed(model: string, input: string[], ctx: CallContext): Promise<EmbedResult> {
    const r = await this.client.embed({ model, input }, ctx.signal);
    return {
      model: r.model,
      embeddings: r.embeddings,
      ...(typeof r.prompt_eval_count === 'number' ? { promptTokens: r.prompt_eval_count } : {}),
    };
  }

  async load(model: string, ctx: CallContext): Promise<void> {
    await this.client.load(model, undefined, ctx.signal);
  }

  async unload(model: string, ctx: CallContext): Promise<void> {
    await this.client.unload(model, ctx.signal);
  }

  async listLoaded(ctx: CallContext): Promise<LoadedModel[]> {
    const r = await this.client.ps(ctx.signal);
    return r.models.map((m) => ({ name: m.name, sizeBytes: m.size, expiresAt: m.expires_at }));
  }

  async modelSizes(ctx: CallContext): Promise<Record<string, number>> {
    const r = await this.client.tags(ctx.signal);
    return Object.fromEntries(r.models.map((m) => [m.name, m.size]));
  }

  async listModels(ctx: CallContext): Promise<string[]> {
    const r = await this.client.tags(ctx.signal);
    return r.models.map((m) => m.name);
  }

  async run(job: InferenceJobData, ctx: CallContext): Promise<Omit<InferenceResult, 'servedBy'>> {
    const p = job.params;
    const options: Record<string, number | string[]> = {
      temperature: p.temperature,
      top_p: p.top_p,
      top_k: p.top_k,
      repeat_penalty: p.repeat_penalty,
      num_predict: p.max_tokens,
    };
    if (p.seed !== undefined) options.seed = p.seed;
    if (p.stop !== undefined) options.stop = p.stop;
    if (p.num_ctx !== undefined) options.num_ctx = p.num_ctx;

    const streamed = ctx.onToken !== undefined;
    let text: string;
    let final: GenerationStats & { model?: string; done_reason?: string };
    let client: { ttftMs: number; totalMs: number };
    if (job.messages) {
      const r = await this.client.chat(
        { model: job.model, messages: job.messages, options, stream: streamed },
        { signal: ctx.signal, ...(ctx.onToken ? { onToken: ctx.onToken } : {}) },
      );
      text = r.message?.content ?? '';
      final = r;
      client = r.clientTimings;
    } else {
      const r = await this.client.generate(
        {
          model: job.model,
          prompt: job.prompt ?? '',
          ...(job.system !== undefined ? { system: job.system } : {}),
          options,
          stream: streamed,
        },
        { signal: ctx.signal, ...(ctx.onToken ? { onToken: ctx.onToken } : {}) },
      );
      text = r.response;
      final = r;
      client = r.clientTimings;
    }
    const t = timingsFromOllama(final);
    if (t.totalMs !== undefined) ctx.onBackendTime?.(t.totalMs);
    // Unstreamed, nothing arrives before the whole answer: the time before the backend began generating is
    // the call's less its generation time (none when the backend did not report it).
    const ttftMs = streamed
      ? client.ttftMs
      : t.evalMs !== undefined
        ? Math.max(0, client.totalMs - t.evalMs)
        : undefined;
    const promptTokens = t.promptTokens ?? 0;
    const completionTokens = t.completionTokens ?? 0;
    return {
      model: final.model ?? job.model,
      text,
      doneReason: final.done_reason ?? 'stop',
      usage: { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens },
      timings: {
        ...(ttftMs !== undefined ? { ttftMs: round(ttftMs) } : {}),
        totalMs: round(client.totalMs),
        ...(t.loadMs !== undefined ? { loadMs: round(t.loadMs) } : {}),
        ...(t.tokensPerSec !== undefined ? { tokensPerSec: round(t.tokensPerSec) } : {}),
      },
      provider: this.name,
    };
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
