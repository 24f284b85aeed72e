import { type InferenceJobData, type SearchJobData } from '../../shared/queues/schemas.js';
import { type InferenceResult, type SearchResult } from '../../shared/queues/results.js';

/** Per-call context a worker hands a provider. */
export interface CallContext {
  /** Aborted when the job is cancelled (forced shutdown) or its time runs out. */
  signal: AbortSignal;
  /**
   * Called with each piece of generated text as the backend streams it (inference only; backends that do
   * not stream may never call it). The worker writes it to the job's token stream.
   */
  onToken?: (text: string) => void;
  /** Called when the call starts over (a retry after a failed try): text given so far is void. */
  onRestart?: () => void;
  /**
   * Called once when the backend call really starts, after any wait for a concurrency permit: the provider
   * deadline counts from there.
   */
  onStart?: () => void;
  /**
   * Called when a call has ended with the time, ms, the backend reports having spent on it, for backends
   * that report one (Ollama's `total_duration`: from receiving the request to its last token, its own
   * queueing included). The backend's concurrency limit measures the backend by it (see Permit.success).
   */
  onBackendTime?: (ms: number) => void;
}

/** A model held in a backend's memory, as its list-loaded call reports it. */
export interface LoadedModel {
  name: string;
  /** Bytes of memory it takes, when the backend says. */
  sizeBytes?: number;
  /** When the backend will unload it on its own (ISO 8601), when it says. */
  expiresAt?: string;
}

/** Vectors for a list of texts, one per input, in input order. */
export interface EmbedResult {
  model: string;
  embeddings: number[][];
  /** Tokens of all the inputs together, when the backend counts them. */
  promptTokens?: number;
}

/**
 * Something that runs inference jobs: Ollama, an OpenAI-compatible server, the no-op backend. `run` does
 * generate (a job with `prompt`) or chat (a job with `messages`). The optional methods exist where the
 * backend has them.
 */
export interface InferenceBackend {
  /** Kind of backend, as results name it ("ollama", "openai", "noop"). */
  readonly name: string;
  /** The server's origin (scheme://host:port) when it is remote: breakers and rate limits are kept per origin. */
  readonly origin?: string;
  run(job: InferenceJobData, ctx: CallContext): Promise<Omit<InferenceResult, 'servedBy'>>;
  embed?(model: string, input: string[], ctx: CallContext): Promise<EmbedResult>;
  /** Loads a model into memory ahead of use. */
  load?(model: string, ctx: CallContext): Promise<void>;
  /** Takes a model out of memory. */
  unload?(model: string, ctx: CallContext): Promise<void>;
  /** The models in memory now. */
  listLoaded?(ctx: CallContext): Promise<LoadedModel[]>;
  /** The models the backend can serve. */
  listModels?(ctx: CallContext): Promise<string[]>;
  /** Size of each model's weights, bytes, by name (what the model memory manager charges before a load). */
  modelSizes?(ctx: CallContext): Promise<Record<string, number>>;
  close(): Promise<void>;
}

/** Something that answers search jobs for one SearchProvider value. */
export interface SearchBackend {
  readonly name: string;
  /** The server's origin when it is remote: breakers and rate limits are kept per origin. */
  readonly origin?: string;
  search(job: SearchJobData, ctx: CallContext): Promise<Omit<SearchResult, 'servedBy' | 'tookMs'>>;
  close(): Promise<void>;
}
