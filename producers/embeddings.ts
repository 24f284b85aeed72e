import { JobName, QueueName } from '../shared/queues/names.js';
import {
  embeddingJobData,
  vectorToBase64,
  type EmbeddingResult,
  type EmbeddingsRequestData,
} from '../shared/queues/embeddings.js';
import { type JobSubmitter, type SubmitResult } from './job-submitter.js';
import { type LoadShedder } from './load-shedder.js';

/** One vector of an embeddings answer, as OpenAI spells it. */
export interface EmbeddingData {
  object: 'embedding';
  index: number;
  /** Numbers, or a base64 string of little-endian float32 when the request asked `encoding_format: "base64"`. */
  embedding: number[] | string;
}

/** The answer of POST /v1/embeddings: OpenAI's CreateEmbeddingResponse. */
export interface EmbeddingsResponse {
  object: 'list';
  data: EmbeddingData[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** How an embeddings request ended. */
export type EmbeddingsOutcome =
  | {
      state: 'completed';
      response: EmbeddingsResponse;
      /** The job of each input, in input order (identical inputs share one). */
      jobIds: string[];
      /** Inputs answered by a job that had finished before this request (no backend call for them). */
      reused: number;
    }
  /** An input's job failed: the request fails with its error (the first such input's). */
  | { state: 'failed'; index: number; jobId: string; code: string | undefined; message: string }
  /** Not every input finished within the wait: the jobs of those still running, to retry or poll. */
  | { state: 'pending'; jobIds: string[]; pending: { index: number; jobId: string; jobState: string }[] };

/**
 * Adds (or joins) one job per distinct input text of the request and waits for all of them. The jobs
 * are the queue's own coalescing unit: an input identical to one of another request (of the same
 * tenant), running or finished within the result TTL, shares that job and its vector. The request's jobs
 * go to Redis as one group (one round trip, one MULTI: a worker sees all of them queued or none), and the
 * worker that takes them embeds those of one model in one backend call.
 */
export async function submitEmbeddings(
  submitter: JobSubmitter,
  shedder: LoadShedder | undefined,
  data: EmbeddingsRequestData,
  opts: { waitMs: number; signal?: AbortSignal },
): Promise<EmbeddingsOutcome> {
  shedder?.check(QueueName.EMBEDDING);
  const distinct = [...new Set(data.input)];
  const callOpts = {
    waitMs: opts.waitMs,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(data.cache?.noCache === true ? { maxAgeMs: 0 } : {}),
  };
  const started = Date.now();
  // One group: the request's new jobs reach Redis in one round trip, all at once (see submitMany).
  const results = await submitter.submitMany<EmbeddingResult>(
    QueueName.EMBEDDING,
    JobName.EMBED,
    distinct.map((text) => embeddingJobData(data, text)),
    callOpts,
  );
  const byText = new Map<string, SubmitResult<EmbeddingResult>>();
  distinct.forEach((t, i) => byText.set(t, results[i]!));
  const perInput = data.input.map((t) => byText.get(t)!);
  const failed = perInput.findIndex((r) => r.state === 'failed');
  if (failed >= 0) {
    const r = perInput[failed] as Extract<SubmitResult, { state: 'failed' }>;
    return { state: 'failed', index: failed, jobId: r.jobId, code: r.code, message: r.message };
  }
  const jobIds = perInput.map((r) => r.jobId);
  const pending: { index: number; jobId: string; jobState: string }[] = [];
  perInput.forEach((r, index) => {
    if (r.state === 'pending') pending.push({ index, jobId: r.jobId, jobState: r.jobState });
  });
  if (pending.length > 0) return { state: 'pending', jobIds, pending };
  const done = perInput as Extract<SubmitResult<EmbeddingResult>, { state: 'completed' }>[];
  let reused = 0;
  for (const r of results) if (r.state === 'completed' && r.finishedOn < started) reused++;
  return {
    state: 'completed',
    response: toResponse(
      data,
      done.map((r) => r.result),
    ),
    jobIds,
    reused,
  };
}

/** The OpenAI-shaped answer for the inputs' results (in input order). */
export function toResponse(data: EmbeddingsRequestData, results: EmbeddingResult[]): EmbeddingsResponse {
  let tokens = 0;
  const out: EmbeddingData[] = results.map((r, index) => {
    // A text given twice is embedded once, but OpenAI counts what was sent: so do we.
    tokens += r.promptTokens;
    return {
      object: 'embedding',
      index,
      embedding: data.encodingFormat === 'base64' ? vectorToBase64(r.embedding) : r.embedding,
    };
  });
  return {
    object: 'list',
    data: out,
    model: results[0]?.model ?? data.model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}
