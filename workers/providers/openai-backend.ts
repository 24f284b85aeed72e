import { ProviderError } from '../../shared/errors.js';
import { type InferenceJobData } from '../../shared/queues/schemas.js';
import { type InferenceResult } from '../../shared/queues/results.js';
import { OPENAI_PROVIDER, type OpenAIClient } from './openai/openai-client.js';
import { type ChatCompletionRequest, type OpenAIChatMessage } from './openai/types.js';
import { type CallContext, type EmbedResult, type InferenceBackend } from './provider.js';

/** Options of {@link OpenAIBackend}. */
export interface OpenAIBackendOptions {
  /**
   * Also send `top_k` and `repetition_penalty` (from the job's top_k and repeat_penalty). They are not
   * OpenAI fields: OpenAI refuses them, vLLM and llama.cpp server accept them. Default false.
   */
  extraSamplingParams?: boolean;
  /**
   * Stream the answer (the default), which is how time to first token is measured. false sends
   * `stream: false`; ttftMs then equals totalMs.
   */
  stream?: boolean;
}

/**
 * Runs inference jobs on an OpenAI-compatible server (OpenAI, vLLM, llama.cpp server, hosted APIs) through
 * /chat/completions, streaming to measure time to first token. Such servers have no load/unload calls, so
 * those optional methods are absent. `num_ctx` is not sent: the context size is fixed when the server
 * loads the model.
 */
export class OpenAIBackend implements InferenceBackend {
  readonly name = OPENAI_PROVIDER;
  readonly origin: string;
  private readonly extraSamplingParams: boolean;
  private readonly stream: boolean;

  constructor(
    readonly client: OpenAIClient,
    options: OpenAIBackendOptions = {},
  ) {
    this.origin = client.origin;
    this.extraSamplingParams = options.extraSamplingParams ?? false;
    this.stream = options.stream ?? true;
  }

  /** The /chat/completions body a job becomes. */
  toRequest(job: InferenceJobData): ChatCompletionRequest {
    const p = job.params;
    let messages: OpenAIChatMessage[];
    if (job.messages !== undefined) {
      messages = job.messages.map((m) => ({ role: m.role, content: m.content }));
    } else {
      messages = [];
      if (job.system !== undefined) messages.push({ role: 'system', content: job.system });
      messages.push({ role: 'user', content: job.prompt ?? '' });
    }
    const req: ChatCompletionRequest = {
      model: job.model,
      messages,
      temperature: p.temperature,
      top_p: p.top_p,
      max_tokens: p.max_tokens,
    };
    if (p.seed !== undefined) req.seed = p.seed;
    if (p.stop !== undefined && p.stop.length > 0) req.stop = p.stop;
    if (this.extraSamplingParams) {
      req.top_k = p.top_k;
      req.repetition_penalty = p.repeat_penalty;
    }
    return req;
  }

  async run(job: InferenceJobData, ctx: CallContext): Promise<Omit<InferenceResult, 'servedBy'>> {
    const r = await this.client.chatCompletions(
      { ...this.toRequest(job), stream: this.stream },
      { signal: ctx.signal },
    );
    const choice = r.choices[0];
    const promptTokens = r.usage?.prompt_tokens ?? 0;
    const completionTokens = r.usage?.completion_tokens ?? 0;
    const { ttftMs, totalMs } = r.clientTimings;
    const genMs = totalMs - ttftMs;
    return {
      model: r.model || job.model,
      text: choice?.message.content ?? '',
      doneReason: choice?.finish_reason ?? 'stop',
      usage: {
        promptTokens,
        completionTokens,
        totalTokens: r.usage?.total_tokens ?? promptTokens + completionTokens,
      },
      timings: {
        ttftMs: round(ttftMs),
        totalMs: round(totalMs),
        ...(completionTokens > 0 && genMs > 0
          ? { tokensPerSec: round((completionTokens / genMs) * 1000) }
          : {}),
      },
      provider: this.name,
    };
  }

  /** Vectors for `input` via /embeddings, in input order. */
  async embed(model: string, input: string[], ctx: CallContext): Promise<EmbedResult> {
    if (input.length === 0) return { model, embeddings: [] };
    const r = await this.client.embeddings({ model, input }, { signal: ctx.signal });
    const embeddings: number[][] = new Array<number[]>(input.length);
    for (const d of r.data) if (Number.isInteger(d.index)) embeddings[d.index] = d.embedding;
    for (let i = 0; i < input.length; i++) {
      if (embeddings[i] === undefined)
        throw new ProviderError(
          this.name,
          `/embeddings: ${r.data.length} vectors for ${input.length} inputs (none for index ${i})`,
          undefined,
          false,
          { kind: 'protocol' },
        );
    }
    return {
      model: r.model || model,
      embeddings,
      ...(typeof r.usage?.prompt_tokens === 'number' ? { promptTokens: r.usage.prompt_tokens } : {}),
    };
  }

  /** Ids of the models the server lists at /models. */
  async listModels(ctx: CallContext): Promise<string[]> {
    const r = await this.client.models({ signal: ctx.signal });
    return r.data.map((m) => m.id);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
