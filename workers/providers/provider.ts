import { type InferenceJobData, type SearchJobData } from '../../shared/queues/schemas.js';
import { type InferenceResult, type SearchResult } from '../../shared/queues/results.js';

/** Per-call context a worker hands a provider. */
export interface CallContext {
  /** Aborted when the job is cancelled (forced shutdown) or its time runs out. */
  signal: AbortSignal;
}

/** Something that runs inference jobs (Ollama, the no-op provider, later OpenAI-compatible servers). */
export interface InferenceBackend {
  readonly name: string;
  run(job: InferenceJobData, ctx: CallContext): Promise<Omit<InferenceResult, 'servedBy'>>;
  close(): Promise<void>;
}

/** Something that answers search jobs for one SearchProvider value. */
export interface SearchBackend {
  readonly name: string;
  search(job: SearchJobData, ctx: CallContext): Promise<Omit<SearchResult, 'servedBy' | 'tookMs'>>;
  close(): Promise<void>;
}
